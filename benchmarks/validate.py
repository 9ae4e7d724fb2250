"""Benchmark of `indexer.validate` on SmolLM2-135M: the suite against a naive baseline and the forward floor.

One invocation, one token budget:

(a) the whole suite (every experiment, the default RTN grid), in-process, the model loaded once;
(b) the naive baseline of the reference scripts: a fresh process per variant that loads the model and
    evaluates once. Only a representative subset of variants runs (a plain pass, a pruning variant, a
    quantization variant); the per-variant mean is extrapolated to the suite's distinct passes, and the
    output says so;
(c) the floor: the suite's distinct passes, each costed as one plain full forward sweep over the same
    batches (median of several, timed in-process, no hooks, no edits).

Also measured: what the prefix cache buys (the pruning experiments with and without it) and the memory
the in-place quantization holds. Targets: (b)/(a) >= 5 and (a)/(c) <= 1.3.

    .venv/bin/python benchmarks/validate.py --corpus ../shared/data/wikitext-2-raw/wiki.test.raw
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from indexer.ablation import zeroed_weights
from indexer.corpus import TokenWindows, file_corpus, token_windows
from indexer.demo_model import fetch_demo_model
from indexer.detect import detect
from indexer.loading import LoadedModel, LoadOptions, load_model
from indexer.perplexity import PerplexityEvaluator
from indexer.quantize import fake_quantized_weights, linear_targets, parse_granularity, rtn_weight_quantizer
from indexer.validate import ValidateConfig, validate

REPO = Path(__file__).resolve().parents[1]

SUPER_WEIGHT = (11, 507, 1229)  # SmolLM2-135M's, as the detector finds it
NAIVE_VARIANTS = ("baseline", "zero/joint", "rtn/4bit/g128/holdout")
PRUNING = ("joint", "alone", "restore_sa", "controls", "stopwords", "scaling")


def load() -> LoadedModel:
    """The demo model on the CPU in float32, as the tests load it."""
    return load_model(str(fetch_demo_model(quiet=True)), options=LoadOptions(device="cpu", dtype="float32"))


def windows_of(loaded: LoadedModel, args: argparse.Namespace) -> TokenWindows:
    """The benchmark's windows: the same budget everywhere."""
    return token_windows(file_corpus(Path(args.corpus)), loaded.tokenizer, args.window, args.max_tokens)


def child(args: argparse.Namespace) -> None:
    """One naive variant: load, evaluate once, print a JSON line, exit (as the reference scripts do)."""
    started = time.perf_counter()
    loaded = load()
    loaded_s = time.perf_counter() - started
    evaluator = PerplexityEvaluator(loaded, windows_of(loaded, args), args.batch_size, prefix_cache=False)
    variant = args.child
    if variant == "baseline":
        result = evaluator.run()
    elif variant == "zero/joint":
        with zeroed_weights(loaded.model, loaded.adapter, [SUPER_WEIGHT]):
            result = evaluator.run()
    elif variant.startswith("rtn/"):
        _, bits, granularity, kind = variant.split("/")
        assert kind == "holdout"
        name = loaded.adapter.down_proj_name(loaded.model, SUPER_WEIGHT[0])
        quantizer = rtn_weight_quantizer(
            int(bits.removesuffix("bit")),
            parse_granularity(granularity),
            hold_out={name: [SUPER_WEIGHT[1:]]},
        )
        with fake_quantized_weights(loaded.model, linear_targets(loaded.model), quantizer):
            result = evaluator.run()
    else:
        raise SystemExit(f"unknown variant {variant}")
    print(json.dumps({"perplexity": result.perplexity, "load_s": loaded_s, "eval_s": result.seconds}))


