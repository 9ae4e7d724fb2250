"""Request and response models of the REST API (the OpenAPI schema is generated from these).

The documents the client reads too are defined in `contracts.documents` and served from here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from catalog.services import Submission
from contracts.documents import (
    MODEL_SUMMARY_EXAMPLE,
    CompareOut,
    CompareSideOut,
    Coordinate,
    CoordinateHistoryOut,
    CorpusOut,
    DerivedModelOut,
    DriftOut,
    JobOut,
    LayerStatsOut,
    MeasuredOnOut,
    ModelDetailOut,
    ModelSummaryOut,
    MovedOut,
    ProfileIterationOut,
    QualityResultOut,
    ReportedSourceOut,
    RevisionOut,
    RunReportOut,
    RunSummaryOut,
    RunVerdictOut,
    SubmissionOut,
    SuperActivationOut,
    SuperWeightOut,
    SuperWeightsOut,
    _examples,
)
from contracts.errors import InvalidInputError
from contracts.identifiers import MODEL_ID_MAX, MODEL_ID_PATTERN, REF_PATTERN, validate_model_id, validate_ref
from contracts.jobs import SubmissionOptions
from contracts.manifest import CONVENTION, BundleManifest, ManifestWeight
from contracts.text import StorableText, unstorable_reason

__all__ = [
    "BundleOut",
    "BundleWeightOut",
    "CheckOut",
    "CompareOut",
    "CompareSideOut",
    "Coordinate",
    "CoordinateHistoryOut",
    "CorpusOut",
    "DerivedModelOut",
    "DriftOut",
    "HealthOut",
    "JobOut",
    "LayerStatsOut",
    "MeasuredOnOut",
    "ModelDetailOut",
    "ModelListOut",
    "ModelSummaryOut",
    "MovedOut",
    "ProfileIterationOut",
    "QualityResultOut",
    "ReadyOut",
    "ReportedSourceOut",
    "RevisionOut",
    "RunReportOut",
    "RunSummaryOut",
    "RunVerdictOut",
    "SubmissionIn",
    "SubmissionOut",
    "SuperActivationOut",
    "SuperWeightOut",
    "SuperWeightsOut",
    "Text",
    "unstorable_fields",
]

#: a text input the catalog can store (no NUL, no lone surrogate): every free-text parameter and field
Text = StorableText


def unstorable_fields(value: Any, loc: tuple[str | int, ...] = ()) -> list[dict[str, Any]]:
    """Validation errors (FastAPI's shape) for every string in a decoded body that cannot be stored.

    Bodies are checked as decoded, before their model: every field (the contracts' too) and every key.
    """
    if isinstance(value, str):
        reason = unstorable_reason(value)
        return (
            [] if reason is None else [{"loc": loc, "msg": f"the text {reason}", "type": "string_unstorable"}]
        )
    if isinstance(value, dict):
        errors = []
        for key, item in value.items():
            where = (*loc, str(key))
            errors += unstorable_fields(key, where) + unstorable_fields(item, where)
        return errors
    if isinstance(value, list):
        return [error for index, item in enumerate(value) for error in unstorable_fields(item, (*loc, index))]
    return []


class ModelListOut(BaseModel):
    """A page of models."""

    model_config = _examples({"items": [MODEL_SUMMARY_EXAMPLE], "next_cursor": "eyJzIjoibmFtZSIsInYiOi..."})

    items: list[ModelSummaryOut]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page; null on the last.")


class SubmissionIn(BaseModel):
    """A request to index a model."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
                    "revision": "main",
                    "options": {"validate": True},
                }
            ]
        },
    )

    model: Text = Field(
        min_length=3, max_length=MODEL_ID_MAX, pattern=MODEL_ID_PATTERN, description="Hub id `org/name`."
    )
    revision: Text | None = Field(
        None, min_length=1, max_length=255, pattern=REF_PATTERN, description="Branch, tag or commit sha."
    )
    options: SubmissionOptions = Field(default_factory=lambda: SubmissionOptions.model_validate({}))

    @field_validator("model")
    @classmethod
    def _model_id(cls, value: str) -> str:
        try:
            return validate_model_id(value)
        except InvalidInputError as exc:
            raise ValueError(str(exc)) from exc

    @field_validator("revision")
    @classmethod
    def _revision(cls, value: str | None) -> str | None:
        try:
            return validate_ref(value) if value is not None else None
        except InvalidInputError as exc:
            raise ValueError(str(exc)) from exc

    def as_submission(self, requester_id: int | None, idempotency_key: str | None) -> Submission:
        """The submission service's request for this body."""
        return Submission(
            model=self.model,
            config=self.options.as_config(),
            revision=self.revision,
            requester_id=requester_id,
            idempotency_key=idempotency_key,
        )


class BundleWeightOut(ManifestWeight):
    """One super weight in a bundle."""


class BundleOut(BundleManifest):
    """The JSON coordinate bundle of a model revision."""

    model_config = _examples(
        {
            "schema_version": 1,
            "model": "huggyllama/llama-7b",
            "revision": None,
            "convention": CONVENTION,
            "super_weights": [],
            "super_activation": None,
            "provenance": {},
            "sha256": "3b1f...",
        }
    )

    super_weights: tuple[BundleWeightOut, ...]


class HealthOut(BaseModel):
    """Liveness."""

    model_config = _examples({"status": "ok"})

    status: Literal["ok"]


class CheckOut(BaseModel):
    """One readiness check."""

    ok: bool
    detail: str | None = None


class ReadyOut(BaseModel):
    """Readiness: the database (and the broker when configured) are reachable."""

    model_config = _examples({"status": "ready", "checks": {"database": {"ok": True, "detail": None}}})

    status: Literal["ready"]
    checks: dict[str, CheckOut]
