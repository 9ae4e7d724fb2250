"""Interval methods for the paired mean log perplexity ratio over windows.

Each method takes the per-window differences `d[w] = nll_zeroed[w] - nll_base[w]` (nats per predicted
token, float64) and a level and returns `(low, high)` of the mean of `d` on the log scale; callers exp them
to get the interval of the perplexity ratio. The bootstrap methods draw their resamples with
`indexer.validation.perplexity.bootstrap_resamples` (seeded, so deterministic) and are computed as a
matrix product of resample counts, so that a batch of samples `(..., windows)` costs one product
(`*_batch` functions; the coverage benchmark runs thousands of samples at once).

Which to use is measured, not chosen by taste: `benchmarks/coverage.py` prints each method's coverage of
nominal 95% intervals at 4 to 64 windows on heavy-tailed simulated populations and on SmolLM2's real
per-window log ratios on WikiText-2; `RECOMMENDED` and `MIN_WINDOWS` record what it measured.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import torch

from indexer.errors import InvalidInputError
from indexer.validation.perplexity import bootstrap_resamples

Method = Literal["percentile", "bca", "t", "bootstrap_t"]
METHODS: tuple[Method, ...] = ("percentile", "bca", "t", "bootstrap_t")
DEFAULT_LEVEL = 0.95
DEFAULT_SAMPLES = 2000
DEFAULT_SEED = 0

#: the method whose measured coverage is closest to the nominal 95% at 16, 32 and 64 windows over the
#: populations of `benchmarks/coverage.py` (mean |coverage - 0.95| 0.026, 0.028, 0.014; bootstrap-t 0.028,
#: 0.032, 0.015; percentile 0.052, 0.041, 0.020; BCa 0.065, 0.053, 0.025). Bootstrap-t is closer at 4 and
#: 8 windows only by intervals several times wider (real data, 4 windows: 5.3x against the t's 2.2x)
RECOMMENDED: Method = "t"

#: the coverage `MIN_WINDOWS` asks for: the nominal 0.95 less about four Monte Carlo standard errors of
#: 2,000 samples
COVERAGE_FLOOR = 0.93

#: smallest window count (of 4, 8, 16, 32, 64) from which the method's measured two-sided coverage of a
#: nominal 95% interval stays at least `COVERAGE_FLOOR` on SmolLM2-135M's real per-window log ratios
#: (WikiText-2 raw test, 128 windows of 512 tokens spread over the split, weight (11, 507, 1229) zeroed;
#: samples of n windows drawn from them, 2,000 a cell): `python benchmarks/coverage.py`. Measured coverage
#: at 4/8/16/32/64 windows: percentile 0.812 0.884 0.926 0.933 0.936, BCa 0.811 0.883 0.925 0.931 0.930,
#: t 0.941 0.944 0.955 0.947 0.949, bootstrap-t 0.949 0.948 0.957 0.945 0.941
MIN_WINDOWS: dict[Method, int | None] = {
    "percentile": 32,
    "bca": 32,
    "t": 4,
    "bootstrap_t": 4,
}

#: the same on every population of the benchmark, its three heavy-tailed simulations included (None: not
#: reached at 64 windows). No method reaches it: a normal contaminated by 1 window in 20 from far out gives
#: t 0.883 at 32 windows and 0.921 at 64, bootstrap-t 0.872 and 0.928, the percentile 0.862 and 0.917;
#: samples that hold none of the rare windows cannot see them
MIN_WINDOWS_HEAVY_TAILED: dict[Method, int | None] = {
    "percentile": None,
    "bca": None,
    "t": None,
    "bootstrap_t": None,
}


@dataclass(frozen=True)
class Interval:
    """An interval of the mean log ratio, `(low, high)` on the log scale; unpacks as a pair."""

    low: float
    high: float
    method: Method
    level: float
    windows: int

    def __iter__(self) -> Iterator[float]:
        """Yield `low` then `high`."""
        yield self.low
        yield self.high

    def ratio(self) -> tuple[float, float]:
        """The interval of the perplexity ratio: `(exp(low), exp(high))`, inf where it overflows."""
        return _exp(self.low), _exp(self.high)


def min_windows(method: Method, *, heavy_tailed: bool = False) -> int | None:
    """Window count below which `method`'s measured coverage falls under `COVERAGE_FLOOR` (None: any)."""
    return (MIN_WINDOWS_HEAVY_TAILED if heavy_tailed else MIN_WINDOWS)[method]


def paired_log_ratio_interval(
    differences: torch.Tensor,
    level: float = DEFAULT_LEVEL,
    method: Method = RECOMMENDED,
    *,
    samples: int = DEFAULT_SAMPLES,
    seed: int = DEFAULT_SEED,
) -> Interval:
    """The `level` interval of the mean of `differences` (1-D) by `method`."""
    d = _check(differences, level)
    low, high = BATCH_METHODS[method](d.unsqueeze(0), level, samples, seed)
    return Interval(float(low[0]), float(high[0]), method, level, int(d.numel()))


