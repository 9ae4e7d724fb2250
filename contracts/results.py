"""What detection produces: super weights, per-layer statistics, the super activation, provenance.

Coordinates always use the `[row = hidden/output channel, col = intermediate/input channel]` convention of
`nn.Linear` weights, whatever the storage layout of the architecture. The JSON of these types
(`DetectionResult.to_dict()`) is what the indexer prints, the workers send and the catalog stores.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from contracts.base import Coordinates, Frozen

SourceKind = Literal["hub", "local", "gguf"]


class LayerStats(Frozen):
    """Per-layer maxima recorded in one forward pass (token = position in the prompt)."""

    layer: int = Field(ge=0)
    input_max: float  # max |down_proj input|
    input_value: float  # the signed value at that position
    input_token: int
    input_channel: int  # intermediate channel (col)
    output_max: float  # max |down_proj output|
    output_value: float
    output_token: int
    output_channel: int  # hidden channel (row)
    residual_max: float  # max |residual stream| after this layer
    residual_token: int
    residual_channel: int


class LayerProfile(Frozen):
    """The per-layer activation profile of one detection iteration."""

    iteration: int = Field(ge=0)
    removed: tuple[Coordinates, ...] = ()  # (layer, row, col) zeroed during this pass
    layers: tuple[LayerStats, ...] = ()


class SuperWeight(Frozen):
    """One super weight: `down_proj.weight[row, col]` of decoder layer `layer`."""

    layer: int = Field(ge=0)
    row: int = Field(ge=0)
    col: int = Field(ge=0)
    value: float  # as stored (converted exactly to a Python float)
    dtype: str = Field(max_length=32)
    hf_tensor: str = Field(max_length=255)
    gguf_tensor: str = Field(max_length=255)
    gguf_index: tuple[int, int]  # GGUF `ne` order: (col, row), fastest dimension first
    input_activation: float  # signed down_proj input at (token, col)
    output_activation: float  # signed down_proj output at (token, row)
    token: int
    magnitude_rank: int  # 1 = largest |value| in its tensor
    iteration: int
    #: share of the detection prompts on which the same layer's spike points at this weight
    prompt_agreement: float = 1.0

    @property
    def coordinates(self) -> Coordinates:
        """The `(layer, row, col)` triple."""
        return (self.layer, self.row, self.col)


class SuperActivation(Frozen):
    """The massive residual-stream activation a super weight creates."""

    channel: int
    token: int
    magnitude_by_layer: tuple[float, ...]  # |residual[token, channel]| after each layer
    peak_layer: int
    peak_magnitude: float
    first_layer: int  # the layer whose down_proj creates it
    on_first_token: bool = False  # it sits on the prompt's first token
    on_bos: bool = False  # ... and that token is the tokenizer's BOS


class Provenance(Frozen):
    """Everything needed to reproduce and compare a detection."""

    model: str
    revision: str | None  # 40-hex commit sha for hub models
    source_kind: SourceKind
    model_type: str
    num_layers: int
    hidden_size: int
    intermediate_size: int
    parameter_count: int
    dtype: str
    device: str
    prompt: str
    prompt_tokens: int
    bos_present: bool
    detector_version: str
    library_versions: dict[str, str]
    wall_time_s: float
    forward_passes: int
    quantization: str | None = None  # GGUF file type, e.g. "Q4_1"
    resolved_from: str | None = None  # the branch/tag/sha the user asked for
    extra: dict[str, Any] = Field(default_factory=dict)


class DetectionResult(Frozen):
    """What one detection run found, with the evidence and its provenance."""

    super_weights: tuple[SuperWeight, ...] = ()
    super_activation: SuperActivation | None = None
    layer_profile: tuple[LayerProfile, ...] = ()  # iteration 0 = before removal, last = after removal
    provenance: Provenance

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return self.model_dump(mode="json")

    def to_json(self, indent: int | None = 2) -> str:
        """The JSON text of `to_dict()`."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DetectionResult:
        """Inverse of `to_dict()`."""
        return cls.model_validate(dict(data))
