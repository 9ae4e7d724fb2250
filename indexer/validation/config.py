"""What a validation run measures and how: `ValidateConfig`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from indexer.errors import InvalidInputError
from indexer.validation.names import EXPERIMENTS, parse_experiments
from indexer.validation.quantize import DEFAULT_GRANULARITIES, ClipSpec, parse_granularity

RTN_VARIANTS = ("plain", "clipped", "holdout")
W8A8_VARIANTS = ("naive", "holdout")
#: settings that change how fast a result comes, never the result (left out of a run's settings)
SPEED_ONLY = ("batch_size", "prefix_cache")


@dataclass(frozen=True)
class ValidateConfig:
    """Which experiments to run and how; the defaults are the paper's settings."""

    experiments: tuple[str, ...] = EXPERIMENTS
    window: int | None = None  # None: min(2048, the model's context, max_tokens)
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
    #: random magnitude-matched sets of the null: per super weight, one of the largest weights of its
    #: down projection (outside the super activation's row), zeroed
    null_sets: int = 32
    #: same-column sets of the null: a random other row of each super weight's column, zeroed (the input
    #: spike survives zeroing, so a column neighbour is the hard control)
    null_column_sets: int = 8
    #: a member of a confirmed set is `set-confirmed` when restoring it alone (the others zeroed) removes
    #: at least this share of the joint zeroing's log perplexity ratio, `redundant` otherwise
    necessity_share: float = 0.1
    #: bootstrap resamples of the windows behind every ratio's interval, and the interval's level
    bootstrap_samples: int = 1000
    interval_level: float = 0.95
    seed: int = 0
    stopword_top_k: int = 10
    prefix_cache: bool = True

    def result_settings(self) -> dict[str, Any]:
        """Every setting that can change a result (all but `SPEED_ONLY`): what a run's settings record."""
        return {key: value for key, value in asdict(self).items() if key not in SPEED_ONLY}

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
        if not 0 <= self.null_sets <= 1024 or not 0 <= self.null_column_sets <= 1024:
            raise InvalidInputError("null set counts must be between 0 and 1024")
        if not 0 < self.necessity_share < 1:
            raise InvalidInputError("the necessity share must be in (0, 1)")
        if not 10 <= self.bootstrap_samples <= 100_000:
            raise InvalidInputError("bootstrap samples must be between 10 and 100,000")
        if not 0.5 <= self.interval_level < 1:
            raise InvalidInputError("the interval level must be in [0.5, 1)")
        if not 0 < self.sa_threshold <= 1:
            raise InvalidInputError("the super-activation threshold must be in (0, 1]")

    @property
    def clip(self) -> ClipSpec:
        """The clip settings of the clipped RTN variant."""
        return ClipSpec(self.clip_method, self.clip_threshold)  # type: ignore[arg-type]


def _check_names(what: str, given: Sequence[str], known: Sequence[str]) -> None:
    unknown = [name for name in given if name not in known]
    if unknown:
        raise InvalidInputError(
            f"unknown {what} {', '.join(map(repr, unknown))}; choose from {', '.join(known)}"
        )
