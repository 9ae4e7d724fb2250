"""Set-level verdicts: leave-one-out necessity, the calibrated null and the interval rule, on figures."""

from __future__ import annotations

import math

import pytest

from contracts.validation import FigureKey
from indexer.validation.validate import Figure, ValidateConfig, decide_verdicts

SIX = [(1, 7, c) for c in (3, 9, 14, 22, 30, 41)]
DECOY = (1, 12, 3)  # a large weight in the first member's column


JOINT = FigureKey.joint()


def figure(key: FigureKey, ratio: float | None, low: float | None = None, **params: object) -> Figure:
    """A figure of `ratio` against a baseline of 10 (its interval's low end `low`)."""
    perplexity = None if ratio is None else 10.0 * ratio
    return Figure(
        key=key,
        experiment="x",
        label=str(key),
        perplexity=perplexity,
        ratio=ratio,
        mean_nll=0.0,
        seconds=0.0,
        params=params,
        ratio_low=low,
    )


def controls(largest: float = 1.05, random: float = 1.0) -> dict[FigureKey, Figure]:
    return {
        FigureKey.control("largest"): figure(FigureKey.control("largest"), largest),
        FigureKey.control("random"): figure(FigureKey.control("random"), random),
    }


def null(*ratios: float) -> list[Figure]:
    return [figure(FigureKey.null("random", i), r, kind="random") for i, r in enumerate(ratios)]


def test_six_weights_each_inert_alone_and_catastrophic_together_are_all_set_confirmed() -> None:
    figures = {JOINT: figure(JOINT, 400.0, low=250.0), **controls()}
    for c in SIX:
        figures[FigureKey.alone(c)] = figure(FigureKey.alone(c), 1.01)
        figures[FigureKey.without(c)] = figure(FigureKey.without(c), 30.0)  # keeping any one repairs a lot
    model, weights = decide_verdicts(
        SIX, figures, ValidateConfig(), null(1.0, 1.02, 0.99), corpus="wiki.test.raw"
    )
    assert model.verdict == "confirmed" and model.minimal_set == tuple(SIX)
    assert "wiki.test.raw" in model.reason and "minimal confirmed set" in model.reason
    assert [w.verdict for w in weights] == ["set-confirmed"] * 6
    assert all(w.necessity == pytest.approx(1 - math.log(30) / math.log(400)) for w in weights)


def test_a_decoy_in_the_same_column_is_redundant() -> None:
    members = [*SIX, DECOY]
    figures = {JOINT: figure(JOINT, 400.0, low=250.0), **controls()}
    for c in members:
        figures[FigureKey.alone(c)] = figure(FigureKey.alone(c), 1.0)
        # keeping the decoy while the six are zeroed changes nothing
        figures[FigureKey.without(c)] = figure(FigureKey.without(c), 400.0 if c == DECOY else 30.0)
    model, weights = decide_verdicts(members, figures, ValidateConfig(), null(1.0))
    statuses = {(w.layer, w.row, w.col): w.verdict for w in weights}
    assert statuses[DECOY] == "redundant"
    assert all(statuses[c] == "set-confirmed" for c in SIX)
    assert model.verdict == "confirmed" and model.minimal_set == tuple(SIX)


def test_the_factor_applies_to_the_intervals_low_end() -> None:
    one = [(11, 507, 1229)]
    figures = {JOINT: figure(JOINT, 6.0, low=4.0), **controls()}
    model, weights = decide_verdicts(one, figures, ValidateConfig(), null(1.0))
    assert model.verdict == "inert" and "interval" in model.reason
    figures[JOINT] = figure(JOINT, 6.0, low=5.5)
    model, weights = decide_verdicts(one, figures, ValidateConfig(), null(1.0))
    assert model.verdict == "confirmed" and [w.verdict for w in weights] == ["confirmed"]


def test_the_joint_ratio_must_beat_the_nulls_maximum_by_the_factor() -> None:
    one = [(11, 507, 1229)]
    figures = {JOINT: figure(JOINT, 12.0, low=11.0), **controls()}
    # a null set as harmful as 2.5x: 11 < 5 x 2.5
    model, _ = decide_verdicts(one, figures, ValidateConfig(control_share=0.9), null(1.0, 1.1, 2.5))
    assert model.verdict == "inert" and "null" in model.reason
    model, _ = decide_verdicts(one, figures, ValidateConfig(), null(*([1.0] * 31), 1.1))
    assert model.verdict == "confirmed"
    summary = model.null
    assert summary is not None and summary.sets == 34 and summary.random_sets == 32  # + the two controls
    assert summary.max_ratio == 1.1 and summary.p_value == pytest.approx(1 / 35)
    assert summary.quantiles["0"] == 1.0 and summary.quantiles["1"] == 1.1
