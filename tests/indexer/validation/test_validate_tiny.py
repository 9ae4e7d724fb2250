"""The validation suite's mechanics on a tiny model with a planted super weight."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import torch
from torch import nn

from contracts.results import DetectionResult
from contracts.validation import FigureKey
from indexer.errors import InvalidInputError
from indexer.model.hooks import forward_hooks
from indexer.model.loading import LoadedModel
from indexer.validation.validate import (
    EXPERIMENTS,
    Figure,
    ProgressEvent,
    ValidateConfig,
    ValidationResult,
    decide_verdicts,
    parse_experiments,
    validate,
)
from tests.indexer.validation.conftest import PLANTED, bos_corpus

SMALL = {"max_tokens": 512, "rtn_granularities": ("tensor", "16384", "g32"), "scale_factors": (0.0, 1.0, 2.0)}


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _assert_untouched(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), f"{name} changed"
    for name, module in model.named_modules():
        assert not module._forward_hooks and not module._forward_pre_hooks, f"hook left on {name}"
        assert "forward" not in module.__dict__, f"forward stub left on {name}"


def test_full_suite_leaves_the_model_bit_identical(planted: tuple[LoadedModel, DetectionResult]) -> None:
    loaded, detection = planted
    before = _snapshot(loaded.model)
    events: list[ProgressEvent] = []
    result = validate(loaded, detection, bos_corpus(4), ValidateConfig(**SMALL), progress=events.append)
    _assert_untouched(loaded.model, before)

    keys = [str(f.key) for f in result.figures]
    assert len(keys) == len(set(keys))
    expected = {
        "baseline",
        "zero/joint",
        "zero/alone/1-10-20",
        "zero/joint+sa",
        "control/largest",
        "control/random",
        "scale/0",
        "scale/1",
        "scale/2",
        "w8a8/naive",
        "w8a8/holdout",
    }
    expected |= {
        f"rtn/{b}bit/{g}/{v}"
        for b in (4, 3)
        for g in ("tensor", "16384", "g32")
        for v in ("plain", "clipped", "holdout")
    }
    assert set(keys) == expected
    for figure in result.figures:
        assert figure.perplexity is not None and math.isfinite(figure.perplexity)
        assert figure.ratio == pytest.approx(figure.perplexity / result.baseline_perplexity, rel=1e-12)
        assert figure.experiment in EXPERIMENTS
    # identical variants share one pass instead of measuring twice
    assert str(result.figure("zero/alone/1-10-20").reused_from) == "zero/joint"
    assert str(result.figure("scale/0").reused_from) == "zero/joint"
    assert str(result.figure("scale/1").reused_from) == "baseline"
    assert result.figure("scale/1").ratio == 1.0
    # blocks of 16,384 hold every tiny weight whole: the same weights as per tensor, measured once
    for bits in (4, 3):
        for variant in ("plain", "clipped", "holdout"):
            figure = result.figure(f"rtn/{bits}bit/16384/{variant}")
            assert str(figure.reused_from) == f"rtn/{bits}bit/tensor/{variant}"
    assert result.figure("rtn/4bit/g32/plain").reused_from is None
    # pruning variants start at the super weight's layer from the cached prefix
    assert result.figure("zero/joint").prefix_layer == 1
    assert result.figure("rtn/4bit/g32/plain").prefix_layer is None
    assert result.timing.prefix_layers and result.timing.cached_passes >= 4
    assert result.corpus.tokens == 512 and result.corpus.window == 128
    assert result.quantization is not None and result.quantization.peak_memory_ratio <= 1.3
    assert result.super_activation is not None and result.super_activation.at_first_token == 4
    assert result.stopwords is not None and len(result.stopwords.gains) == 10
    sets = {s.kind: s for s in result.weight_sets}
    assert sets["super_weights"].coordinates == (PLANTED,)
    assert all(c[1] != 10 for c in sets["largest"].coordinates + sets["random_matched"].coordinates)
    assert sets["random_matched"].deltas == (-4.0,)
    # progress: every phase reaches its total
    finals = {e.phase: e for e in events}
    assert set(finals) == {"baseline", "pruning", "quantization"}
    assert all(e.completed == e.total for e in finals.values())

    assert ValidationResult.from_dict(json.loads(result.to_json())) == result


def test_a_shared_rtn_pass_gives_what_measuring_it_alone_gives(
    planted: tuple[LoadedModel, DetectionResult],
) -> None:
    loaded, detection = planted
    corpus = bos_corpus(4)
    common = {"max_tokens": 512, "experiments": ("baseline", "rtn"), "rtn_bits": (3,)}
    shared = validate(
        loaded, detection, corpus, ValidateConfig(**common, rtn_granularities=("tensor", "16384"))
    )
    alone = validate(loaded, detection, corpus, ValidateConfig(**common, rtn_granularities=("16384",)))
    for variant in ("plain", "clipped", "holdout"):
        key = f"rtn/3bit/16384/{variant}"
        assert str(shared.figure(key).reused_from) == f"rtn/3bit/tensor/{variant}"
        assert alone.figure(key).reused_from is None
        assert shared.figure(key).perplexity == alone.figure(key).perplexity


def test_held_out_passes_start_from_the_plain_pass_and_give_the_full_passes_figures(
    planted: tuple[LoadedModel, DetectionResult],
) -> None:
    """RTN and W8A8 with the super weight or activation held out quantize the layers before it as the
    plain pass does: they start from its recorded input there, to the same figure as a full pass."""
    loaded, detection = planted
    corpus = bos_corpus(4)
    common = {"max_tokens": 512, "experiments": ("baseline", "rtn", "w8a8"), "rtn_granularities": ("g32",)}
    cached = validate(loaded, detection, corpus, ValidateConfig(**common))
    full = validate(loaded, detection, corpus, ValidateConfig(**common, prefix_cache=False))
    layer = PLANTED[0]
    for key in ("rtn/4bit/g32/holdout", "rtn/3bit/g32/holdout", "w8a8/holdout"):
        assert cached.figure(key).prefix_layer == layer and full.figure(key).prefix_layer is None
    for key in ("rtn/4bit/g32/plain", "rtn/4bit/g32/clipped", "w8a8/naive"):
        assert cached.figure(key).prefix_layer is None
    assert [f.mean_nll for f in cached.figures] == [f.mean_nll for f in full.figures]
    assert cached.timing.prefix_cache_bytes == full.timing.prefix_cache_bytes == 0  # each freed after use


def test_restore_hook_writes_exactly_the_recorded_value(planted: tuple[LoadedModel, DetectionResult]) -> None:
    loaded, detection = planted
    layer, row, _ = PLANTED
    outputs: list[torch.Tensor] = []

    def grab(_module: nn.Module, _args: tuple[Any, ...], output: Any) -> None:
        outputs.append(output[..., row].clone())  # (batch, window): the MLP's output is the down_proj's

    config = ValidateConfig(experiments=("restore_sa",), max_tokens=512, batch_size=4)
    with forward_hooks(loaded.model, {f"model.layers.{layer}.mlp": grab}):
        result = validate(loaded, detection, bos_corpus(4), config)
    # first the evaluator's check of its head on a few tokens, then one batch each: baseline, +SA pass
    *checks, baseline, restored = outputs
    assert [tuple(c.shape) for c in checks] == [(1, 16)] * 2 and baseline.shape == restored.shape == (4, 128)
    sites = result.super_activation
    assert sites is not None and sites.positions >= 4
    mask = baseline.abs() >= sites.threshold
    assert int(mask.sum()) == sites.positions
    assert torch.equal(restored[mask], baseline[mask])  # bit-exact at every site
    assert not torch.equal(restored[~mask], baseline[~mask])  # elsewhere the zeroed weight shows
    assert {str(f.key) for f in result.figures} == {"baseline", "zero/joint+sa"}


def test_verdict_needs_joint_and_controls(planted: tuple[LoadedModel, DetectionResult]) -> None:
    loaded, detection = planted
    result = validate(
        loaded, detection, bos_corpus(2), ValidateConfig(experiments=("alone",), max_tokens=256)
    )
    assert result.verdict.verdict == "not_measured"
    assert [v.verdict for v in result.super_weight_verdicts] == ["not_measured"]


def _figures(**ratios: float | None) -> dict[FigureKey, Figure]:
    keys = {
        "joint": FigureKey.joint(),
        "largest": FigureKey.control("largest"),
        "random": FigureKey.control("random"),
        "a": FigureKey.alone((1, 2, 3)),
        "b": FigureKey.alone((2, 4, 6)),
    }
    return {
        keys[name]: Figure(
            key=keys[name],
            experiment="x",
            label=name,
            perplexity=None if r is None else 10.0 * r,
            ratio=r,
            mean_nll=0.0,
            seconds=0.0,
        )
        for name, r in ratios.items()
    }


TWO = [(1, 2, 3), (2, 4, 6)]


def test_confirmed_jointly_with_one_weight_inert_alone() -> None:
    model, weights = decide_verdicts(
        TWO, _figures(joint=20.0, largest=1.1, random=1.0, a=12.0, b=1.05), ValidateConfig()
    )
    assert model.verdict == "confirmed"
    assert model.control_limit_ratio == pytest.approx(20.0**0.25)
    assert [w.verdict for w in weights] == ["confirmed", "inert"]
    assert all(w.member_of_confirmed_set for w in weights)
    assert "jointly" in weights[1].reason


def test_inert_when_joint_zeroing_is_mild_or_controls_are_not_far_below() -> None:
    mild, _ = decide_verdicts(
        TWO, _figures(joint=3.0, largest=1.0, random=1.0, a=2.0, b=1.0), ValidateConfig()
    )
    assert mild.verdict == "inert" and "only 3.00x" in mild.reason
    unspecific, weights = decide_verdicts(
        TWO, _figures(joint=20.0, largest=8.0, random=1.0, a=20.0, b=1.0), ValidateConfig()
    )
    assert unspecific.verdict == "inert" and "not specific" in unspecific.reason
    assert [w.verdict for w in weights] == ["inert", "inert"]


def test_an_overflowing_pass_counts_as_infinite() -> None:
    model, weights = decide_verdicts(
        TWO[:1], _figures(joint=None, largest=1.0, random=1.0, a=None), ValidateConfig()
    )
    assert model.verdict == "confirmed" and model.joint_ratio == math.inf
    assert weights[0].verdict == "confirmed"


def test_a_model_without_super_weights(planted: tuple[LoadedModel, DetectionResult]) -> None:
    loaded, detection = planted
    empty = DetectionResult(
        super_weights=(),
        super_activation=None,
        layer_profile=detection.layer_profile,
        provenance=detection.provenance,
    )
    config = ValidateConfig(max_tokens=256, rtn_bits=(4,), rtn_granularities=("g32",))
    result = validate(loaded, empty, bos_corpus(2), config)
    assert result.verdict.verdict == "not_measured"
    assert {str(f.key) for f in result.figures} == {
        "baseline",
        "rtn/4bit/g32/plain",
        "rtn/4bit/g32/clipped",
        "rtn/4bit/g32/holdout",
        "w8a8/naive",
        "w8a8/holdout",
    }
    assert str(result.figure("rtn/4bit/g32/holdout").reused_from) == "rtn/4bit/g32/plain"
    assert str(result.figure("w8a8/holdout").reused_from) == "w8a8/naive"


def test_experiment_names() -> None:
    assert parse_experiments("all") == EXPERIMENTS
    assert parse_experiments(" rtn, joint ") == ("joint", "rtn")
    with pytest.raises(InvalidInputError, match="unknown experiment 'prune'"):
        parse_experiments("joint,prune")
    with pytest.raises(InvalidInputError):
        ValidateConfig(experiments=("nope",)).check()


@pytest.mark.parametrize(
    "change",
    [
        {"confirm_factor": 1.0},
        {"rtn_bits": (1,)},
        {"rtn_granularities": ("g0",)},
        {"rtn_variants": ("fancy",)},
        {"clip_method": "mad"},
        {"clip_threshold": -1.0},
        {"window": 1},
        {"scale_factors": (math.nan,)},
    ],
)
def test_bad_configuration_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        ValidateConfig(**change).check()


def test_budget_smaller_than_an_explicit_window_is_refused(
    planted: tuple[LoadedModel, DetectionResult],
) -> None:
    loaded, detection = planted
    with pytest.raises(InvalidInputError, match="smaller than one 128-token window"):
        validate(loaded, detection, bos_corpus(2), ValidateConfig(window=128, max_tokens=100))


def test_the_default_window_follows_a_small_budget(planted: tuple[LoadedModel, DetectionResult]) -> None:
    loaded, detection = planted
    config = ValidateConfig(experiments=("baseline",), max_tokens=100)
    result = validate(loaded, detection, bos_corpus(2), config)
    assert (result.corpus.window, result.corpus.windows) == (100, 1)
