"""Run one real quantizer on a model folder, with or without a bundle, in the tools venv.

Standard library + the tool's own packages only (this runs in the tools venv, not the project's):

    python tests/tools/run_tool.py TOOL MODEL_DIR OUT_DIR [--bundle FILE] [--corpus FILE --tokens N]

writes the artifact into OUT_DIR and prints one JSON line: {"tool", "artifact", "perplexity", "window_nll"}.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

WINDOW = 512


def perplexity(model: Any, tokenizer: Any, corpus: Path, tokens: int) -> tuple[float, list[float]]:
    """Perplexity over the first `tokens` tokens of `corpus` in windows of WINDOW (no overlap), and each
    window's mean next-token loss (the benchmark's paired bootstrap resamples them)."""
    import torch

    text = corpus.read_text(encoding="utf-8")[: tokens * 12]
    ids = tokenizer(text, return_tensors="pt")["input_ids"][0][:tokens]
    windows = ids[: len(ids) // WINDOW * WINDOW].view(-1, WINDOW)  # (windows, WINDOW)
    losses: list[float] = []
    with torch.inference_mode():
        for window in windows:
            logits = model(input_ids=window[None]).logits.float()  # (1, WINDOW, vocab)
            loss = torch.nn.functional.cross_entropy(logits[0, :-1], window[1:], reduction="sum")
            losses.append(float(loss) / (WINDOW - 1))
    return math.exp(sum(losses) / len(losses)), losses


def densified(model: Any) -> Any:
    """`model` in float32, each quantized linear module replaced by an `nn.Linear` holding what it computes.

    GPTQModel's and AutoRound's CPU kernels unpack and dequantize their weights on every call (minutes
    for a perplexity on 2 cores); here each module runs once, on the identity, so the weight is its own
    kernel's dequantization exactly (x @ I adds only exact zeros in float32) and the perplexity the same.
    """
    import torch

    for name, module in list(model.named_modules()):
        if isinstance(module, torch.nn.Linear) or not hasattr(module, "qweight"):
            continue
        # GPTQModel names the widths in_features/out_features, AutoRound infeatures/outfeatures
        width = getattr(module, "in_features", None) or module.infeatures
        height = getattr(module, "out_features", None) or module.outfeatures
        with torch.inference_mode():
            eye = torch.eye(width)  # (in, in)
            try:  # AutoRound dequantizes in its scales' dtype and multiplies in the input's (a float16
                transposed = module(eye).float()  # product on a CPU would take minutes)
            except (RuntimeError, ValueError):  # GPTQModel's kernel takes only bfloat16/float16 inputs
                transposed = module(eye.to(model.get_input_embeddings().weight.dtype)).float()  # (in, out)
            bias = module.bias.float() if getattr(module, "bias", None) is not None else None
            transposed -= bias if bias is not None else 0.0
        dense = torch.nn.Linear(width, height, bias=bias is not None)
        dense.weight.data = transposed.T.contiguous()  # (out, in)
        if bias is not None:
            dense.bias.data = bias.clone()
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, dense)
    # the perplexity is taken in float32 like every tool's (transformers refuses .float() on a model it
    # loaded quantized, so the tensors are cast one by one)
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.is_floating_point():
            tensor.data = tensor.data.float()
    return model


def _load(model_dir: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return model, AutoTokenizer.from_pretrained(model_dir)


def _calibration(
    tokenizer: Any, corpus: Path, seed: int = 0, samples: int = 8, length: int = 256
) -> list[dict[str, Any]]:
    """`samples` windows from the end of the file (never the evaluated tokens); each seed takes others."""
    text = corpus.read_text(encoding="utf-8")
    ids = tokenizer(text[-200_000:])["input_ids"]
    start = seed * samples
    return [
        {"input_ids": ids[i * length : (i + 1) * length], "attention_mask": [1] * length}
        for i in range(start, start + samples)
    ]


def llm_compressor(model_dir: Path, out: Path, bundle: Path | None, args: argparse.Namespace) -> Any:
    from llmcompressor import oneshot

    recipe = bundle or out / "recipe.yaml"
    if bundle is None:  # the same scheme and group size, without the super-weight group
        recipe.write_text(
            "quant_stage:\n  quant_modifiers:\n    QuantizationModifier:\n"
            '      ignore: ["lm_head"]\n      config_groups:\n        group_0:\n'
            '          targets: ["Linear"]\n'
            f"          weights: {{num_bits: {args.bits}, type: int, symmetric: true, strategy: group, "
            f"group_size: {args.group_size}}}\n"
        )
    model, tokenizer = _load(model_dir)
    oneshot(model=model, recipe=str(recipe), output_dir=str(out / "artifact"))
    return model, tokenizer


def torchao(model_dir: Path, out: Path, bundle: Path | None, args: argparse.Namespace) -> Any:
    import torch
    from torchao.quantization import FqnToConfig, Int8WeightOnlyConfig, IntxWeightOnlyConfig, quantize_
    from torchao.quantization.granularity import PerGroup

    model, tokenizer = _load(model_dir)
    config = IntxWeightOnlyConfig(
        weight_dtype=getattr(torch, f"int{args.bits}"), granularity=PerGroup(args.group_size)
    )
    if bundle is None:
        quantize_(model, config, filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear) and fqn != "lm_head")
    else:
        spec = importlib.util.spec_from_file_location("sw", bundle)
        assert spec is not None and spec.loader is not None
        sw = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sw)
        sw.check_model(model)
        quantize_(model, FqnToConfig(sw.fqn_to_config(model, config, Int8WeightOnlyConfig())), filter_fn=None)
    (out / "artifact").mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "artifact" / "model.pt")
    return model, tokenizer


def gptqmodel(model_dir: Path, out: Path, bundle: Path | None, args: argparse.Namespace) -> Any:
    import torch

    # GPTQModel 7.6 sizes its CPU pool as (cores + 1) // 2 and asks 2 "model_loader:cpu" workers of it: on
    # 2 cores it raises "Virtual pool 'model_loader:cpu' requests 2 workers but parent 'cpu' only has 1";
    # GPTQMODEL_CPU_WORKERS is its own override of that size
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(max(os.cpu_count() or 1, 2)))
    # its packing has a C++ fast path that it JIT-compiles on first use (minutes on 2 cores) and a Python
    # path that writes the same qweight/qzeros; a 135M model packs in seconds either way
    os.environ.setdefault("GPTQMODEL_DISABLE_PACK_EXT", "1")
    from gptqmodel import GPTQModel, QuantizeConfig

    # docs/bundles.md's snippet; without a bundle the same scheme and group size, no `dynamic`
    doc = json.loads(bundle.read_text()) if bundle else {"bits": args.bits, "group_size": args.group_size}
    # offload_to_disk=False: 7.6's default loads the model lazily onto the meta device, and on a CPU its
    # calibration forward then fails ("Tensor.item() cannot be called on meta tensors")
    config = QuantizeConfig(
        bits=doc["bits"], group_size=doc["group_size"], dynamic=doc.get("dynamic"), offload_to_disk=False
    )
    model = GPTQModel.load(str(model_dir), config, dtype=torch.float32)
    model.quantize(_calibration(model.tokenizer, args.calibration or args.corpus, args.seed))
    model.save(str(out / "artifact"))
    if not args.tokens:
        return None, None
    # its CPU kernels compute in bfloat16 or float16 only: the dequantized weights are exact in bfloat16
    # and the perplexity is then taken in float32, like every other tool's
    loaded = GPTQModel.load(str(out / "artifact"), device="cpu")
    return densified(loaded.model), loaded.tokenizer


#: docs/bundles.md's AutoRound command, run as written (`python` is the tools venv's, first on PATH)
AUTOROUND = """. "$BUNDLE" && swi_check_model "$MODEL" && python -m auto_round --model "$MODEL" \\
  --bits "$SWI_BITS" --group_size "$SWI_GROUP_SIZE" --iters 0 --disable_opt_rtn --device cpu \\
  --output_dir "$OUT" --layer_config "$SWI_LAYER_CONFIG" --ignore_layers "$SWI_IGNORE_LAYERS"
