"""The validator's result types: figure keys are text in their JSON; a verdict stores what it extends."""

from __future__ import annotations

from contracts.status import SuperWeightStatus
from contracts.validation import CorpusIdentity, FigureKey, Verdict
from contracts.validation_result import REASON_MAX, Figure, SuperWeightVerdict


def test_a_figure_writes_its_keys_as_text_and_reads_them_back() -> None:
    figure = Figure(
        key=FigureKey.alone((2, 3968, 7003)),
        experiment="alone",
        label="zero one",
        perplexity=50.0,
        ratio=5.0,
        mean_nll=3.9,
        seconds=0.1,
        reused_from=FigureKey.joint(),
        window_nll=(3.8, 4.0),
    )
    data = figure.model_dump(mode="json")
    assert (data["key"], data["reused_from"]) == ("zero/alone/2-3968-7003", "zero/joint")
    assert Figure.model_validate(data) == figure
    stored = figure.measurement(10.0, figure_corpus())
    assert (stored.key, stored.coordinates, stored.parameters["label"]) == (
        figure.key,
        (2, 3968, 7003),
        "zero one",
    )


def test_a_super_weight_verdict_is_the_stored_verdict_with_its_evidence() -> None:
    verdict = SuperWeightVerdict(
        layer=1,
        row=10,
        col=20,
        verdict=SuperWeightStatus.SET_CONFIRMED,
        reason="x" * (REASON_MAX + 5),
        alone_ratio=1.0,
        member_of_confirmed_set=True,
        necessity=0.9,
    )
    stored = verdict.stored()
    assert type(stored) is Verdict and isinstance(verdict, Verdict)
    assert stored.status == verdict.status == SuperWeightStatus.SET_CONFIRMED
    assert len(stored.reason or "") == REASON_MAX
    assert "necessity" not in stored.model_dump()


def figure_corpus() -> CorpusIdentity:
    """A corpus identity for a stored measurement."""
    return CorpusIdentity(name="tiny", sha256="0" * 64, tokens=256, window=128)
