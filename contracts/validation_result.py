"""What a validation run produces: figures, weight sets, verdicts, timing, and the whole result.

`ValidationResult` is what `swi validate --json` prints (figure keys in their text form);
`ValidationResult.document()` is the part every layer stores (`contracts.validation.ValidationDocument`):
each figure a `Measurement`, each super weight's verdict the stored `Verdict` it extends.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import Field, PlainSerializer

from contracts.base import Coordinates, Frozen
from contracts.status import SuperWeightStatus
from contracts.validation import (
    CorpusIdentity,
    CorpusWindows,
    FigureKey,
    Measurement,
    ValidationDocument,
    Verdict,
)

#: the validator's three passes over the corpus, in order
Phase = Literal["baseline", "pruning", "quantization"]
#: the longest reason a stored verdict carries
REASON_MAX = 2000

#: a figure key that the validator's JSON has always written in its text form (`FigureKey.parse` reads it)
KeyText = Annotated[FigureKey, PlainSerializer(str, return_type=str, when_used="json")]


class Figure(Frozen):
    """One measured perplexity and its ratio to the baseline (None when the pass overflowed)."""

    key: KeyText  # its text form is a stable id, e.g. "zero/joint", "rtn/4bit/g128/holdout"
    experiment: str  # one of EXPERIMENTS
    label: str
    perplexity: float | None
    ratio: float | None  # perplexity / baseline perplexity
    mean_nll: float
    seconds: float
    prefix_layer: int | None = None  # the cached layer input the pass started from
    reused_from: KeyText | None = None  # the key of an identical variant whose pass this figure reuses
    params: dict[str, Any] = Field(default_factory=dict)
    #: the ratio's bootstrap interval over windows (paired with the baseline's windows)
    ratio_low: float | None = None
    ratio_high: float | None = None
    window_nll: tuple[float, ...] = ()  # mean loss of each window, nats per predicted token

    def measurement(self, baseline: float, corpus: CorpusIdentity) -> Measurement:
        """The stored form: its perplexity against `baseline`, with the label and interval as parameters."""
        key = self.key
        # the super weight a figure decides alone (leave-one-out's kept member is decided with the set)
        single = key.coordinates[0] if key.experiment == "alone" and key.coordinates else None
        parameters = {
            "key": str(key),
            "label": self.label,
            **self.params,
            "ratio_low": self.ratio_low,
            "ratio_high": self.ratio_high,
        }
        return Measurement(
            experiment=self.experiment,
            key=key,
            parameters=parameters,
            metric="perplexity",
            value=self.perplexity,
            baseline=baseline,
            ratio=self.ratio,
            corpus=corpus,
            coordinates=single,
        )


class WeightSet(Frozen):
    """Down-projection weights one experiment changed: `weight += delta` at each coordinate."""

    kind: str  # "super_weights", "largest", "random_matched"
    coordinates: tuple[Coordinates, ...]  # (layer, row, col)
    values: tuple[float, ...]  # original values
    deltas: tuple[float, ...]
    figure_key: KeyText
    seed: int | None = None


class TokenShift(Frozen):
    """A token's mean next-token probability before and after joint zeroing."""

    token_id: int
    token: str
    before: float
    after: float


class StopwordShift(Frozen):
    """Experiment 6: probability mass on stopwords, and the tokens that gain and lose most."""

    stopwords: tuple[str, ...]
    token_ids: tuple[int, ...]
    mass_before: float  # mean over predicted positions of the summed stopword probability
    mass_after: float
    gains: tuple[TokenShift, ...]
    losses: tuple[TokenShift, ...]
    after_key: KeyText = Field(default_factory=FigureKey.joint)

    def measurement(self, corpus: CorpusIdentity) -> Measurement:
        """The stored form: the stopword mass after the zeroing against the mass before."""
        return Measurement(
            experiment="stopwords",
            key=FigureKey(experiment="stopwords"),
            parameters={"after": str(self.after_key), "stopwords": len(self.stopwords)},
            metric="stopword_mass",
            value=self.mass_after,
            baseline=self.mass_before,
            ratio=self.mass_after / self.mass_before if self.mass_before else None,
            corpus=corpus,
        )


class SuperActivationSites(Frozen):
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


