"""Each decoder layer called as the model calls it: arguments captured from the model's own forward."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import transformers as tf

from indexer.model.adapters import supported_model_types
from indexer.model.hooks import forward_hooks, hidden_states_of
from indexer.model.loading import LoadedModel, LoadOptions, load_model, resolve_model, wrap_model
from indexer.model.streaming import capture_layer_calls, head_logits, open_streamed, run_layer
from tests.tiny import CONFIGS, plant_super_weight, tiny_model, tiny_tokenizer

CPU = LoadOptions(device="cpu", dtype="float32")
PROMPTS = ["Apple Inc. is a worldwide tech company.", "Paris is the capital of France, they say."]


def _layer_outputs(loaded: LoadedModel, ids: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    outputs: dict[int, torch.Tensor] = {}

    def keep(index: int) -> Any:
        def hook(_module: torch.nn.Module, _args: Any, output: Any) -> None:
            outputs[index] = hidden_states_of(output).clone()

        return hook

    names = loaded.adapter.residual_names(loaded.model)
    with forward_hooks(loaded.model, {n: keep(i) for i, n in enumerate(names)}), torch.inference_mode():
        logits = loaded.model(input_ids=ids, use_cache=False).logits
    return [outputs[i] for i in range(len(names))], logits


def _replay_matches(folder: Path, ids: torch.Tensor) -> None:
    memory = load_model(str(folder), options=CPU)
    expected, logits = _layer_outputs(memory, ids)
    streamed = open_streamed(resolve_model(str(folder), options=CPU))
    captured = capture_layer_calls(streamed, ids)
    assert all(p.device.type == "meta" for p in streamed.layers.parameters()), "capture read a layer"
    hidden = captured.hidden
    for index, call in enumerate(captured.calls):
        hidden = run_layer(streamed, index, hidden, call)
        assert torch.equal(hidden, expected[index]), f"layer {index}"
    assert torch.equal(head_logits(streamed, captured, ids, hidden), logits)
    assert all(p.device.type == "meta" for p in streamed.layers.parameters())
    assert isinstance(streamed.layers[0], type(memory.adapter.decoder_layers(memory.model)[0]))


@pytest.mark.parametrize("model_type", sorted(supported_model_types()))
def test_layer_by_layer_replay_equals_the_models_forward(tmp_path: Path, model_type: str) -> None:
    loaded = tiny_model(model_type)
    plant_super_weight(loaded, layer=1, row=10, col=20)
    loaded.model.save_pretrained(tmp_path)
    loaded.tokenizer.save_pretrained(tmp_path)
    ids = loaded.tokenizer(PROMPTS[:1], return_tensors="pt")["input_ids"]
    _replay_matches(tmp_path, ids)


@pytest.mark.parametrize("model_type", ["gemma2", "gemma3_text"])
def test_sliding_and_global_layers_get_their_own_masks(tmp_path: Path, model_type: str) -> None:
    config = CONFIGS[model_type](6)
    config.sliding_window = 4  # shorter than the prompts: sliding and global masks differ
    config.layer_types = ["sliding_attention", "full_attention"] * 3
    torch.manual_seed(0)
    loaded = wrap_model(tf.AutoModelForCausalLM.from_config(config), tiny_tokenizer())
    loaded.model.save_pretrained(tmp_path)
    loaded.tokenizer.save_pretrained(tmp_path)
    ids = torch.stack([loaded.tokenizer(p, return_tensors="pt")["input_ids"][0, :30] for p in PROMPTS])
    _replay_matches(tmp_path, ids)  # two windows in one batch
    streamed = open_streamed(resolve_model(str(tmp_path), options=CPU))
    calls = capture_layer_calls(streamed, ids).calls
    masks = [call.kwargs.get("attention_mask") for call in calls]
    sliding, full = masks[0], masks[1]  # a global mask may be None: plain causal attention
    assert sliding is not None
    assert full is None or not torch.equal(sliding, full), "the sliding layer got the global mask"
    assert masks[2] is not None and torch.equal(masks[2], sliding)
    assert (masks[3] is None) == (full is None)
