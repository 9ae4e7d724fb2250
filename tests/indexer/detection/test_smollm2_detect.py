"""The real SmolLM2-135M model: what the detector reports is checked by its effect on perplexity."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from contracts.results import DetectionResult
from indexer.detection.detect import detect
from indexer.model.ablation import zeroed_weights
from indexer.model.loading import LoadedModel

pytestmark = pytest.mark.slow

WINDOW = 512
TOKENS = 4 * WINDOW


@pytest.fixture(scope="module")
def detection(smollm2: LoadedModel) -> DetectionResult:
    return detect(smollm2)


@pytest.fixture(scope="module")
def token_ids(smollm2: LoadedModel, wikitext_path: Path) -> torch.Tensor:
    text = wikitext_path.read_text(encoding="utf-8")[:100_000]
    ids = smollm2.tokenizer(text, return_tensors="pt")["input_ids"][0, :TOKENS]
    assert ids.numel() == TOKENS
    return ids.view(-1, WINDOW)  # (windows, WINDOW)


def perplexity(loaded: LoadedModel, windows: torch.Tensor) -> float:
    with torch.inference_mode():
        loss = loaded.model(input_ids=windows, labels=windows).loss
    return math.exp(float(loss))


def test_detection_provenance(detection: DetectionResult) -> None:
    p = detection.provenance
    assert p.source_kind == "gguf"
    assert p.quantization == "Q4_1"
    assert p.model_type == "llama"
    assert p.num_layers == 30
    assert p.forward_passes == len({sw.iteration for sw in detection.super_weights}) + 1
    assert detection.super_weights, "SmolLM2 has a super weight"
    assert detection.super_activation is not None


def test_zeroing_reported_weights_destroys_the_model_and_controls_do_not(
    smollm2: LoadedModel, detection: DetectionResult, token_ids: torch.Tensor
) -> None:
    reported = [sw.coordinates for sw in detection.super_weights]
    assert detection.super_activation is not None
    sa_row = detection.super_activation.channel
    baseline = perplexity(smollm2, token_ids)
    assert 5 < baseline < 100
    with zeroed_weights(smollm2.model, smollm2.adapter, reported):
        pruned = perplexity(smollm2, token_ids)
    control = largest_other_weights(smollm2, len(reported), exclude_row=sa_row, exclude=set(reported))
    with zeroed_weights(smollm2.model, smollm2.adapter, control):
        controlled = perplexity(smollm2, token_ids)
    assert pruned / baseline >= 5, (baseline, pruned)
    assert controlled / baseline < 1.5, (baseline, controlled)
    assert perplexity(smollm2, token_ids) == pytest.approx(baseline, rel=1e-6)  # restored exactly


def largest_other_weights(
    loaded: LoadedModel, count: int, exclude_row: int, exclude: set[tuple[int, int, int]]
) -> list[tuple[int, int, int]]:
    """The `count` largest-magnitude down-projection weights outside the super activation's row."""
    candidates: list[tuple[float, tuple[int, int, int]]] = []
    for layer in range(len(loaded.adapter.decoder_layers(loaded.model))):
        weight = loaded.adapter.as_out_in(loaded.adapter.down_weight(loaded.model, layer)).abs().clone()
        weight[exclude_row] = 0
        values, flat = weight.flatten().topk(count + len(exclude))
        for value, index in zip(values.tolist(), flat.tolist(), strict=True):
            coordinate = (layer, *divmod(index, weight.shape[1]))
            if coordinate not in exclude:
                candidates.append((value, coordinate))  # type: ignore[arg-type]
    candidates.sort(reverse=True)
    return [c for _, c in candidates[:count]]
