"""Prune validation and quantization checks: what each detected super weight is worth, in perplexity.

Experiments (each a perplexity figure and its ratio to the baseline), all on one loaded model:

1. `baseline`;
2. `joint`: every super weight zeroed together;
3. `alone`: each super weight zeroed alone;
4. `restore_sa`: super weights zeroed, the super activation put back (the paper's "+SA" row);
5. `controls`: the same number of the largest other down-projection weights zeroed (outside the super
   activation's row), and a seeded random, magnitude-matched null set (each super weight's value
   subtracted at a random coordinate of its own down projection, outside that row);
6. `stopwords`: next-token probability mass on a fixed stopword list before and after joint zeroing;
7. `scaling`: the super weights multiplied by each factor;
plus `rtn` (weight round-to-nearest, plain / clipped + restored / held out + restored) and `w8a8`
(8-bit weights per channel and activations per tensor, naive / super activation held out: at the corpus
positions where the super activation shows, the entries at its channel in every hidden-size linear input
and at the super weights' columns in their down projection's input, from the super activation's layer on).

Super weights are edited in place and restored bit-exactly after every figure, quantized variants run each
linear layer on a quantized copy of its weight (one at a time); variants that start at a
super weight's layer reuse the baseline's hidden states at that layer's input (the prefix cache).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from contracts.results import DetectionResult
from contracts.validation import FigureKey
from indexer.ablation import Coordinate, scaled_weights, zeroed_weights
from indexer.adapters import ArchitectureAdapter
from indexer.corpus import Corpus, CorpusIdentity, TokenWindows, token_windows
from indexer.detect import library_versions
from indexer.errors import InvalidInputError
from indexer.hooks import forward_hooks, hidden_states_of
from indexer.jsonable import from_jsonable, to_jsonable
from indexer.loading import LoadedModel
from indexer.perplexity import BatchObserver, PassResult, PerplexityEvaluator, default_window
from indexer.quantize import (
    DEFAULT_GRANULARITIES,
    ClipCache,
    ClipSpec,
    Granularity,
    LinearTarget,
    QuantMemory,
    block_partition,
    fake_quantized_activations,
    fake_quantized_weights,
    linear_targets,
    parse_granularity,
    rtn_quantize_,
    rtn_weight_quantizer,
)

VALIDATOR_VERSION = "1.0.0"

EXPERIMENTS = (
    "baseline",
    "joint",
    "alone",
    "restore_sa",
    "controls",
    "stopwords",
    "scaling",
    "rtn",
    "w8a8",
)
RTN_VARIANTS = ("plain", "clipped", "holdout")
W8A8_VARIANTS = ("naive", "holdout")
#: function words (and the two commonest punctuation marks) whose probability the super weight suppresses
STOPWORDS = (
    "the",
    "a",
    "an",
    "and",
    "or",
    "but",
    "of",
    "to",
    "in",
    "on",
    "at",
    "for",
    "with",
    "by",
    "from",
    "as",
    "is",
    "was",
    "are",
    "were",
    "be",
    "been",
    "it",
    "its",
    "that",
    "this",
    "which",
    "who",
    "he",
    "she",
    "they",
    "we",
    "i",
    "you",
    "his",
    "her",
    "their",
    "not",
    "no",
    "so",
    "if",
    "then",
    "than",
    "there",
    "have",
    "has",
    "had",
    "do",
    "will",
    "would",
    "can",
    "could",
    ".",
    ",",
)

Verdict = Literal["confirmed", "inert", "not_measured"]
Phase = Literal["baseline", "pruning", "quantization"]


@dataclass(frozen=True)
class ValidateConfig:
    """Which experiments to run and how; the defaults are the paper's settings."""

    experiments: tuple[str, ...] = EXPERIMENTS
    window: int | None = None  # None: 2048, or the model's context when shorter
    max_tokens: int | None = None  # None: the whole corpus
    batch_size: int | None = None  # None: as many windows as fit the logits memory budget
    #: joint zeroing must raise perplexity at least this much for `confirmed`
    confirm_factor: float = 5.0
    #: each control's log perplexity ratio must stay within this share of the joint zeroing's
    control_share: float = 0.25
    scale_factors: tuple[float, ...] = (0.0, 0.5, 1.5, 2.0, 3.0)
    rtn_bits: tuple[int, ...] = (4, 3)
    rtn_granularities: tuple[str, ...] = DEFAULT_GRANULARITIES
    rtn_variants: tuple[str, ...] = RTN_VARIANTS
    clip_method: str = "percentile"
    clip_threshold: float = 99.99
    w8a8_variants: tuple[str, ...] = W8A8_VARIANTS
    activation_bits: int = 8
    #: corpus positions whose down-projection output at the super activation's channel reaches this share
    #: of the detected super activation count as super-activation sites
    sa_threshold: float = 0.1
    seed: int = 0
    stopword_top_k: int = 10
    prefix_cache: bool = True

    def check(self) -> None:
        """Raise `InvalidInputError` for anything out of range or unknown."""
        parse_experiments(",".join(self.experiments))
        if self.window is not None and self.window < 2:
            raise InvalidInputError(f"the window must be at least 2 tokens, got {self.window}")
        if self.max_tokens is not None and self.max_tokens < 2:
            raise InvalidInputError(f"the token budget must be at least 2 tokens, got {self.max_tokens}")
        if self.batch_size is not None and self.batch_size < 1:
            raise InvalidInputError(f"the batch size must be at least 1, got {self.batch_size}")
        if self.confirm_factor <= 1:
            raise InvalidInputError("the confirmation factor must be above 1")
        if not 0 < self.control_share < 1:
            raise InvalidInputError("the control share must be in (0, 1)")
        if any(not math.isfinite(f) for f in self.scale_factors):
            raise InvalidInputError("scale factors must be finite numbers")
        if any(not 2 <= b <= 8 for b in self.rtn_bits):
            raise InvalidInputError("RTN bits must be between 2 and 8")
        for granularity in self.rtn_granularities:
            parse_granularity(granularity)
        _check_names("RTN variant", self.rtn_variants, RTN_VARIANTS)
        _check_names("W8A8 variant", self.w8a8_variants, W8A8_VARIANTS)
        ClipSpec(self.clip_method, self.clip_threshold)  # type: ignore[arg-type]
        if not 2 <= self.activation_bits <= 16:
            raise InvalidInputError("activation bits must be between 2 and 16")
        if not 0 < self.sa_threshold <= 1:
            raise InvalidInputError("the super-activation threshold must be in (0, 1]")

    @property
    def clip(self) -> ClipSpec:
        """The clip settings of the clipped RTN variant."""
        return ClipSpec(self.clip_method, self.clip_threshold)  # type: ignore[arg-type]