def plain_sweep(loaded: LoadedModel, windows: TokenWindows, batch_size: int) -> float:
    """Seconds of one plain forward sweep over the windows: no hooks, no loss, no edits."""
    started = time.perf_counter()
    with torch.inference_mode():
        for batch in torch.split(windows.input_ids, batch_size):
            loaded.model(input_ids=batch, use_cache=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", default=str(REPO.parent / "shared/data/wikitext-2-raw/wiki.test.raw"))
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--floor-repeats", type=int, default=3)
    parser.add_argument("--naive", default=",".join(NAIVE_VARIANTS), help="variants run as fresh processes")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; budget {args.max_tokens} tokens, "
        f"window {args.window}",
        flush=True,
    )
    started = time.perf_counter()
    loaded = load()
    print(f"model loaded once in {time.perf_counter() - started:.1f}s", flush=True)
    detection = detect(loaded)
    assert [sw.coordinates for sw in detection.super_weights] == [SUPER_WEIGHT], detection.super_weights
    windows = windows_of(loaded, args)

    # (a) the whole suite
    config = ValidateConfig(window=args.window, max_tokens=args.max_tokens, batch_size=args.batch_size)
    started = time.perf_counter()
    result = validate(
        loaded,
        detection,
        windows,
        config,
        progress=lambda e: print(f"  [{e.phase} {e.completed}/{e.total}] {e.label}", flush=True),
    )
    suite_s = time.perf_counter() - started
    measured = [f for f in result.figures if f.reused_from is None]
    passes = len(measured)
    batch_size = result.batch_size
    print(
        f"(a) suite: {len(result.figures)} figures, {passes} passes ({result.timing.full_passes} full, "
        f"{result.timing.cached_passes} from the prefix cache), {suite_s:.1f}s",
        flush=True,
    )

    # (c) the floor: each distinct pass costed as a plain full forward sweep
    sweeps = [plain_sweep(loaded, windows, batch_size) for _ in range(args.floor_repeats)]
    sweep_s = statistics.median(sweeps)
    floor_s = passes * sweep_s
    print(
        f"(c) floor: {passes} passes x {sweep_s:.2f}s (median of {[round(s, 2) for s in sweeps]}) "
        f"= {floor_s:.1f}s",
        flush=True,
    )

    # what the prefix cache buys: the pruning experiments with and without it
    prune = ValidateConfig(
        experiments=PRUNING, window=args.window, max_tokens=args.max_tokens, batch_size=args.batch_size
    )
    started = time.perf_counter()
    with_cache = validate(loaded, detection, windows, prune)
    cached_s = time.perf_counter() - started
    started = time.perf_counter()
    validate(loaded, detection, windows, dataclasses.replace(prune, prefix_cache=False))
    uncached_s = time.perf_counter() - started
    print(
        f"prefix cache: pruning experiments {cached_s:.1f}s with, {uncached_s:.1f}s without "
        f"({uncached_s / cached_s:.2f}x; cache {with_cache.timing.prefix_cache_bytes / 2**20:.1f} MiB at "
        f"layer(s) {with_cache.timing.prefix_layers})",
        flush=True,
    )

    # (b) the naive baseline: a fresh process per variant
    naive: list[dict[str, Any]] = []
    for variant in args.naive.split(","):
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            variant,
            "--corpus",
            args.corpus,
            "--max-tokens",
            str(args.max_tokens),
            "--window",
            str(args.window),
        ]
        if args.batch_size:
            command += ["--batch-size", str(args.batch_size)]
        started = time.perf_counter()
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - started
        line = json.loads(done.stdout.strip().splitlines()[-1])
        suite_figure = result.figure(variant).perplexity
        naive.append({"variant": variant, "wall_s": wall, **line, "suite_perplexity": suite_figure})
        print(
            f"(b) naive {variant}: {wall:.1f}s in a fresh process (load {line['load_s']:.1f}s, eval "
            f"{line['eval_s']:.1f}s); perplexity {line['perplexity']:.4f} vs suite {suite_figure:.4f}",
            flush=True,
        )
    per_variant = statistics.mean(n["wall_s"] for n in naive)
    naive_s = per_variant * passes

    quant = result.quantization
    quant_passes = sum(1 for f in measured if f.experiment in ("rtn", "w8a8"))
    quant_s = result.timing.phases.get("quantization", 0.0)
    print()
    print(
        f"(a) whole suite             {suite_s:9.1f}s  "
        f"({passes} distinct passes, {len(result.figures)} figures)"
    )
    print(
        f"(b) naive, extrapolated     {naive_s:9.1f}s  ({len(naive)} of {passes} variants run as fresh "
        f"processes, mean {per_variant:.1f}s each, x {passes})"
    )
    print(f"(c) forward floor           {floor_s:9.1f}s  ({passes} x {sweep_s:.2f}s plain sweep)")
    print(f"(b)/(a) = {naive_s / suite_s:.2f}   (target >= 5)")
    print(f"(a)/(c) = {suite_s / floor_s:.3f}  (target <= 1.3)")
    if quant_passes:
        print(
            f"quantization phase: {quant_s:.1f}s for {quant_passes} passes = "
            f"{quant_s / (quant_passes * sweep_s):.3f}x the floor of those passes"
        )
    print(
        f"prefix cache: pruning {uncached_s / cached_s:.2f}x faster with it "
        f"({uncached_s:.1f}s -> {cached_s:.1f}s)"
    )
    if quant is not None:
        print(
            f"in-place quantization: {quant.weight_bytes / 2**20:.0f} MiB of weights, peak extra "
            f"{quant.peak_extra_bytes / 2**20:.1f} MiB = {quant.peak_memory_ratio:.4f}x the weights"
        )
    print(
        f"process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB; "
        f"baseline perplexity {result.baseline_perplexity:.3f}; verdict {result.verdict.verdict}"
    )


if __name__ == "__main__":
    main()
