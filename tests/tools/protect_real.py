"""Run `protect_super_weights` around a real quantizer (tools venv); print what happened as JSON.

python tests/tools/protect_real.py llm-compressor|torchao   (with PYTHONPATH at the repo root)
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

from indexer.bundles.build import manifest_from_detection
from indexer.bundles.bundle import parse_manifest
from indexer.bundles.protect import UnsupportedQuantizerError, protect_super_weights
from indexer.detection.detect import detect
from indexer.model.loading import LoadOptions, load_model
from tests.tiny import plant_super_weight, tiny_model

#: W4A16 in groups of 32 (the preset's 128 does not divide the tiny model's 64 columns)
GROUPS = {
    "group_0": {
        "targets": ["Linear"],
        "weights": {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": 32},
    }
}


def _state(model: torch.nn.Module) -> dict[str, tuple[str, bytes]]:
    named = [*model.named_parameters(), *model.named_buffers()]
    state = {
        n: (type(t.data).__name__, t.detach().contiguous().view(torch.uint8).numpy().tobytes())
        for n, t in named
    }
    state |= {f"module:{n}": (type(m).__name__, b"") for n, m in model.named_modules()}
    return state


def main() -> None:
    tool = sys.argv[1]
    planted = tiny_model("llama", num_layers=4)
    plant_super_weight(planted, 1, 10, 20, weight=4.0, pre_activation=16.0)
    # from a folder, as users load models: llm-compressor reads the config from `_name_or_path`
    folder = Path(tempfile.mkdtemp())
    planted.model.save_pretrained(folder)
    planted.tokenizer.save_pretrained(folder)
    loaded = load_model(str(folder), options=LoadOptions(device="cpu", dtype="float32"))
    bundle = parse_manifest(manifest_from_detection(detect(loaded)))
    model = loaded.model
    before = _state(model)
    outcome = "not refused"
    try:
        with protect_super_weights(loaded, bundle):
            if tool == "llm-compressor":
                from llmcompressor import oneshot
                from llmcompressor.modifiers.quantization import QuantizationModifier

                oneshot(
                    model=model,
                    recipe=QuantizationModifier(config_groups=GROUPS, ignore=["lm_head"]),
                )
            else:
                from torchao.quantization import IntxWeightOnlyConfig, quantize_
                from torchao.quantization.granularity import PerGroup

                quantize_(model, IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(32)))
    except UnsupportedQuantizerError as exc:
        outcome = f"refused: {exc}"
    print(json.dumps({"tool": tool, "outcome": outcome, "identical": _state(model) == before}))


if __name__ == "__main__":
    main()
