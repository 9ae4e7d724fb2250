"""Repositories: every query of the catalog lives here; callers commit at their boundary."""

from catalog.repositories.coordinates import (
    Comparison,
    CoordinateEntry,
    CoordinateHistory,
    CoordinateRepository,
    CoordinateView,
    Drift,
)
from catalog.repositories.jobs import JobRepository, SubmissionOutcome
from catalog.repositories.keys import SCOPES, ApiKeyRepository
from catalog.repositories.models import ModelFilter, ModelPage, ModelRepository, ModelSummary
from catalog.repositories.outbox import OutboxRepository
from catalog.repositories.recording import RecordedRun, RunRecorder, record_run
from catalog.repositories.runs import RunRepository

__all__ = [
    "SCOPES",
    "ApiKeyRepository",
    "Comparison",
    "CoordinateEntry",
    "CoordinateHistory",
    "CoordinateRepository",
    "CoordinateView",
    "Drift",
    "JobRepository",
    "ModelFilter",
    "ModelPage",
    "ModelRepository",
    "ModelSummary",
    "OutboxRepository",
    "RecordedRun",
    "RunRecorder",
    "RunRepository",
    "SubmissionOutcome",
    "record_run",
]
