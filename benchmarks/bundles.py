"""Perplexity of SmolLM2 quantized by the real tools, with and without its bundle (tool x setting).

    .venv/bin/python benchmarks/bundles.py [--tools llm-compressor,torchao,...] [--tokens 4096]

Every tool runs twice without the bundle (seeds 0 and 1: calibration samples differ where a tool
calibrates) so the table shows the run noise next to the bundle's effect; the with-bundle runs use
seed 0 and keep the super-weight modules at 8 bits (int8) or unquantized (full). `swi check` states
whether each artifact kept the super weight. Medians are not needed: every row is a single run; the
noise is measured two ways: the seed spread (0 for a deterministic tool, which says nothing of the
evaluation) and the paired bootstrap 95% interval of each run's perplexity over the without run's, its
windows resampled (the evaluation's own noise: an interval holding 1 is no change the windows can tell).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexer.validation.perplexity import bootstrap_resamples, paired_ratio_interval
from tests.tools import harness

#: the paired bootstrap of the with/without ratio: resamples of the windows, and the interval's level
BOOTSTRAP_SAMPLES = 2000
LEVEL = 0.95

#: the tools whose result depends on the seed (GPTQModel calibrates on seed-chosen samples; the others
#: here are round-to-nearest: llm-compressor without a dataset, torchao, AutoRound with --iters 0)
CALIBRATING = ("gptqmodel",)


def _digest(artifact: Path) -> str:
    """The SHA-256 of an artifact's tensors (file or folder; configs and tokenizers left out)."""
    files = [artifact] if artifact.is_file() else sorted(artifact.rglob("*"))
    digest = hashlib.sha256()
    for path in files:
        if path.suffix in (".safetensors", ".pt", ".gguf"):
            digest.update(path.name.encode() + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tools", default=",".join((*harness.PYTHON_TOOLS, "llama.cpp")))
    parser.add_argument("--tokens", type=int, default=harness.TOKENS)
    args = parser.parse_args()
    harness.TOKENS = args.tokens
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        gguf_file, folder, bundle = harness.smollm2(work)
        base = harness.run_python_tool("baseline", folder, work / "baseline", None)["perplexity"]
        print(
            f"SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to float32): perplexity {base:.2f} "
            f"on {args.tokens} WikiText-2 tokens (windows of 512)"
        )
        for tool in args.tools.split(","):
            settings = [("Q4_K_M", False), ("Q2_K", True)] if tool == "llama.cpp" else [("W4A16 g64", False)]
            for setting, pure in settings:
                runs: dict[str, tuple[float, dict[str, Any], str, list[float]]] = {}
                for label, keep, seed in (
                    ("without", None, 0),
                    ("without/seed1", None, 1),
                    ("with int8", "int8", 0),
                    ("with full", "full", 0),
                ):
                    out = work / f"{tool}-{setting}-{label}".replace(" ", "_").replace("/", "_")
                    if tool == "llama.cpp":
                        if seed == 1:
                            continue  # llama-quantize is deterministic: a rerun is bit-identical
                        zipped = harness.render(bundle, tool, work, keep=keep) if keep else None
                        mix = setting.split()[0]
                        result = harness.run_llama_quantize(
                            gguf_file, out, mix, zipped, pure, tokenizer=folder
                        )
                    elif seed == 1 and tool not in CALIBRATING:
                        # the seed only picks calibration samples, which this tool does not take: quantize
                        # again and evaluate only if the artifact is not bit-identical to seed 0's
                        result = harness.run_python_tool(tool, folder, out, None, seed=seed, tokens=0)
                        first = runs["without"]
                        if _digest(Path(result["artifact"])) == first[2]:
                            result["perplexity"], result["window_nll"] = first[0], first[3]
                        else:
                            result = harness.run_python_tool(tool, folder, out, None, seed=seed)
                    else:
                        rendered = harness.render(bundle, tool, work, keep=keep) if keep else None
                        result = harness.run_python_tool(tool, folder, out, rendered, seed=seed)
                    check = harness.swi_check(Path(result["artifact"]), bundle, tool)
                    digest = _digest(Path(result["artifact"]))
                    runs[label] = (result["perplexity"], check, digest, result["window_nll"])
                    progress = f"  {tool} {setting} {label}: {result['perplexity']:.3f}"
                    print(progress, file=sys.stderr, flush=True)
                noise = abs(runs["without"][0] - runs["without/seed1"][0]) if "without/seed1" in runs else 0.0
                rows.append((tool, setting + (" --pure" if pure else ""), runs, noise))
                if tool == "llama.cpp":
                    notes.append(f"{tool}: deterministic, noise 0 (a rerun writes the same file)")
                elif tool in CALIBRATING:
                    notes.append(f"{tool}: noise = |seed 0 - seed 1| (other calibration samples)")
                else:
                    same = runs["without"][2] == runs["without/seed1"][2]
                    rerun = "bit-identical" if same else "differs"
                    notes.append(f"{tool}: a rerun is {rerun}, noise = |run 1 - run 2|")
    header = f"{'tool':<15} {'setting':<14} {'run':<14} {'ppl':>9} {'vs without':>11} {'95% interval':>15}"
    print(f"{header} {'noise':>7}  swi check")
    for tool, setting, runs, noise in rows:
        reference, _, _, reference_nll = runs["without"]
        resamples = bootstrap_resamples(len(reference_nll), BOOTSTRAP_SAMPLES, seed=0)
        for label, (ppl, check, _, window_nll) in runs.items():
            weight = check["weights"][0]
            verdict = (
                f"{'pass' if check['passed'] else 'FAIL'} {weight['storage']} {weight['dequantized']:.6g}"
            )
            low, high = paired_ratio_interval(window_nll, reference_nll, resamples, LEVEL)
            interval = "-" if label == "without" else f"{low or float('inf'):.4f}-{high or float('inf'):.4f}"
            print(
                f"{tool:<15} {setting:<14} {label:<14} {ppl:>9.2f} {ppl / reference:>10.3f}x "
                f"{interval:>15} {noise:>7.3f}  {verdict}"
            )

    for note in dict.fromkeys(notes):  # one per tool
        print(note)


if __name__ == "__main__":
    main()
