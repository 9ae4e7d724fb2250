"""Set-level verdicts through the real detector and validator, on a planted Phi-3-mini-like six.

`tests.tiny.plant_six_super_weights` plants six super weights (three rows sharing one column in each of two
early layers) of which each alone is ~1x and all six together wreck the model; leave-one-out must call
every one `set-confirmed`. A decoy, a large weight in the same column whose row nothing reads as the super
activation, is detected too and must come out `redundant` or `inert`, outside the minimal confirmed set.
"""

from __future__ import annotations

import pytest

from indexer.detection.detect import detect
from indexer.validation.validate import ValidateConfig, ValidationResult, validate
from tests.indexer.validation.conftest import WINDOW, bos_corpus
from tests.tiny import DECOY, SIX_SUPER_WEIGHTS, plant_six_super_weights, tiny_model

#: everything the set-level verdict rests on: joint, alone, controls, the calibrated null, leave-one-out
EXPERIMENTS = ("baseline", "joint", "alone", "controls", "null", "leave_one_out")


def _validated(decoy: bool) -> tuple[tuple[tuple[int, int, int], ...], ValidationResult]:
    loaded = tiny_model("llama", num_layers=6)
    planted = plant_six_super_weights(loaded, decoy=decoy)
    detection = detect(loaded)
    assert sorted(sw.coordinates for sw in detection.super_weights) == sorted(planted)
    config = ValidateConfig(experiments=EXPERIMENTS, window=WINDOW, max_tokens=2 * WINDOW)
    return planted, validate(loaded, detection, bos_corpus(2), config)


def test_six_weights_each_inert_alone_and_catastrophic_together_are_all_set_confirmed() -> None:
    _, result = _validated(decoy=False)
    verdict = result.verdict
    assert verdict.verdict == "confirmed", verdict.reason
    assert verdict.joint_ratio_low is not None and verdict.joint_ratio_low >= 20.0  # catastrophic
    assert verdict.null is not None and verdict.null.random_sets == 32 and verdict.null.column_sets == 8
    assert verdict.null.max_ratio is not None and verdict.null.max_ratio < 1.1
    assert sorted(verdict.minimal_set) == sorted(SIX_SUPER_WEIGHTS)
    weights = {(w.layer, w.row, w.col): w for w in result.super_weight_verdicts}
    assert set(weights) == set(SIX_SUPER_WEIGHTS)
    for coordinates, weight in weights.items():
        assert weight.verdict == "set-confirmed", (coordinates, weight.reason)
        assert weight.alone_ratio == pytest.approx(1.0, abs=0.1)  # alone, each changes nothing
        assert weight.necessity is not None and weight.necessity > 0.9  # keeping it repairs the model
        assert weight.member_of_confirmed_set


def test_a_decoy_in_the_same_column_is_redundant_or_inert() -> None:
    planted, result = _validated(decoy=True)
    assert DECOY in planted
    verdict = result.verdict
    assert verdict.verdict == "confirmed", verdict.reason
    assert sorted(verdict.minimal_set) == sorted(SIX_SUPER_WEIGHTS)
    statuses = {(w.layer, w.row, w.col): w.verdict for w in result.super_weight_verdicts}
    assert statuses.pop(DECOY) in ("redundant", "inert")
    assert set(statuses.values()) == {"set-confirmed"}
    assert set(statuses) == set(SIX_SUPER_WEIGHTS)
