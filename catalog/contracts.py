"""The documented input contract of `record_run`: the JSON the indexer and the validation produce.

`detection` is `indexer.types.DetectionResult.to_dict()`. `validation` is a dict of this shape (every key
optional; unknown keys are ignored so the producer can grow):

    {
      "model_verdict": "confirmed",                 # short label for the whole model, or null
      "verdicts": [                                 # one per detected super weight that was tested
        {"layer": 2, "row": 3968, "col": 7003, "verdict": "confirmed" | "inert", "reason": "ppl x212"}
      ],
      "results": [                                  # every measurement, generic
        {"experiment": "prune_super_weight", "parameters": {...}, "metric": "perplexity",
         "value": 1211.4, "baseline": 5.68, "ratio": 213.3,
         "corpus": {"name": "wikitext-2-raw/test", "sha256": "...", "tokens": 4096, "window": 512},
         "coordinates": [2, 3968, 7003]}            # the super weight it decided, or null (model-level)
      ]
    }
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class DetectedSuperWeight(_Lenient):
    """One element of `detection["super_weights"]`."""

    layer: int = Field(ge=0)
    row: int = Field(ge=0)
    col: int = Field(ge=0)
    value: float | None = None
    dtype: str | None = Field(default=None, max_length=32)
    hf_tensor: str | None = Field(default=None, max_length=255)
    gguf_tensor: str | None = Field(default=None, max_length=255)
    gguf_index: list[int] | None = None
    input_activation: float | None = None
    output_activation: float | None = None
    token: int | None = None
    magnitude_rank: int | None = None
    iteration: int | None = None


class DetectedSuperActivation(_Lenient):
    """`detection["super_activation"]`."""

    channel: int
    token: int
    magnitude_by_layer: list[float]
    peak_layer: int
    peak_magnitude: float
    first_layer: int


class DetectedLayerStats(_Lenient):
    """One layer of one iteration of `detection["layer_profile"]`."""

    layer: int
    input_max: float
    input_value: float
    input_token: int
    input_channel: int
    output_max: float
    output_value: float
    output_token: int
    output_channel: int
    residual_max: float
    residual_token: int
    residual_channel: int


class DetectedIteration(_Lenient):
    """One iteration of `detection["layer_profile"]`."""

    iteration: int
    removed: list[list[int]] = Field(default_factory=list)
    layers: list[DetectedLayerStats] = Field(default_factory=list)


class Detection(_Lenient):
    """`DetectionResult.to_dict()`."""

    super_weights: list[DetectedSuperWeight] = Field(default_factory=list)
    super_activation: DetectedSuperActivation | None = None
    layer_profile: list[DetectedIteration] = Field(default_factory=list)
    provenance: dict[str, Any] = Field(default_factory=dict)


class CorpusIdentity(_Lenient):
    """Which text a quality number was measured on."""

    name: str = Field(max_length=200)
    sha256: str | None = Field(default=None, max_length=64)
    tokens: int | None = None
    window: int | None = None


class QualityMeasurement(_Lenient):
    """One element of `validation["results"]`."""

    experiment: str = Field(min_length=1, max_length=100)
    parameters: dict[str, Any] = Field(default_factory=dict)
    metric: str = Field(min_length=1, max_length=64)
    value: float | None = None
    baseline: float | None = None
    ratio: float | None = None
    corpus: CorpusIdentity | None = None
    coordinates: tuple[int, int, int] | None = None


class Verdict(_Lenient):
    """One element of `validation["verdicts"]`."""

    layer: int
    row: int
    col: int
    verdict: Literal["confirmed", "inert"]
    reason: str | None = Field(default=None, max_length=2000)


class Validation(_Lenient):
    """The validation document (see the module docstring)."""

    model_verdict: str | None = Field(default=None, max_length=32)
    verdicts: list[Verdict] = Field(default_factory=list)
    results: list[QualityMeasurement] = Field(default_factory=list)
