"""Detection cost on SmolLM2: hooks and iteration should cost little more than the forward passes.

Prints model load time, detection time, forward passes, the ratio of detection time to
(forward passes x one plain forward pass measured in the same run) (target <= 1.5), and peak
memory over the weights (target <= 1.2x). Medians over repeats; machines are noisy.

    .venv/bin/python benchmarks/detect.py [MODEL] [--repeats 7] [--device auto]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexer.detection.detect import DetectConfig, Detector, detect
from indexer.model.demo_model import fetch_demo_model
from indexer.model.loading import LoadOptions, load_model


class PeakRss:
    """Samples this process's resident memory in a background thread."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._process = psutil.Process()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakRss:
        self.peak = self._process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="model spec (default: the SmolLM2 demo GGUF)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    spec = args.model or str(fetch_demo_model(quiet=True))
    torch.set_num_threads(max(1, torch.get_num_threads()))

    # import the modelling code first: library code is not model memory
    import transformers  # noqa: F401
    from transformers.models.llama import modeling_llama  # noqa: F401

    rss_before_load = psutil.Process().memory_info().rss
    started = time.perf_counter()
    loaded = load_model(spec, options=LoadOptions(device=args.device))
    load_s = time.perf_counter() - started
    weight_bytes = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
    cuda = loaded.device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    plain = Detector(loaded.model, loaded.tokenizer, loaded.adapter, DetectConfig())
    ids = plain.input_ids.to(loaded.device)
    with torch.inference_mode():
        loaded.model(input_ids=ids, use_cache=False)  # warm-up
    forward_times = []
    for _ in range(args.repeats * 3):
        sync()
        t0 = time.perf_counter()
        with torch.inference_mode():
            loaded.model(input_ids=ids, use_cache=False)
        sync()
        forward_times.append(time.perf_counter() - t0)
    forward_s = statistics.median(forward_times)

    rss_after_load = psutil.Process().memory_info().rss
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    detect_times, passes = [], 0
    with PeakRss() as rss:
        for _ in range(args.repeats):
            sync()
            t0 = time.perf_counter()
            result = detect(loaded)
            sync()
            detect_times.append(time.perf_counter() - t0)
            passes = result.provenance.forward_passes
    detect_s = statistics.median(detect_times)
    if cuda:
        peak_ratio = torch.cuda.max_memory_allocated() / weight_bytes
        memory_line = f"peak GPU memory / weights: {peak_ratio:.3f}"
    else:
        resident = (rss_after_load - rss_before_load) / weight_bytes
        peak_ratio = (rss.peak - rss_before_load) / weight_bytes
        memory_line = (
            f"RSS growth after load / weights: {resident:.3f}; peak RSS growth during detection / weights: "
            f"{peak_ratio:.3f} (detection itself adds {(rss.peak - rss_after_load) / weight_bytes:.3f})"
        )

    print(
        f"model: {loaded.model_id} ({loaded.parameter_count / 1e6:.0f}M params, "
        f"{loaded.dtype}, {loaded.device})"
    )
    print(f"load time: {load_s:.2f} s")
    print(f"super weights: {[sw.coordinates for sw in result.super_weights]}")
    print(f"one plain forward pass (median of {len(forward_times)}): {forward_s * 1000:.1f} ms")
    print(f"detection (median of {len(detect_times)}): {detect_s * 1000:.1f} ms, {passes} forward passes")
    print(
        f"ratio detection / (passes x plain forward): {detect_s / (passes * forward_s):.3f}  (target <= 1.5)"
    )
    print(f"{memory_line}  (target <= 1.2)")


if __name__ == "__main__":
    main()
