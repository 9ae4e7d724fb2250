"""The validator's result types (defined once, in `contracts.validation_result`) and its progress events."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from contracts import validation_result
from contracts.validation_result import (
    Figure,
    ModelVerdict,
    NullSummary,
    Phase,
    QuantizationSummary,
    StopwordShift,
    SuperActivationSites,
    SuperWeightVerdict,
    TokenShift,
    ValidationTiming,
    WeightSet,
)
from indexer.validation.config import ValidateConfig

__all__ = [
    "Figure",
    "ModelVerdict",
    "NullSummary",
    "Phase",
    "ProgressCallback",
    "ProgressEvent",
    "QuantizationSummary",
    "StopwordShift",
    "SuperActivationSites",
    "SuperWeightVerdict",
    "TokenShift",
    "ValidationResult",
    "ValidationTiming",
    "WeightSet",
]

#: a validation result with the indexer's configuration
ValidationResult = validation_result.ValidationResult[ValidateConfig]


@dataclass(frozen=True)
class ProgressEvent:
    """Progress of one phase: `completed` of `total` figures done; `label` names the one just finished."""

    phase: Phase
    completed: int
    total: int
    label: str


ProgressCallback = Callable[[ProgressEvent], None]
