"""Verdicts: what the figures say about the model and about each super weight.

The model is `confirmed` when zeroing its super weights together raises perplexity by the factor at the
low end of the ratio's bootstrap interval, by the factor over the calibrated null's largest ratio, and the
controls stay far below. Each super weight is then `confirmed` (zeroing it alone passes the same test),
`set-confirmed` (restoring it alone while the others stay zeroed removes at least `necessity_share` of the
joint log ratio: the set needs it), `redundant` (a member of the confirmed set the set does not need),
`inert` or `not_measured`. The members that are confirmed or set-confirmed are the minimal confirmed set.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

from contracts.status import SuperWeightStatus as Status
from contracts.validation import FigureKey
from indexer.model.ablation import Coordinate
from indexer.validation.config import ValidateConfig
from indexer.validation.experiments.pruning import coordinate_text
from indexer.validation.results import Figure, ModelVerdict, NullSummary, SuperWeightVerdict

CONTROL_KEYS = (FigureKey.control("largest"), FigureKey.control("random"))
NULL_QUANTILES = (0.0, 0.05, 0.5, 0.95, 1.0)


def _ratio(figure: Figure | None) -> float | None:
    if figure is None:
        return None
    return figure.ratio if figure.ratio is not None else math.inf


def _low(figure: Figure | None) -> float | None:
    """The low end of the ratio's interval (the ratio itself without one)."""
    if figure is None:
        return None
    if figure.ratio_low is not None:
        return figure.ratio_low
    return _ratio(figure)


def null_summary(joint: Figure | None, null: Sequence[Figure]) -> NullSummary | None:
    """Quantiles, maximum and empirical p-value of the null ratios (None without any)."""
    ratios = sorted(_ratio(f) or math.inf for f in null)
    if not ratios:
        return None
    joint_ratio = _ratio(joint)
    quantiles = {f"{q:g}": _finite(_quantile(ratios, q)) for q in NULL_QUANTILES}
    at_least = sum(1 for r in ratios if joint_ratio is None or r >= joint_ratio)
    return NullSummary(
        sets=len(ratios),
        random_sets=sum(1 for f in null if f.key == FigureKey.null("random", f.key.draw)),
        column_sets=sum(1 for f in null if f.key == FigureKey.null("column", f.key.draw)),
        quantiles=quantiles,
        max_ratio=_finite(ratios[-1]),
        joint_ratio=_finite(joint_ratio),
        p_value=(1 + at_least) / (1 + len(ratios)),
    )


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _quantile(ordered: Sequence[float], q: float) -> float:
    if len(ordered) == 1 or q <= 0:
        return ordered[0]
    if q >= 1:
        return ordered[-1]
    return statistics.quantiles(ordered, n=1000, method="inclusive")[round(q * 1000) - 1]


def decide_verdicts(
    coordinates: Sequence[Coordinate],
    figures: Mapping[FigureKey, Figure],
    config: ValidateConfig,
    null: Sequence[Figure] = (),
    corpus: str = "",
) -> tuple[ModelVerdict, tuple[SuperWeightVerdict, ...]]:
    """The model's verdict and each super weight's status (see the module's docstring)."""
    factor = config.confirm_factor
    on = f" on {corpus}" if corpus else ""
    if not coordinates:
        reason = "no super weights were detected"
        return _unmeasured(reason, None, factor, corpus), ()
    joint = figures.get(FigureKey.joint())
    controls = [figures.get(key) for key in CONTROL_KEYS]

    def alone_of(coordinate: Coordinate) -> Figure | None:
        return figures.get(FigureKey.alone(coordinate))

    if joint is None or any(c is None for c in controls):
        reason = "the verdict needs the joint and controls experiments"
        model = _unmeasured(reason, _ratio(joint), factor, corpus)
        return model, tuple(
            SuperWeightVerdict(
                layer=c[0],
                row=c[1],
                col=c[2],
                verdict=Status.NOT_MEASURED,
                reason=reason,
                alone_ratio=_ratio(alone_of(c)),
            )
            for c in coordinates
        )
    joint_ratio, joint_low = _ratio(joint), _low(joint)
    assert joint_ratio is not None and joint_low is not None
    limit = math.exp(config.control_share * math.log(joint_ratio)) if joint_ratio > 1 else 1.0
    max_control = max(_ratio(c) or math.inf for c in controls)
    controls_ok = max_control <= limit
    summary = null_summary(joint, [*null, *(c for c in controls if c is not None)])
    null_max = (
        max_control if summary is None else math.inf if summary.max_ratio is None else summary.max_ratio
    )
    beats_null = joint_low >= factor * max(null_max, 1.0)
    n = len(coordinates)
    interval = _interval_text(joint)
    null_text = (
        f"; null of {summary.sets} sets: median {_x(summary.quantiles['0.5'])}, "
        f"max {_x(summary.max_ratio)}, p = {summary.p_value:.3f}"
        if summary is not None
        else ""
    )

    def model_verdict(verdict: Status, reason: str) -> ModelVerdict:
        return ModelVerdict(
            verdict=verdict,
            reason=reason,
            joint_ratio=joint_ratio,
            max_control_ratio=max_control,
            confirm_factor=factor,
            control_limit_ratio=limit,
            joint_ratio_low=joint.ratio_low,
            joint_ratio_high=joint.ratio_high,
            minimal_set=minimal if verdict == Status.CONFIRMED else (),
            null=summary,
            corpus=corpus,
        )

    confirmed_set = joint_low >= factor and controls_ok and beats_null
    per_weight = _weight_verdicts(coordinates, figures, config, joint_ratio, confirmed_set, controls_ok)
    minimal = tuple(
        v.coordinates for v in per_weight if v.verdict in (Status.CONFIRMED, Status.SET_CONFIRMED)
    )
    if confirmed_set:
        names = ", ".join(coordinate_text(c) for c in minimal) or "none of them alone"
        reason = (
            f"zeroing the {n} super weight(s) raises perplexity{on} {joint_ratio:.2f}x{interval} "
            f"(low end >= {factor:g}x, and >= {factor:g}x the null's max){null_text}; the controls at most "
            f"{max_control:.2f}x (limit {limit:.2f}x); minimal confirmed set: {names}"
        )
        model = model_verdict(Status.CONFIRMED, reason)
    elif joint_low >= factor and not controls_ok:
        reason = (
            f"zeroing the super weight(s) raises perplexity{on} {joint_ratio:.2f}x, but a "
            f"control raises it {max_control:.2f}x (limit {limit:.2f}x): not specific"
        )
        model = model_verdict(Status.INERT, reason)
    elif joint_low >= factor:
        reason = (
            f"zeroing the super weight(s) raises perplexity{on} {joint_ratio:.2f}x{interval}, not "
            f"{factor:g}x the null's max ({null_max:.2f}x): not specific{null_text}"
        )
        model = model_verdict(Status.INERT, reason)
    else:
        reason = (
            f"zeroing the {n} super weight(s) raises perplexity{on} only {joint_ratio:.2f}x{interval} "
            f"(< {factor:g}x at the interval's low end){null_text}"
        )
        model = model_verdict(Status.INERT, reason)
    return model, per_weight


