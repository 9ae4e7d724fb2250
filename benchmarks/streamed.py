"""The layer-streamed engine against the in-memory one: memory, bytes read, wall time; and load time.

Every measurement runs in a child process of its own (a clean peak resident set): the child imports
everything first, then records its resident memory, runs, and reports the growth of its peak
(`ru_maxrss`) over that baseline, divided by the weight bytes.

- detection, both engines: peak growth / weights (target streamed <= 0.35x), bytes read from the
  checkpoint / weights, wall time of the detection, and whether both engines found the same;
- the validation suite, both engines (`--suite`; the streamed one layer-major), on one detection made
  beforehand: peak growth / weights (target streamed <= 0.35x + the variants' hidden states at their
  peak, which it prints), bytes read from the checkpoint by the suite / weights (target <= 1.1x), the
  suite's wall time (target streamed <= 1.15x in-memory), and whether every figure agrees within 1e-4;
  `--allocator` runs the streamed suite on another glibc setting, a diagnostic of what the pinned mmap
  threshold (`indexer/heap.py`) costs in time and saves in memory;
- load time from the dequantized cache against its read floor (reading the same file into one buffer),
  after the imports (a first load in the same child pays them): target <= 3x the floor; and what the
  first touch of the mapped weights costs after it.

    .venv/bin/python benchmarks/streamed.py [MODEL] [--repeats 3] [--suite --max-tokens 512]
        [--parts detection,suite,load] [--allocator pinned|dynamic|trim]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
WIKITEXT = REPO.parent / "shared/data/wikitext-2-raw/wiki.test.raw"


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _warm_imports(spec: str) -> Any:
    """Import every module a load and a detection need, so the baseline holds them."""
    import safetensors.torch  # noqa: F401
    import transformers  # noqa: F401
    from accelerate import init_empty_weights  # noqa: F401
    from transformers import AutoTokenizer  # noqa: F401

    import indexer.model.streaming
    import indexer.validation.validate  # noqa: F401
    from indexer.model.loading import LoadOptions, resolve_model

    return resolve_model(spec, options=LoadOptions(device="cpu", dtype="float32"))


def child_detect(spec: str, engine: str) -> dict[str, Any]:
    """Open and detect with one engine; report peak growth, bytes read and times."""
    from indexer.detection.opened import detect_opened
    from indexer.model.loading import LoadOptions
    from indexer.model.streaming import StreamedModel, open_model

    resolved = _warm_imports(spec)
    before = _rss()
    started = time.perf_counter()
    opened = open_model(spec, options=LoadOptions(device="cpu", dtype="float32"), engine=engine)  # type: ignore[arg-type]
    opened_at = time.perf_counter()
    result = detect_opened(opened)
    finished = time.perf_counter()
    weights = resolved.weight_bytes
    read = opened.model.checkpoint.bytes_read if isinstance(opened.model, StreamedModel) else weights
    return {
        "engine": opened.engine,
        "peak_growth_over_weights": (_peak() - before) / weights,
        "weight_bytes": weights,
        "bytes_read_over_weights": read / weights,
        "open_s": opened_at - started,
        "detect_s": finished - opened_at,
        "passes": result.provenance.forward_passes,
        "coordinates": [list(sw.coordinates) for sw in result.super_weights],
        "profile": [[s.model_dump() for s in p.layers] for p in result.layer_profile],
    }


def child_detection(spec: str, path: str) -> dict[str, Any]:
    """Detect in memory once and write the detection to `path` (the suites then share it)."""
    from indexer.detection.detect import detect
    from indexer.model.loading import LoadOptions, load_model

    detection = detect(load_model(spec, options=LoadOptions(device="cpu", dtype="float32")))
    Path(path).write_text(detection.to_json())
    return {"super_weights": len(detection.super_weights)}


ALLOCATORS = ("pinned", "dynamic", "trim")


def _use_allocator(allocator: str) -> None:
    """Diagnostic only: `dynamic` leaves glibc's mmap threshold dynamic (the streamed engine pins it),
    `trim` does too and trims the heap after each layer's release; `pinned` is the engine as shipped."""
    import indexer.model.streaming
    from indexer.model.heap import trim

    if allocator == "pinned":
        return
    indexer.model.streaming.return_freed_tensors = lambda: False  # type: ignore[assignment]
    if allocator == "trim":
        release = indexer.model.streaming.StreamedModel.release

        def release_and_trim(self: indexer.model.streaming.StreamedModel, index: int) -> None:
            release(self, index)
            trim()

        indexer.model.streaming.StreamedModel.release = release_and_trim  # type: ignore[method-assign]


