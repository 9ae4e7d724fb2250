"""The result types of a validation run: figures, weight sets, verdicts, timing, and the whole result."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from contracts.validation import CorpusWindows, FigureKey
from indexer.jsonable import from_jsonable, to_jsonable
from indexer.validation.config import ValidateConfig

#: per super weight: `confirmed` (zeroing it alone passes), `set-confirmed` (a necessary member of a
#: confirmed set), `redundant` (a member of a confirmed set whose removal changes nothing), `inert`,
#: `not_measured`; a model is `confirmed`, `inert` or `not_measured`
Verdict = Literal["confirmed", "set-confirmed", "redundant", "inert", "not_measured"]
Phase = Literal["baseline", "pruning", "quantization"]


@dataclass(frozen=True)
class Figure:
    """One measured perplexity and its ratio to the baseline (None when the pass overflowed)."""

    key: FigureKey  # its text form is a stable id, e.g. "zero/joint", "rtn/4bit/g128/holdout"
    experiment: str  # one of EXPERIMENTS
    label: str
    perplexity: float | None
    ratio: float | None  # perplexity / baseline perplexity
    mean_nll: float
    seconds: float
    prefix_layer: int | None = None  # the cached layer input the pass started from
    reused_from: FigureKey | None = None  # the key of an identical variant whose pass this figure reuses
    params: Mapping[str, Any] = field(default_factory=dict)
    #: the ratio's bootstrap interval over windows (paired with the baseline's windows)
    ratio_low: float | None = None
    ratio_high: float | None = None
    window_nll: tuple[float, ...] = ()  # mean loss of each window, nats per predicted token


@dataclass(frozen=True)
class WeightSet:
    """Down-projection weights one experiment changed: `weight += delta` at each coordinate."""

    kind: str  # "super_weights", "largest", "random_matched"
    coordinates: tuple[tuple[int, int, int], ...]  # (layer, row, col)
    values: tuple[float, ...]  # original values
    deltas: tuple[float, ...]
    figure_key: FigureKey
    seed: int | None = None


@dataclass(frozen=True)
class TokenShift:
    """A token's mean next-token probability before and after joint zeroing."""

    token_id: int
    token: str
    before: float
    after: float


@dataclass(frozen=True)
class StopwordShift:
    """Experiment 6: probability mass on stopwords, and the tokens that gain and lose most."""

    stopwords: tuple[str, ...]
    token_ids: tuple[int, ...]
    mass_before: float  # mean over predicted positions of the summed stopword probability
    mass_after: float
    gains: tuple[TokenShift, ...]
    losses: tuple[TokenShift, ...]
    after_key: FigureKey = field(default_factory=FigureKey.joint)


@dataclass(frozen=True)
class SuperActivationSites:
    """Where the super activation shows in the corpus: the down projection's output at its channel."""

    layer: int
    channel: int
    threshold: float  # |value| at or above this counts
    positions: int
    windows_with: int
    windows: int
    at_first_token: int  # windows whose first token is a site
    max_magnitude: float
    median_magnitude: float  # over the sites


@dataclass(frozen=True)
class NullSummary:
    """The calibrated null: ratios of random magnitude-matched sets, same-column sets and the largest-N
    set, against the joint zeroing."""

    sets: int
    random_sets: int
    column_sets: int
    #: "0", "0.05", "0.5", "0.95", "1" -> ratio (None: a pass that overflowed)
    quantiles: Mapping[str, float | None]
    max_ratio: float | None
    joint_ratio: float | None
    p_value: float  # (1 + #null ratios >= joint) / (1 + sets)


@dataclass(frozen=True)
class ModelVerdict:
    """Per model: does zeroing the super weights (jointly) destroy the model, and only them?"""

    verdict: Literal["confirmed", "inert", "not_measured"]
    reason: str
    joint_ratio: float | None
    max_control_ratio: float | None
    confirm_factor: float
    control_limit_ratio: float | None  # controls must stay at or below this ratio
    joint_ratio_low: float | None = None  # the joint ratio's interval: the factor applies to its low end
    joint_ratio_high: float | None = None
    #: the members that are confirmed or set-confirmed
    minimal_set: tuple[tuple[int, int, int], ...] = ()
    null: NullSummary | None = None
    corpus: str = ""


@dataclass(frozen=True)
class SuperWeightVerdict:
    """Per super weight: does zeroing it alone reach the factor (with the controls far below)?"""

    layer: int
    row: int
    col: int
    verdict: Verdict
    reason: str
    alone_ratio: float | None
    member_of_confirmed_set: bool  # the joint zeroing that contains it confirmed the model
    alone_ratio_low: float | None = None
    #: share of the joint log ratio that restoring it alone (the others zeroed) removes
    necessity: float | None = None


@dataclass(frozen=True)
class QuantizationSummary:
    """What the quantization checks touched and the extra memory they held."""

    layers: int
    parameters: int
    weight_bytes: int
    peak_extra_bytes: int
    peak_memory_ratio: float  # (weights + peak extra) / weights
    clip_method: str
    clip_threshold: float


@dataclass(frozen=True)
class ValidationTiming:
    """Where the time went, and what the prefix cache bought."""

    total_s: float
    phases: Mapping[str, float]
    full_passes: int
    cached_passes: int
    reused_figures: int
    prefix_layers: tuple[int, ...]
    prefix_cache_bytes: int
    prefix_saved_s: float  # estimate: (baseline pass time - cached pass time) summed over cached passes


@dataclass(frozen=True)
class ValidationResult:
    """Every figure of a validation run, with its configuration, corpus identity and verdicts."""

    model: str
    revision: str | None
    source_quantization: str | None
    dtype: str
    device: str
    super_weights: tuple[tuple[int, int, int], ...]
    super_weight_values: tuple[float, ...]
    config: ValidateConfig
    corpus: CorpusWindows
    batch_size: int
    baseline_perplexity: float
    verdict: ModelVerdict
    super_weight_verdicts: tuple[SuperWeightVerdict, ...]
    figures: tuple[Figure, ...]
    weight_sets: tuple[WeightSet, ...]
    stopwords: StopwordShift | None
    super_activation: SuperActivationSites | None
    quantization: QuantizationSummary | None
    timing: ValidationTiming
    validator_version: str
    library_versions: Mapping[str, str]
    #: the calibrated null's passes (random and same-column sets), kept apart from the named figures
    null_figures: tuple[Figure, ...] = ()

    def figure(self, key: FigureKey | str) -> Figure:
        """The figure with this key, or the key of this text form (KeyError when it was not measured)."""
        wanted = FigureKey.parse(key) if isinstance(key, str) else key
        for figure in self.figures:
            if figure.key == wanted:
                return figure
        raise KeyError(str(key))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists, figure keys their text form)."""
        data: dict[str, Any] = to_jsonable(self)
        # `swi validate --json` has always named the tokens used `tokens_used`
        data["corpus"]["tokens_used"] = data["corpus"].pop("tokens")
        return data

    def to_json(self, indent: int | None = 2) -> str:
        """The JSON text of `to_dict()`."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValidationResult:
        """Inverse of `to_dict()`."""
        corpus = dict(data["corpus"])
        corpus["tokens"] = corpus.pop("tokens_used")
        return from_jsonable(cls, {**data, "corpus": corpus})


@dataclass(frozen=True)
class ProgressEvent:
    """Progress of one phase: `completed` of `total` figures done; `label` names the one just finished."""

    phase: Phase
    completed: int
    total: int
    label: str


ProgressCallback = Callable[[ProgressEvent], None]
