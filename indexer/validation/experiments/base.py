"""The experiment protocol: what a validation experiment declares and what a variant changes.

An experiment turns the detected super weights into *variants*: one perplexity pass each (or a figure
reused from an identical pass). A variant says, as data, what it changes and where it starts, so that any
engine can apply it: the whole-model engine (`indexer.validation.engines.suite`) wraps each pass in context
managers; a layer-major engine applies each change to the one layer it is running:

- `first_layer`: the first decoder layer the variant changes; every layer before it computes what the
  baseline computed (the prefix cache starts there), or what the earlier variant `prefix_of` computed
  (RTN with the super weights held out quantizes the layers before theirs as plain RTN does);
- `weight_edits`: down-projection scalars zeroed, scaled or shifted (`WeightEdit`, one coordinate each);
- `quantized_weights`: every linear layer runs on a quantized copy of its weight (`WeightQuantizer`
  edits the copy of one layer's weight in place);
- `activation_changes`: the baseline's super activation written back at its sites
  (`RestoredActivation`), or every linear layer's input fake-quantized (`QuantizedActivations`, holding
  the super activation out from its layer on when asked).

An experiment also declares what it needs: the experiments whose figures it reads (`requires`) and
whether its variants read the baseline's super-activation sites (`needs_sites`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch
from torch import nn

from contracts.results import SuperActivation, SuperWeight
from contracts.validation import FigureKey
from indexer.model.ablation import Coordinate
from indexer.model.adapters import ArchitectureAdapter
from indexer.model.loading import LoadedModel
from indexer.validation.config import ValidateConfig
from indexer.validation.perplexity import BatchObserver
from indexer.validation.quantize import ClipCache, LinearTarget, WeightQuantizer
from indexer.validation.results import Phase as Phase
from indexer.validation.results import WeightSet

EditOp = Literal["zero", "scale", "add"]


@dataclass(frozen=True)
class WeightEdit:
    """One down-projection scalar `(layer, row, col)` zeroed, multiplied by or shifted by `amount`."""

    layer: int
    row: int
    col: int
    op: EditOp
    amount: float = 0.0

    @property
    def coordinate(self) -> Coordinate:
        """The `(layer, row, col)` triple."""
        return (self.layer, self.row, self.col)


def zeroing(coordinates: Sequence[Coordinate]) -> tuple[WeightEdit, ...]:
    """Edits that zero each coordinate."""
    return tuple(WeightEdit(*c, "zero") for c in coordinates)


def scaling(coordinates: Sequence[Coordinate], factor: float) -> tuple[WeightEdit, ...]:
    """Edits that multiply each coordinate by `factor` (0 zeroes)."""
    if factor == 0:
        return zeroing(coordinates)
    return tuple(WeightEdit(*c, "scale", factor) for c in coordinates)


def shifting(coordinates: Sequence[Coordinate], deltas: Sequence[float]) -> tuple[WeightEdit, ...]:
    """Edits that add `delta` to each coordinate."""
    return tuple(WeightEdit(*c, "add", d) for c, d in zip(coordinates, deltas, strict=True))


@dataclass(frozen=True)
class RestoredActivation:
    """At the baseline's super-activation sites, layer `layer`'s down-projection output at `row` is written
    back to its recorded baseline value (the paper's "+SA")."""

    layer: int
    row: int


@dataclass(frozen=True)
class QuantizedActivations:
    """Every linear layer's input fake-quantized per tensor to `bits`; with `hold_out`, the super
    activation's entries (its channel, and the super weights' columns in their down projection) are held
    out at its sites from its layer on."""

    bits: int
    hold_out: bool


ActivationChange = RestoredActivation | QuantizedActivations


@dataclass(frozen=True)
class Variant:
    """One figure to measure: what it changes, where it starts, and which identical pass it may reuse."""

    key: FigureKey  # e.g. `FigureKey.joint()`, `FigureKey.rtn(4, "g128", "holdout")`
    experiment: str
    label: str
    phase: Phase
    first_layer: int = 0
    weight_edits: tuple[WeightEdit, ...] = ()
    quantized_weights: WeightQuantizer | None = None
    activation_changes: tuple[ActivationChange, ...] = ()
    reuse: FigureKey | None = None  # the key of an identical variant measured earlier
    #: the earlier variant whose layers before `first_layer` this one computes bit for bit (None: the
    #: baseline's); the prefix cache then starts from that variant's recorded input of `first_layer`
    prefix_of: FigureKey | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    weight_set: WeightSet | None = None  # the weights it changed, reported as a set


@dataclass(frozen=True)
class ExperimentContext:
    """What experiments plan from: the model, the detection, the settings and the selected experiments."""

    loaded: LoadedModel
    config: ValidateConfig
    super_weights: tuple[SuperWeight, ...]
    activation: SuperActivation | None
    experiments: frozenset[str]  # selected, with what they require
    targets: tuple[LinearTarget, ...]  # every quantizable linear layer
    clip_cache: ClipCache  # clip thresholds shared by the clipped RTN variants
    #: reads layer `layer`'s down-projection weight as stored, where the model does not hold it (the
    #: streamed engine reads it from the checkpoint); None: the model's own parameter
    read_down_weight: Callable[[int], torch.Tensor] | None = None

    @property
    def model(self) -> nn.Module:
        """The loaded model."""
        return self.loaded.model

    @property
    def adapter(self) -> ArchitectureAdapter:
        """The model's architecture adapter."""
        return self.loaded.adapter

    @property
    def coordinates(self) -> tuple[Coordinate, ...]:
        """The super weights' `(layer, row, col)` in detection order."""
        return tuple(sw.coordinates for sw in self.super_weights)

    @property
    def first_layer(self) -> int:
        """The earliest super weight's layer (0 without super weights)."""
        return min((sw.layer for sw in self.super_weights), default=0)

    def down_name(self, layer: int) -> str:
        """The module name of layer `layer`'s down projection."""
        return self.adapter.down_proj_name(self.model, layer)

    def down_weight(self, layer: int) -> torch.Tensor:
        """Layer `layer`'s down-projection weight as stored (values; the skeleton's has only a shape)."""
        if self.read_down_weight is not None:
            return self.read_down_weight(layer)
        return self.adapter.down_weight(self.model, layer)

    def value(self, coordinate: Coordinate) -> float:
        """The stored value of a down-projection scalar."""
        layer, row, col = coordinate
        weight = self.down_weight(layer)
        return float(weight[self.adapter.storage_index(row, col)].item())


class Observation(Protocol):
    """Batch observers an experiment attaches to other figures' passes, and what it makes of them."""

    #: figure key (e.g. the baseline, the joint zeroing) -> the observer attached to that pass
    observers: Mapping[FigureKey, BatchObserver]

    def summary(self) -> Any:
        """The experiment's result once the observed passes ran (None when they did not)."""
        ...


class Experiment(Protocol):
    """A family of figures: its variants, and what it observes of other passes."""

    name: str
    phase: Phase
    #: experiments whose figures this one reads (they are run whenever it is)
    requires: tuple[str, ...]
    #: whether its variants read the baseline's super-activation sites
    needs_sites: bool

    def variants(self, context: ExperimentContext) -> Sequence[Variant]:
        """Every figure it measures, in order (reuse may only name an earlier key)."""
        ...

    def observe(self, context: ExperimentContext) -> Observation | None:
        """What it observes of other passes (None: nothing)."""
        ...


class Measures:
    """Defaults for an experiment that only measures variants of its own."""

    requires: tuple[str, ...] = ()
    needs_sites: bool = False

    def observe(self, context: ExperimentContext) -> Observation | None:
        """Nothing observed."""
        return None
