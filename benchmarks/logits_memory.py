"""Peak memory of a perplexity pass with whole logits per batch against logits computed in chunks.

A large vocabulary makes the logits the biggest tensor of an evaluation: Gemma 3's 262,144 tokens give
2 GiB of float32 logits for one 2,048-token window, plus their log-softmax. `PerplexityEvaluator` computes
the loss from the head's input a chunk of positions at a time (`chunked_logits`, the default); this script
measures what that saves. Each mode runs in a fresh process (peak resident memory is per process) on a
random two-layer Llama with that vocabulary and tiny layers, so the logits dominate; the figure printed is
the peak growth over the loaded model, and the ratio of the two.

    .venv/bin/python benchmarks/logits_memory.py
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

VOCAB = 262_144  # Gemma 3's


def child(mode: str, window: int, windows: int, vocab: int) -> None:
    """Load the random model, evaluate once in `mode`, print peak growth and the figure as JSON."""
    import torch
    import transformers as tf

    from contracts.validation import CorpusWindows
    from indexer.model.loading import wrap_model
    from indexer.validation.corpus import TokenWindows
    from indexer.validation.perplexity import PerplexityEvaluator

    torch.manual_seed(0)
    config = tf.LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=window,
    )
    loaded = wrap_model(tf.LlamaForCausalLM(config), name="random-large-vocab")
    ids = torch.randint(0, vocab, (windows, window), generator=torch.Generator().manual_seed(1))
    identity = CorpusWindows(
        name="random",
        sha256="0" * 64,
        tokens=ids.numel(),
        window=window,
        characters=0,
        windows=windows,
        tokenizer=f"random/{vocab}",
    )
    evaluator = PerplexityEvaluator(
        loaded, TokenWindows(ids, identity), batch_size=1, chunked_logits=mode == "chunked"
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    result = evaluator.run()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "mode": mode,
                "chunked": evaluator.chunked_logits,
                "chunk_tokens": evaluator.chunk_tokens,
                "growth_mib": (peak - before) / 1024,
                "seconds": seconds,
                "mean_nll": result.mean_nll,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--window", type=int, default=2048)
    parser.add_argument("--windows", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=VOCAB)
    parser.add_argument("--child", choices=("whole", "chunked"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.window, args.windows, args.vocab)
        return
    results = {}
    for mode in ("whole", "chunked"):
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            mode,
            "--window",
            str(args.window),
            "--windows",
            str(args.windows),
            "--vocab",
            str(args.vocab),
        ]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        r = results[mode]
        print(
            f"{mode:8s} peak growth {r['growth_mib']:8.0f} MiB, pass {r['seconds']:.2f}s, "
            f"mean NLL {r['mean_nll']:.6f} (chunks of {r['chunk_tokens']} positions: {r['chunked']})"
        )
    whole, chunked = results["whole"], results["chunked"]
    print(
        f"vocabulary {args.vocab:,}, {args.windows} x {args.window}-token windows, one window a batch: "
        f"chunked / whole peak growth = {chunked['growth_mib'] / whole['growth_mib']:.3f}; "
        f"same loss to {abs(chunked['mean_nll'] - whole['mean_nll']):.1e} nats"
    )


if __name__ == "__main__":
    main()
