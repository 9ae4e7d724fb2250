"""The validation suite on the real SmolLM2-135M (GGUF Q4_1) with a small WikiText-2 budget."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from indexer.detection.detect import detect
from indexer.model.loading import LoadedModel
from indexer.validation.corpus import file_corpus
from indexer.validation.validate import ValidateConfig, ValidationResult, validate

pytestmark = pytest.mark.slow

SUPER_WEIGHT = (11, 507, 1229)
CONFIG = ValidateConfig(
    window=512, max_tokens=1024, scale_factors=(0.0, 2.0), rtn_bits=(4,), rtn_granularities=("g128",)
)


def test_smollm2_super_weight_is_confirmed(smollm2: LoadedModel, wikitext_path: Path) -> None:
    detection = detect(smollm2)
    assert [sw.coordinates for sw in detection.super_weights] == [SUPER_WEIGHT]
    before = {name: p.detach().clone() for name, p in smollm2.model.named_parameters()}

    result = validate(smollm2, detection, file_corpus(wikitext_path), CONFIG)

    for name, p in smollm2.model.named_parameters():
        assert torch.equal(p, before[name]), f"{name} changed"
    del before
    assert result.corpus.name == "wiki.test.raw" and result.corpus.tokens == 1024
    assert 10 < result.baseline_perplexity < 60  # 512-token windows of WikiText-2 on a 135M model
    keys = {str(f.key) for f in result.figures}
    assert keys == {
        "baseline",
        "zero/joint",
        "zero/alone/11-507-1229",
        "zero/joint+sa",
        "control/largest",
        "control/random",
        "scale/0",
        "scale/2",
        "rtn/4bit/g128/plain",
        "rtn/4bit/g128/clipped",
        "rtn/4bit/g128/holdout",
        "w8a8/naive",
        "w8a8/holdout",
    }
    for figure in result.figures:
        assert figure.perplexity is not None and math.isfinite(figure.perplexity), figure.key
        assert figure.ratio == pytest.approx(figure.perplexity / result.baseline_perplexity, rel=1e-12)

    joint = result.figure("zero/joint")
    assert joint.ratio is not None and joint.ratio >= 5
    assert joint.prefix_layer == 11  # the pass started from the cached input of layer 11
    for key in ("control/largest", "control/random"):
        ratio = result.figure(key).ratio
        assert ratio is not None and ratio < 1.5, key  # the controls raise perplexity far less
    restored = result.figure("zero/joint+sa").ratio
    assert restored is not None and restored < 2  # putting the super activation back repairs the model
    assert result.verdict.verdict == "confirmed"
    assert [(v.layer, v.row, v.col, v.verdict) for v in result.super_weight_verdicts] == [
        (*SUPER_WEIGHT, "confirmed")
    ]

    sites = result.super_activation
    assert sites is not None and sites.channel == 507 and sites.at_first_token == 2
    assert result.stopwords is not None and result.stopwords.mass_before > 0.1
    assert result.quantization is not None and result.quantization.peak_memory_ratio <= 1.3
    assert ValidationResult.from_dict(json.loads(result.to_json())) == result


def test_smollm2_on_wikitext2_beats_the_calibrated_null(smollm2: LoadedModel, wikitext_path: Path) -> None:
    from rich.console import Console

    from swi import validate_cmd

    detection = detect(smollm2)
    config = ValidateConfig(
        experiments=("joint", "alone", "controls", "null"), window=256, max_tokens=4096, null_column_sets=8
    )
    result = validate(smollm2, detection, file_corpus(wikitext_path), config)
    verdict = result.verdict
    assert verdict.verdict == "confirmed" and verdict.minimal_set == (SUPER_WEIGHT,)
    assert [v.verdict for v in result.super_weight_verdicts] == ["confirmed"]
    joint = result.figure("zero/joint")
    assert (
        joint.ratio is not None and joint.ratio_low is not None and joint.ratio_low >= config.confirm_factor
    )
    assert len(result.null_figures) == 40 and all(f.prefix_layer == 11 for f in result.null_figures)
    assert all(f.ratio is not None and f.ratio < joint.ratio for f in result.null_figures)
    assert verdict.null is not None and verdict.null.p_value == pytest.approx(1 / 43)
    assert "wiki.test.raw" in verdict.reason
    console = Console(width=200, record=True)
    previous, validate_cmd.console = validate_cmd.console, console
    try:
        validate_cmd.show_validation(result)
    finally:
        validate_cmd.console = previous
    text = console.export_text()
    assert "null: 42 sets" in text and "q0.5" in text and "empirical p" in text
    # the quantiles to four decimals: the null's ratios differ from 1x only in the third or fourth
    assert re.search(r"q0\.05 \d\.\d{4}x, q0\.5 \d\.\d{4}x", text), text
