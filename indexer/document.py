"""The validation document (`contracts.validation.ValidationDocument`) of a validation result.

What the catalog stores and every bundle reflects: the verdicts (with `member_of_confirmed_set` and the
reason) and every figure, each with its key, its corpus identity and the baseline it is a ratio of.
"""

from __future__ import annotations

from typing import Any

from contracts.base import Coordinates
from contracts.validation import FigureKey, Measurement, ValidationDocument, Verdict
from indexer.validate import ValidationResult

#: the longest reason a verdict carries
REASON_MAX = 2000


def validation_document(result: ValidationResult) -> ValidationDocument:
    """Every figure and verdict of `result`, in the one document shape all layers share."""
    corpus = result.corpus.identity()
    baseline = result.baseline_perplexity
    results: list[Measurement] = []
    for figure in result.figures:
        key = figure.key
        # the super weight a figure decides alone (leave-one-out's kept member is decided with the set)
        single: Coordinates | None = (
            key.coordinates[0] if key.experiment == "alone" and key.coordinates else None
        )
        parameters: dict[str, Any] = {
            "key": str(key),
            "label": figure.label,
            **dict(figure.params),
            "ratio_low": figure.ratio_low,
            "ratio_high": figure.ratio_high,
        }
        results.append(
            Measurement(
                experiment=figure.experiment,
                key=key,
                parameters=parameters,
                metric="perplexity",
                value=figure.perplexity,
                baseline=baseline,
                ratio=figure.ratio,
                corpus=corpus,
                coordinates=single,
            )
        )
    null = result.verdict.null
    if null is not None:
        results.append(
            Measurement(
                experiment="null",
                key=FigureKey.null(),
                parameters={
                    "sets": null.sets,
                    "random_sets": null.random_sets,
                    "column_sets": null.column_sets,
                    "quantiles": dict(null.quantiles),
                    "p_value": null.p_value,
                },
                metric="null_max_ratio",
                value=null.max_ratio,
                ratio=null.max_ratio,
                corpus=corpus,
            )
        )
    shift = result.stopwords
    if shift is not None:
        results.append(
            Measurement(
                experiment="stopwords",
                key=FigureKey(experiment="stopwords"),
                parameters={"after": str(shift.after_key), "stopwords": len(shift.stopwords)},
                metric="stopword_mass",
                value=shift.mass_after,
                baseline=shift.mass_before,
                ratio=shift.mass_after / shift.mass_before if shift.mass_before else None,
                corpus=corpus,
            )
        )
    verdicts = tuple(
        Verdict(
            layer=v.layer,
            row=v.row,
            col=v.col,
            verdict=v.verdict,  # type: ignore[arg-type]
            reason=v.reason[:REASON_MAX],
            member_of_confirmed_set=v.member_of_confirmed_set,
            alone_ratio=v.alone_ratio,
        )
        for v in result.super_weight_verdicts
    )
    return ValidationDocument(model_verdict=result.verdict.verdict, verdicts=verdicts, results=tuple(results))