def child_suite(
    spec: str, engine: str, max_tokens: int, detection_path: str, allocator: str = "pinned"
) -> dict[str, Any]:
    """The whole validation suite with one engine on a given detection; peak growth, bytes read, time."""
    from contracts.results import DetectionResult
    from indexer.model.loading import LoadOptions
    from indexer.model.streaming import StreamedModel, open_model
    from indexer.validation.corpus import load_corpus
    from indexer.validation.validate import ValidateConfig, validate

    resolved = _warm_imports(spec)
    _use_allocator(allocator)
    text = load_corpus(str(WIKITEXT) if WIKITEXT.is_file() else "builtin")
    detection = DetectionResult.from_dict(json.loads(Path(detection_path).read_text()))
    before = _rss()
    opened = open_model(spec, options=LoadOptions(device="cpu", dtype="float32"), engine=engine)  # type: ignore[arg-type]
    streamed = opened.model if isinstance(opened.model, StreamedModel) else None
    read_before = streamed.checkpoint.bytes_read if streamed is not None else 0
    started = time.perf_counter()
    config = ValidateConfig(max_tokens=max_tokens, window=min(512, max_tokens))
    result = validate(opened.model, detection, text, config)
    wall = time.perf_counter() - started
    weights = resolved.weight_bytes
    read = streamed.checkpoint.bytes_read - read_before if streamed is not None else 0
    figures = {str(f.key): f.mean_nll for f in (*result.figures, *result.null_figures)}  # JSON keys
    return {
        "engine": opened.engine,
        "peak_growth_over_weights": (_peak() - before) / weights,
        "hidden_states_over_weights": result.timing.prefix_cache_bytes / weights if streamed else 0.0,
        "bytes_read_over_weights": read / weights,
        "open_read_over_weights": read_before / weights,
        "passes": result.timing.full_passes + result.timing.cached_passes,
        "suite_s": wall,
        "figures": figures,
    }


def child_load(spec: str, repeats: int) -> dict[str, Any]:
    """Load time from the dequantized cache (after a first load pays the imports) and its read floor."""
    import torch

    from indexer.model.loading import LoadOptions, load_model, resolve_model

    options = LoadOptions(device="cpu", dtype="float32")
    first_started = time.perf_counter()
    load_model(spec, options=options)
    first = time.perf_counter() - first_started
    resolved = resolve_model(spec, options=options)
    files = sorted(resolved.folder.glob("*.safetensors"))
    size = sum(f.stat().st_size for f in files)
    buffer = torch.empty(size, dtype=torch.uint8)
    view = memoryview(buffer.numpy())
    from transformers import AutoTokenizer

    from indexer.model.loading import read_safetensors_model

    floors, loads, phases, weights, tokenizers, touches = [], [], [], [], [], []
    for _ in range(repeats):
        started = time.perf_counter()
        read_safetensors_model(resolved.folder, resolved.config, resolved.dtype, resolved.device)
        weights.append(time.perf_counter() - started)
        started = time.perf_counter()
        AutoTokenizer.from_pretrained(resolved.folder)
        tokenizers.append(time.perf_counter() - started)
        started = time.perf_counter()
        offset = 0
        for file in files:
            with file.open("rb", buffering=0) as handle:
                offset += handle.readinto(view[offset:]) or 0
        floors.append(time.perf_counter() - started)
        said: list[tuple[float, str]] = []
        started = time.perf_counter()
        loaded = load_model(
            spec, options=options, progress=lambda m, said=said: said.append((time.perf_counter(), m))
        )
        loads.append(time.perf_counter() - started)
        phases.append([(round(t - started, 3), m) for t, m in said])
        # mapped weights are read when first touched: that cost, as a first sum over every weight
        # against a second one
        sums = []
        for _ in range(2):
            started = time.perf_counter()
            with torch.no_grad():
                sum(float(p.sum()) for p in loaded.model.parameters())
            sums.append(time.perf_counter() - started)
        touches.append(sums[0] - sums[1])
        del loaded
    return {
        "first_load_s": first,
        "floor_s": statistics.median(floors),
        "load_s": statistics.median(loads),
        "weights_s": statistics.median(weights),
        "tokenizer_s": statistics.median(tokenizers),
        "first_touch_s": statistics.median(touches),
        "bytes": size,
        "phases": phases[-1],
    }


