"""Pure ASGI middleware of the app: body size cap, HEAD and OPTIONS wherever GET, security headers."""

from __future__ import annotations

import json
from collections.abc import Iterable

from starlette.datastructures import Headers, MutableHeaders
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import PROBLEM_MEDIA_TYPE, PayloadTooLargeError

#: responses that do not set their own policy may load nothing (JSON, problem documents, error pages)
DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
#: the interactive docs run Swagger UI's own inline start-up script and assets
DOCS_PREFIXES = ("/docs", "/redoc", "/static-offline-docs")


class BodyLimitMiddleware:
    """Refuse bodies over `max_bytes` with 413: by Content-Length before reading, else while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await _too_large(scope, send, self.max_bytes)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # raised inside the route: the app's one handler renders it as problem+json
                    raise PayloadTooLargeError(f"the request body is larger than {self.max_bytes} bytes")
            return message

        await self.app(scope, limited, send)


async def _too_large(scope: Scope, send: Send, max_bytes: int) -> None:
    body = json.dumps(
        {
            "type": "urn:swi:problem:too-large",
            "title": "Content Too Large",
            "status": 413,
            "detail": f"the request body is larger than {max_bytes} bytes",
            "instance": scope.get("path", ""),
        }
    ).encode()
    headers = [
        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        # the unread body is still on the wire: the connection cannot be reused
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class HeadOptionsMiddleware:
    """HEAD is GET without a body (RFC 9110); OPTIONS answers 204 with the path's allowed methods."""

    def __init__(self, app: ASGIApp, routes: Iterable[BaseRoute]):
        self.app = app
        self.routes = routes

    def _allowed(self, scope: Scope) -> set[str]:
        methods: set[str] = set()
        probe = {**scope, "method": "GET"}
        for route in self.routes:
            match, _ = route.matches(probe)
            if match is not Match.NONE:
                # a Mount (static files) answers GET
                methods |= set(getattr(route, "methods", None) or {"GET"})
        return methods

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        allowed = self._allowed(scope)
        if scope["method"] == "OPTIONS":
            if not allowed:
                await self.app(scope, receive, send)
                return
            if "GET" in allowed:
                allowed.add("HEAD")
            allow = ", ".join(sorted(allowed | {"OPTIONS"}))
            await send(
                {"type": "http.response.start", "status": 204, "headers": [(b"allow", allow.encode())]}
            )
            await send({"type": "http.response.body", "body": b""})
            return
        if "GET" not in allowed or "HEAD" in allowed:
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)


class SecurityHeadersMiddleware:
    """`nosniff` on every response; a deny-all CSP on any response that sets none (except the docs)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = str(scope.get("path", "")).startswith(DOCS_PREFIXES)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                if not docs:
                    headers.setdefault("Content-Security-Policy", DEFAULT_CSP)
            await send(message)

        await self.app(scope, receive, with_headers)
