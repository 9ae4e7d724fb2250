"""Operation-level figures behind the validation suite's speed-ups, each against its baseline.

1. per-row min/max of a SmolLM2-sized weight in groups of 128: `torch.aminmax` vs `amin` + `amax`;
2. RTN (4-bit, g128) of every linear weight of SmolLM2 on a copy: one intra-op thread vs all of them;
3. the same RTN of one 45M-element tensor (a 7B model's MLP weight): one thread vs all;
4. the loss of a batch of logits (2 x 512 tokens x SmolLM2's vocabulary): last position sliced off vs ignored;
5. inputs quantized in one W8A8 pass over SmolLM2: one per linear layer vs one per distinct input tensor.

Medians of several repeats, in one process.

    .venv/bin/python benchmarks/quantize_ops.py
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import indexer.validation.quantize as quantize
from indexer.model.demo_model import fetch_demo_model
from indexer.model.loading import LoadOptions, load_model
from indexer.validation.quantize import Granularity, linear_targets, rtn_quantize_


def median_ms(work: Callable[[], object], repeats: int) -> float:
    """Median wall time of `work` in milliseconds."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return 1e3 * statistics.median(times)


def on_threads(threads: int, work: Callable[[], object], repeats: int) -> float:
    """`median_ms` with torch's intra-op threads set to `threads`, restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return median_ms(work, repeats)
    finally:
        torch.set_num_threads(before)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    repeats = args.repeats
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads, medians of {repeats}")

    weight = torch.randn(1536, 576).view(-1, 128)  # (groups, 128)
    fused = on_threads(1, lambda: torch.aminmax(weight, dim=1), repeats)
    split = on_threads(1, lambda: (weight.amin(dim=1), weight.amax(dim=1)), repeats)
    print(f"1. min/max per group: aminmax {fused:.2f} ms, amin + amax {split:.2f} ms ({fused / split:.1f}x)")

    loaded = load_model(str(fetch_demo_model(quiet=True)), options=LoadOptions(device="cpu", dtype="float32"))
    targets = linear_targets(loaded.model)
    copies = [t.weight.detach().clone() for t in targets]

    def quantize_all() -> None:
        for target, copy in zip(targets, copies, strict=True):
            copy.copy_(target.weight)
            rtn_quantize_(copy, 4, Granularity(group_size=128))

    one = on_threads(1, quantize_all, repeats)
    every = on_threads(threads, quantize_all, repeats)
    print(
        f"2. RTN of SmolLM2's {len(targets)} linear weights: 1 thread {one:.0f} ms, {threads} threads "
        f"{every:.0f} ms ({one / every:.2f}x)"
    )

    large = torch.randn(45_000_000 // 4096, 4096)
    work = large.clone()

    def quantize_large() -> None:
        work.copy_(large)
        rtn_quantize_(work, 4, Granularity(group_size=128))

    one = on_threads(1, quantize_large, max(3, repeats // 3))
    every = on_threads(threads, quantize_large, max(3, repeats // 3))
    print(
        f"3. RTN of a {large.numel() / 1e6:.0f}M-element tensor: 1 thread {one:.0f} ms, {threads} threads "
        f"{every:.0f} ms ({one / every:.2f}x)"
    )

    vocab = loaded.model.get_output_embeddings().weight.shape[0]
    logits = torch.randn(2, 512, vocab)
    ids = torch.randint(0, vocab, (2, 512))
    shifted = torch.full_like(ids, -100)
    shifted[:, :-1] = ids[:, 1:]
    sliced = median_ms(
        lambda: F.cross_entropy(logits[:, :-1].reshape(-1, vocab), ids[:, 1:].reshape(-1), reduction="sum"),
        repeats,
    )
    ignored = median_ms(
        lambda: F.cross_entropy(logits.view(-1, vocab), shifted.view(-1), ignore_index=-100, reduction="sum"),
        repeats,
    )
    print(
        f"4. loss of 2 x 512 logits: sliced {sliced:.0f} ms, ignored {ignored:.0f} ms "
        f"({sliced / ignored:.2f}x)"
    )

    calls = 0
    original = quantize._quantize_input

    def counted(*arguments: object) -> torch.Tensor:
        nonlocal calls
        calls += 1
        return original(*arguments)  # type: ignore[arg-type]

    quantize._quantize_input = counted  # type: ignore[assignment]
    try:
        ids = torch.randint(0, vocab, (1, 64))
        with torch.inference_mode(), quantize.fake_quantized_activations(loaded.model, targets, 8):
            loaded.model(input_ids=ids, use_cache=False)
    finally:
        quantize._quantize_input = original  # type: ignore[assignment]
    print(f"5. W8A8 inputs quantized in one pass: {calls} for {len(targets)} linear layers")


if __name__ == "__main__":
    main()
