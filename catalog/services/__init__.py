"""Use cases over the catalog that several front ends share (the API, the web form, the CLI)."""

from catalog.services.submissions import (
    Enqueue,
    RevisionResolver,
    Submission,
    SubmissionResult,
    SubmissionService,
    resolve_sha_only,
)

__all__ = [
    "Enqueue",
    "RevisionResolver",
    "Submission",
    "SubmissionResult",
    "SubmissionService",
    "resolve_sha_only",
]
