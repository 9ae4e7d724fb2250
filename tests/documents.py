"""Result documents for the catalog and API tests, built with the contract types the indexer produces.

`sample_detection` plants coordinates into a detection shaped exactly like `indexer.detection.detect.detect`'s
(`contracts.results.DetectionResult`); `sample_validation` decides them with the figures and verdicts
`indexer.validation.document.validation_document` writes (`contracts.validation.ValidationDocument`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from contracts.base import Coordinates
from contracts.results import (
    DetectionResult,
    LayerProfile,
    LayerStats,
    Provenance,
    SuperActivation,
    SuperWeight,
)
from contracts.status import SuperWeightStatus
from contracts.validation import CorpusIdentity, FigureKey, Measurement, ValidationDocument, Verdict

CORPUS = CorpusIdentity(name="builtin:pydoc_data.topics", sha256="0" * 64, tokens=2048, window=256)


def sample_detection(
    coordinates: list[Coordinates] | None = None,
    *,
    model_type: str = "llama",
    num_layers: int = 4,
    revision: str | None = None,
    prompt_agreement: float = 1.0,
) -> dict[str, Any]:
    """`DetectionResult.to_dict()` of a detection that found super weights at `coordinates` (each on the
    BOS token, pointed at by `prompt_agreement` of the detection prompts)."""
    coordinates = coordinates if coordinates is not None else [(1, 5, 7)]
    weights = tuple(
        SuperWeight(
            layer=layer,
            row=row,
            col=col,
            value=-1.5 - index,
            dtype="float16",
            hf_tensor=f"model.layers.{layer}.mlp.down_proj.weight",
            gguf_tensor=f"blk.{layer}.ffn_down.weight",
            gguf_index=(col, row),
            input_activation=40.0,
            output_activation=-900.0,
            token=0,
            magnitude_rank=1,
            iteration=index,
            prompt_agreement=prompt_agreement,
        )
        for index, (layer, row, col) in enumerate(coordinates)
    )
    stats = tuple(
        LayerStats(
            layer=layer,
            input_max=1.0 + layer,
            input_value=1.0,
            input_token=0,
            input_channel=3,
            output_max=2.0,
            output_value=-2.0,
            output_token=0,
            output_channel=5,
            residual_max=3.0,
            residual_token=0,
            residual_channel=5,
        )
        for layer in range(num_layers)
    )
    first = coordinates[0] if coordinates else None
    detection = DetectionResult(
        super_weights=weights,
        super_activation=(
            SuperActivation(
                channel=first[1],
                token=0,
                magnitude_by_layer=(1.0,) * num_layers,
                peak_layer=first[0],
                peak_magnitude=900.0,
                first_layer=first[0],
                on_first_token=True,  # token 0, and the provenance says it is the BOS
                on_bos=True,
            )
            if first
            else None
        ),
        layer_profile=(
            LayerProfile(iteration=0, removed=(), layers=stats),
            LayerProfile(iteration=1, removed=tuple(coordinates), layers=stats),
        ),
        provenance=Provenance(
            model="test/model",
            revision=revision,
            source_kind="hub",
            model_type=model_type,
            num_layers=num_layers,
            hidden_size=64,
            intermediate_size=256,
            parameter_count=1234,
            dtype="float32",
            device="cpu",
            prompt="Apple Inc. is a worldwide tech company.",
            prompt_tokens=9,
            bos_present=True,
            detector_version="1.0.0",
            library_versions={"python": "3.11"},
            wall_time_s=0.5,
            forward_passes=2,
        ),
    )
    return detection.to_dict()


def sample_validation(verdicts: dict[Coordinates, str]) -> dict[str, Any]:
    """A validation document deciding each coordinate (`confirmed` or `inert`), with its alone figure."""
    baseline = 10.0
    results = [
        Measurement(
            experiment="alone",
            key=FigureKey.alone(c),
            parameters={"key": str(FigureKey.alone(c)), "coordinates": [list(c)]},
            metric="perplexity",
            value=500.0 if v == "confirmed" else 10.1,
            baseline=baseline,
            ratio=50.0 if v == "confirmed" else 1.01,
            corpus=CORPUS,
            coordinates=c,
        )
        for c, v in verdicts.items()
    ]
    rtn = FigureKey(experiment="rtn", bits=4, granularity="g128", variant="holdout")
    results.append(
        Measurement(
            experiment="rtn",
            key=rtn,
            parameters={"key": str(rtn), "bits": 4, "granularity": "g128", "variant": "holdout"},
            metric="perplexity",
            value=11.0,
            baseline=baseline,
            ratio=1.1,
            corpus=CORPUS,
        )
    )
    document = ValidationDocument(
        model_verdict="confirmed" if "confirmed" in verdicts.values() else "inert",
        verdicts=tuple(
            Verdict(
                layer=c[0],
                row=c[1],
                col=c[2],
                verdict=SuperWeightStatus(v),
                reason=f"zeroing it alone raises perplexity {50.0 if v == 'confirmed' else 1.01:.2f}x",
            )
            for c, v in verdicts.items()
        ),
        results=tuple(results),
    )
    return document.model_dump(mode="json")


#: the planted jointly-acting model's detection and validation, recorded by `scripts/record_fixtures.py`
RECORDED_PLANTED = Path(__file__).parent / "data" / "planted_joint.json"


def recorded_planted() -> tuple[dict[str, Any], dict[str, Any]]:
    """`(detection, validation document)` of the planted model whose two super weights matter jointly."""
    recorded = json.loads(RECORDED_PLANTED.read_text(encoding="utf-8"))
    return recorded["detection"], recorded["validation"]
