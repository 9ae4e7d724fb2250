"""The validation document (`contracts.validation.ValidationDocument`) of a validation result.

What the catalog stores and every bundle reflects: the verdicts (with `member_of_confirmed_set` and the
reason) and every figure, each with its key, its corpus identity and the baseline it is a ratio of. The
result types derive it themselves (`ValidationResult.document()`); this is the indexer's entry point.
"""

from __future__ import annotations

from contracts.validation import ValidationDocument
from indexer.validation.validate import ValidationResult


def validation_document(result: ValidationResult) -> ValidationDocument:
    """Every figure and verdict of `result`, in the one document shape all layers share."""
    return result.document()
