"""Operational endpoints: liveness, readiness (database, broker) and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import func, select, text

from api.metrics import Gauges, Metrics
from api.problems import problem, problem_responses, schema_missing
from api.schemas import CheckOut, HealthOut, ReadyOut
from api.services import Services, ServicesDep
from catalog import migrate
from catalog.models import CatalogModel, IndexRun
from catalog.repositories import JobRepository

router = APIRouter()
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/healthz", response_model=HealthOut, summary="Liveness", tags=["operations"])
async def healthz() -> HealthOut:
    """The process is up (no dependency is checked)."""
    return HealthOut(status="ok")


def _check_database(services: Services) -> CheckOut:
    try:
        with services.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            current = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception as exc:
        if schema_missing(exc):
            return CheckOut(ok=False, detail="no catalog schema: run `swi catalog migrate`")
        return CheckOut(ok=False, detail=f"unreachable: {type(exc).__name__}")
    head = migrate.head_revision()
    if current != head:
        return CheckOut(
            ok=False, detail=f"schema at {current}, code expects {head}: run `swi catalog migrate`"
        )
    return CheckOut(ok=True)


def _check_broker(services: Services) -> CheckOut:
    """The broker answers a PING within the readiness timeout (a listener that never answers fails)."""
    if services.broker_ping is None:
        return CheckOut(ok=False, detail="a broker is configured but this app has no way to ask it")
    try:
        services.broker_ping()
    except Exception as exc:
        return CheckOut(ok=False, detail=f"unreachable: {type(exc).__name__}")
    return CheckOut(ok=True)


@router.get(
    "/readyz",
    response_model=ReadyOut,
    summary="Readiness",
    tags=["operations"],
    responses=problem_responses(503),
)
def readyz(services: ServicesDep) -> Any:
    """The database is reachable and migrated, and the broker (when configured) answers a PING."""
    checks = {"database": _check_database(services)}
    if services.settings.broker_url:
        checks["broker"] = _check_broker(services)
    failing = [f"{name}: {check.detail}" for name, check in checks.items() if not check.ok]
    if failing:
        return problem(
            503,
            "Service Unavailable",
            "; ".join(failing),
            slug="not-ready",
            instance="/readyz",
            headers={"Retry-After": "5"},
            retry_after=5,
        )
    return JSONResponse(ReadyOut(status="ready", checks=checks).model_dump(mode="json"))


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    tags=["operations"],
    response_class=PlainTextResponse,
    responses={
        200: {"content": {PROMETHEUS_TEXT: {"schema": {"type": "string"}}}, "description": "Metrics."}
    },
)
def metrics(request: Request, services: ServicesDep) -> Response:
    """Request counts and latencies (of every server process), jobs by status and catalog sizes."""
    registry: Metrics = request.app.state.metrics
    return Response(registry.render(lambda: _gauges(services)), media_type=PROMETHEUS_TEXT)


def _gauges(services: Services) -> Gauges:
    gauges: Gauges = {}
    try:
        with services.session() as session:
            jobs = JobRepository(session).counts_by_status()
            models = session.scalar(select(func.count()).select_from(CatalogModel)) or 0
            runs = session.scalar(select(func.count()).select_from(IndexRun)) or 0
        gauges["swi_jobs"] = ("Jobs by status.", {(("status", s),): float(n) for s, n in jobs.items()})
        gauges["swi_catalog_models"] = ("Models in the catalog.", {(): float(models)})
        gauges["swi_catalog_runs"] = ("Index runs in the catalog.", {(): float(runs)})
        gauges["swi_database_up"] = ("Whether the database answered the scrape.", {(): 1.0})
    except Exception:
        gauges["swi_database_up"] = ("Whether the database answered the scrape.", {(): 0.0})
    return gauges