def _unmeasured(reason: str, joint_ratio: float | None, factor: float, corpus: str) -> ModelVerdict:
    return ModelVerdict(
        verdict=Status.NOT_MEASURED,
        reason=reason,
        joint_ratio=joint_ratio,
        max_control_ratio=None,
        confirm_factor=factor,
        control_limit_ratio=None,
        corpus=corpus,
    )


def _x(ratio: float | None) -> str:
    return "overflow" if ratio is None else f"{ratio:.2f}x"


def _interval_text(figure: Figure) -> str:
    if figure.ratio_low is None or figure.ratio_high is None:
        return ""
    return f" (95% interval {figure.ratio_low:.2f}-{figure.ratio_high:.2f}x)"


def _weight_verdicts(
    coordinates: Sequence[Coordinate],
    figures: Mapping[FigureKey, Figure],
    config: ValidateConfig,
    joint_ratio: float,
    confirmed_set: bool,
    controls_ok: bool,
) -> tuple[SuperWeightVerdict, ...]:
    factor = config.confirm_factor
    per_weight = []
    for coordinate in coordinates:
        alone_figure = figures.get(FigureKey.alone(coordinate))
        alone, alone_low = _ratio(alone_figure), _low(alone_figure)
        necessity = _necessity(figures.get(FigureKey.without(coordinate)), joint_ratio)
        if len(coordinates) == 1 and alone_figure is None and confirmed_set:
            alone, alone_low = joint_ratio, _low(figures.get(FigureKey.joint()))  # alone is the joint zeroing
        verdict: Status
        if alone is None and necessity is None:
            verdict, reason = Status.NOT_MEASURED, "not zeroed alone (the alone experiment was not run)"
        elif alone is not None and alone_low is not None and alone_low >= factor and controls_ok:
            verdict, reason = Status.CONFIRMED, f"zeroing it alone raises perplexity {alone:.2f}x"
        elif alone is not None and alone_low is not None and alone_low >= factor:
            verdict, reason = Status.INERT, "the controls are not far below"
        elif confirmed_set and necessity is not None:
            alone_text = f"alone {alone:.2f}x; " if alone is not None else ""
            if necessity >= config.necessity_share:
                verdict = Status.SET_CONFIRMED
                reason = (
                    f"{alone_text}keeping it while the others are zeroed removes {necessity:.0%} of the "
                    f"joint effect (>= {config.necessity_share:.0%}): the set needs it"
                )
            else:
                verdict = Status.REDUNDANT
                reason = (
                    f"{alone_text}keeping it while the others are zeroed removes only {necessity:.0%} of "
                    f"the joint effect (< {config.necessity_share:.0%}): the set does not need it"
                )
        elif alone is None:
            verdict, reason = Status.INERT, "the set it belongs to is not confirmed"
        else:
            verdict, reason = Status.INERT, f"zeroing it alone raises perplexity {alone:.2f}x (< {factor:g}x)"
            if confirmed_set:
                reason += "; it matters jointly with the others"
        per_weight.append(
            SuperWeightVerdict(
                layer=coordinate[0],
                row=coordinate[1],
                col=coordinate[2],
                verdict=verdict,
                reason=reason,
                alone_ratio=alone,
                member_of_confirmed_set=confirmed_set,
                alone_ratio_low=alone_low if alone_figure is not None else None,
                necessity=necessity,
            )
        )
    return tuple(per_weight)


def _necessity(without: Figure | None, joint_ratio: float) -> float | None:
    """Share of the joint log ratio that keeping the member (the others zeroed) removes."""
    ratio = _ratio(without)
    if ratio is None or joint_ratio <= 1 or math.isinf(joint_ratio):
        return None if ratio is None or joint_ratio <= 1 else (0.0 if math.isinf(ratio) else 1.0)
    if math.isinf(ratio):
        return 0.0
    return (math.log(joint_ratio) - math.log(max(ratio, 1e-12))) / math.log(joint_ratio)
