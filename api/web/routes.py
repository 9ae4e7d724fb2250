"""The web pages: catalog, model, compare, job (with the submission form); plain HTML, readable without JS."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Mapping
from typing import Any, cast
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials
from markupsafe import Markup
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.auth import Principal, require_scope
from api.charts import coordinate_strip
from api.etag import conditional_response
from api.problems import retry_after_of, status_of
from api.schemas import SubmissionIn, Text, unstorable_fields
from api.services import ServicesDep
from api.web import pages
from api.web.assets import STATIC_FILES, render
from catalog.errors import NotFoundError
from catalog.models import IndexRun, Job
from catalog.repositories import (
    Comparison,
    CoordinateRepository,
    JobRepository,
    ModelFilter,
    ModelRepository,
    RunRepository,
)
from catalog.repositories.browse import BrowseRepository
from catalog.repositories.models import MODEL_SORTS, ModelSort
from contracts.errors import DomainError, InvalidInputError
from contracts.identifiers import validate_model_id
from contracts.lineage import Reproduction, SourceKind
from contracts.status import ACTIVE_JOB_STATUSES, SuperWeightStatus

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
STATUSES = tuple(status.value for status in SuperWeightStatus)
REPRODUCTIONS: dict[str, str] = {
    Reproduction.REPRODUCED: "reproduced by a run",
    Reproduction.CONTRADICTED: "contradicted (inert)",
    Reproduction.NOT_FOUND: "not found by a run",
    Reproduction.UNVERIFIED: "not measured yet",
}
SOURCE_KINDS = tuple(kind.value for kind in SourceKind)
SORT_LABELS: dict[ModelSort, str] = {
    "name": "name (A–Z)",
    "-name": "name (Z–A)",
    "-updated": "recently updated",
    "updated": "least recently updated",
}
DTYPES = ("auto", "float32", "float16", "bfloat16")
#: pages may load only the app's own assets; no inline script, no third party
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
HTML = "text/html; charset=utf-8"
POLL_INTERVAL_S = 2


def _page(body: str, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        body, status_code=status_code, media_type=HTML, headers={**SECURITY_HEADERS, **(headers or {})}
    )


def _cached_page(request: Request, body: bytes) -> Response:
    """A read-only page with a strong ETag (a reload of an unchanged page is a 304)."""
    response = conditional_response(request, body, media_type=HTML)
    response.headers.update(SECURITY_HEADERS)
    return response


def _status_of(error: Exception) -> int:
    """The status of `api.problems`' table; an error a page reports that the table lacks is a 400."""
    return status_of(error, default=400)


def _message_of(error: Exception) -> str:
    return (
        "the database is unavailable; try again shortly"
        if isinstance(error, OperationalError)
        else str(error)
    )


def _retry_headers(error: Exception, status: int) -> dict[str, str]:
    """`Retry-After` of a 429 (the limit's window) or a 503 (a dependency down: try again shortly)."""
    retry_after = retry_after_of(error, status)
    return {} if retry_after is None else {"Retry-After": str(retry_after)}


def _error_page(error: Exception, title: str) -> Response:
    status = _status_of(error)
    headers = _retry_headers(error, status)
    body = render("error.html", title=title, status=status, message=_message_of(error))
    return _page(body, status, headers)


# ---- static files ----


@router.get("/static/{name}")
def static_file(name: Text, request: Request, v: Text | None = None) -> Response:
    """A file of `api/static` (only those known at start: no path from the request reaches the disk)."""
    asset = STATIC_FILES.get(name)
    if asset is None:
        return _error_page(NotFoundError(f"no static file {name[:80]!r}"), "Not found")
    response = conditional_response(request, asset.body, media_type=asset.media_type)
    if v == asset.version:
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return response


# ---- catalog ----


def _clean(value: str | None, limit: int = 100) -> str | None:
    value = (value or "").strip()
    return value[:limit] or None


@router.get("/models")
def models_redirect(request: Request) -> Response:
    """The catalog lives at `/`."""
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"/{query}", status_code=308)


