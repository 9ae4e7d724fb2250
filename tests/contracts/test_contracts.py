"""The contracts on their own: figure keys, the status a verdict means, the manifest codec, identifiers."""

from __future__ import annotations

import pytest

from contracts.errors import BundleFormatError, InvalidInputError
from contracts.identifiers import (
    is_local_revision,
    is_model_id,
    local_model_id,
    local_revision,
    short_revision,
    validate_model_id,
)
from contracts.manifest import build_manifest, check_manifest
from contracts.status import SuperWeightStatus
from contracts.validation import FigureKey, Verdict

#: every key text the validator writes
KEYS = (
    "baseline",
    "zero/joint",
    "zero/alone/2-3968-7003",
    "zero/joint+sa",
    "control/largest",
    "control/random",
    "scale/0",
    "scale/1.5",
    "rtn/4bit/g128/holdout",
    "rtn/3bit/tensor/plain",
    "rtn/4bit/1048576/clipped",
    "w8a8/naive",
    "w8a8/holdout",
    "zero/joint-without/2-3968-7003",
    "null/random/0",
    "null/column/7",
    "null",
    "stopwords",
)


@pytest.mark.parametrize("text", KEYS)
def test_figure_keys_round_trip_through_their_text_and_their_json(text: str) -> None:
    key = FigureKey.parse(text)
    assert str(key) == text
    assert FigureKey.model_validate(key.model_dump(mode="json")) == key
    assert FigureKey.model_validate(text) == key


def test_every_kind_of_key_has_its_text_form() -> None:
    keys = {
        FigureKey.baseline(): "baseline",
        FigureKey.joint(): "zero/joint",
        FigureKey.alone((2, 3968, 7003)): "zero/alone/2-3968-7003",
        FigureKey.without((2, 3968, 7003)): "zero/joint-without/2-3968-7003",
        FigureKey.restored(): "zero/joint+sa",
        FigureKey.control("largest"): "control/largest",
        FigureKey.null("random", 3): "null/random/3",
        FigureKey.null("column", 0): "null/column/0",
        FigureKey.null(): "null",
        FigureKey.scaled(0): "scale/0",
        FigureKey.rtn(4, "g128", "holdout"): "rtn/4bit/g128/holdout",
        FigureKey.w8a8("naive"): "w8a8/naive",
    }
    for key, text in keys.items():
        assert str(key) == text and FigureKey.parse(text) == key
    assert FigureKey.without((1, 2, 3)).experiment == "leave_one_out"
    # an older document named leave-one-out figures by their text alone
    old = {"experiment": "zero/joint-without/1-2-3"}
    assert FigureKey.model_validate(old) == FigureKey.without((1, 2, 3))
    assert FigureKey.parse("null/column/7").model_dump(mode="json") == {
        "experiment": "null",
        "variant": "column",
        "draw": 7,
    }


def test_figure_keys_are_compared_as_values() -> None:
    assert FigureKey.alone((2, 3968, 7003)) == FigureKey.parse("zero/alone/2-3968-7003")
    assert FigureKey.alone((2, 3968, 7003)) != FigureKey.alone((2, 3968, 7004))
    assert FigureKey.joint().model_dump(mode="json") == {"experiment": "joint"}


@pytest.mark.parametrize(
    ("verdict", "member", "status"),
    [
        ("confirmed", True, "confirmed"),
        ("inert", True, "confirmed"),  # matters jointly: the indexer's meaning
        ("inert", False, "inert"),
        ("not_measured", False, "candidate"),
        ("not_measured", True, "confirmed"),
    ],
)
def test_the_status_a_verdict_means(verdict: str, member: bool, status: str) -> None:
    decided = Verdict(
        layer=1, row=2, col=3, verdict=SuperWeightStatus(verdict), member_of_confirmed_set=member
    )
    assert decided.status == status


def test_the_manifest_codec_refuses_what_is_not_a_manifest() -> None:
    manifest = build_manifest(
        model="org/model",
        revision=None,
        super_weights=[{"layer": 1, "row": 2, "col": 3, "status": "set-confirmed"}],
        super_activation=None,
        provenance={},
    )
    assert check_manifest(manifest).super_weights[0].status == SuperWeightStatus.SET_CONFIRMED
    with pytest.raises(BundleFormatError, match="JSON object"):
        check_manifest([])
    with pytest.raises(BundleFormatError, match="lacks sha256"):
        check_manifest({k: v for k, v in manifest.items() if k != "sha256"})
    for bad in ({"layer": True}, {"layer": -1}, {"status": "great"}, {"value": "1.0"}):
        weight = {"layer": 1, "row": 2, "col": 3, "status": "confirmed", **bad}
        with pytest.raises(BundleFormatError, match="malformed bundle manifest"):
            build_manifest(
                model="org/model", revision=None, super_weights=[weight], super_activation=None, provenance={}
            )
    assert issubclass(BundleFormatError, InvalidInputError)


def test_identifiers_are_one_grammar() -> None:
    assert is_model_id("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert not is_model_id("../etc/passwd") and not is_model_id("org/a--b") and not is_model_id("org")
    with pytest.raises(InvalidInputError, match="invalid model id"):
        validate_model_id("/abs/path")
    assert local_model_id("/models/My Model..gguf") == "local/My-Model.gguf"
    digest = local_revision("ab" * 32)
    assert is_local_revision(digest) and not is_local_revision("sha256:xyz")
    assert short_revision(digest) == "ab" * 6 and short_revision("0" * 40) == "0" * 12
