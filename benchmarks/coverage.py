"""Coverage of the paired perplexity-ratio intervals (`indexer.validation.intervals`), simulated and real.

For each interval method and 4, 8, 16, 32 and 64 windows, the share of nominal 95% intervals of the mean
paired log ratio (zeroed minus base window NLL) that contain the true value:

- simulated: per-window log ratios from heavy-tailed populations shaped like the real ones (a lognormal
  spread of per-window log ratios, a t with 3 dof, a normal contaminated by rare huge windows); the true
  mean is taken from a draw of 4,000,000; `--trials` samples per cell, all methods on the same samples;
- real: SmolLM2-135M on WikiText-2 (raw test split), 512-token windows, base and with the super weight
  (11, 507, 1229) zeroed. The per-window NLL pairs of `--windows` windows spread evenly over the split are
  the population; its mean is the truth. Samples of n windows are drawn from it with replacement, so the
  population mean is exactly the expected value of a sample's mean (subsets without replacement of 64 of
  a few hundred windows would be less variable than independent windows by the finite-population factor
  and flatter every method). The NLL pairs are cached in `--cache` (JSON) and a rerun reuses them; windows
  missing from the cache are computed 16 at a time and saved after each batch.

`--fixture PATH` also writes 64 of the windows (spread evenly over the split, computed first) as a test
fixture.

    .venv/bin/python benchmarks/coverage.py [--corpus wiki.test.raw] [--windows 128] [--trials 2000]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
SUPER_WEIGHT = (11, 507, 1229)  # SmolLM2-135M's, as the detector finds it
WINDOW = 512
BATCH_WINDOWS = 16  # windows computed (and cached) at a time
SIZES = (4, 8, 16, 32, 64)
LEVEL = 0.95
FIXTURE_WINDOWS = 64
COMMAND = "python benchmarks/coverage.py"


def default_corpus() -> str:
    """WikiText-2's raw test split in the shared data folder beside the repo (`SWI_WIKITEXT` overrides)."""
    configured = os.environ.get("SWI_WIKITEXT")
    return configured or str(REPO.parent / "shared/data/wikitext-2-raw/wiki.test.raw")


def default_cache() -> Path:
    """The NLL cache in the user's cache folder (`XDG_CACHE_HOME`, else ~/.cache), never in the repo."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "super-weight-index" / "coverage" / "smollm2-wikitext2-512-window-nll.json"


# --------------------------------------------------------------------------------------------- real data


def chosen_windows(available: int, wanted: int) -> list[int]:
    """`wanted` window indices spread evenly over `available` (all of them when wanted >= available)."""
    if wanted >= available:
        return list(range(available))
    return sorted({(i * available) // wanted for i in range(wanted)})


def read_cache(path: Path, identity: dict[str, Any]) -> dict[int, tuple[float, float]]:
    """Cached (base, zeroed) NLL per window index, when the cache's identity matches."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("identity") != identity:
        print(f"cache {path.name}: different identity, recomputing", flush=True)
        return {}
    return {int(k): (float(v[0]), float(v[1])) for k, v in data["windows"].items()}