@router.get("/")
def catalog_page(
    request: Request,
    services: ServicesDep,
    q: Text | None = None,
    architecture: Text | None = None,
    family: Text | None = None,
    status: Text | None = None,
    has: Text | None = None,
    reproduction: Text | None = None,
    source: Text | None = None,
    dispute: Text | None = None,
    layer: Text | None = None,
    row: Text | None = None,
    base_model: Text | None = None,
    sort: Text | None = None,
    cursor: Text | None = None,
    limit: Text | None = None,
) -> Response:
    """Search and filter the catalog; one page of models at a time."""
    chosen: dict[str, str] = {
        key: value
        for key, value in {
            "q": _clean(q),
            "architecture": _clean(architecture, 64),
            "family": _clean(family, 64),
            "status": _clean(status, 16),
            "has": _clean(has, 3),
            "reproduction": _clean(reproduction, 16),
            "source": _clean(source, 16),
            "dispute": _clean(dispute, 3),
            "layer": _clean(layer, 6),
            "row": _clean(row, 8),
            "base_model": _clean(base_model, 193),
            "sort": _clean(sort, 8),
            "limit": _clean(limit, 3),
        }.items()
        if value
    }
    problems = []
    if chosen.get("status") not in (None, *STATUSES):
        problems.append(f"unknown status {chosen.pop('status')!r}")
    if chosen.get("has") not in (None, "yes", "no"):
        problems.append(f"'has' must be yes or no, not {chosen.pop('has')!r}")
    if chosen.get("reproduction") not in (None, *REPRODUCTIONS):
        problems.append(f"unknown reproduction {chosen.pop('reproduction')!r}")
    if chosen.get("source") not in (None, *SOURCE_KINDS):
        problems.append(f"unknown source kind {chosen.pop('source')!r}")
    if chosen.get("dispute") not in (None, "yes", "no"):
        problems.append(f"'dispute' must be yes or no, not {chosen.pop('dispute')!r}")
    for number in ("layer", "row"):
        if not chosen.get(number, "0").isdigit():
            problems.append(f"{number} must be a whole number, not {chosen.pop(number)!r}")
    if "base_model" in chosen:
        try:
            validate_model_id(chosen["base_model"])
        except InvalidInputError as error:
            chosen.pop("base_model")
            problems.append(str(error))
    if chosen.get("sort") not in (None, *MODEL_SORTS):
        problems.append(f"unknown sort {chosen.pop('sort')!r}")
    if not chosen.get("limit", "1").isdigit() or not 1 <= int(chosen.get("limit", "1")) <= MAX_PAGE_SIZE:
        problems.append(f"the page size must be 1 to {MAX_PAGE_SIZE}, not {chosen.pop('limit')!r}")
    sort_order = cast(ModelSort, chosen.get("sort", "name"))
    filters = ModelFilter(
        architecture=chosen.get("architecture"),
        family=chosen.get("family"),
        status=chosen.get("status"),
        has_super_weights={"yes": True, "no": False}.get(chosen.get("has", "")),
        q=chosen.get("q"),
        reproduction=Reproduction(chosen["reproduction"]) if "reproduction" in chosen else None,
        source_kind=SourceKind(chosen["source"]) if "source" in chosen else None,
        disputed={"yes": True, "no": False}.get(chosen.get("dispute", "")),
        layer=int(chosen["layer"]) if "layer" in chosen else None,
        row=int(chosen["row"]) if "row" in chosen else None,
        base_model=chosen.get("base_model"),
    )
    status_code = 400 if problems else 200
    try:
        with services.session() as session:
            page = ModelRepository(session).search(
                filters,
                sort=sort_order,
                cursor=_clean(cursor, 1000),
                limit=int(chosen.get("limit", PAGE_SIZE)),
            )
            browse = BrowseRepository(session)
            layers = browse.layers_by_model([item.model.id for item in page.items])
            facets = browse.facets()
    except DomainError as error:
        return _error_page(error, "Catalog")
    next_url = None
    if page.next_cursor:
        next_url = "/?" + urlencode({**chosen, "cursor": page.next_cursor})
    body = render(
        "catalog.html",
        title="Super-weight catalog",
        items=page.items,
        layers=layers,
        facets=facets,
        chosen=chosen,
        statuses=STATUSES,
        reproductions=REPRODUCTIONS,
        source_kinds=SOURCE_KINDS,
        sorts=SORT_LABELS,
        problems=problems,
        next_url=next_url,
        first_url=("/?" + urlencode(chosen)) if cursor else None,
        filtered=bool(set(chosen) - {"sort", "limit"}),
        filter_url=lambda **changes: (
            "/?" + urlencode({**{k: v for k, v in chosen.items() if k == "sort"}, **changes})
        ),
    )
    return _page(body, status_code)


# ---- model ----


@router.get("/models/{org}/{name}")
def model_page(
    request: Request,
    services: ServicesDep,
    org: Text,
    name: Text,
    revision: Text | None = None,
    run: Text | None = None,
) -> Response:
    """A model: its super weights, the per-layer activations, the quality deltas, bundles and provenance."""
    try:
        hub_id = validate_model_id(f"{org}/{name}")
        run_id = _run_id(run)
        revision = _clean(revision, 255)
        with services.session() as session:
            body = _render_model(session, hub_id, revision, run_id).encode()
    except DomainError as error:
        return _error_page(error, f"{org}/{name}"[:200])
    return _cached_page(request, body)


def _run_id(text: str | None) -> int | None:
    if text is None or not text.strip():
        return None
    if not text.strip().isdigit() or len(text.strip()) > 10:
        raise InvalidInputError(f"invalid run id {text[:20]!r}")
    return int(text)


