"""The in-memory loader reads safetensors into a skeleton: the same model `from_pretrained` builds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers as tf

from indexer.adapters import supported_model_types
from indexer.loading import read_safetensors_model
from tests.tiny import tiny_model


@pytest.mark.parametrize("model_type", sorted(supported_model_types()))
def test_read_safetensors_model_equals_from_pretrained(tmp_path: Path, model_type: str) -> None:
    tiny_model(model_type).model.save_pretrained(tmp_path)
    config = tf.AutoConfig.from_pretrained(tmp_path)
    reference = tf.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    model = read_safetensors_model(tmp_path, config, torch.float32, torch.device("cpu"))
    assert model is not None, "fell back to from_pretrained"
    expected = reference.state_dict()
    got = model.state_dict()
    assert set(got) == set(expected)
    for key, tensor in expected.items():
        assert torch.equal(got[key], tensor), key
    for name, buffer in reference.named_buffers():
        assert torch.equal(dict(model.named_buffers())[name], buffer), name
    tied = [(t, s) for t, s in getattr(reference, "all_tied_weights_keys", {}).items()]
    for target, source in tied:
        assert model.get_parameter(target) is model.get_parameter(source)
    ids = torch.tensor([[1, 5, 9, 13, 2]])
    with torch.inference_mode():
        assert torch.equal(model(input_ids=ids).logits, reference.eval()(input_ids=ids).logits)


def test_a_checkpoint_missing_a_tensor_falls_back(tmp_path: Path) -> None:
    import safetensors.torch

    tiny_model("llama").model.save_pretrained(tmp_path)
    tensors = safetensors.torch.load_file(str(tmp_path / "model.safetensors"))
    tensors.pop("model.norm.weight")
    safetensors.torch.save_file(tensors, str(tmp_path / "model.safetensors"))
    config = tf.AutoConfig.from_pretrained(tmp_path)
    assert read_safetensors_model(tmp_path, config, torch.float32, torch.device("cpu")) is None
