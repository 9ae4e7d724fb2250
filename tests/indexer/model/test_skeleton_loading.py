"""The in-memory loader reads safetensors into a skeleton: the same model `from_pretrained` builds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers as tf

from indexer.model.adapters import supported_model_types
from indexer.model.loading import read_safetensors_model
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


def test_recorded_added_tokens_give_the_same_tokenizer(tmp_path: Path) -> None:
    """The dequantized cache records the added tokens, so transformers need not re-parse tokenizer.json."""
    import json

    from indexer.model.loading import record_added_tokens
    from tests.tiny import tiny_tokenizer

    tiny_tokenizer().save_pretrained(tmp_path)
    before = tf.AutoTokenizer.from_pretrained(tmp_path)
    assert "added_tokens_decoder" not in json.loads((tmp_path / "tokenizer_config.json").read_text())
    record_added_tokens(tmp_path, before)
    settings = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert set(settings["added_tokens_decoder"]) == {str(i) for i in before.added_tokens_decoder}
    after = tf.AutoTokenizer.from_pretrained(tmp_path)
    assert after.added_tokens_decoder == before.added_tokens_decoder
    assert (
        after.all_special_ids == before.all_special_ids
        and after.special_tokens_map == before.special_tokens_map
    )
    text = "<bos>Paris is the capital of France.<eos> the"
    assert after(text)["input_ids"] == before(text)["input_ids"]
    record_added_tokens(tmp_path, after)  # once recorded, left alone
    assert json.loads((tmp_path / "tokenizer_config.json").read_text()) == settings