def _render_model(session: Session, hub_id: str, revision: str | None, run_id: int | None) -> str:
    models, runs = ModelRepository(session), RunRepository(session)
    coordinates = CoordinateRepository(session)
    model = models.get(hub_id)
    if run_id is not None:
        chosen = runs.get(run_id)
        if chosen.model_id != model.id:
            raise NotFoundError(f"run {run_id} is not a run of {hub_id}")
        view = coordinates.coordinates_of(model, chosen)
    else:
        view = coordinates.coordinates(model, revision)
    counts = models.status_counts([model.id]).get(model.id, {})
    all_runs = runs.listed_runs(model)
    run: IndexRun | None = view.run
    profile = quality = None
    provenance: list[tuple[str, str]] = []
    job: Job | None = None
    if run is not None:
        weights = {e.weight.id: e.weight.coordinates for e in view.entries if e.source == "measured"}
        profile = pages.profile_charts(run, runs.layer_profile(run), view.super_activation, view)
        quality = pages.quality_charts(runs.quality_results(run), weights)
        provenance = pages.provenance_items(run.provenance)
        job = runs.job_of(run)
    base = model.base
    measured = [e for e in view.entries if e.source == "measured"]
    reported = [e for e in view.entries if e.source == "reported" or e.citation]
    return render(
        "model.html",
        title=f"{hub_id} — super weights",
        model=model,
        counts=counts,
        view=view,
        run=run,
        runs=all_runs,
        job=job,
        profile=profile,
        quality=quality,
        provenance=provenance,
        evidence=[pages.weight_evidence(e) for e in view.entries],
        bundles=pages.bundles(hub_id, view.revision.sha if view.revision else None) if view.entries else [],
        base=base,
        measured=measured,
        reproduced=sum(1 for e in view.entries if e.reproduction == "reproduced"),
        contradicted=sum(1 for e in view.entries if e.reproduction == "contradicted"),
        not_found=sum(1 for e in view.entries if e.reproduction == "not_found"),
        build=view.measured_on if view.measured_on is not None and view.measured_on.id != model.id else None,
        derived=models.derived(model),
        history=coordinates.history(model, all_runs) if len(all_runs) > 1 else [],
        reported_count=len(reported),
        submit_url="/jobs/new?" + urlencode({"model": hub_id}),
        is_hub=model.source_kind == "hub" and model.org != "local",
    )


# ---- compare ----


@router.get("/compare")
def compare_page(
    request: Request, services: ServicesDep, a: Text | None = None, b: Text | None = None
) -> Response:
    """Two models side by side: which coordinates they share, which moved, vanished or appeared."""
    left, right = _clean(a, 193), _clean(b, 193)
    context: dict[str, Any] = {
        "a": left or "",
        "b": right or "",
        "result": None,
        "strip": None,
        "error": None,
    }
    status_code = 200
    if left and right:
        try:
            with services.session() as session:
                models = ModelRepository(session)
                model_a, model_b = models.get(validate_model_id(left)), models.get(validate_model_id(right))
                result = CoordinateRepository(session).compare(model_a, model_b)
                context["result"] = result
                context["strip"] = _compare_strip(result, model_a.hub_id, model_b.hub_id)
                body = render("compare.html", title=f"Compare {left} and {right}", **context)
        except DomainError as error:
            context.update(error=_message_of(error), result=None, strip=None)
            status_code = _status_of(error)
            body = render("compare.html", title="Compare models", **context)
    else:
        if left or right:
            context["error"] = "name two models to compare"
            status_code = 400
        body = render("compare.html", title="Compare models", **context)
    return _page(body, status_code)


def _compare_strip(result: Comparison, name_a: str, name_b: str) -> Markup:
    def dots(side: str) -> list[tuple[int, str, str]]:
        found: list[tuple[int, str, str]] = []
        for c in result.shared:
            found.append((c[0], "shared", f"shared {pages.coordinate_text(c)}"))
        for m in result.moved:
            c = m.a if side == "a" else m.b
            found.append(
                (c[0], "moved", f"moved {pages.coordinate_text(m.a)} → {pages.coordinate_text(m.b)}")
            )
        for c in result.vanished if side == "a" else result.appeared:
            kind = "vanished" if side == "a" else "appeared"
            found.append((c[0], kind, f"{kind}: {pages.coordinate_text(c)}"))
        return found

    dots_a, dots_b = dots("a"), dots("b")
    deepest = max([d[0] for d in dots_a + dots_b] + [0])
    layers = max(deepest + 2, 8)
    return Markup(
        coordinate_strip(
            "chart-compare",
            title=f"Super-weight layers of {name_a} and {name_b}",
            description="Each dot is a coordinate in its layer: shared, moved, only in the first model "
            "(vanished) or only in the second (appeared).",
            num_layers=layers,
            rows=[(_short_name(name_a), dots_a), (_short_name(name_b), dots_b)],
        )
    )


