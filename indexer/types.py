"""Frozen, JSON-serialisable result types of the indexer.

Coordinates always use the `[row = hidden/output channel, col = intermediate/input channel]`
convention of `nn.Linear` weights, whatever the storage layout of the architecture.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

SourceKind = Literal["hub", "local", "gguf"]

T = TypeVar("T")


@dataclass(frozen=True)
class LayerStats:
    """Per-layer maxima recorded in one forward pass (token = position in the prompt)."""

    layer: int
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


@dataclass(frozen=True)
class LayerProfile:
    """The per-layer activation profile of one detection iteration."""

    iteration: int
    removed: tuple[tuple[int, int, int], ...]  # (layer, row, col) zeroed during this pass
    layers: tuple[LayerStats, ...]


@dataclass(frozen=True)
class SuperWeight:
    """One super weight: `down_proj.weight[row, col]` of decoder layer `layer`."""

    layer: int
    row: int
    col: int
    value: float  # as stored (converted exactly to a Python float)
    dtype: str
    hf_tensor: str
    gguf_tensor: str
    gguf_index: tuple[int, int]  # GGUF `ne` order: (col, row), fastest dimension first
    input_activation: float  # signed down_proj input at (token, col)
    output_activation: float  # signed down_proj output at (token, row)
    token: int
    magnitude_rank: int  # 1 = largest |value| in its tensor
    iteration: int

    @property
    def coordinates(self) -> tuple[int, int, int]:
        """The `(layer, row, col)` triple."""
        return (self.layer, self.row, self.col)


@dataclass(frozen=True)
class SuperActivation:
    """The massive residual-stream activation a super weight creates."""

    channel: int
    token: int
    magnitude_by_layer: tuple[float, ...]  # |residual[token, channel]| after each layer
    peak_layer: int
    peak_magnitude: float
    first_layer: int  # the layer whose down_proj creates it


@dataclass(frozen=True)
class Provenance:
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
    library_versions: Mapping[str, str]
    wall_time_s: float
    forward_passes: int
    quantization: str | None = None  # GGUF file type, e.g. "Q4_1"
    resolved_from: str | None = None  # the branch/tag/sha the user asked for
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DetectionResult:
    """What one detection run found, with the evidence and its provenance."""

    super_weights: tuple[SuperWeight, ...]
    super_activation: SuperActivation | None
    layer_profile: tuple[LayerProfile, ...]  # iteration 0 = before removal, last = after removal
    provenance: Provenance

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return to_jsonable(self)  # type: ignore[no-any-return]

    def to_json(self, indent: int | None = 2) -> str:
        """The JSON text of `to_dict()`."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DetectionResult:
        """Inverse of `to_dict()`."""
        return from_jsonable(cls, data)


def to_jsonable(value: Any) -> Any:
    """Convert dataclasses, tuples and mappings into plain JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def from_jsonable(cls: type[T], data: Any) -> T:
    """Rebuild a frozen dataclass tree from `to_jsonable` output, using the type hints."""
    import typing

    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            kwargs[f.name] = _coerce(hints[f.name], data[f.name])
    return cls(**kwargs)


def _coerce(hint: Any, value: Any) -> Any:
    import types
    import typing

    if value is None:
        return None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        return _coerce(non_none[0], value) if len(non_none) == 1 else value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_jsonable(hint, value)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v) for v in value)
        return tuple(_coerce(a, v) for a, v in zip(args, value, strict=True))
    if origin in (Mapping, dict) or hint in (Mapping, dict):
        return dict(value)
    return value
