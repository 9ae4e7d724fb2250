"""Domain errors of the catalog; the API renders each kind as one problem+json status."""

from __future__ import annotations

from contracts.errors import DomainError
from contracts.errors import InvalidInputError as InvalidInputError


class CatalogError(DomainError):
    """Base class: a problem with the request or the data, not a bug."""


class NotFoundError(CatalogError):
    """The named model, revision, run or job does not exist."""


class ConflictError(CatalogError):
    """The request conflicts with the current state (e.g. an idempotency key reused for another body)."""


class RateLimitedError(CatalogError):
    """Too many requests for this key in the current window."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UnavailableError(CatalogError):
    """A dependency (database, broker) cannot be reached right now."""


class PermissionDeniedError(CatalogError):
    """The caller may not do this (e.g. cancel another key's job)."""