def percentile_interval(
    differences: torch.Tensor, level: float = DEFAULT_LEVEL, *, samples: int = DEFAULT_SAMPLES, seed: int = 0
) -> Interval:
    """Percentile bootstrap of the mean (today's method in `indexer.validation.perplexity`)."""
    return paired_log_ratio_interval(differences, level, "percentile", samples=samples, seed=seed)


def bca_interval(
    differences: torch.Tensor, level: float = DEFAULT_LEVEL, *, samples: int = DEFAULT_SAMPLES, seed: int = 0
) -> Interval:
    """Bias-corrected and accelerated (BCa) bootstrap of the mean, jackknife acceleration."""
    return paired_log_ratio_interval(differences, level, "bca", samples=samples, seed=seed)


def t_interval(differences: torch.Tensor, level: float = DEFAULT_LEVEL) -> Interval:
    """Student t interval of the mean: mean +- t(n-1) * sd / sqrt(n)."""
    return paired_log_ratio_interval(differences, level, "t")


def bootstrap_t_interval(
    differences: torch.Tensor, level: float = DEFAULT_LEVEL, *, samples: int = DEFAULT_SAMPLES, seed: int = 0
) -> Interval:
    """Studentized (bootstrap-t) bootstrap of the mean."""
    return paired_log_ratio_interval(differences, level, "bootstrap_t", samples=samples, seed=seed)


# ------------------------------------------------------------------------------------------ batched forms

BatchMethod = Callable[[torch.Tensor, float, int, int], tuple[torch.Tensor, torch.Tensor]]


def resample_counts(windows: int, samples: int, seed: int) -> torch.Tensor:
    """`(samples, windows)` float64 counts of each window in each resample (`bootstrap_resamples`' draw)."""
    indices = bootstrap_resamples(windows, samples, seed)  # (samples, windows)
    counts = torch.zeros(samples, windows, dtype=torch.float64)
    counts.scatter_add_(1, indices, torch.ones(samples, windows, dtype=torch.float64))
    return counts


def percentile_batch(
    d: torch.Tensor, level: float, samples: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED
) -> tuple[torch.Tensor, torch.Tensor]:
    """Percentile bootstrap of each row's mean; `d` `(..., windows)`, returns low and high `(...)`."""
    means = _resample_means(d, samples, seed).sort(dim=-1).values  # (..., samples)
    tail = (1 - level) / 2
    low = _row_quantile(means, torch.full(means.shape[:-1], tail, dtype=torch.float64))
    high = _row_quantile(means, torch.full(means.shape[:-1], 1 - tail, dtype=torch.float64))
    return low, high


def bca_batch(
    d: torch.Tensor, level: float, samples: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED
) -> tuple[torch.Tensor, torch.Tensor]:
    """BCa bootstrap of each row's mean; `d` `(..., windows)`, returns low and high `(...)`."""
    n = d.shape[-1]
    theta = d.mean(dim=-1)  # (...)
    means = _resample_means(d, samples, seed).sort(dim=-1).values  # (..., samples)
    below = (means < theta.unsqueeze(-1)).double().mean(dim=-1)
    ties = (means == theta.unsqueeze(-1)).double().mean(dim=-1)
    share = (below + ties / 2).clamp(1 / (samples + 1), samples / (samples + 1))
    z0 = torch.special.ndtri(share)  # (...) bias correction
    # jackknife acceleration: leave-one-out means (..., windows)
    if n > 1:
        jack = (d.sum(dim=-1, keepdim=True) - d) / (n - 1)
        spread = jack.mean(dim=-1, keepdim=True) - jack
        numerator = (spread**3).sum(dim=-1)
        denominator = 6 * (spread**2).sum(dim=-1) ** 1.5
        accel = torch.where(denominator > 0, numerator / denominator.clamp_min(1e-300), 0.0)
    else:
        accel = torch.zeros_like(theta)
    tail = (1 - level) / 2
    bounds = []
    for p in (tail, 1 - tail):
        z = z0 + _normal_quantile(p)
        adjusted = torch.special.ndtr(z0 + z / (1 - accel * z))
        bounds.append(_row_quantile(means, adjusted))
    return bounds[0], bounds[1]


def t_batch(
    d: torch.Tensor, level: float, samples: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED
) -> tuple[torch.Tensor, torch.Tensor]:
    """Student t interval of each row's mean; `d` `(..., windows)` (samples and seed are unused)."""
    n = d.shape[-1]
    theta = d.mean(dim=-1)
    if n < 2:
        return theta.clone(), theta.clone()
    half = student_t_quantile(1 - (1 - level) / 2, n - 1) * d.std(dim=-1) / math.sqrt(n)
    return theta - half, theta + half