def _short_name(hub_id: str) -> str:
    name = hub_id.split("/", 1)[-1]
    return name if len(name) <= 20 else name[:19] + "…"


# ---- jobs ----


@router.get("/jobs/new")
def job_form(model: Text | None = None, revision: Text | None = None) -> Response:
    """The submission form (needs an API key with the `submit` scope)."""
    values = {"model": _clean(model, 193) or "", "revision": _clean(revision, 255) or ""}
    return _page(_form(values))


def _form(
    values: Mapping[str, Any], errors: Mapping[str, str] | None = None, message: str | None = None
) -> str:
    return render(
        "job_form.html",
        title="Submit a model",
        values={
            "validate": True,
            "quantization_checks": True,
            "max_super_weights": 8,
            "dtype": "auto",
            **values,
        },
        errors=errors or {},
        message=message,
        dtypes=DTYPES,
        idempotency_key=str(uuid.uuid4()),
    )


@router.post("/jobs/new")
async def submit_form(request: Request, services: ServicesDep) -> Response:
    """Submit via the same service as `POST /v1/submissions`, then redirect to the job (POST-redirect-GET)."""
    form = await request.form()
    field = {key: str(value).strip() for key, value in form.items() if isinstance(value, str)}
    values: dict[str, Any] = {
        "model": field.get("model", "")[:193],
        "revision": field.get("revision", "")[:255],
        "prompt": field.get("prompt", "")[:2000],
        "validate": "validate" in field,
        "quantization_checks": "quantization_checks" in field,
        "max_super_weights": field.get("max_super_weights", "8")[:6],
        "dtype": field.get("dtype", "auto")[:16],
    }
    errors: dict[str, str] = {
        str(error["loc"][0]): error["msg"] for error in unstorable_fields(field) if error["loc"]
    }
    secret = field.get("api_key", "")
    if not secret:
        errors["api_key"] = "an API key with the submit scope is needed (swi keys create --owner NAME)"
    try:
        submission = SubmissionIn.model_validate(
            {
                "model": values["model"],
                "revision": values["revision"] or None,
                "options": {
                    "prompt": values["prompt"] or None,
                    "max_super_weights": values["max_super_weights"],
                    "dtype": values["dtype"],
                    "validate": values["validate"],
                    "quantization_checks": values["quantization_checks"],
                },
            }
        )
    except ValidationError as error:
        for problem in error.errors():
            where = [str(part) for part in problem.get("loc", ())]
            name = where[-1] if where else "model"
            errors.setdefault(name, str(problem.get("msg", "invalid value")).removeprefix("Value error, "))
    if errors:
        return _page(_form(values, errors), 422)
    key = field.get("idempotency_key") or None
    if key is not None and (len(key) > 255 or not key.isascii() or not key.isprintable() or " " in key):
        key = None
    try:
        credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=secret)
        authenticate = cast(Awaitable[Principal], require_scope("submit")(services, credentials))
        principal = await authenticate
        result = await run_in_threadpool(
            services.submissions.submit, submission.as_submission(principal.key_id, key)
        )
    except (DomainError, OperationalError) as error:
        status = _status_of(error)
        field_name = "api_key" if status in (401, 403) else ""
        headers = _retry_headers(error, status)
        if field_name:
            return _page(_form(values, {field_name: _message_of(error)}), status, headers)
        return _page(_form(values, message=_message_of(error)), status, headers)
    if result.job is not None:
        return RedirectResponse(f"/jobs/{result.job.id}", status_code=303)
    query = urlencode({"run": result.run_id}) if result.run_id else ""
    return RedirectResponse(f"/models/{submission.model}" + (f"?{query}" if query else ""), status_code=303)


@router.get("/jobs/{job_id}")
def job_page(services: ServicesDep, job_id: Text) -> Response:
    """A job's live status: refreshed by a small script, or by the page itself without JavaScript."""
    try:
        with services.session() as session:
            job = JobRepository(session).get(job_id.strip()[:64])
            active = job.status in ACTIVE_JOB_STATUSES
            run_url = None
            if job.run_id is not None:
                run_url = f"/models/{job.model}?" + urlencode({"run": job.run_id})
            body = render(
                "job.html",
                title=f"Job {str(job.id)[:8]} — {job.model}",
                job=job,
                active=active,
                run_url=run_url,
                poll_url=f"/v1/jobs/{job.id}",
                poll_interval=POLL_INTERVAL_S,
                model_in_catalog=ModelRepository(session).find(job.model) is not None,
            )
    except DomainError as error:
        return _error_page(error, "Job")
    return _page(body, headers={"Cache-Control": "no-store"})