class NullSummary(Frozen):
    """The calibrated null: ratios of random magnitude-matched sets, same-column sets and the largest-N
    set, against the joint zeroing."""

    sets: int
    random_sets: int
    column_sets: int
    #: "0", "0.05", "0.5", "0.95", "1" -> ratio (None: a pass that overflowed)
    quantiles: dict[str, float | None]
    max_ratio: float | None
    joint_ratio: float | None
    p_value: float  # (1 + #null ratios >= joint) / (1 + sets)

    def measurement(self, corpus: CorpusIdentity) -> Measurement:
        """The stored form: the null's largest ratio, with its set counts, quantiles and p-value."""
        return Measurement(
            experiment="null",
            key=FigureKey.null(),
            parameters={
                "sets": self.sets,
                "random_sets": self.random_sets,
                "column_sets": self.column_sets,
                "quantiles": dict(self.quantiles),
                "p_value": self.p_value,
            },
            metric="null_max_ratio",
            value=self.max_ratio,
            ratio=self.max_ratio,
            corpus=corpus,
        )


class ModelVerdict(Frozen):
    """Per model: does zeroing the super weights (jointly) destroy the model, and only them?"""

    verdict: SuperWeightStatus  # confirmed, inert or not_measured
    reason: str
    joint_ratio: float | None
    max_control_ratio: float | None
    confirm_factor: float
    control_limit_ratio: float | None  # controls must stay at or below this ratio
    joint_ratio_low: float | None = None  # the joint ratio's interval: the factor applies to its low end
    joint_ratio_high: float | None = None
    #: the members that are confirmed or set-confirmed
    minimal_set: tuple[Coordinates, ...] = ()
    null: NullSummary | None = None
    corpus: str = ""


class SuperWeightVerdict(Verdict):
    """The stored `Verdict` with the evidence behind it: the alone ratio's low end and the necessity."""

    reason: str  # the stored verdict keeps its first `REASON_MAX` characters
    alone_ratio_low: float | None = None
    #: share of the joint log ratio that restoring it alone (the others zeroed) removes
    necessity: float | None = None

    def stored(self) -> Verdict:
        """The verdict a document stores (the fields of `Verdict`, the reason cut to `REASON_MAX`)."""
        fields = self.model_dump(include=set(Verdict.model_fields))
        return Verdict.model_validate({**fields, "reason": self.reason[:REASON_MAX]})


class QuantizationSummary(Frozen):
    """What the quantization checks touched and the extra memory they held."""

    layers: int
    parameters: int
    weight_bytes: int
    peak_extra_bytes: int
    peak_memory_ratio: float  # (weights + peak extra) / weights
    clip_method: str
    clip_threshold: float


class ValidationTiming(Frozen):
    """Where the time went, and what the prefix cache bought."""

    total_s: float
    phases: dict[str, float]
    full_passes: int
    cached_passes: int
    reused_figures: int
    prefix_layers: tuple[int, ...]
    prefix_cache_bytes: int
    prefix_saved_s: float  # estimate: (baseline pass time - cached pass time) summed over cached passes


#: the validator's configuration (the indexer's `ValidateConfig`, a dataclass of plain settings)
ConfigT = TypeVar("ConfigT")


class ValidationResult(Frozen, Generic[ConfigT]):
    """Every figure of a validation run, with its configuration, corpus identity and verdicts."""

    model: str
    revision: str | None
    source_quantization: str | None
    dtype: str
    device: str
    super_weights: tuple[Coordinates, ...]
    super_weight_values: tuple[float, ...]
    config: ConfigT
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
    library_versions: dict[str, str]
    #: the calibrated null's passes (random and same-column sets), kept apart from the named figures
    null_figures: tuple[Figure, ...] = ()

    def figure(self, key: FigureKey | str) -> Figure:
        """The figure with this key, or the key of this text form (KeyError when it was not measured)."""
        wanted = FigureKey.parse(key) if isinstance(key, str) else key
        for figure in self.figures:
            if figure.key == wanted:
                return figure
        raise KeyError(str(key))

    def document(self) -> ValidationDocument:
        """The stored document: every figure a measurement on this corpus, and each verdict."""
        corpus = self.corpus.identity()
        results = [f.measurement(self.baseline_perplexity, corpus) for f in self.figures]
        if self.verdict.null is not None:
            results.append(self.verdict.null.measurement(corpus))
        if self.stopwords is not None:
            results.append(self.stopwords.measurement(corpus))
        return ValidationDocument(
            model_verdict=self.verdict.verdict.value,
            verdicts=tuple(v.stored() for v in self.super_weight_verdicts),
            results=tuple(results),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists, figure keys their text form)."""
        data = self.model_dump(mode="json")
        # `swi validate --json` has always named the tokens used `tokens_used`
        data["corpus"]["tokens_used"] = data["corpus"].pop("tokens")
        return data

    def to_json(self, indent: int | None = 2) -> str:
        """The JSON text of `to_dict()`."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValidationResult[ConfigT]:
        """Inverse of `to_dict()`."""
        corpus = dict(data["corpus"])
        corpus["tokens"] = corpus.pop("tokens_used")
        return cls.model_validate({**data, "corpus": corpus})