def write_cache(path: Path, identity: dict[str, Any], pairs: dict[int, tuple[float, float]]) -> None:
    """Write the cache atomically: identity and every window's (base, zeroed) NLL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"identity": identity, "windows": {str(k): list(pairs[k]) for k in sorted(pairs)}}
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
    os.replace(partial, path)


def real_window_nll(
    corpus_path: Path, wanted: int, cache: Path
) -> tuple[dict[int, tuple[float, float]], dict[str, Any], float]:
    """(base, zeroed) NLL of `wanted` windows spread over the split, their identity and the seconds spent."""
    from indexer.model.ablation import zeroed_weights
    from indexer.model.demo_model import SHA256, fetch_demo_model
    from indexer.model.loading import LoadOptions, load_model
    from indexer.validation.corpus import TokenWindows, file_corpus, token_windows
    from indexer.validation.perplexity import PerplexityEvaluator

    started = time.perf_counter()
    corpus = file_corpus(corpus_path)
    identity: dict[str, Any] = {
        "model": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "model_sha256": SHA256,
        "dtype": "float32",
        "corpus": corpus.name,
        "corpus_sha256": corpus.sha256,
        "window": WINDOW,
        "zeroed": list(SUPER_WEIGHT),
    }
    pairs = read_cache(cache, identity)
    loaded = None
    windows = None
    available = int(_cache_meta(cache).get("available", 0)) if pairs else 0  # windows the split gives
    indices = chosen_windows(available, wanted) if available else []
    if not available or any(i not in pairs for i in indices):
        loaded = load_model(
            str(fetch_demo_model(quiet=True)), options=LoadOptions(device="cpu", dtype="float32")
        )
        windows = token_windows(corpus, loaded.tokenizer, WINDOW)
        available = int(windows.input_ids.shape[0])
        indices = chosen_windows(available, wanted)
    # the fixture's 64 windows (spread evenly, a subset of any larger even spread) first
    coarse = set(chosen_windows(available, FIXTURE_WINDOWS))
    missing = sorted((i for i in indices if i not in pairs), key=lambda i: (i not in coarse, i))
    if missing:
        assert loaded is not None and windows is not None
        print(
            f"computing the NLL of {len(missing)} of {len(indices)} windows (base and zeroed), "
            f"{BATCH_WINDOWS} at a time; cache {cache}",
            flush=True,
        )
        for start in range(0, len(missing), BATCH_WINDOWS):
            batch = missing[start : start + BATCH_WINDOWS]
            part = TokenWindows(windows.input_ids[batch], windows.identity)
            evaluator = PerplexityEvaluator(loaded, part, batch_size=len(batch))
            evaluator.want_prefix([SUPER_WEIGHT[0]])
            base = evaluator.run()
            with zeroed_weights(loaded.model, loaded.adapter, [SUPER_WEIGHT]):
                zeroed = evaluator.run(SUPER_WEIGHT[0])
            for index, b, z in zip(batch, base.window_nll, zeroed.window_nll, strict=True):
                pairs[index] = (b, z)
            write_cache(cache, {**identity}, pairs)
            _write_meta(cache, available)
            done = start + len(batch)
            print(f"  {done}/{len(missing)} windows, {time.perf_counter() - started:.0f}s", flush=True)
    return {i: pairs[i] for i in indices}, {**identity, "available": available}, time.perf_counter() - started


def _meta_path(cache: Path) -> Path:
    return cache.with_suffix(".meta.json")


def _cache_meta(cache: Path) -> dict[str, Any]:
    """Side facts of the cache (windows the split gives), so that a rerun need not tokenize."""
    path = _meta_path(cache)
    if not path.is_file():
        return {}
    meta: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return meta


def _write_meta(cache: Path, available: int) -> None:
    _meta_path(cache).write_text(json.dumps({"available": available}) + "\n", encoding="utf-8")


def write_fixture(path: Path, pairs: dict[int, tuple[float, float]], identity: dict[str, Any]) -> None:
    """`FIXTURE_WINDOWS` windows' NLL pairs, spread evenly over the split, with how they were recorded."""
    indices = chosen_windows(identity["available"], FIXTURE_WINDOWS)
    body = {
        "note": (
            "per-window mean next-token NLL (nats per predicted token) of SmolLM2-135M-Instruct (GGUF Q4_1, "
            "dequantized to float32 on the CPU) on 512-token windows of WikiText-2 raw test, base and with "
            "down_proj weight (11, 507, 1229) zeroed; recorded by the command below"
        ),
        "command": f"{COMMAND} --windows {identity['recorded_windows']} --fixture {path.as_posix()}",
        "date": datetime.date.today().isoformat(),
        **{k: v for k, v in identity.items() if k != "recorded_windows"},
        "window_index": indices,
        "base_nll": [pairs[i][0] for i in indices],
        "zeroed_nll": [pairs[i][1] for i in indices],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus", default=default_corpus(), help="WikiText-2 raw test split (wiki.test.raw)"
    )
    parser.add_argument("--windows", type=int, default=128, help="512-token windows of the real population")
    parser.add_argument("--cache", type=Path, default=default_cache(), help="JSON cache of the window NLLs")
    parser.add_argument("--trials", type=int, default=2000, help="samples per (method, size) cell")
    parser.add_argument("--samples", type=int, default=2000, help="bootstrap resamples per interval")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fixture", type=Path, default=None, help="also write the 64-window test fixture")
    parser.add_argument(
        "--nll-only", action="store_true", help="compute and cache the window NLLs, then stop"
    )
    parser.add_argument("--skip-real", action="store_true", help="simulation only (no model)")
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    pairs: dict[int, tuple[float, float]] = {}
    if not args.skip_real:
        pairs, identity, seconds = real_window_nll(Path(args.corpus), args.windows, args.cache)
        print(
            f"real window NLLs: {len(pairs)} windows of {identity['available']} in {seconds:.1f}s", flush=True
        )
        if args.fixture is not None:
            write_fixture(args.fixture, pairs, {**identity, "recorded_windows": args.windows})
    if args.nll_only:
        return
    report(args, pairs)
    print(f"wall time {time.perf_counter() - started:.1f}s")


