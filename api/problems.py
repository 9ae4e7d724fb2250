"""RFC 9457 problem details: the one exception handler, the one table of error statuses (the web pages'
too) and the documented problem responses."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from catalog.errors import (
    CatalogError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    UnavailableError,
)
from contracts.errors import DomainError, InvalidInputError

PROBLEM_MEDIA_TYPE = "application/problem+json"
logger = logging.getLogger("swi.api")


class AuthenticationError(CatalogError):
    """No usable API key (401)."""


class PayloadTooLargeError(CatalogError):
    """The request body is larger than the configured limit (413)."""


class SchemaMissingError(CatalogError):
    """The database has no (or an older) catalog schema (503 until `swi catalog migrate`)."""


#: SQLSTATEs of a missing table or column: the schema was never created or is older than the code
_SCHEMA_SQLSTATES = ("42P01", "42703")


def schema_missing(exc: BaseException) -> bool:
    """Whether a database error means the catalog schema is missing or outdated."""
    if not isinstance(exc, DBAPIError):
        return False
    if getattr(exc.orig, "sqlstate", None) in _SCHEMA_SQLSTATES:
        return True
    return isinstance(exc, OperationalError) and "no such table" in str(exc.orig)


class FieldError(BaseModel):
    """One invalid field of a request."""

    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "urn:swi:problem:not-found",
                    "title": "Not Found",
                    "status": 404,
                    "detail": "model 'org/unknown' is not in the catalog",
                    "instance": "/v1/models/org/unknown",
                }
            ]
        }
    )

    type: str = Field(description="A URI naming the kind of problem.")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = Field(default=None, description="Invalid fields (422 only).")
    retry_after: int | None = Field(default=None, description="Seconds to wait (429 and 503 only).")


_KINDS: tuple[tuple[type[BaseException], int, str, str], ...] = (
    (AuthenticationError, 401, "unauthorized", "Unauthorized"),
    (PermissionDeniedError, 403, "forbidden", "Forbidden"),
    (NotFoundError, 404, "not-found", "Not Found"),
    (ConflictError, 409, "conflict", "Conflict"),
    (InvalidInputError, 400, "invalid-input", "Bad Request"),
    (RateLimitedError, 429, "rate-limited", "Too Many Requests"),
    (PayloadTooLargeError, 413, "too-large", "Content Too Large"),
    (SchemaMissingError, 503, "schema-missing", "Service Unavailable"),
    (UnavailableError, 503, "unavailable", "Service Unavailable"),
    (OperationalError, 503, "unavailable", "Service Unavailable"),
    (DataError, 400, "invalid-input", "Bad Request"),
)
SCHEMA_MISSING_DETAIL = "the catalog database has no current schema: run `swi catalog migrate`"
#: seconds a client waits before retrying after a 503 (a dependency down: try again shortly)
RETRY_AFTER_UNAVAILABLE_S = 5


def status_of(exc: BaseException, default: int = 500) -> int:
    """The HTTP status of an error, for problems and web pages alike; `default` when the table has none."""
    return next((status for kind, status, _slug, _title in _KINDS if isinstance(exc, kind)), default)


def retry_after_of(exc: BaseException, status: int) -> int | None:
    """Seconds to wait before retrying: a 429's rate-limit window, a 503's short pause, else None."""
    if isinstance(exc, RateLimitedError):
        return exc.retry_after_s
    return RETRY_AFTER_UNAVAILABLE_S if status == 503 else None


_HTTP_TITLES = {400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable"}


def problem(
    status: int,
    title: str,
    detail: str | None,
    *,
    slug: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    """A problem+json response (a 500 also closes the connection: the server may drop it anyway)."""
    if status >= 500 and status != 503:
        headers = {**(headers or {}), "Connection": "close"}
    body = Problem(
        type=f"urn:swi:problem:{slug}" if slug else "about:blank",
        title=title,
        status=status,
        detail=detail,
        instance=instance,
        **extensions,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE
    )


def _encodable(text: str) -> str:
    """`text` with lone surrogates escaped: a field name or message may echo a hostile body."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


async def problem_handler(request: Request, exc: Exception) -> JSONResponse:
    """The one handler: every error the API can raise becomes problem+json (unknown ones a logged 500)."""
    instance = request.url.path
    if schema_missing(exc):
        logger.warning("catalog schema missing on %s: %s", instance, exc)
        exc = SchemaMissingError(SCHEMA_MISSING_DETAIL)
    if isinstance(exc, RequestValidationError):
        errors = [
            FieldError(
                loc=[_encodable(str(p)) if not isinstance(p, int) else p for p in e.get("loc", ())],
                msg=_encodable(str(e.get("msg", ""))),
                type=str(e.get("type", "")),
            )
            for e in exc.errors()
        ]
        first = errors[0] if errors else None
        detail = f"{'.'.join(map(str, first.loc))}: {first.msg}" if first else "invalid request"
        return problem(
            422, "Unprocessable Content", detail, slug="validation", instance=instance, errors=errors
        )
    if isinstance(exc, StarletteHTTPException):
        title = _HTTP_TITLES.get(exc.status_code, "Error")
        detail = exc.detail if isinstance(exc.detail, str) else None
        return problem(exc.status_code, title, detail, instance=instance, headers=dict(exc.headers or {}))
    for kind, status, slug, title in _KINDS:
        if isinstance(exc, kind):
            headers: dict[str, str] = {}
            extensions: dict[str, Any] = {}
            if isinstance(exc, AuthenticationError):
                headers["WWW-Authenticate"] = 'Bearer realm="swi"'
            retry_after = retry_after_of(exc, status)
            if retry_after is not None:
                headers["Retry-After"] = str(retry_after)
                extensions["retry_after"] = retry_after
            detail = str(exc)
            if isinstance(exc, OperationalError):
                detail = "the database is unavailable"
                logger.warning("database error on %s: %s", instance, exc)
            elif isinstance(exc, DataError):
                detail = "a value of the request cannot be stored"
                logger.warning("data error on %s: %s", instance, exc)
            return problem(status, title, detail, slug=slug, instance=instance, headers=headers, **extensions)
    logger.exception("unhandled error on %s", instance, exc_info=exc)
    return problem(500, "Internal Server Error", "an unexpected error occurred", instance=instance)


HANDLED_TYPES: tuple[type[Exception], ...] = (
    RequestValidationError,
    StarletteHTTPException,
    DomainError,
    DBAPIError,
    Exception,
)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI documentation of the problem responses a route can give."""
    descriptions = {
        400: "Bad request (e.g. an invalid cursor).",
        401: "No valid API key (`Authorization: Bearer <key>`).",
        403: "The API key lacks the required scope.",
        404: "Not found.",
        409: "Conflict (e.g. an Idempotency-Key reused for another request).",
        413: "The request body is larger than the limit.",
        422: "Invalid parameters or body.",
        429: "Rate limit reached; see Retry-After.",
        503: "A dependency is unavailable; see Retry-After.",
    }
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"model": Problem, "description": descriptions[status]}
        if status in (429, 503):
            entry["headers"] = {
                "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}
            }
        responses[status] = entry
    return responses