def parse_experiments(text: str) -> tuple[str, ...]:
    """Comma-separated experiment names (or `all`), in the canonical order; unknown names are refused."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    if not names:
        raise InvalidInputError(f"no experiment named; choose from: all, {', '.join(EXPERIMENTS)}")
    if "all" in names:
        return EXPERIMENTS
    unknown = [name for name in names if name not in EXPERIMENTS]
    if unknown:
        raise InvalidInputError(
            f"unknown experiment {', '.join(map(repr, unknown))}; choose from: all, {', '.join(EXPERIMENTS)}"
        )
    return tuple(name for name in EXPERIMENTS if name in names)


def _check_names(what: str, given: Sequence[str], known: Sequence[str]) -> None:
    unknown = [name for name in given if name not in known]
    if unknown:
        raise InvalidInputError(
            f"unknown {what} {', '.join(map(repr, unknown))}; choose from {', '.join(known)}"
        )


# ---- result types ----


@dataclass(frozen=True)
class Figure:
    """One measured perplexity and its ratio to the baseline (None when the pass overflowed)."""

    key: str  # stable id, e.g. "zero/joint", "rtn/4bit/g128/holdout"
    experiment: str  # one of EXPERIMENTS
    label: str
    perplexity: float | None
    ratio: float | None  # perplexity / baseline perplexity
    mean_nll: float
    seconds: float
    prefix_layer: int | None = None  # the cached layer input the pass started from
    reused_from: str | None = None  # the key of an identical variant whose pass this figure reuses
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WeightSet:
    """Down-projection weights one experiment changed: `weight += delta` at each coordinate."""

    kind: str  # "super_weights", "largest", "random_matched"
    coordinates: tuple[tuple[int, int, int], ...]  # (layer, row, col)
    values: tuple[float, ...]  # original values
    deltas: tuple[float, ...]
    figure_key: str
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
    after_key: str = "zero/joint"


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
class ModelVerdict:
    """Per model: does zeroing the super weights (jointly) destroy the model, and only them?"""

    verdict: Verdict
    reason: str
    joint_ratio: float | None
    max_control_ratio: float | None
    confirm_factor: float
    control_limit_ratio: float | None  # controls must stay at or below this ratio


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
    corpus: CorpusIdentity
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

    def figure(self, key: str) -> Figure:
        """The figure with this key (KeyError when it was not measured)."""
        for figure in self.figures:
            if figure.key == key:
                return figure
        raise KeyError(key)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return to_jsonable(self)  # type: ignore[no-any-return]

    def to_json(self, indent: int | None = 2) -> str:
        """The JSON text of `to_dict()`."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValidationResult:
        """Inverse of `to_dict()`."""
        return from_jsonable(cls, data)


@dataclass(frozen=True)
class ProgressEvent:
    """Progress of one phase: `completed` of `total` figures done; `label` names the one just finished."""

    phase: Phase
    completed: int
    total: int
    label: str


ProgressCallback = Callable[[ProgressEvent], None]


# ---- the suite ----


@dataclass
class _Step:
    phase: Phase
    key: str
    experiment: str
    label: str
    start_layer: int = 0
    context: Callable[[], AbstractContextManager[Any]] = nullcontext
    observer: BatchObserver | None = None
    reuse: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


