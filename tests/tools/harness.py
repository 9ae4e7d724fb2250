"""The `tools` tier's harness: the real quantizers on SmolLM2, with and without its bundle, then `swi check`.

Shared by `tests/tools/test_tools.py` and `benchmarks/bundles.py`. The tools run in their own venv
(`scripts/tools_venv.sh`); the project's venv only renders bundles and checks artifacts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RUN_TOOL = ROOT / "tests" / "tools" / "run_tool.py"
#: the evaluation budget of every perplexity in the table: 8 windows of 512 WikiText-2 tokens
TOKENS = 4096
PYTHON_TOOLS = ("llm-compressor", "torchao", "gptqmodel", "autoround")
#: the bundle format of each tool, and its file suffix
SUFFIX = {
    "llm-compressor": "llm-compressor.yaml",
    "torchao": "torchao.py",
    "gptqmodel": "gptqmodel.json",
    "autoround": "autoround.sh",
    "llama.cpp": "llama-cpp.zip",
}


@cache
def _tools_venv(part: str) -> list[str]:
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "tools_venv.sh"), part], capture_output=True, text=True, check=True
    )
    return done.stdout.split()


class _Lazy:
    """The tools, made on first use: the venv alone for the Python tools, llama-quantize when needed."""

    @property
    def python(self) -> Path:
        return Path(_tools_venv("venv")[0])

    @property
    def quantize(self) -> Path:
        return Path(_tools_venv("all")[1])


def tools() -> _Lazy:
    """The tools venv's python and llama-quantize (cached by `scripts/tools_venv.sh`; `SWI_TOOLS_DIR`)."""
    return _Lazy()


def wikitext() -> Path:
    """The WikiText-2 test split (`SWI_WIKITEXT` overrides)."""
    configured = os.environ.get("SWI_WIKITEXT")
    return Path(configured) if configured else ROOT.parent / "shared/data/wikitext-2-raw/wiki.test.raw"


@cache
def smollm2(work: Path) -> tuple[Path, Path, Path]:
    """(the GGUF, its dequantized float32 folder, its bundle `.swi.json`), detected once into `work`."""
    from bundles import render_bundle
    from indexer.bundles.build import manifest_from_detection
    from indexer.detection.detect import detect
    from indexer.model.demo_model import fetch_demo_model
    from indexer.model.loading import LoadOptions, dequantized_cache_folder, load_model

    gguf_file = fetch_demo_model(quiet=True)
    loaded = load_model(str(gguf_file), options=LoadOptions(device="cpu", dtype="float32"))
    manifest = manifest_from_detection(detect(loaded))
    work.mkdir(parents=True, exist_ok=True)
    bundle = work / "smollm2.swi.json"
    bundle.write_bytes(render_bundle(manifest, "json").body)
    return gguf_file, dequantized_cache_folder(gguf_file), bundle


def render(bundle: Path, tool: str, work: Path, **options: Any) -> Path:
    """The tool's bundle file, rendered from the `.swi.json` as `swi bundle -f TOOL` would."""
    from bundles import render_bundle

    manifest = json.loads(bundle.read_text())
    label = "-".join(f"{k}{v}" for k, v in sorted(options.items()))
    path = work / f"smollm2{('-' + label) if label else ''}.{SUFFIX[tool]}"
    path.write_bytes(render_bundle(manifest, tool, **options).body)
    return path


def run_python_tool(
    tool: str,
    model: Path,
    out: Path,
    bundle: Path | None,
    seed: int = 0,
    group_size: int = 64,
    tokens: int | None = None,
) -> dict[str, Any]:
    """Quantize with `tool` in the tools venv: the artifact, its perplexity on `tokens` (TOKENS; 0: none)."""
    budget = TOKENS if tokens is None else tokens
    command = [str(tools().python), str(RUN_TOOL), tool, str(model), str(out), "--corpus", str(wikitext())]
    command += ["--tokens", str(budget), "--seed", str(seed), "--group-size", str(group_size)]
    if bundle is not None:
        command += ["--bundle", str(bundle)]
    out.mkdir(parents=True, exist_ok=True)  # the working folder: GPTQModel writes logs/ into it
    done = subprocess.run(command, capture_output=True, text=True, cwd=out)
    if done.returncode:
        raise RuntimeError(f"{tool} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_llama_quantize(
    source: Path,
    out: Path,
    mix: str,
    bundle_zip: Path | None,
    pure: bool = False,
    tokens: int | None = None,
    tokenizer: Path | None = None,
) -> dict[str, Any]:
    """`llama-quantize [--pure] [--tensor-type-file ...] --allow-requantize SRC OUT MIX`, then perplexity."""
    import zipfile

    out.mkdir(parents=True, exist_ok=True)
    artifact = out / f"model-{mix.lower()}.gguf"
    command = [str(tools().quantize), "--allow-requantize"]
    if pure:
        command.append("--pure")
    if bundle_zip is not None:
        zipfile.ZipFile(bundle_zip).extract("tensor-types.txt", out)
        command += ["--tensor-type-file", str(out / "tensor-types.txt")]
    command += [str(source), str(artifact), mix]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"llama-quantize failed:\n{done.stderr[-4000:]}")
    return {"tool": "llama.cpp", "artifact": str(artifact), **gguf_perplexity(artifact, tokens, tokenizer)}


def gguf_perplexity(
    artifact: Path, tokens: int | None = None, tokenizer: Path | None = None
) -> dict[str, Any]:
    """The perplexity of a GGUF file (and its windows' losses), dequantized by the tools venv's
    transformers (the same loop as every tool's).

    `tokenizer`: a folder with the same tokenizer (the dequantized copy's), so it is not converted again.
    """
    command = [str(tools().python), str(RUN_TOOL), "gguf", str(artifact), str(artifact.parent / "eval")]
    command += ["--corpus", str(wikitext()), "--tokens", str(TOKENS if tokens is None else tokens)]
    if tokenizer is not None:
        command += ["--tokenizer", str(tokenizer)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"GGUF evaluation failed:\n{done.stderr[-4000:]}")
    line = json.loads(done.stdout.strip().splitlines()[-1])
    return {"perplexity": float(line["perplexity"]), "window_nll": line["window_nll"]}


def swi_check(artifact: Path, bundle: Path, tool: str) -> dict[str, Any]:
    """`swi check ARTIFACT --bundle B --json` (for torchao in the tools venv, which can load its tensors)."""
    python = str(tools().python) if tool == "torchao" else sys.executable
    path = artifact / "model.pt" if tool == "torchao" else artifact
    command = [python, "-m", "swi.cli", "check", str(path), "--bundle", str(bundle), "--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"swi check failed:\n{done.stderr[-4000:]}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report
