"""Run `protect_super_weights` around a real quantizer (tools venv); print what happened as JSON.

python tests/tools/protect_real.py llm-compressor|torchao   (with PYTHONPATH at the repo root)
"""

from __future__ import annotations

import json
import sys

import torch

from indexer.bundles import (
    UnsupportedQuantizerError,
    manifest_from_detection,
    parse_manifest,
    protect_super_weights,
)
from indexer.detect import detect
from tests.tiny import plant_super_weight, tiny_model


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
    loaded = tiny_model("llama", num_layers=4)
    plant_super_weight(loaded, 1, 10, 20, weight=4.0, pre_activation=16.0)
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
                    recipe=QuantizationModifier(targets="Linear", scheme="W4A16", ignore=["lm_head"]),
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