@contextmanager
def shifted_weights(
    model: nn.Module, adapter: ArchitectureAdapter, coordinates: Sequence[Coordinate], deltas: Sequence[float]
) -> Iterator[None]:
    """Add `delta` to each down-projection weight `(layer, row, col)`; restore the exact originals."""
    saved: list[tuple[torch.Tensor, tuple[int, int], torch.Tensor]] = []
    try:
        with torch.no_grad():
            for (layer, row, col), delta in zip(coordinates, deltas, strict=True):
                weight = adapter.down_weight(model, layer)
                index = adapter.storage_index(row, col)
                original = weight[index].clone()
                saved.append((weight, index, original))
                weight[index] = original + delta
        yield
    finally:
        with torch.no_grad():
            for weight, index, original in reversed(saved):
                weight[index] = original


class _StopwordMeter:
    """Accumulates stopword probability mass and per-token mean probabilities over passes."""

    def __init__(self, token_ids: Sequence[int], vocab: int) -> None:
        self.token_ids = torch.tensor(sorted(set(token_ids)), dtype=torch.long)
        self.vocab = vocab
        self.mass: dict[str, float] = {}
        self.mean_probs: dict[str, torch.Tensor] = {}
        self._sum_mass = 0.0
        self._sum_probs = torch.zeros(vocab, dtype=torch.float64)
        self._count = 0

    def observer(self, name: str) -> BatchObserver:
        """A batch observer that files its totals under `name` when `finish(name)` is called."""
        self._sum_mass, self._count = 0.0, 0
        self._sum_probs = torch.zeros(self.vocab, dtype=torch.float64)

        def observe(_index: int, logits: torch.Tensor, _targets: torch.Tensor) -> None:
            probs = torch.softmax(logits.float(), dim=-1)  # (batch, seq, vocab)
            ids = self.token_ids.to(probs.device)
            self._sum_mass += float(probs.index_select(-1, ids).sum())
            self._sum_probs += probs.sum(dim=(0, 1)).double().cpu()[: self.vocab]
            self._count += probs.shape[0] * probs.shape[1]
            self.mass[name] = self._sum_mass / self._count
            self.mean_probs[name] = self._sum_probs / self._count

        return observe


