"""Repositories: every query of the catalog lives here; callers commit at their boundary."""

from catalog.repositories.jobs import JobRepository, SubmissionOutcome
from catalog.repositories.keys import SCOPES, ApiKeyRepository
from catalog.repositories.models import ModelFilter, ModelPage, ModelRepository, ModelSummary
from catalog.repositories.runs import (
    Comparison,
    CoordinateEntry,
    CoordinateView,
    Drift,
    RecordedRun,
    RunRepository,
    record_run,
)

__all__ = [
    "SCOPES",
    "ApiKeyRepository",
    "Comparison",
    "CoordinateEntry",
    "CoordinateView",
    "Drift",
    "JobRepository",
    "ModelFilter",
    "ModelPage",
    "ModelRepository",
    "ModelSummary",
    "RecordedRun",
    "RunRepository",
    "SubmissionOutcome",
    "record_run",
]
