"""Strong ETags on read endpoints: the hash of the exact body; If-None-Match answers 304."""

from __future__ import annotations

import hashlib

from fastapi import Request, Response
from pydantic import BaseModel

CACHE_CONTROL = "no-cache"  # caches may store, but must revalidate (cheap: 304)


def etag_for(body: bytes) -> str:
    """A strong ETag for these bytes."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _matches(if_none_match: str, etag: str) -> bool:
    if if_none_match.strip() == "*":
        return True
    candidates = (c.strip() for c in if_none_match.split(","))
    # If-None-Match uses the weak comparison: W/"x" matches "x".
    return any(c.removeprefix("W/") == etag for c in candidates)


def conditional_response(
    request: Request,
    body: bytes,
    *,
    media_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> Response:
    """200 with the body and its ETag, or 304 when the client already has it."""
    return conditional_response_with_etag(
        request, body, etag_for(body), media_type=media_type, headers=headers
    )


def conditional_response_with_etag(
    request: Request,
    body: bytes,
    etag: str,
    *,
    media_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> Response:
    """`conditional_response` for a body whose ETag is already known (a cached body)."""
    all_headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL, **(headers or {})}
    if_none_match = request.headers.get("if-none-match")
    if if_none_match and _matches(if_none_match, etag):
        return Response(status_code=304, headers=all_headers)
    return Response(content=body, media_type=media_type, headers=all_headers)


def json_with_etag(request: Request, model: BaseModel, headers: dict[str, str] | None = None) -> Response:
    """`conditional_response` for a pydantic model's JSON."""
    return conditional_response(request, model.model_dump_json().encode(), headers=headers)
