"""The seed of the previous release (schema revision 0001), to build an old catalog that a test migrates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

OLD_HEAD = "0001"

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


def load_old_seed(connection: Connection) -> None:
    """Insert the old seed as the previous release did (one citation per coordinate), at revision 0001."""
    for entry in SEED:
        org, name = entry.hub_id.split("/")
        model_id = connection.execute(
            sa.text(
                "INSERT INTO models (hub_id, org, name, model_type, family, source_kind, created_at,"
                " updated_at) VALUES (:hub_id, :org, :name, :model_type, :family, 'hub', :now, :now)"
                " RETURNING id"
            ),
            {
                "hub_id": entry.hub_id,
                "org": org,
                "name": name,
                "model_type": entry.model_type,
                "family": entry.family,
                "now": _now(),
            },
        ).scalar_one()
        for layer, row, col in entry.coordinates:
            connection.execute(
                sa.text(
                    "INSERT INTO super_weights (model_id, layer, row, col, status, citation,"
                    " citation_source, created_at)"
                    " VALUES (:model_id, :layer, :row, :col, 'reported', :citation, :source, :now)"
                ),
                {
                    "model_id": model_id,
                    "layer": layer,
                    "row": row,
                    "col": col,
                    "citation": CITATION,
                    "source": entry.source,
                    "now": _now(),
                },
            )


def _now() -> datetime:
    return datetime.now(UTC)
