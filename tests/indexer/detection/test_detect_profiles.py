"""Detection sensitivity on planted tiny models shaped like published profiles, and prompt agreement.

- OLMo-1B-0724-like: several early layers with input spikes of one order (published: layers 1, 2, 3, 4 and
  15 for the default prompt), so layer 1's input is no outlier across layers; the output spike and its
  persistence in the residual stream single the layer out.
- SmolLM2-1.7B-like: a modest input spike (published: 26.5) meets a huge weight, giving a huge output.
"""

from __future__ import annotations

import pytest

from contracts.results import DetectionResult
from indexer.detection.detect import DetectConfig, detect, robust_z
from tests.tiny import plant_input_spike, plant_super_weight, tiny_model


def _input_z(result: DetectionResult, layer: int) -> float:
    stats = result.layer_profile[0].layers
    return robust_z([s.input_max for s in stats], DetectConfig().min_spread)[layer]


@pytest.mark.parametrize("model_type", ["llama", "olmo", "qwen2"])
def test_olmo_like_profile_with_input_spikes_in_several_early_layers(model_type: str) -> None:
    loaded = tiny_model(model_type, num_layers=8)
    plant_super_weight(loaded, layer=1, row=10, col=20, weight=4.0, pre_activation=16.0)
    for layer, col in ((2, 30), (3, 40), (4, 50), (6, 60)):  # the published 1, 2, 3, 4, 15 of 16, scaled
        plant_input_spike(loaded, layer, col, pre_activation=16.0)
    result = detect(loaded)
    assert [sw.coordinates for sw in result.super_weights] == [(1, 10, 20)]
    assert _input_z(result, 1) < DetectConfig().z_threshold  # both-outliers alone would have missed it
    assert result.super_weights[0].prompt_agreement == 1.0


@pytest.mark.parametrize("model_type", ["llama", "phi3"])
def test_smollm2_1_7b_like_profile_with_a_modest_input_spike(model_type: str) -> None:
    loaded = tiny_model(model_type, num_layers=8)
    plant_super_weight(loaded, layer=1, row=12, col=7, weight=64.0, pre_activation=4.0)
    # the other layers' inputs are of the same modest order
    for layer, col, pre in (
        (0, 90, 3.0),
        (2, 30, 5.0),
        (3, 40, 4.0),
        (4, 60, 3.0),
        (5, 50, 5.0),
        (6, 70, 4.0),
    ):
        plant_input_spike(loaded, layer, col, pre_activation=pre)
    result = detect(loaded)
    assert [sw.coordinates for sw in result.super_weights] == [(1, 12, 7)]
    assert _input_z(result, 1) < DetectConfig().z_threshold
    stats = result.layer_profile[0].layers[1]
    assert stats.output_max > 100 * stats.input_max / 16  # a modest input, a huge output


def test_an_echo_is_still_rejected_in_an_olmo_like_profile() -> None:
    # the output-led rule admits a layer whose input is no outlier; an echo that cancels the activation
    # still never qualifies, though its input is of the same order as the other layers'
    loaded = tiny_model("llama", num_layers=8)
    plant_super_weight(loaded, layer=1, row=10, col=20, weight=4.0, pre_activation=16.0)
    for layer, col in ((2, 30), (3, 40), (4, 50)):
        plant_input_spike(loaded, layer, col, pre_activation=16.0)
    plant_super_weight(loaded, layer=6, row=10, col=77, weight=-4.0, pre_activation=16.0)
    result = detect(loaded)
    assert [sw.coordinates for sw in result.super_weights] == [(1, 10, 20)]


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "falcon"])
def test_input_spikes_alone_are_not_super_weights(model_type: str) -> None:
    loaded = tiny_model(model_type, num_layers=8)
    for layer, col in ((1, 20), (2, 30), (3, 40)):
        plant_input_spike(loaded, layer, col, pre_activation=16.0)
    assert detect(loaded).super_weights == ()


def test_agreement_across_the_prompt_batch_and_the_first_token() -> None:
    loaded = tiny_model("llama", num_layers=6)
    plant_super_weight(loaded, layer=1, row=10, col=20)  # aimed at the BOS token: every prompt has it
    result = detect(loaded)
    assert result.provenance.forward_passes == 2  # one pass for the whole batch, per iteration
    assert len(result.provenance.extra["prompts"]) == 3
    sw = result.super_weights[0]
    assert sw.prompt_agreement == 1.0 and sw.token == 0
    activation = result.super_activation
    assert activation is not None and activation.on_first_token and activation.on_bos
    # aimed at a later token of the first prompt: found there, not on the first token
    other = tiny_model("llama", num_layers=6)
    plant_super_weight(other, layer=1, row=10, col=20, token=3)
    found = detect(other)
    assert [w.coordinates for w in found.super_weights] == [(1, 10, 20)] and found.super_weights[0].token == 3
    assert 0 < found.super_weights[0].prompt_agreement <= 1
    assert found.super_activation is not None and not found.super_activation.on_first_token
    single = detect(other, DetectConfig(extra_prompts=()))
    assert single.super_weights[0].prompt_agreement == 1.0
    assert single.provenance.extra["prompts"] == [DetectConfig().prompt]