"""
#: the same without a bundle: the bundle's scheme and group size
AUTOROUND_PLAIN = """python -m auto_round --model "$MODEL" \\
  --bits "$SWI_BITS" --group_size "$SWI_GROUP_SIZE" --iters 0 --disable_opt_rtn --device cpu \\
  --output_dir "$OUT"
"""


def autoround(model_dir: Path, out: Path, bundle: Path | None, args: argparse.Namespace) -> Any:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env |= {"MODEL": str(model_dir), "OUT": str(out / "artifact"), "BUNDLE": str(bundle or "")}
    env |= {"SWI_BITS": str(args.bits), "SWI_GROUP_SIZE": str(args.group_size)}
    subprocess.run(["sh", "-c", AUTOROUND if bundle else AUTOROUND_PLAIN], check=True, env=env)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = next((out / "artifact").glob("**/config.json")).parent
    for path in folder.iterdir():  # the artifact is the folder AutoRound names after the model
        path.rename(out / "artifact" / path.name)
    folder.rmdir()
    folder = out / "artifact"
    if args.corpus is None or not args.tokens:
        return None, None
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, device_map="cpu")
    return densified(model), AutoTokenizer.from_pretrained(folder)


def baseline(model_dir: Path, out: Path, bundle: Path | None, args: argparse.Namespace) -> Any:
    return _load(model_dir)


def gguf(model_file: Path, out: Path, bundle: Path | None, args: argparse.Namespace) -> Any:
    """A GGUF file, dequantized by transformers (for its perplexity)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = model_file.parent, model_file.name
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    if args.tokenizer is not None:  # the same vocabulary, without converting it from the GGUF again
        return model, AutoTokenizer.from_pretrained(args.tokenizer)
    return model, AutoTokenizer.from_pretrained(folder, gguf_file=name)


TOOLS = {
    "llm-compressor": llm_compressor,
    "torchao": torchao,
    "gptqmodel": gptqmodel,
    "autoround": autoround,
    "baseline": baseline,
    "gguf": gguf,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("tool", choices=sorted(TOOLS))
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--corpus", type=Path)
    parser.add_argument("--tokenizer", type=Path, help="gguf: a folder with the model's tokenizer")
    parser.add_argument("--calibration", type=Path, help="text for calibrating tools (default: --corpus)")
    parser.add_argument("--tokens", type=int, default=4096, help="0: no perplexity (the artifact only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=64)
    args = parser.parse_args()
    import torch

    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    model, tokenizer = TOOLS[args.tool](args.model_dir, args.out, args.bundle, args)
    evaluate = args.corpus is not None and model is not None and args.tokens > 0
    ppl, window_nll = perplexity(model, tokenizer, args.corpus, args.tokens) if evaluate else (None, [])
    artifact = args.out / "artifact"
    result = {"tool": args.tool, "artifact": str(artifact), "perplexity": ppl, "window_nll": window_nll}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