# ------------------------------------------------------------------------------------------- simulation

#: heavy-tailed populations of per-window log ratios shaped like SmolLM2's on WikiText-2 (median near 2,
#: i.e. 7x, most windows 5-12x, a few far above): name -> (description, draw(count, generator))
POPULATIONS: dict[str, tuple[str, Callable[[int, torch.Generator], torch.Tensor]]] = {
    "skewed": (
        "1.2 + lognormal(-0.5, 0.7): right-skewed log ratios",
        lambda count, g: 1.2 + torch.exp(-0.5 + 0.7 * torch.randn(count, generator=g, dtype=torch.float64)),
    ),
    "t3": (
        "2.0 + 0.35 t(3): symmetric, heavy-tailed log ratios",
        lambda count, g: 2.0 + 0.35 * _student_t3(count, g),
    ),
    "contaminated": (
        "N(2.0, 0.3), and 1 window in 20 from N(4.0, 0.8): rare huge windows",
        lambda count, g: torch.where(
            torch.rand(count, generator=g, dtype=torch.float64) < 0.05,
            4.0 + 0.8 * torch.randn(count, generator=g, dtype=torch.float64),
            2.0 + 0.3 * torch.randn(count, generator=g, dtype=torch.float64),
        ),
    ),
}
TRUTH_DRAW = 4_000_000
REAL = "smollm2-wiki"


def _student_t3(count: int, g: torch.Generator) -> torch.Tensor:
    """Student t with 3 dof: a normal over the root of a chi-square(3) / 3."""
    normal = torch.randn(count, generator=g, dtype=torch.float64)
    chi2 = (torch.randn(count, 3, generator=g, dtype=torch.float64) ** 2).sum(dim=1)
    return normal / (chi2 / 3).sqrt()


def coverage_row(
    draw: Callable[[int, int], torch.Tensor], truth: float, samples: int, seed: int
) -> dict[str, dict[int, tuple[float, float]]]:
    """method -> window count -> (coverage, median width of the ratio interval as a factor)."""
    from indexer.validation.intervals import BATCH_METHODS, METHODS

    row: dict[str, dict[int, tuple[float, float]]] = {m: {} for m in METHODS}
    for n in SIZES:
        d = draw(n, seed + n)  # (trials, n)
        for method in METHODS:
            low, high = BATCH_METHODS[method](d, LEVEL, samples, seed)
            covered = ((low <= truth) & (truth <= high)).double().mean()
            row[method][n] = (float(covered), float((high - low).exp().median()))
    return row


def print_table(title: str, rows: dict[str, dict[str, dict[int, tuple[float, float]]]]) -> None:
    """Coverage per method and window count for each population, then the median widths."""
    from indexer.validation.intervals import METHODS

    head = "".join(f"{n:>8}" for n in SIZES)
    print(f"\n{title}: two-sided coverage of nominal {LEVEL:.0%} intervals")
    print(f"{'population':<14}{'method':<13}{head}")
    for population, row in rows.items():
        for method in METHODS:
            cells = "".join(f"{row[method][n][0]:>8.3f}" for n in SIZES)
            print(f"{population:<14}{method:<13}{cells}")
    print(f"{title}: median width of the ratio interval (high / low)")
    for population, row in rows.items():
        for method in METHODS:
            cells = "".join(f"{row[method][n][1]:>7.2f}x" for n in SIZES)
            print(f"{population:<14}{method:<13}{cells}")