def bootstrap_t_batch(
    d: torch.Tensor, level: float, samples: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED
) -> tuple[torch.Tensor, torch.Tensor]:
    """Studentized bootstrap of each row's mean; `d` `(..., windows)`, returns low and high `(...)`."""
    n = d.shape[-1]
    theta = d.mean(dim=-1)
    if n < 2:
        return theta.clone(), theta.clone()
    centred = d - theta.unsqueeze(-1)  # (..., windows): resample means and spreads without cancellation
    counts = resample_counts(n, samples, seed)  # (samples, windows)
    shift = centred @ counts.T / n  # (..., samples) resample mean less the sample mean
    square = (centred**2) @ counts.T / n  # (..., samples)
    variance = (square - shift**2).clamp_min(0) * n / (n - 1)
    se = d.std(dim=-1) / math.sqrt(n)  # (...)
    resample_se = (variance / n).sqrt()
    # a resample of one window repeated has no spread: its t is huge (or 0 when it sits on the mean)
    floor = (se * 1e-9).clamp_min(1e-300).unsqueeze(-1)
    t = (shift / resample_se.clamp_min(1e-300).maximum(floor)).sort(dim=-1).values  # (..., samples)
    tail = (1 - level) / 2
    q_low = _row_quantile(t, torch.full(theta.shape, tail, dtype=torch.float64))
    q_high = _row_quantile(t, torch.full(theta.shape, 1 - tail, dtype=torch.float64))
    return theta - q_high * se, theta - q_low * se


BATCH_METHODS: dict[Method, BatchMethod] = {
    "percentile": percentile_batch,
    "bca": bca_batch,
    "t": t_batch,
    "bootstrap_t": bootstrap_t_batch,
}


# ----------------------------------------------------------------------------------------------- helpers


def student_t_quantile(p: float, dof: int) -> float:
    """The `p` quantile of Student's t with `dof` (a positive integer) degrees of freedom."""
    if not 0 < p < 1 or dof < 1:
        raise InvalidInputError(f"need 0 < p < 1 and dof >= 1, got p={p}, dof={dof}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -student_t_quantile(1 - p, dof)
    central = 2 * p - 1  # P(|T| < t)
    low, high = 0.0, 1.0
    while _t_central(high, dof) < central:
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        if _t_central(middle, dof) < central:
            low = middle
        else:
            high = middle
        if high - low <= 1e-15 * high:
            break
    return (low + high) / 2


def _t_central(t: float, dof: int) -> float:
    """P(|T| < t) for Student's t with an integer `dof`: the closed form in the angle atan(t / sqrt(dof))."""
    angle = math.atan(t / math.sqrt(dof))
    c2 = math.cos(angle) ** 2
    if dof % 2 == 1:
        term, total = 1.0, 1.0 if dof > 1 else 0.0
        for k in range(1, (dof - 1) // 2):
            term *= c2 * (2 * k) / (2 * k + 1)
            total += term
        body = math.sin(angle) * math.cos(angle) * total if dof > 1 else 0.0
        return 2 / math.pi * (angle + body)
    term, total = 1.0, 1.0
    for k in range(1, dof // 2):
        term *= c2 * (2 * k - 1) / (2 * k)
        total += term
    return math.sin(angle) * total


def _normal_quantile(p: float) -> float:
    """The standard normal's `p` quantile."""
    return float(torch.special.ndtri(torch.tensor(p, dtype=torch.float64)))


def _resample_means(d: torch.Tensor, samples: int, seed: int) -> torch.Tensor:
    """Each row's resample means `(..., samples)` (the same resamples for every row)."""
    n = d.shape[-1]
    centred = d - d.mean(dim=-1, keepdim=True)  # the means of resamples of constant rows stay exact
    shift: torch.Tensor = centred @ resample_counts(n, samples, seed).T / n
    return shift + d.mean(dim=-1, keepdim=True)


def _row_quantile(ordered: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Each row's `p[row]` quantile of sorted `ordered` `(..., samples)`, linear as `torch.quantile`."""
    samples = ordered.shape[-1]
    position = p.clamp(0, 1) * (samples - 1)  # (...)
    below = position.floor().long().clamp(0, samples - 1)
    above = (below + 1).clamp(max=samples - 1)
    weight = position - below.double()
    low = ordered.gather(-1, below.unsqueeze(-1)).squeeze(-1)
    high = ordered.gather(-1, above.unsqueeze(-1)).squeeze(-1)
    return low + (high - low) * weight


def _check(differences: torch.Tensor, level: float) -> torch.Tensor:
    """`differences` as a 1-D float64 tensor of at least one finite value; the level in (0, 1)."""
    if not 0 < level < 1:
        raise InvalidInputError(f"the interval level must be in (0, 1), got {level}")
    d = torch.as_tensor(differences, dtype=torch.float64)
    if d.dim() != 1 or d.numel() < 1:
        raise InvalidInputError(f"need a 1-D tensor of per-window differences, got shape {tuple(d.shape)}")
    if not bool(torch.isfinite(d).all()):
        raise InvalidInputError("per-window differences must be finite")
    return d


def _exp(value: float) -> float:
    """exp, inf where it overflows."""
    return math.exp(value) if value < 700 else math.inf
