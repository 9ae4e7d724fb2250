"""Benchmark of `indexer.validation.validate` on SmolLM2-135M: the suite against a naive baseline and the
forward floor.

One invocation, one token budget:

(a) the whole suite (every experiment, the default RTN grid), in-process, the model loaded once;
(b) the naive baseline of the reference scripts: a fresh process per variant that loads the model and
    evaluates once. A sample of variants spread over the experiment kinds runs (the baseline, a pruning
    variant, RTN held out, RTN clipped, W8A8); each of the suite's distinct passes is costed as the mean
    fresh process of its kind, and the output says that (b) is extrapolated;
(c) the floor: the forward passes the suite needs, timed in-process on the same windows and batches with
    no edits and no hooks: each distinct pass of the suite run again as an unmodified pass from the same
    start (a full pass, or one from the same cached layer input as the suite's pass).

(a) and (c) alternate for `--rounds` rounds (a pass's time drifts by 20-30% over minutes on a shared
machine); the medians are reported, and (a)/(c) is the median of the rounds' own ratios. (b) counts the
suite's distinct passes, not its figures: a figure that reuses an identical pass (scaling by 0 = joint
zeroing, 1,048,576-element blocks that hold every weight whole = per tensor) is not charged to the naive
baseline either, so sharing passes does not flatter the ratio.

Every part runs on the same number of intra-op threads (`--threads`, default torch's own), the naive
children included.

Also measured: what the prefix cache buys (the pruning experiments with and without it;
`--skip-prefix-comparison` leaves it out) and the memory the per-layer quantization holds. The output says
how many passes the calibrated null and leave-one-out added, how many came from the prefix cache and how
many windows each forward pass batched. Targets: (b)/(a) >= 5 and (a)/(c) <= 1.3.

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

from contracts.validation import FigureKey
from indexer.detection.detect import detect
from indexer.model.ablation import zeroed_weights
from indexer.model.demo_model import fetch_demo_model
from indexer.model.loading import LoadedModel, LoadOptions, load_model
from indexer.validation.corpus import TokenWindows, file_corpus, token_windows
from indexer.validation.perplexity import PerplexityEvaluator
from indexer.validation.quantize import (
    Granularity,
    fake_quantized_activations,
    fake_quantized_weights,
    linear_targets,
    parse_granularity,
    rtn_quantize_,
    rtn_weight_quantizer,
)
from indexer.validation.validate import ValidateConfig, validate

REPO = Path(__file__).resolve().parents[1]

SUPER_WEIGHT = (11, 507, 1229)  # SmolLM2-135M's, as the detector finds it
NAIVE_VARIANTS = (
    FigureKey.baseline(),
    FigureKey.joint(),
    FigureKey.rtn(4, "g128", "holdout"),
    FigureKey.rtn(3, "tensor", "clipped"),
    FigureKey.w8a8("naive"),
)
PRUNING = ("joint", "alone", "restore_sa", "controls", "null", "leave_one_out", "stopwords", "scaling")


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
    variant = FigureKey.parse(args.child)
    if variant == FigureKey.baseline():
        result = evaluator.run()
    elif variant == FigureKey.joint():
        with zeroed_weights(loaded.model, loaded.adapter, [SUPER_WEIGHT]):
            result = evaluator.run()
    elif variant.experiment == "rtn" and variant.bits is not None and variant.granularity is not None:
        bits, granularity, kind = variant.bits, variant.granularity, variant.variant
        name = loaded.adapter.down_proj_name(loaded.model, SUPER_WEIGHT[0])
        coordinates = {name: [SUPER_WEIGHT[1:]]}
        if kind == "holdout":
            options: dict[str, Any] = {"hold_out": coordinates}
        elif kind == "clipped":
            options = {"restore": coordinates, "clip": ValidateConfig().clip}
        else:
            options = {}
        quantizer = rtn_weight_quantizer(bits, parse_granularity(granularity), **options)
        with fake_quantized_weights(loaded.model, linear_targets(loaded.model), quantizer):
            result = evaluator.run()
    elif variant == FigureKey.w8a8("naive"):
        targets = linear_targets(loaded.model)

        def per_channel(target: Any, weight: torch.Tensor) -> None:
            rtn_quantize_(weight, 8, Granularity(group_size=target.in_features), layout=target.layout)

        with (
            fake_quantized_weights(loaded.model, targets, per_channel),
            fake_quantized_activations(loaded.model, targets, 8),
        ):
            result = evaluator.run()
    else:
        raise SystemExit(f"unknown variant {variant}")
    print(json.dumps({"perplexity": result.perplexity, "load_s": loaded_s, "eval_s": result.seconds}))


def times(ratio: float | None) -> str:
    """A ratio as `5.84x` (`overflow` for None)."""
    return "overflow" if ratio is None else f"{ratio:.2f}x"


def kind_of(experiment_or_variant: str) -> str:
    """The cost class of a pass: baseline, pruning (any edit of super weights or controls), rtn, w8a8."""
    head = FigureKey.parse(experiment_or_variant).experiment
    if head in ("baseline", "rtn", "w8a8"):
        return head
    return "pruning"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", default=str(REPO.parent / "shared/data/wikitext-2-raw/wiki.test.raw"))
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3, help="(a)-then-(c) rounds; medians are reported")
    parser.add_argument(
        "--naive", default=",".join(map(str, NAIVE_VARIANTS)), help="variants run as fresh processes"
    )
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's)")
    parser.add_argument(
        "--skip-prefix-comparison",
        action="store_true",
        help="do not time the pruning experiments without the prefix cache (two extra suites of them)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
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

    # (a) and (c) alternate, round after round: a pass's time drifts by 20-30% over minutes on a shared
    # machine, so each round's floor is timed right after its suite and the ratio is taken per round
    config = ValidateConfig(window=args.window, max_tokens=args.max_tokens, batch_size=args.batch_size)
    floor: PerplexityEvaluator | None = None
    rounds: list[tuple[float, float]] = []
    for round_index in range(1, args.rounds + 1):
        started = time.perf_counter()
        result = validate(
            loaded,
            detection,
            windows,
            config,
            progress=lambda e: print(f"  [{e.phase} {e.completed}/{e.total}] {e.label}", flush=True),
        )
        suite_s = time.perf_counter() - started
        measured = [f for f in (*result.figures, *result.null_figures) if f.reused_from is None]
        if floor is None:
            floor = PerplexityEvaluator(loaded, windows, result.batch_size)
            # the baseline's input of every layer a suite pass started from (the held-out quantization
            # passes start from the plain pass's input: from the same layer, the same work)
            floor.want_prefix({f.prefix_layer for f in measured if f.prefix_layer is not None})
            floor.run()  # records those layer inputs of the baseline (not timed)
        # (c) the floor: each distinct pass of the suite, in its order, as an unmodified pass from its start
        floor_s = sum(floor.run(f.prefix_layer or 0).seconds for f in measured)
        rounds.append((suite_s, floor_s))
        print(
            f"round {round_index}: (a) suite {suite_s:.1f}s ({len(result.figures)} figures, "
            f"{len(measured)} passes: {result.timing.full_passes} full, {result.timing.cached_passes} from "
            f"the prefix cache); (c) floor {floor_s:.1f}s; (a)/(c) {suite_s / floor_s:.3f}",
            flush=True,
        )
    suite_s = statistics.median(a for a, _ in rounds)
    floor_s = statistics.median(c for _, c in rounds)
    ratio_ac = statistics.median(a / c for a, c in rounds)
    passes = len(measured)

    # what the prefix cache buys: the pruning experiments with and without it
    cached_s = uncached_s = None
    if not args.skip_prefix_comparison:
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
            f"({uncached_s / cached_s:.2f}x; cache {with_cache.timing.prefix_cache_bytes / 2**20:.1f} MiB "
            f"at layer(s) {with_cache.timing.prefix_layers})",
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
            "--threads",
            str(torch.get_num_threads()),
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
    per_kind = {
        kind: statistics.mean(n["wall_s"] for n in naive if kind_of(n["variant"]) == kind)
        for kind in {kind_of(n["variant"]) for n in naive}
    }
    naive_s = sum(per_kind.get(kind_of(f.experiment), per_variant) for f in measured)
    naive_all_s = sum(per_kind.get(kind_of(f.experiment), per_variant) for f in result.figures)

    quant = result.quantization
    quant_passes = sum(1 for f in measured if f.experiment in ("rtn", "w8a8"))
    quant_s = result.timing.phases.get("quantization", 0.0)
    print()
    print(
        f"(a) whole suite             {suite_s:9.1f}s  "
        f"({passes} distinct passes, {len(result.figures)} figures)"
    )
    added = {
        name: [f for f in measured if f.experiment == name] for name in ("null", "leave_one_out")
    }  # the passes the calibrated null and leave-one-out added to the suite
    null = result.verdict.null
    quantiles = ", ".join(
        f"q{q} {r:.3f}x" for q, r in (null.quantiles.items() if null else ()) if r is not None
    )
    windows_per_batch = f"{result.batch_size} of {result.corpus.windows} windows a forward pass"
    for name, label in (("null", "the calibrated null"), ("leave_one_out", "leave-one-out")):
        figures = added[name]
        cached = sum(1 for f in figures if f.prefix_layer is not None)
        starts = sorted({f.prefix_layer for f in figures if f.prefix_layer is not None})
        print(
            f"passes added by {label}: {len(figures)} of {passes} ({cached} from the prefix cache at "
            f"layer(s) {starts or '-'}; batched {windows_per_batch}), "
            f"{sum(f.seconds for f in figures):.1f}s of the last round's suite"
        )
    joint = result.figure(FigureKey.joint())
    print(
        f"null: {null.sets if null else 0} sets, {quantiles}, max {times(null.max_ratio if null else None)}, "
        f"p = {null.p_value if null else float('nan'):.3f}; joint {times(joint.ratio)}, interval "
        f"{times(joint.ratio_low)}-{times(joint.ratio_high)}; verdict {result.verdict.verdict}"
    )
    kinds = ", ".join(f"{kind} {seconds:.1f}s" for kind, seconds in sorted(per_kind.items()))
    print(
        f"(b) naive, extrapolated     {naive_s:9.1f}s  ({len(naive)} of {passes} variants run as fresh "
        f"processes; each pass costed by its kind's mean: {kinds})"
    )
    print(f"(c) forward floor           {floor_s:9.1f}s  ({passes} unmodified passes from the same starts)")
    print(
        f"(b)/(a) = {naive_s / suite_s:.2f}   (target >= 5; (a) the median of {len(rounds)} rounds: "
        + ", ".join(f"{a:.1f}s" for a, _ in rounds)
        + ")"
    )
    print(
        f"(a)/(c) = {ratio_ac:.3f}  (target <= 1.3; the median of the rounds' ratios: "
        + ", ".join(f"{a / c:.3f}" for a, c in rounds)
        + ")"
    )
    print(
        f"(b) charging every figure as the reference scripts would ({len(result.figures)} processes): "
        f"{naive_all_s:.1f}s, (b)/(a) = {naive_all_s / suite_s:.2f} (information only)"
    )
    if quant_passes:
        print(f"quantization phase of the last round: {quant_s:.1f}s for {quant_passes} passes")
    if cached_s is not None and uncached_s is not None:
        print(
            f"prefix cache: pruning {uncached_s / cached_s:.2f}x faster with it "
            f"({uncached_s:.1f}s -> {cached_s:.1f}s)"
        )
    if quant is not None:
        print(
            f"per-layer quantization: {quant.weight_bytes / 2**20:.0f} MiB of weights, peak extra "
            f"{quant.peak_extra_bytes / 2**20:.1f} MiB = {quant.peak_memory_ratio:.4f}x the weights"
        )
    print(
        f"process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB; "
        f"baseline perplexity {result.baseline_perplexity:.3f}; verdict {result.verdict.verdict}"
    )


if __name__ == "__main__":
    main()