def spread(d: torch.Tensor) -> str:
    """Median per-window ratio and its spread (10th-90th percentile, min-max)."""
    r = d.exp()
    q = torch.quantile(r, torch.tensor([0.1, 0.5, 0.9, 0.01, 0.99], dtype=torch.float64)).tolist()
    return (
        f"per-window ratio median {q[1]:.2f}x, 10-90% {q[0]:.2f}-{q[2]:.2f}x, "
        f"1-99% {q[3]:.2f}-{q[4]:.2f}x, min-max {float(r.min()):.3g}-{float(r.max()):.3g}x; "
        f"mean log ratio {float(d.mean()):.4f} "
        f"(ratio {math.exp(float(d.mean())):.2f}x)"
    )


def report(args: argparse.Namespace, pairs: dict[int, tuple[float, float]]) -> None:
    """Simulated and real coverage tables."""
    print(
        f"{args.trials} samples a cell, {args.samples} bootstrap resamples, seed {args.seed}, "
        f"level {LEVEL}; sizes {list(SIZES)}",
        flush=True,
    )
    started = time.perf_counter()
    simulated: dict[str, dict[str, dict[int, tuple[float, float]]]] = {}
    for offset, (name, (description, population)) in enumerate(POPULATIONS.items()):
        g = torch.Generator().manual_seed(args.seed + 1000 * (offset + 1))
        big = population(TRUTH_DRAW, g)
        truth = float(big.mean())
        print(f"simulated {name}: {description}; truth {truth:.4f} from {TRUTH_DRAW:,} draws; {spread(big)}")

        def draw(n: int, seed: int, population: Any = population) -> torch.Tensor:
            gen = torch.Generator().manual_seed(seed)
            return population(args.trials * n, gen).view(args.trials, n)

        simulated[name] = coverage_row(draw, truth, args.samples, args.seed)
    print(f"simulation: {time.perf_counter() - started:.1f}s", flush=True)
    print_table("simulated", simulated)
    if not pairs:
        return
    started = time.perf_counter()
    base = torch.tensor([pairs[i][0] for i in sorted(pairs)], dtype=torch.float64)
    zeroed = torch.tensor([pairs[i][1] for i in sorted(pairs)], dtype=torch.float64)
    d_all = zeroed - base
    truth = float(d_all.mean())
    print(
        f"\nreal: SmolLM2-135M, WikiText-2 test, {len(pairs)} windows of {WINDOW} tokens, weight "
        f"{SUPER_WEIGHT} zeroed; base perplexity {math.exp(float(base.mean())):.2f} (mean window NLL)"
    )
    print(f"real: {spread(d_all)}; truth: the {len(pairs)}-window mean")

    def draw_real(n: int, seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return d_all[torch.randint(d_all.numel(), (args.trials, n), generator=gen)]

    real = {REAL: coverage_row(draw_real, truth, args.samples, args.seed)}
    print(f"real coverage: {time.perf_counter() - started:.1f}s")
    print_table("real", real)
    print_floors({**simulated, **real})


def print_floors(rows: dict[str, dict[str, dict[int, tuple[float, float]]]]) -> None:
    """Per method: the smallest window count from which coverage stays >= the floor, on the real
    population alone and on every population; and the mean distance of coverage from the nominal."""
    from indexer.validation.intervals import COVERAGE_FLOOR, METHODS

    def first_reached(coverage: dict[int, float]) -> str:
        reached = [n for n in SIZES if all(coverage[m] >= COVERAGE_FLOOR for m in SIZES if m >= n)]
        return str(reached[0]) if reached else "none<=64"

    print(f"\nsmallest window count from which coverage stays >= {COVERAGE_FLOOR} (real; every population)")
    print(f"and mean |coverage - {LEVEL}| over the populations at {', '.join(map(str, SIZES))} windows")
    for method in METHODS:
        real = {n: row[method][n][0] for name, row in rows.items() if name == REAL for n in SIZES}
        worst = {n: min(row[method][n][0] for row in rows.values()) for n in SIZES}
        gap = {n: sum(abs(row[method][n][0] - LEVEL) for row in rows.values()) / len(rows) for n in SIZES}
        gap_text = " ".join(f"{gap[n]:.3f}" for n in SIZES)
        reached_real = first_reached(real) if real else "-"
        print(f"  {method:<12} real {reached_real:<9} every {first_reached(worst):<9} |gap| {gap_text}")


if __name__ == "__main__":
    main()
