"""Detection on tiny random models of every family, with planted super weights that really spike."""

from __future__ import annotations

import json

import pytest
import torch

from contracts.results import DetectionResult
from indexer.detection.detect import DetectConfig, detect, robust_z
from indexer.errors import InvalidInputError
from indexer.model.adapters import supported_model_types
from tests.tiny import plant_super_weight, tiny_model

FAMILIES = sorted({*supported_model_types()})


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _assert_unchanged(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), f"{name} changed"


def _assert_no_hooks(model: torch.nn.Module) -> None:
    for name, module in model.named_modules():
        assert not module._forward_hooks and not module._forward_pre_hooks, f"hook left on {name}"


@pytest.mark.parametrize("model_type", FAMILIES)
def test_finds_one_planted_super_weight(model_type: str) -> None:
    loaded = tiny_model(model_type)
    plant_super_weight(loaded, layer=1, row=10, col=20)
    before = _snapshot(loaded.model)
    result = detect(loaded)
    assert [sw.coordinates for sw in result.super_weights] == [(1, 10, 20)]
    sw = result.super_weights[0]
    assert sw.value == 2.0
    assert sw.magnitude_rank == 1
    assert sw.gguf_tensor == "blk.1.ffn_down.weight"
    assert sw.gguf_index == (20, 10)
    assert sw.hf_tensor.endswith(f"1.{loaded.adapter.down_proj}.weight")
    assert dict(loaded.model.named_parameters())[sw.hf_tensor] is loaded.adapter.down_weight(loaded.model, 1)
    assert sw.input_activation * sw.value * sw.output_activation > 0
    assert result.super_activation is not None
    assert result.super_activation.channel == 10
    assert result.super_activation.first_layer == 1
    assert result.provenance.forward_passes == 2  # found, then confirmed nothing is left
    _assert_unchanged(loaded.model, before)
    _assert_no_hooks(loaded.model)


@pytest.mark.parametrize("model_type", FAMILIES)
def test_reports_none_on_a_model_without_super_weights(model_type: str) -> None:
    loaded = tiny_model(model_type, seed=3)
    result = detect(loaded)
    assert result.super_weights == ()
    assert result.super_activation is None
    assert result.provenance.forward_passes == 1


@pytest.mark.parametrize("model_type", ["llama", "phi3", "gpt2", "qwen3"])
def test_two_super_weights_sharing_a_column_in_one_layer(model_type: str) -> None:
    loaded = tiny_model(model_type)
    plant_super_weight(loaded, layer=2, row=5, col=40, weight=3.0)
    plant_super_weight(loaded, layer=2, row=30, col=40, weight=2.0)
    result = detect(loaded)
    assert [sw.coordinates for sw in result.super_weights] == [(2, 5, 40), (2, 30, 40)]
    assert [sw.iteration for sw in result.super_weights] == [0, 1]


@pytest.mark.parametrize("model_type", ["llama", "gpt_neox", "gemma2"])
def test_super_weights_in_two_layers(model_type: str) -> None:
    loaded = tiny_model(model_type, num_layers=8)
    plant_super_weight(loaded, layer=1, row=12, col=7)
    plant_super_weight(loaded, layer=4, row=50, col=99, token=3)
    result = detect(loaded)
    assert sorted(sw.coordinates for sw in result.super_weights) == [(1, 12, 7), (4, 50, 99)]


@pytest.mark.parametrize("model_type", ["llama", "falcon"])
def test_last_layer_echo_is_not_reported(model_type: str) -> None:
    loaded = tiny_model(model_type, num_layers=6)
    plant_super_weight(loaded, layer=1, row=10, col=20)
    plant_super_weight(loaded, layer=5, row=10, col=77, weight=-2.0)  # cancels in the last layer
    result = detect(loaded)
    assert [sw.coordinates for sw in result.super_weights] == [(1, 10, 20)]


def test_cancelling_echo_before_the_last_layer_is_not_reported() -> None:
    loaded = tiny_model("llama", num_layers=8)
    plant_super_weight(loaded, layer=1, row=10, col=20)
    plant_super_weight(loaded, layer=5, row=10, col=77, weight=-2.0)
    result = detect(loaded)
    assert [sw.coordinates for sw in result.super_weights] == [(1, 10, 20)]


def test_cap_limits_the_number_reported() -> None:
    loaded = tiny_model("llama")
    plant_super_weight(loaded, layer=2, row=5, col=40, weight=3.0)
    plant_super_weight(loaded, layer=2, row=30, col=40, weight=2.0)
    result = detect(loaded, DetectConfig(max_super_weights=1))
    assert [sw.coordinates for sw in result.super_weights] == [(2, 5, 40)]


def test_profiles_before_and_after_removal() -> None:
    loaded = tiny_model("llama")
    plant_super_weight(loaded, layer=1, row=10, col=20)
    result = detect(loaded)
    before, after = result.layer_profile[0], result.layer_profile[-1]
    assert before.removed == () and after.removed == ((1, 10, 20),)
    assert len(before.layers) == 6
    assert before.layers[1].output_channel == 10 and before.layers[1].input_channel == 20
    assert after.layers[1].output_max < before.layers[1].output_max / 10
    assert before.layers[1].residual_channel == 10


def test_result_round_trips_through_json() -> None:
    loaded = tiny_model("llama")
    plant_super_weight(loaded, layer=1, row=10, col=20)
    result = detect(loaded)
    data = json.loads(result.to_json())
    assert {"super_weights", "super_activation", "layer_profile", "provenance"} <= set(data)
    assert {"layer", "row", "col", "value"} <= set(data["super_weights"][0])
    assert DetectionResult.from_dict(data) == result
    provenance = data["provenance"]
    assert provenance["bos_present"] is True
    assert provenance["prompt"] == "Apple Inc. is a worldwide tech company."
    assert provenance["detector_version"]
    assert {"torch", "transformers"} <= set(provenance["library_versions"])


def test_custom_prompt_is_used_and_recorded() -> None:
    loaded = tiny_model("llama")
    result = detect(loaded, DetectConfig(prompt="hello"))
    assert result.provenance.prompt == "hello"
    assert result.provenance.prompt_tokens == 6  # BOS + 5 characters


@pytest.mark.parametrize(
    "config",
    [DetectConfig(prompt="  "), DetectConfig(max_super_weights=0), DetectConfig(persistence=1.5)],
)
def test_bad_settings_are_refused(config: DetectConfig) -> None:
    with pytest.raises(InvalidInputError):
        config.validate()


def test_robust_z_is_scale_free() -> None:
    values = [1.0, 1.2, 0.9, 1.1, 50.0, 1.05]
    scaled = [v * 1000 for v in values]
    assert robust_z(values, 0.69) == pytest.approx(robust_z(scaled, 0.69))
    assert max(range(6), key=robust_z(values, 0.69).__getitem__) == 4