def _child(*args: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{out.stderr[-4000:]}")
    data: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return data


def main() -> None:
    """Run the measurements in child processes and print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("model", nargs="?", help="model spec (default: the SmolLM2 demo GGUF)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--suite", action="store_true", help="also measure the suite with both engines")
    parser.add_argument("--max-tokens", type=int, default=512, help="the suite's token budget")
    parser.add_argument(
        "--parts",
        default="detection,suite,load",
        help="which of detection, suite (with --suite), load to run",
    )
    parser.add_argument(
        "--allocator",
        choices=ALLOCATORS,
        default="pinned",
        help="glibc setting of the streamed suite (a diagnostic; pinned: the engine as shipped)",
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, spec, *rest = args.child
        if kind == "detect":
            report = child_detect(spec, rest[0])
        elif kind == "detection":
            report = child_detection(spec, rest[0])
        elif kind == "suite":
            report = child_suite(spec, rest[0], int(rest[1]), rest[2], rest[3])
        else:
            report = child_load(spec, int(rest[0]))
        print(json.dumps(report))
        return

    from indexer.model.demo_model import fetch_demo_model

    spec = args.model or str(fetch_demo_model(quiet=True))
    print(f"model: {spec}")
    parts = {part.strip() for part in args.parts.split(",")}
    if "detection" in parts:
        _detection(spec, args.repeats)
    if args.suite and "suite" in parts:
        _suite(spec, args.repeats, args.max_tokens, args.allocator)
    if "load" in parts:
        _load(spec, args.repeats)


def _detection(spec: str, repeats: int) -> None:
    runs: dict[str, list[dict[str, Any]]] = {"memory": [], "streamed": []}
    for _ in range(repeats):
        for engine in ("memory", "streamed"):  # alternate: the machine's drift hits both alike
            runs[engine].append(_child("detect", spec, engine))
    weights = runs["memory"][0]["weight_bytes"]
    print(f"weights: {weights / 2**20:.0f} MiB (float32)")
    print(f"detection (medians of {repeats} child processes each)")
    print("| engine | peak RSS growth / weights | bytes read / weights | open s | detect s | passes |")
    print("| --- | --- | --- | --- | --- | --- |")
    for engine, reports in runs.items():
        assert all(r["engine"] == engine for r in reports), f"{engine} fell back: {reports[0]['engine']}"

        def med(key: str, reports: list[dict[str, Any]] = reports) -> float:
            return statistics.median(r[key] for r in reports)

        print(
            f"| {engine} | {med('peak_growth_over_weights'):.3f}x | {med('bytes_read_over_weights'):.2f}x "
            f"| {med('open_s'):.2f} | {med('detect_s'):.2f} | {reports[0]['passes']} |"
        )
    same = all(
        s["coordinates"] == m["coordinates"] and s["profile"] == m["profile"]
        for s, m in zip(runs["streamed"], runs["memory"], strict=True)
    )
    streamed_peak = statistics.median(r["peak_growth_over_weights"] for r in runs["streamed"])
    print(f"same coordinates and per-layer statistics: {same}")
    print(
        f"streamed detection peak / weights: {streamed_peak:.3f}x (target <= 0.35x: "
        f"{'met' if streamed_peak <= 0.35 else 'MISSED'})"
    )
    ratio = statistics.median(r["detect_s"] for r in runs["streamed"]) / statistics.median(
        r["detect_s"] for r in runs["memory"]
    )
    print(f"streamed / in-memory detection wall time: {ratio:.2f}")


def _suite(spec: str, repeats: int, max_tokens: int, allocator: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "detection.json")
        found = _child("detection", spec, path)["super_weights"]
        runs: dict[str, list[dict[str, Any]]] = {"memory": [], "streamed": []}
        for _ in range(repeats):
            for engine in ("memory", "streamed"):  # alternate: the machine's drift hits both alike
                setting = allocator if engine == "streamed" else "pinned"  # the in-memory engine pins nothing
                runs[engine].append(_child("suite", spec, engine, str(max_tokens), path, setting))
    window = min(512, max_tokens)
    shape = f"{max_tokens} tokens in {window}-token windows, {found} super weight(s)"
    print(f"suite ({shape}; medians of {repeats}; streamed allocator: {allocator})")
    print("| engine | peak RSS growth / weights | hidden states / weights | bytes read / weights | suite s |")
    print("| --- | --- | --- | --- | --- |")
    medians: dict[str, dict[str, float]] = {}
    for engine, reports in runs.items():
        assert all(r["engine"] == engine for r in reports), f"{engine} fell back: {reports[0]['engine']}"
        keys = (
            "peak_growth_over_weights",
            "hidden_states_over_weights",
            "bytes_read_over_weights",
            "suite_s",
        )
        medians[engine] = {key: statistics.median(r[key] for r in reports) for key in keys}
        m = medians[engine]
        read = f"{m['bytes_read_over_weights']:.2f}x" if engine == "streamed" else "1.00x (one load)"
        print(
            f"| {engine} | {m['peak_growth_over_weights']:.3f}x | {m['hidden_states_over_weights']:.3f}x "
            f"| {read} | {m['suite_s']:.1f} |"
        )
    worst = max(
        abs(s["figures"][key] - value) / abs(value)
        for s, m in zip(runs["streamed"], runs["memory"], strict=True)
        for key, value in m["figures"].items()
    )
    same_keys = all(
        s["figures"].keys() == m["figures"].keys()
        for s, m in zip(runs["streamed"], runs["memory"], strict=True)
    )
    print(
        f"same figures: {same_keys}; largest relative difference of a mean NLL: {worst:.2e} (target <= 1e-4)"
    )
    streamed, memory = medians["streamed"], medians["memory"]
    target = 0.35 + streamed["hidden_states_over_weights"]
    print(
        f"streamed suite peak / weights: {streamed['peak_growth_over_weights']:.3f}x (target <= 0.35x + the "
        f"hidden states' {streamed['hidden_states_over_weights']:.3f}x = {target:.3f}x: "
        f"{'met' if streamed['peak_growth_over_weights'] <= target else 'MISSED'}); the in-memory "
        f"passes walk the weights {runs['memory'][0]['passes']} times"
    )
    print(
        f"streamed suite bytes read / weights: {streamed['bytes_read_over_weights']:.2f}x (target <= 1.1x: "
        f"{'met' if streamed['bytes_read_over_weights'] <= 1.1 else 'MISSED'}); opening it read "
        f"{runs['streamed'][0]['open_read_over_weights']:.2f}x (the resident part)"
    )
    ratio = streamed["suite_s"] / memory["suite_s"]
    verdict = "met" if ratio <= 1.15 else "MISSED"
    print(f"streamed / in-memory suite wall time: {ratio:.2f} (target <= 1.15: {verdict})")


def _load(spec: str, repeats: int) -> None:
    load = _child("load", spec, str(repeats))
    print(
        f"load from the dequantized cache: {load['load_s']:.2f} s (median of {repeats}; first load in a "
        f"fresh process, imports included: {load['first_load_s']:.2f} s); read floor of the "
        f"{load['bytes'] / 2**20:.0f} MiB: {load['floor_s']:.2f} s; load / floor = "
        f"{load['load_s'] / load['floor_s']:.2f} (target <= 3)"
    )
    print(
        f"of which the weights alone (skeleton + mapping, or reads): {load['weights_s']:.2f} s = "
        f"{load['weights_s'] / load['floor_s']:.2f}x the floor; the tokenizer alone (read alongside the "
        f"weights): {load['tokenizer_s']:.2f} s"
    )
    print(
        f"first touch of every weight after the load (the mapped pages read in; a first sum over the "
        f"weights less a second): {load['first_touch_s']:.2f} s; load + first touch = "
        f"{(load['load_s'] + load['first_touch_s']) / load['floor_s']:.2f}x the floor"
    )
    print(f"load phases (s from start, last run): {load['phases']}")


if __name__ == "__main__":
    main()
