"""The FastAPI application factory (`uvicorn --factory api.app:create_app`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.concurrency import run_in_threadpool

from api import ops, routes, web
from api.cache import ResponseCache
from api.metrics import Metrics, MetricsMiddleware
from api.problems import HANDLED_TYPES, PROBLEM_MEDIA_TYPE, Problem, problem_handler
from api.services import Enqueuer, RevisionResolver, Services, leave_queued, resolve_sha_only
from catalog.bootstrap import prepare_database
from catalog.db import make_engine, make_session_factory
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
    enqueuer: Enqueuer | None = None,
    resolver: RevisionResolver | None = None,
) -> FastAPI:
    """Build the app: `enqueuer` runs committed jobs (default: leave queued), `resolver` pins revisions."""
    settings = settings or Settings()
    engine = make_engine(settings.resolved_database_url())
    metrics = Metrics()
    services = Services(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        enqueuer=enqueuer or leave_queued,
        resolver=resolver or resolve_sha_only,
        metrics=metrics,
        cache=ResponseCache(settings.response_cache_entries, ttl_s=settings.response_cache_ttl_s),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.should_auto_migrate:
            await run_in_threadpool(prepare_database, settings)
        yield
        engine.dispose()

    app = FastAPI(
        title="Super-Weight Index",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.services = services
    for exc_type in HANDLED_TYPES:
        app.add_exception_handler(exc_type, problem_handler)
    app.include_router(routes.router, tags=["catalog"])
    app.include_router(ops.router)
    app.include_router(web.router)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with every error response as problem+json (FastAPI would say application/json)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
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