def _stopword_ids(tokenizer: Any) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Stopwords that are single tokens (with or without a leading space), and those token ids."""
    words: list[str] = []
    ids: set[int] = set()
    for word in STOPWORDS:
        found = False
        for form in (word, " " + word, word.capitalize(), " " + word.capitalize()):
            encoded = tokenizer(form, add_special_tokens=False)["input_ids"]
            if len(encoded) == 1:
                ids.add(int(encoded[0]))
                found = True
        if found:
            words.append(word)
    return tuple(words), tuple(sorted(ids))


def _token_text(tokenizer: Any, token_id: int) -> str:
    try:
        return str(tokenizer.decode([token_id]))
    except Exception:  # a tokenizer that cannot decode one id still has a name for it
        return str(token_id)


class _Suite:
    """Plans and runs the experiments on one model; every edit is restored before the next figure."""

    def __init__(
        self,
        loaded: LoadedModel,
        detection: DetectionResult,
        windows: TokenWindows,
        config: ValidateConfig,
        progress: ProgressCallback | None,
    ) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.adapter = loaded.adapter
        self.config = config
        self.progress = progress
        self.windows = windows
        self.super_weights = detection.super_weights
        self.coordinates = tuple(sw.coordinates for sw in self.super_weights)
        self.activation = detection.super_activation
        self.experiments = set(config.experiments) | {"baseline"}
        if self.experiments & {"stopwords", "controls"}:
            self.experiments.add("joint")  # both are read against joint zeroing
        self.evaluator = PerplexityEvaluator(
            loaded, windows, config.batch_size, prefix_cache=config.prefix_cache
        )
        self.figures: dict[str, Figure] = {}
        self.passes: dict[str, PassResult] = {}
        self.weight_sets: list[WeightSet] = []
        self.phase_seconds: dict[str, float] = {}
        self.baseline: PassResult | None = None
        self.quant_memory: QuantMemory | None = None
        self.targets = linear_targets(self.model)
        # the clipped RTN variants share each tensor's thresholds: the weights are the originals every time
        self.clip_cache: ClipCache = {}
        self.layer_of_module = self._layer_index()
        self.hidden_size = int(self.adapter.as_out_in(self.adapter.down_weight(self.model, 0)).shape[0])
        # super-activation recordings: (layer, row) -> per batch (batch, window) down_proj output at row
        self.sa_recordings: dict[tuple[int, int], list[torch.Tensor]] = {}
        self.sa_sites: dict[tuple[int, int], list[list[tuple[int, int]]]] = {}
        self.stopword_words: tuple[str, ...] = ()
        self.stopword_meter: _StopwordMeter | None = None

    # -- planning --

    def _layer_index(self) -> dict[int, int]:
        """id(module) -> decoder layer index, by walking each layer (never by matching names)."""
        index: dict[int, int] = {}
        for i, layer in enumerate(self.adapter.decoder_layers(self.model)):
            for module in layer.modules():
                index[id(module)] = i
        return index

    def _down_name(self, layer: int) -> str:
        return self.adapter.down_proj_name(self.model, layer)

    def plan(self) -> list[_Step]:
        """Every figure to measure, in an order that lets later ones reuse earlier passes."""
        steps: list[_Step] = []
        has_sw = bool(self.super_weights)
        first = min((sw.layer for sw in self.super_weights), default=0)
        sw_label = ", ".join("({}, {}, {})".format(*coordinate) for coordinate in self.coordinates)
        if has_sw and "joint" in self.experiments:
            steps.append(
                _Step(
                    "pruning",
                    "zero/joint",
                    "joint",
                    f"zero all super weights {sw_label}",
                    first,
                    lambda: zeroed_weights(self.model, self.adapter, self.coordinates),
                    params={"coordinates": [list(c) for c in self.coordinates]},
                )
            )
        if has_sw and "alone" in self.experiments:
            for coordinate in self.coordinates:
                key = str(FigureKey.alone(coordinate))
                reuse = "zero/joint" if len(self.coordinates) == 1 and "joint" in self.experiments else None
                steps.append(
                    _Step(
                        "pruning",
                        key,
                        "alone",
                        "zero ({}, {}, {}) alone".format(*coordinate),
                        coordinate[0],
                        self._zeroing([coordinate]),
                        reuse=reuse,
                        params={"coordinates": [list(coordinate)]},
                    )
                )
        if has_sw and "restore_sa" in self.experiments:
            steps.append(
                _Step(
                    "pruning",
                    "zero/joint+sa",
                    "restore_sa",
                    "zero all super weights, restore the super activation",
                    first,
                    self._zeroed_with_sa_restored,
                )
            )
        if has_sw and "controls" in self.experiments:
            largest = self._largest_control()
            steps.append(
                _Step(
                    "pruning",
                    "control/largest",
                    "controls",
                    f"zero the {len(largest)} largest other down_proj weight(s)",
                    min(c[0] for c in largest),
                    self._zeroing(largest),
                    params={"coordinates": [list(c) for c in largest]},
                )
            )
            self.weight_sets.append(
                WeightSet(
                    "largest",
                    tuple(largest),
                    self._values(largest),
                    tuple(-v for v in self._values(largest)),
                    "control/largest",
                )
            )
            random_set, deltas = self._random_control()
            steps.append(
                _Step(
                    "pruning",
                    "control/random",
                    "controls",
                    "subtract each super weight at a random coordinate of its down_proj",
                    min(c[0] for c in random_set),
                    lambda: shifted_weights(self.model, self.adapter, random_set, deltas),
                    params={"coordinates": [list(c) for c in random_set], "seed": self.config.seed},
                )
            )
            self.weight_sets.append(
                WeightSet(
                    "random_matched",
                    tuple(random_set),
                    self._values(random_set),
                    tuple(deltas),
                    "control/random",
                    self.config.seed,
                )
            )
        if has_sw and "scaling" in self.experiments:
            for factor in dict.fromkeys(self.config.scale_factors):
                reuse = "baseline" if factor == 1 else None
                if factor == 0 and "joint" in self.experiments:
                    reuse = "zero/joint"
                steps.append(
                    _Step(
                        "pruning",
                        f"scale/{factor:g}",
                        "scaling",
                        f"super weights x {factor:g}",
                        first,
                        self._scaling(factor),
                        reuse=reuse,
                        params={"factor": factor},
                    )
                )
        if has_sw:
            self.weight_sets.insert(
                0,
                WeightSet(
                    "super_weights",
                    self.coordinates,
                    tuple(sw.value for sw in self.super_weights),
                    tuple(-sw.value for sw in self.super_weights),
                    "zero/joint",
                ),
            )
        if "rtn" in self.experiments:
            steps.extend(self._rtn_steps())
        if "w8a8" in self.experiments:
            steps.extend(self._w8a8_steps())
        return steps

    def _values(self, coordinates: Sequence[Coordinate]) -> tuple[float, ...]:
        values = []
        for layer, row, col in coordinates:
            weight = self.adapter.down_weight(self.model, layer)
            values.append(float(weight[self.adapter.storage_index(row, col)].item()))
        return tuple(values)

    def _zeroing(self, coordinates: Sequence[Coordinate]) -> Callable[[], AbstractContextManager[Any]]:
        return lambda: zeroed_weights(self.model, self.adapter, coordinates)

    def _scaling(self, factor: float) -> Callable[[], AbstractContextManager[Any]]:
        return lambda: scaled_weights(self.model, self.adapter, self.coordinates, factor)

    def _excluded_rows(self) -> set[int]:
        rows = {sw.row for sw in self.super_weights}
        if self.activation is not None:
            rows.add(self.activation.channel)
        return rows

    def _largest_control(self) -> list[Coordinate]:
        """The largest-magnitude down_proj weights outside the super activation's row (and the SWs)."""
        count = len(self.coordinates)
        excluded_rows = sorted(self._excluded_rows())
        candidates: list[tuple[float, Coordinate]] = []
        for layer in range(len(self.adapter.decoder_layers(self.model))):
            magnitude = (
                self.adapter.as_out_in(self.adapter.down_weight(self.model, layer)).detach().abs().float()
            )
            magnitude[excluded_rows, :] = -1.0  # a copy: never the weight itself
            top = magnitude.reshape(-1).topk(count)
            columns = magnitude.shape[1]
            for value, flat in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                candidates.append((value, (layer, flat // columns, flat % columns)))
        candidates.sort(key=lambda item: (-item[0], item[1]))
        return [coordinate for _, coordinate in candidates[:count]]

    def _random_control(self) -> tuple[list[Coordinate], list[float]]:
        """Per super weight, a seeded random coordinate of the same down_proj outside the excluded rows."""
        generator = torch.Generator().manual_seed(self.config.seed)
        excluded_rows = self._excluded_rows()
        chosen: list[Coordinate] = []
        for sw in self.super_weights:
            rows, columns = self.adapter.as_out_in(self.adapter.down_weight(self.model, sw.layer)).shape
            if rows <= len(excluded_rows):
                raise InvalidInputError(f"layer {sw.layer}'s down projection has no row for a random control")
            while True:
                row = int(torch.randint(int(rows), (1,), generator=generator))
                col = int(torch.randint(int(columns), (1,), generator=generator))
                coordinate = (sw.layer, row, col)
                if row not in excluded_rows and coordinate not in chosen:
                    chosen.append(coordinate)
                    break
        return chosen, [-sw.value for sw in self.super_weights]

    @contextmanager
    def _zeroed_with_sa_restored(self) -> Iterator[None]:
        hooks = {}
        for (layer, row), sites in self.sa_sites.items():
            recorded = self.sa_recordings[(layer, row)]
            hooks[self._down_name(layer)] = self._restore_hook(row, recorded, sites)
        with zeroed_weights(self.model, self.adapter, self.coordinates), forward_hooks(self.model, hooks):
            yield

    def _restore_hook(
        self, row: int, recorded: list[torch.Tensor], sites: list[list[tuple[int, int]]]
    ) -> Callable[[nn.Module, tuple[Any, ...], Any], Any]:
        """A forward hook that writes the recorded output values back at the super activation's sites."""

        def hook(_module: nn.Module, _args: tuple[Any, ...], output: Any) -> Any:
            batch = self.evaluator.current_batch
            hidden = hidden_states_of(output)  # (batch, window, hidden)
            values = recorded[batch]  # (batch, window)
            for b, t in sites[batch]:
                hidden[b, t, row] = values[b, t]
            return output

        return hook

    def _rtn_steps(self) -> list[_Step]:
        steps = []
        hold_out = self._hold_out_map()
        clip = self.config.clip
        # granularities that split every weight the same way give the same weights: measure them once
        first_of_partition: dict[tuple[Any, ...], str] = {}
        for bits in self.config.rtn_bits:
            for text in self.config.rtn_granularities:
                granularity = parse_granularity(text)
                partition = block_partition(granularity, self.targets)
                for variant in self.config.rtn_variants:
                    key = f"rtn/{bits}bit/{granularity.label}/{variant}"
                    first = first_of_partition.setdefault((bits, variant, partition), key)
                    reuse: str | None = None if first == key else first
                    if variant == "holdout" and not hold_out and "plain" in self.config.rtn_variants:
                        plain = f"rtn/{bits}bit/{granularity.label}/plain"
                        reuse = first_of_partition.get((bits, "plain", partition), plain)
                    if variant == "plain":
                        quantizer = rtn_weight_quantizer(bits, granularity)
                    elif variant == "clipped":
                        quantizer = rtn_weight_quantizer(
                            bits, granularity, restore=hold_out, clip=clip, clip_cache=self.clip_cache
                        )
                    else:
                        quantizer = rtn_weight_quantizer(bits, granularity, hold_out=hold_out)
                    label = f"RTN {bits}-bit {_granularity_text(granularity)}, {variant}"
                    params: dict[str, Any] = {
                        "bits": bits,
                        "granularity": granularity.label,
                        "variant": variant,
                    }
                    if variant == "clipped":
                        params |= {"clip_method": clip.method, "clip_threshold": clip.threshold}
                    steps.append(
                        _Step(
                            "quantization",
                            key,
                            "rtn",
                            label,
                            0,
                            self._weights_quantized(quantizer),
                            reuse=reuse,
                            params=params,
                        )
                    )
        return steps

    def _hold_out_map(self) -> dict[str, list[tuple[int, int]]]:
        held: dict[str, list[tuple[int, int]]] = {}
        for layer, row, col in self.coordinates:
            held.setdefault(self._down_name(layer), []).append((row, col))
        return held

    def _weights_quantized(
        self, quantizer: Callable[[LinearTarget, torch.Tensor], None]
    ) -> Callable[[], AbstractContextManager[Any]]:
        @contextmanager
        def context() -> Iterator[None]:
            with fake_quantized_weights(self.model, self.targets, quantizer) as memory:
                yield
            self._note_memory(memory)

        return context

    def _note_memory(self, memory: QuantMemory) -> None:
        if self.quant_memory is None or memory.peak_extra_bytes > self.quant_memory.peak_extra_bytes:
            self.quant_memory = memory

    def _w8a8_steps(self) -> list[_Step]:
        steps = []
        bits = self.config.activation_bits
        for variant in self.config.w8a8_variants:
            key = f"w8a8/{variant}"
            reuse = "w8a8/naive" if variant == "holdout" and self.activation is None else None
            label = f"W8A{bits} (weights per channel, activations per tensor), {variant}"
            steps.append(
                _Step(
                    "quantization",
                    key,
                    "w8a8",
                    label,
                    0,
                    self._w8a8(variant == "holdout"),
                    reuse=reuse if "naive" in self.config.w8a8_variants else None,
                    params={"weight_bits": 8, "activation_bits": bits, "variant": variant},
                )
            )
        return steps

    def _w8a8(self, hold_out: bool) -> Callable[[], AbstractContextManager[Any]]:
        def per_channel(target: LinearTarget, weight: torch.Tensor) -> None:
            rtn_quantize_(weight, 8, Granularity(group_size=target.in_features), layout=target.layout)

        @contextmanager
        def context() -> Iterator[None]:
            positions = self._activation_hold_out if hold_out else None
            with (
                fake_quantized_weights(self.model, self.targets, per_channel) as memory,
                fake_quantized_activations(self.model, self.targets, self.config.activation_bits, positions),
            ):
                yield
            self._note_memory(memory)

        return context

    def _activation_hold_out(self, target: LinearTarget) -> tuple[Sequence[tuple[int, int]], Sequence[int]]:
        """The super activation's sites in this batch, at its channel (and the super weights' columns)."""
        if self.activation is None:
            return (), ()
        sites = self.sa_sites.get((self.activation.first_layer, self.activation.channel))
        layer = self.layer_of_module.get(id(target.module))
        if not sites or layer is None or layer < self.activation.first_layer:
            return (), ()
        channels: list[int] = []
        if target.in_features == self.hidden_size:
            channels.append(self.activation.channel)
        if target.module is self.model.get_submodule(self._down_name(layer)):
            channels.extend(sw.col for sw in self.super_weights if sw.layer == layer)
        return sites[self.evaluator.current_batch], sorted(set(channels))

    # -- running --

    def run(self) -> None:
        """The baseline (recording what later steps reuse), then every planned figure."""
        steps = self.plan()
        self.evaluator.want_prefix(step.start_layer for step in steps if step.start_layer > 0)
        self._run_baseline()
        by_phase: dict[str, list[_Step]] = {}
        for step in steps:
            by_phase.setdefault(step.phase, []).append(step)
        for phase, phase_steps in by_phase.items():
            started = time.perf_counter()
            for done, step in enumerate(phase_steps, start=1):
                self._measure(step)
                self._report(step.phase, done, len(phase_steps), step.label)
            self.phase_seconds[phase] = time.perf_counter() - started

    def _report(self, phase: Phase, done: int, total: int, label: str) -> None:
        if self.progress is not None:
            self.progress(ProgressEvent(phase, done, total, label))

    def _run_baseline(self) -> None:
        started = time.perf_counter()
        self._report("baseline", 0, 1, "baseline")
        pairs = sorted({(sw.layer, sw.row) for sw in self.super_weights})
        recordings: dict[tuple[int, int], list[torch.Tensor]] = {pair: [] for pair in pairs}

        def record_for(pair: tuple[int, int]) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
            def hook(_module: nn.Module, _args: tuple[Any, ...], output: Any) -> None:
                recordings[pair].append(hidden_states_of(output)[..., pair[1]].clone())  # (batch, window)

            return hook

        observer = None
        if "stopwords" in self.experiments and self.super_weights:
            self.stopword_words, ids = _stopword_ids(self.loaded.tokenizer)
            if ids:
                from indexer.perplexity import vocab_size

                self.stopword_meter = _StopwordMeter(ids, vocab_size(self.model))
                observer = self.stopword_meter.observer("before")
        hooks: dict[str, Callable[[nn.Module, tuple[Any, ...], Any], None]] = {}
        for pair in pairs:
            hooks.setdefault(
                self._down_name(pair[0]), self._combine(hooks.get(self._down_name(pair[0])), record_for(pair))
            )
        with forward_hooks(self.model, hooks):
            self.baseline = self.evaluator.run(0, observer)
        self.passes["baseline"] = self.baseline
        self.figures["baseline"] = self._figure(
            _Step("baseline", "baseline", "baseline", "baseline"), self.baseline
        )
        self.sa_recordings = recordings
        self._find_sites()
        self.phase_seconds["baseline"] = time.perf_counter() - started
        self._report("baseline", 1, 1, "baseline")

    @staticmethod
    def _combine(
        first: Callable[[nn.Module, tuple[Any, ...], Any], None] | None,
        second: Callable[[nn.Module, tuple[Any, ...], Any], None],
    ) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
        if first is None:
            return second

        def both(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            first(module, args, output)
            second(module, args, output)

        return both

    def _find_sites(self) -> None:
        for (layer, row), batches in self.sa_recordings.items():
            spikes = [
                abs(sw.output_activation) for sw in self.super_weights if (sw.layer, sw.row) == (layer, row)
            ]
            threshold = self.config.sa_threshold * max(spikes)
            self.sa_sites[(layer, row)] = [
                [(int(b), int(t)) for b, t in (values.abs().float() >= threshold).nonzero().tolist()]
                for values in batches
            ]

    def _measure(self, step: _Step) -> None:
        if step.reuse is not None and step.reuse in self.passes:
            result = self.passes[step.reuse]
            self.passes[step.key] = result
            self.figures[step.key] = self._figure(step, result, reused_from=step.reuse)
            return
        observer = step.observer
        if step.key == "zero/joint" and self.stopword_meter is not None:
            observer = self.stopword_meter.observer("after")
        with step.context():
            result = self.evaluator.run(step.start_layer, observer)
        self.passes[step.key] = result
        self.figures[step.key] = self._figure(step, result)

    def _figure(self, step: _Step, result: PassResult, reused_from: str | None = None) -> Figure:
        assert self.baseline is not None
        perplexity = result.perplexity if math.isfinite(result.perplexity) else None
        base = self.baseline.perplexity
        ratio = perplexity / base if perplexity is not None and math.isfinite(base) else None
        return Figure(
            key=step.key,
            experiment=step.experiment,
            label=step.label,
            perplexity=perplexity,
            ratio=ratio,
            mean_nll=result.mean_nll,
            seconds=0.0 if reused_from else result.seconds,
            prefix_layer=result.prefix_layer,
            reused_from=reused_from,
            params=dict(step.params),
        )

    # -- summaries --

    def stopword_shift(self) -> StopwordShift | None:
        """Experiment 6's figures, when both passes ran."""
        meter = self.stopword_meter
        if meter is None or "before" not in meter.mass or "after" not in meter.mass:
            return None
        before, after = meter.mean_probs["before"], meter.mean_probs["after"]
        difference = after - before
        k = min(self.config.stopword_top_k, difference.numel())
        tokenizer = self.loaded.tokenizer

        def shifts(indices: list[int]) -> tuple[TokenShift, ...]:
            return tuple(
                TokenShift(i, _token_text(tokenizer, i), float(before[i]), float(after[i])) for i in indices
            )

        return StopwordShift(
            stopwords=self.stopword_words,
            token_ids=tuple(int(i) for i in meter.token_ids.tolist()),
            mass_before=meter.mass["before"],
            mass_after=meter.mass["after"],
            gains=shifts(difference.topk(k).indices.tolist()),
            losses=shifts((-difference).topk(k).indices.tolist()),
        )

    def activation_sites(self) -> SuperActivationSites | None:
        """Where the super activation showed in the corpus."""
        if self.activation is None:
            return None
        pair = (self.activation.first_layer, self.activation.channel)
        if pair not in self.sa_recordings:
            return None
        recordings, sites = self.sa_recordings[pair], self.sa_sites[pair]
        magnitudes = [
            abs(float(recordings[batch][b, t])) for batch, found in enumerate(sites) for b, t in found
        ]
        windows_with = sum(len({b for b, _ in found}) for found in sites)
        first_token = sum(len({b for b, t in found if t == 0}) for found in sites)
        spikes = [abs(sw.output_activation) for sw in self.super_weights if (sw.layer, sw.row) == pair]
        every = torch.cat([r.reshape(-1) for r in recordings]).abs().float()
        return SuperActivationSites(
            layer=pair[0],
            channel=pair[1],
            threshold=self.config.sa_threshold * max(spikes),
            positions=len(magnitudes),
            windows_with=windows_with,
            windows=self.windows.identity.windows,
            at_first_token=first_token,
            max_magnitude=float(every.max()) if every.numel() else 0.0,
            median_magnitude=statistics.median(magnitudes) if magnitudes else 0.0,
        )

    def timing(self, total: float) -> ValidationTiming:
        """Totals, and an estimate of the time the prefix cache saved."""
        assert self.baseline is not None
        saved = sum(
            max(0.0, self.baseline.seconds - f.seconds)
            for f in self.figures.values()
            if f.prefix_layer is not None and f.reused_from is None
        )
        return ValidationTiming(
            total_s=total,
            phases=dict(self.phase_seconds),
            full_passes=self.evaluator.full_passes,
            cached_passes=self.evaluator.cached_passes,
            reused_figures=sum(1 for f in self.figures.values() if f.reused_from is not None),
            prefix_layers=self.evaluator.cached_layers,
            prefix_cache_bytes=self.evaluator.cache_bytes,
            prefix_saved_s=saved,
        )

    def quantization_summary(self) -> QuantizationSummary | None:
        """The memory the quantization checks held, when any ran."""
        memory = self.quant_memory
        if memory is None:
            return None
        parameters = sum(t.weight.numel() for t in self.targets)
        return QuantizationSummary(
            layers=len(self.targets),
            parameters=parameters,
            weight_bytes=memory.weight_bytes,
            peak_extra_bytes=memory.peak_extra_bytes,
            peak_memory_ratio=memory.peak_ratio,
            clip_method=self.config.clip_method,
            clip_threshold=self.config.clip_threshold,
        )


def decide_verdicts(
    coordinates: Sequence[Coordinate], figures: Mapping[str, Figure], config: ValidateConfig
) -> tuple[ModelVerdict, tuple[SuperWeightVerdict, ...]]:
    """`confirmed` when joint zeroing reaches the factor and every control stays far below it.

    "Far below": each control's log perplexity ratio is at most `control_share` of the joint zeroing's.
    A super weight is `confirmed` on its own when zeroing it alone reaches the factor as well.
    """
    factor = config.confirm_factor
    if not coordinates:
        return ModelVerdict("not_measured", "no super weights were detected", None, None, factor, None), ()
    joint = figures.get("zero/joint")
    controls = [figures.get(key) for key in ("control/largest", "control/random")]

    def alone_ratio(coordinate: Coordinate) -> float | None:
        return _ratio(figures.get(str(FigureKey.alone(coordinate))))

    if joint is None or any(c is None for c in controls):
        reason = "the verdict needs the joint and controls experiments"
        model = ModelVerdict("not_measured", reason, _ratio(joint), None, factor, None)
        return model, tuple(
            SuperWeightVerdict(*c, "not_measured", reason, alone_ratio(c), False) for c in coordinates
        )
    joint_ratio = _ratio(joint)
    assert joint_ratio is not None
    limit = math.exp(config.control_share * math.log(joint_ratio)) if joint_ratio > 1 else 1.0
    max_control = max(_ratio(c) or math.inf for c in controls)
    controls_ok = max_control <= limit
    n = len(coordinates)
    if joint_ratio >= factor and controls_ok:
        model = ModelVerdict(
            "confirmed",
            f"zeroing the {n} super weight(s) raises perplexity {joint_ratio:.2f}x "
            f"(>= {factor:g}x); the controls at most {max_control:.2f}x (limit {limit:.2f}x)",
            joint_ratio,
            max_control,
            factor,
            limit,
        )
    elif joint_ratio >= factor:
        model = ModelVerdict(
            "inert",
            f"zeroing the super weight(s) raises perplexity {joint_ratio:.2f}x, but a "
            f"control raises it {max_control:.2f}x (limit {limit:.2f}x): not specific",
            joint_ratio,
            max_control,
            factor,
            limit,
        )
    else:
        model = ModelVerdict(
            "inert",
            f"zeroing the {n} super weight(s) raises perplexity only {joint_ratio:.2f}x (< {factor:g}x)",
            joint_ratio,
            max_control,
            factor,
            limit,
        )
    confirmed_set = model.verdict == "confirmed"
    per_weight = []
    for coordinate in coordinates:
        alone = alone_ratio(coordinate)
        verdict: Verdict
        if alone is None:
            verdict, reason = "not_measured", "not zeroed alone (the alone experiment was not run)"
        elif alone >= factor and controls_ok:
            verdict, reason = "confirmed", f"zeroing it alone raises perplexity {alone:.2f}x"
        elif alone >= factor:
            verdict, reason = "inert", "the controls are not far below"
        else:
            verdict, reason = "inert", f"zeroing it alone raises perplexity {alone:.2f}x (< {factor:g}x)"
            if confirmed_set:
                reason += "; it matters jointly with the others"
        per_weight.append(SuperWeightVerdict(*coordinate, verdict, reason, alone, confirmed_set))
    return model, tuple(per_weight)


def _ratio(figure: Figure | None) -> float | None:
    if figure is None:
        return None
    return figure.ratio if figure.ratio is not None else math.inf


def _granularity_text(granularity: Granularity) -> str:
    if granularity.group_size is not None:
        return f"groups of {granularity.group_size}"
    if granularity.block_size is None:
        return "whole tensor"
    return f"blocks of {granularity.block_size:,}"


def evaluation_windows(loaded: LoadedModel, corpus: Corpus, config: ValidateConfig) -> TokenWindows:
    """The corpus's token windows under the configuration (default window: 2048 or the context)."""
    window = config.window or default_window(loaded.model)
    return token_windows(corpus, loaded.tokenizer, window, config.max_tokens)


def validate(
    loaded: LoadedModel,
    detection: DetectionResult,
    corpus: Corpus | TokenWindows,
    config: ValidateConfig | None = None,
    progress: ProgressCallback | None = None,
) -> ValidationResult:
    """Measure every configured experiment on `loaded`; its weights are bit-identical afterwards."""
    config = config or ValidateConfig()
    config.check()
    started = time.perf_counter()
    windows = corpus if isinstance(corpus, TokenWindows) else evaluation_windows(loaded, corpus, config)
    suite = _Suite(loaded, detection, windows, config, progress)
    suite.run()
    assert suite.baseline is not None
    model_verdict, weight_verdicts = decide_verdicts(suite.coordinates, suite.figures, config)
    return ValidationResult(
        model=loaded.model_id,
        revision=loaded.revision_sha,
        source_quantization=loaded.quantization,
        dtype=str(loaded.dtype).removeprefix("torch."),
        device=str(loaded.device),
        super_weights=suite.coordinates,
        super_weight_values=tuple(sw.value for sw in detection.super_weights),
        config=config,
        corpus=windows.identity,
        batch_size=suite.evaluator.batch_size,
        baseline_perplexity=suite.baseline.perplexity,
        verdict=model_verdict,
        super_weight_verdicts=weight_verdicts,
        figures=tuple(suite.figures.values()),
        weight_sets=tuple(suite.weight_sets),
        stopwords=suite.stopword_shift(),
        super_activation=suite.activation_sites(),
        quantization=suite.quantization_summary(),
        timing=suite.timing(time.perf_counter() - started),
        validator_version=VALIDATOR_VERSION,
        library_versions=library_versions(),
    )
