"""Published super-weight coordinates, loaded as `reported` entries (`swi catalog seed`, idempotent)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.models import SuperWeight, utcnow
from catalog.repositories.models import ModelRepository
from contracts.status import SuperWeightStatus

CITATION = "Yu et al. 2024, The Super Weight in Large Language Models, arXiv:2411.07191"
PAPER_TABLE = "paper table"
REFERENCE_CODE = "reference code"


@dataclass(frozen=True)
class SeedModel:
    """One published model and its coordinates `(layer, row, col)` of `layers[L].mlp.down_proj.weight`."""

    hub_id: str
    model_type: str
    family: str
    coordinates: tuple[tuple[int, int, int], ...]
    source: str = PAPER_TABLE


SEED: tuple[SeedModel, ...] = (
    SeedModel("huggyllama/llama-7b", "llama", "Llama", ((2, 3968, 7003),)),
    SeedModel("huggyllama/llama-13b", "llama", "Llama", ((2, 2231, 2278), (2, 2231, 6939))),
    SeedModel(
        "huggyllama/llama-30b", "llama", "Llama", ((3, 5633, 12817), (3, 5633, 17439), (10, 5633, 14386))
    ),
    SeedModel("meta-llama/Llama-2-7b-hf", "llama", "Llama 2", ((1, 2533, 7890),)),
    SeedModel("meta-llama/Llama-2-13b-hf", "llama", "Llama 2", ((3, 4743, 7678),)),
    SeedModel("mistralai/Mistral-7B-v0.1", "mistral", "Mistral", ((1, 2070, 7310),)),
    SeedModel(
        "meta-llama/Meta-Llama-3-8B",
        "llama",
        "Llama 3",
        ((1, 788, 2427), (1, 1384, 2427), (1, 4062, 2427)),
        source=REFERENCE_CODE,
    ),
    SeedModel("allenai/OLMo-1B-0724-hf", "olmo", "OLMo", ((1, 1764, 1710), (2, 1764, 8041))),
    SeedModel(
        "allenai/OLMo-7B-0724-hf",
        "olmo",
        "OLMo",
        ((1, 269, 7467), (2, 269, 8275), (7, 269, 453), (24, 269, 2300)),
    ),
    SeedModel(
        "microsoft/Phi-3-mini-4k-instruct",
        "phi3",
        "Phi-3",
        ((2, 525, 808), (2, 1693, 808), (2, 1113, 808), (4, 525, 2723), (4, 1113, 2723), (4, 1693, 2723)),
    ),
)


@dataclass(frozen=True)
class SeedReport:
    """How many models and coordinates the seed added (0 and 0 when it was already loaded)."""

    models_added: int
    coordinates_added: int


def load_seed(session: Session) -> SeedReport:
    """Insert the published coordinates that are missing; the caller commits."""
    models = ModelRepository(session)
    models_added = coordinates_added = 0
    for entry in SEED:
        model = models.find(entry.hub_id)
        if model is None:
            model = models.get_or_create(entry.hub_id, model_type=entry.model_type, family=entry.family)
            models_added += 1
        model.model_type = model.model_type or entry.model_type
        model.family = model.family or entry.family
        session.flush()
        present = {
            tuple(row)
            for row in session.execute(
                select(SuperWeight.layer, SuperWeight.row, SuperWeight.col).where(
                    SuperWeight.model_id == model.id, SuperWeight.run_id.is_(None)
                )
            )
        }
        for layer, row, col in entry.coordinates:
            if (layer, row, col) in present:
                continue
            session.add(
                SuperWeight(
                    model_id=model.id,
                    run_id=None,
                    layer=layer,
                    row=row,
                    col=col,
                    status=SuperWeightStatus.REPORTED,
                    hf_tensor=f"model.layers.{layer}.mlp.down_proj.weight",
                    gguf_tensor=f"blk.{layer}.ffn_down.weight",
                    gguf_index=[col, row],
                    citation=CITATION,
                    citation_source=entry.source,
                )
            )
            coordinates_added += 1
            # Cached API pages of a model are validated against this stamp.
            model.updated_at = utcnow()
    session.flush()
    return SeedReport(models_added=models_added, coordinates_added=coordinates_added)
