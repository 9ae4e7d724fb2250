"""The FastAPI application factory (`uvicorn --factory api.app:create_app`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from starlette.routing import Mount, Route

from api import ops, routes, web
from api.cache import ResponseCache
from api.metrics import Metrics, MetricsMiddleware
from api.middleware import BodyLimitMiddleware, HeadOptionsMiddleware, SecurityHeadersMiddleware
from api.problems import HANDLED_TYPES, PROBLEM_MEDIA_TYPE, Problem, problem_handler
from api.schemas import SubmissionIn
from api.services import BrokerPing, Services
from api.settings import ApiSettings
from catalog.bootstrap import prepare_database
from catalog.db import make_engine, make_session_factory
from catalog.services import Enqueue, RevisionResolver, SubmissionService, resolve_sha_only
from catalog.settings import Settings

DESCRIPTION = """
The super-weight index: where the super weights of open LLMs are (`model.layers[L].mlp.down_proj.weight[row,
col]`), whether they were confirmed by pruning, and bundles to protect them when quantizing.

Reads are public. Submissions need `Authorization: Bearer <key>` with the `submit` scope (`swi keys create`).
Errors are RFC 9457 `application/problem+json`. Read endpoints send a strong `ETag`; send it back in
`If-None-Match` to get `304 Not Modified`.
"""


def create_app(
    settings: Settings | None = None,
    *,
    enqueuer: Enqueue | None = None,
    resolver: RevisionResolver | None = None,
    broker_ping: BrokerPing | None = None,
) -> FastAPI:
    """Build the app: `enqueuer` runs committed jobs (default: they wait in the outbox), `resolver` pins
    revisions, `broker_ping` asks the broker whether it answers (readiness). Catalog `settings` are
    completed with the API's own from the environment (`ApiSettings.of`)."""
    settings = ApiSettings.of(settings)
    engine = make_engine(settings.resolved_database_url())
    sessions = make_session_factory(engine)
    metrics = Metrics()
    services = Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        submissions=SubmissionService(
            sessions,
            enqueue=enqueuer,
            resolver=resolver or resolve_sha_only,
            max_attempts=settings.job_max_attempts,
            rate_limit=(settings.rate_limit_submissions, settings.rate_limit_window_s),
            enqueue_timeout_s=settings.enqueue_timeout_s,
        ),
        broker_ping=broker_ping,
        cache=ResponseCache(settings.response_cache_entries, ttl_s=settings.response_cache_ttl_s),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.should_auto_migrate:
            await run_in_threadpool(prepare_database, settings)
        yield
        engine.dispose()

    # Swagger UI and ReDoc from the fastapi-offline package: the docs load nothing from a CDN
    app = FastAPIOffline(
        title="Super-Weight Index",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.metrics = metrics
    for exc_type in HANDLED_TYPES:
        app.add_exception_handler(exc_type, problem_handler)
    app.include_router(routes.router, tags=["catalog"])
    app.include_router(ops.router)
    app.include_router(web.router)
    # the last added runs first: metrics see every answer, the body cap acts before anything reads
    # the routes as declared (an included router is one opaque entry of `app.router.routes`)
    declared = [
        *(route for route in app.router.routes if isinstance(route, Route | Mount)),
        *(route for router in (routes.router, ops.router, web.router) for route in router.routes),
    ]
    app.add_middleware(HeadOptionsMiddleware, routes=declared)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with every error response as problem+json (FastAPI would say application/json)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    # the submission body is parsed after authentication, so FastAPI does not see it: document it here
    submission_schema = SubmissionIn.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(submission_schema.pop("$defs", {}))
    components["SubmissionIn"] = submission_schema
    problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(problem_schema.pop("$defs", {}))
    components["Problem"] = problem_schema
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for status, response in operation.get("responses", {}).items():
                if status.isdigit() and int(status) >= 400:
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": problem_ref}}
                    if status == "422":
                        response["description"] = "Invalid parameters or body."
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    app.openapi_schema = schema
    return schema
