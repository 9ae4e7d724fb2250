"""Verdicts: what the figures say about the model and about each super weight."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from indexer.ablation import Coordinate
from indexer.experiments.pruning import alone_key
from indexer.validation.config import ValidateConfig
from indexer.validation.results import Figure, ModelVerdict, SuperWeightVerdict, Verdict


def decide_verdicts(
    coordinates: Sequence[Coordinate], figures: Mapping[str, Figure], config: ValidateConfig
) -> tuple[ModelVerdict, tuple[SuperWeightVerdict, ...]]:
    """`confirmed` when joint zeroing reaches the factor and every control stays far below it.

    "Far below": each control's log perplexity ratio is at most `control_share` of the joint zeroing's.
    A super weight is `confirmed` on its own when zeroing it alone reaches the factor as well.
    """
    factor = config.confirm_factor
    if not coordinates:
        return ModelVerdict("not_measured", "no super weights were detected", None, None, factor, None), ()
    joint = figures.get("zero/joint")
    controls = [figures.get(key) for key in ("control/largest", "control/random")]

    def alone_ratio(coordinate: Coordinate) -> float | None:
        return _ratio(figures.get(alone_key(coordinate)))

    if joint is None or any(c is None for c in controls):
        reason = "the verdict needs the joint and controls experiments"
        model = ModelVerdict("not_measured", reason, _ratio(joint), None, factor, None)
        return model, tuple(
            SuperWeightVerdict(*c, "not_measured", reason, alone_ratio(c), False) for c in coordinates
        )
    joint_ratio = _ratio(joint)
    assert joint_ratio is not None
    limit = math.exp(config.control_share * math.log(joint_ratio)) if joint_ratio > 1 else 1.0
    max_control = max(_ratio(c) or math.inf for c in controls)
    controls_ok = max_control <= limit
    n = len(coordinates)
    if joint_ratio >= factor and controls_ok:
        model = ModelVerdict(
            "confirmed",
            f"zeroing the {n} super weight(s) raises perplexity {joint_ratio:.2f}x "
            f"(>= {factor:g}x); the controls at most {max_control:.2f}x (limit {limit:.2f}x)",
            joint_ratio,
            max_control,
            factor,
            limit,
        )
    elif joint_ratio >= factor:
        model = ModelVerdict(
            "inert",
            f"zeroing the super weight(s) raises perplexity {joint_ratio:.2f}x, but a "
            f"control raises it {max_control:.2f}x (limit {limit:.2f}x): not specific",
            joint_ratio,
            max_control,
            factor,
            limit,
        )
    else:
        model = ModelVerdict(
            "inert",
            f"zeroing the {n} super weight(s) raises perplexity only {joint_ratio:.2f}x (< {factor:g}x)",
            joint_ratio,
            max_control,
            factor,
            limit,
        )
    confirmed_set = model.verdict == "confirmed"
    per_weight = []
    for coordinate in coordinates:
        alone = alone_ratio(coordinate)
        verdict: Verdict
        if alone is None:
            verdict, reason = "not_measured", "not zeroed alone (the alone experiment was not run)"
        elif alone >= factor and controls_ok:
            verdict, reason = "confirmed", f"zeroing it alone raises perplexity {alone:.2f}x"
        elif alone >= factor:
            verdict, reason = "inert", "the controls are not far below"
        else:
            verdict, reason = "inert", f"zeroing it alone raises perplexity {alone:.2f}x (< {factor:g}x)"
            if confirmed_set:
                reason += "; it matters jointly with the others"
        per_weight.append(SuperWeightVerdict(*coordinate, verdict, reason, alone, confirmed_set))
    return model, tuple(per_weight)


def _ratio(figure: Figure | None) -> float | None:
    if figure is None:
        return None
    return figure.ratio if figure.ratio is not None else math.inf
