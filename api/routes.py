"""The /v1 routes: catalog reads (public); submissions and cancellations (a key with scope `submit`); jobs."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from api import views
from api.auth import Principal, require_scope
from api.cache import cached_body, model_stamp
from api.etag import conditional_response, conditional_response_with_etag, json_with_etag
from api.problems import problem_responses
from api.schemas import (
    BundleOut,
    CompareOut,
    JobOut,
    ModelDetailOut,
    ModelListOut,
    RunReportOut,
    SubmissionIn,
    SubmissionOut,
    SuperWeightsOut,
    Text,
    unstorable_fields,
)
from api.services import Services, ServicesDep
from bundles import (
    DEFAULT_KEEP,
    DEFAULT_SCHEME,
    RenderOptions,
    check_options,
    render_bundle,
)
from catalog.repositories import (
    CoordinateRepository,
    JobRepository,
    ModelFilter,
    ModelRepository,
    ModelSummary,
    RunRepository,
)
from catalog.repositories.models import ModelSort
from contracts.identifiers import (
    MODEL_ID_PATTERN,
    NAME_PART_PATTERN,
    REVISION_QUERY_PATTERN,
    validate_model_id,
)
from contracts.lineage import Reproduction, SourceKind
from contracts.status import SuperWeightStatus

logger = logging.getLogger("swi.api")
BundleFormat = Literal[
    "json", "safetensors", "llama.cpp", "llm-compressor", "gptqmodel", "autoround", "torchao"
]
BUNDLE_MEDIA_TYPES = (
    "application/octet-stream",
    "application/zip",
    "application/yaml",
    "text/x-shellscript",
    "text/x-python",
)
router = APIRouter(prefix="/v1")
Body = TypeVar("Body", bound=BaseModel)

PAGE_SIZE_LIMIT = 500
Org = Annotated[
    str, Path(pattern=NAME_PART_PATTERN, max_length=96, description="Organisation.", examples=["huggyllama"])
]
Name = Annotated[
    str, Path(pattern=NAME_PART_PATTERN, max_length=96, description="Model name.", examples=["llama-7b"])
]
RevisionQuery = Annotated[
    Text | None,
    Query(
        max_length=255,
        pattern=REVISION_QUERY_PATTERN,
        description="Commit sha (or the branch/tag it was resolved from); default: the newest indexed one.",
    ),
]
IfNoneMatch = Annotated[
    Text | None, Header(alias="If-None-Match", max_length=1000, description="ETag(s) the client holds.")
]

ETAG_HEADERS = {
    "ETag": {"description": "Strong validator of the body.", "schema": {"type": "string"}},
    "Cache-Control": {"description": "Revalidate with If-None-Match.", "schema": {"type": "string"}},
}
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not Modified: the ETag matches If-None-Match."}
}


def _read(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {200: {"headers": ETAG_HEADERS}, **NOT_MODIFIED, **problem_responses(*statuses, 422)}


@router.get(
    "/models",
    response_model=ModelListOut,
    summary="List and search models",
    responses={
        200: {
            "headers": {
                **ETAG_HEADERS,
                "Link": {"description": 'The next page: `<url>; rel="next"`.', "schema": {"type": "string"}},
            }
        },
        **NOT_MODIFIED,
        **problem_responses(400, 422),
    },
)
def list_models(
    request: Request,
    services: ServicesDep,
    architecture: Annotated[
        Text | None, Query(max_length=64, description="`config.model_type`, e.g. llama.")
    ] = None,
    family: Annotated[Text | None, Query(max_length=64, description="Model family, e.g. OLMo.")] = None,
    status: Annotated[
        SuperWeightStatus | None,
        Query(description="Has a super weight with this status."),
    ] = None,
    layer: Annotated[
        int | None, Query(ge=0, le=10_000, description="Has a super weight in this layer.")
    ] = None,
    row: Annotated[
        int | None, Query(ge=0, le=1_000_000, description="Has a super weight in this row (hidden channel).")
    ] = None,
    source_kind: Annotated[
        SourceKind | None, Query(description="Has a coordinate reported by a source of this kind.")
    ] = None,
    disputed: Annotated[
        bool | None, Query(description="Has (or has no) coordinate whose sources disagree on the layer.")
    ] = None,
    base_model: Annotated[
        str | None,
        Query(max_length=193, pattern=MODEL_ID_PATTERN, description="Derives from this model (org/name)."),
    ] = None,
    reproduction: Annotated[
        Reproduction | None,
        Query(description="Has a published coordinate its runs (or its builds' runs) mark so."),
    ] = None,
    has_super_weights: Annotated[
        bool | None, Query(description="Has (or has no) super-weight entries.")
    ] = None,
    q: Annotated[Text | None, Query(max_length=100, description="Text search in the id and family.")] = None,
    sort: Annotated[ModelSort, Query(description="Order; `-` for descending.")] = "name",
    cursor: Annotated[
        Text | None, Query(max_length=1000, description="`next_cursor` of the previous page.")
    ] = None,
    limit: Annotated[int | None, Query(ge=1, le=PAGE_SIZE_LIMIT, description="Page size.")] = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """Models in the catalog, filtered, sorted, one page at a time (cursor pagination)."""
    size = min(limit or services.settings.page_size_default, services.settings.page_size_max)
    filters = ModelFilter(
        architecture=architecture,
        family=family,
        status=status,
        layer=layer,
        row=row,
        has_super_weights=has_super_weights,
        q=q,
        source_kind=source_kind,
        disputed=disputed,
        base_model=base_model,
        reproduction=reproduction,
    )
    with services.session() as session:
        page = ModelRepository(session).search(filters, sort=sort, cursor=cursor, limit=size)
        body = ModelListOut(items=[views.model_summary(s) for s in page.items], next_cursor=page.next_cursor)
    headers = {}
    if page.next_cursor:
        headers["Link"] = f'<{_next_page_url(request, services, page.next_cursor)}>; rel="next"'
    return json_with_etag(request, body, headers=headers)


def _next_page_url(request: Request, services: Services, cursor: str) -> str:
    """The next page: under the configured public URL, else relative (never the request's Host)."""
    url = request.url.include_query_params(cursor=cursor)
    base = (services.settings.public_base_url or "").rstrip("/")
    return f"{base}{url.path}?{url.query}"


@router.get("/models/{org}/{name}", response_model=ModelDetailOut, summary="One model", responses=_read(404))
async def get_model(
    request: Request, services: ServicesDep, org: Org, name: Name, if_none_match: IfNoneMatch = None
) -> Response:
    """The model with its latest revision and its runs."""
    hub_id = _model_id(org, name)

    def render() -> tuple[bytes, list[tuple[str, datetime]]]:
        with services.session() as session:
            stamp = model_stamp(session, hub_id)
            models = ModelRepository(session)
            model = models.get(hub_id)
            counts = models.status_counts([model.id]).get(model.id, {})
            runs = RunRepository(session)
            listed = runs.listed_runs(model)
            detail = views.model_detail(
                ModelSummary(model=model, status_counts=dict(counts)),
                models.latest_revision(model),
                listed,
                models.derived(model),
                CoordinateRepository(session).history(model, listed),
            )
            return detail.model_dump_json().encode(), [(hub_id, stamp)]

    cached = await cached_body(services.cache, services.engine, ("model", hub_id), render)
    return conditional_response_with_etag(request, cached.body, cached.etag)


@router.get(
    "/models/{org}/{name}/super-weights",
    response_model=SuperWeightsOut,
    summary="A model's super-weight coordinates",
    responses=_read(404),
)
async def get_super_weights(
    request: Request,
    services: ServicesDep,
    org: Org,
    name: Name,
    revision: RevisionQuery = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """Coordinates with status, values, activations and the quality deltas that decided the status."""
    hub_id = _model_id(org, name)

    def render() -> tuple[bytes, list[tuple[str, datetime]]]:
        with services.session() as session:
            stamp = model_stamp(session, hub_id)
            model = ModelRepository(session).get(hub_id)
            view = views.super_weights(CoordinateRepository(session).coordinates(model, revision))
            return view.model_dump_json().encode(), [(hub_id, stamp)]

    key = ("super-weights", hub_id, revision)
    cached = await cached_body(services.cache, services.engine, key, render)
    return conditional_response_with_etag(request, cached.body, cached.etag)


@router.get(
    "/models/{org}/{name}/bundle",
    response_model=BundleOut,
    summary="Download the coordinate bundle",
    responses={
        200: {
            "headers": {**ETAG_HEADERS, "Content-Disposition": {"schema": {"type": "string"}}},
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [
                            {"$ref": "#/components/schemas/BundleOut"},
                            {"type": "object", "description": "format=gptqmodel: a GPTQModel config"},
                        ]
                    }
                },
                **{
                    media_type: {"schema": {"type": "string", "format": "binary"}}
                    for media_type in BUNDLE_MEDIA_TYPES
                },
            },
        },
        **NOT_MODIFIED,
        **problem_responses(400, 404, 422),
    },
)
def get_bundle(
    request: Request,
    services: ServicesDep,
    org: Org,
    name: Name,
    format: Annotated[BundleFormat, Query(description="Bundle format.")] = "json",
    keep: Annotated[
        Text, Query(max_length=8, description="Tool formats: super-weight modules at 8 bits (int8) or full.")
    ] = DEFAULT_KEEP,
    tensor_type: Annotated[
        Text | None,
        Query(max_length=8, description="llama.cpp: q8_0, f16, bf16 or f32 (default: from `keep`)."),
    ] = None,
    scheme: Annotated[
        Text, Query(max_length=40, description="Python tool formats: W2A16, W3A16, W4A16 or W8A16.")
    ] = DEFAULT_SCHEME,
    group_size: Annotated[
        int | None, Query(ge=1, le=4096, description="Python tool formats: the group size.")
    ] = None,
    revision: RevisionQuery = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """A model's super-weight coordinates as a JSON manifest, safetensors, or a quantizer's configuration."""
    hub_id = _model_id(org, name)
    options = RenderOptions(keep=keep, tensor_type=tensor_type, scheme=scheme, group_size=group_size)
    check_options(format, options)
    with services.session() as session:
        model = ModelRepository(session).get(hub_id)
        view = CoordinateRepository(session).coordinates(model, revision)
        manifest = views.bundle_manifest(view)
    rendered = render_bundle(
        manifest, format, keep=keep, tensor_type=tensor_type, scheme=scheme, group_size=group_size
    )
    return conditional_response(
        request,
        rendered.body,
        media_type=rendered.content_type,
        headers={"Content-Disposition": rendered.content_disposition},
    )


@router.get(
    "/runs/{run_id}", response_model=RunReportOut, summary="The full report of a run", responses=_read(404)
)
def get_run(
    request: Request,
    services: ServicesDep,
    run_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    if_none_match: IfNoneMatch = None,
) -> Response:
    """Profile, super activation, all quality results and provenance of one index run."""
    with services.session() as session:
        runs = RunRepository(session)
        run = runs.get(run_id)
        view = CoordinateRepository(session).coordinates_of(run.model, run)
        body = views.run_report(
            run, view, runs.quality_results(run), runs.layer_profile(run), runs.job_of(run)
        )
    return json_with_etag(request, body)


@router.get(
    "/compare", response_model=CompareOut, summary="Compare two models' coordinates", responses=_read(404)
)
async def compare(
    request: Request,
    services: ServicesDep,
    a: Annotated[
        Text, Query(max_length=193, pattern=MODEL_ID_PATTERN, examples=["meta-llama/Llama-2-7b-hf"])
    ],
    b: Annotated[
        Text, Query(max_length=193, pattern=MODEL_ID_PATTERN, examples=["meta-llama/Llama-2-7b-chat-hf"])
    ],
    if_none_match: IfNoneMatch = None,
) -> Response:
    """Which coordinates two models (e.g. a base and its fine-tune) share, which moved, which vanished."""
    id_a, id_b = validate_model_id(a), validate_model_id(b)

    def render() -> tuple[bytes, list[tuple[str, datetime]]]:
        with services.session() as session:
            stamps = [(id_a, model_stamp(session, id_a)), (id_b, model_stamp(session, id_b))]
            models = ModelRepository(session)
            model_a, model_b = models.get(id_a), models.get(id_b)
            body = views.comparison(CoordinateRepository(session).compare(model_a, model_b))
            return body.model_dump_json().encode(), stamps

    cached = await cached_body(services.cache, services.engine, ("compare", id_a, id_b), render)
    return conditional_response_with_etag(request, cached.body, cached.etag)


@router.post(
    "/submissions",
    response_model=SubmissionOut,
    status_code=202,
    summary="Submit a model for indexing",
    responses={
        200: {
            "model": SubmissionOut,
            "description": "An identical submission already finished: its job or run.",
        },
        202: {
            "description": "Accepted: the job (new, or the identical one in progress).",
            "headers": {"Location": {"description": "The job (or run).", "schema": {"type": "string"}}},
        },
        **problem_responses(400, 401, 403, 404, 409, 413, 422, 429, 503),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SubmissionIn"}}},
        }
    },
)
async def submit(
    request: Request,
    services: ServicesDep,
    principal: Annotated[Principal, Depends(require_scope("submit"))],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            pattern=r"^[\x21-\x7e]+$",
            description="Retries with the same key return the same job.",
        ),
    ] = None,
) -> JSONResponse:
    """Create (or find) the job that indexes `model` at `revision` with `options`; it runs after commit.

    The key is checked before the body is read: an unauthenticated request is never parsed.
    """
    submission = _parse_body(SubmissionIn, await request.body())
    result = await run_in_threadpool(
        services.submissions.submit, submission.as_submission(principal.key_id, idempotency_key)
    )
    job = result.job
    body = SubmissionOut(
        created=result.created,
        job=views.job_out(job) if job else None,
        run_id=result.run_id,
        run_url=views.run_url(result.run_id) if result.run_id is not None else None,
    )
    location = views.job_url(job) if job is not None else views.run_url(result.run_id or 0)
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=200 if result.finished else 202,
        headers={"Location": location},
    )


def _parse_body(model: type[Body], raw: bytes) -> Body:
    """The JSON body as `model`, parsed and validated the way FastAPI does its own bodies (422 if not)."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        error = {"loc": ("body",), "msg": f"JSON decode error: {type(exc).__name__}", "type": "json_invalid"}
        raise RequestValidationError([error]) from None
    unstorable = unstorable_fields(data, ("body",))
    if unstorable:
        raise RequestValidationError(unstorable)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error.get("loc", ()))} for error in exc.errors(include_input=False)]
        ) from None


@router.get(
    "/jobs/{job_id}",
    response_model=JobOut,
    summary="A job's status",
    responses={**problem_responses(404, 422)},
)
def get_job(services: ServicesDep, job_id: uuid.UUID) -> JobOut:
    """Status, phase, progress, attempts and last error of a job (not cached: it changes)."""
    with services.session() as session:
        return views.job_out(JobRepository(session).get(job_id))


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=JobOut,
    summary="Cancel a job",
    responses={**problem_responses(401, 403, 404, 409, 422)},
)
def cancel_job(
    services: ServicesDep,
    job_id: uuid.UUID,
    principal: Annotated[Principal, Depends(require_scope("submit"))],
) -> JobOut:
    """Cancel a job that has not finished (the submitting key, or an admin key); cancelling twice is a no-op.

    A queued job is never started; a running one stops at its worker's next progress update.
    """
    job = services.submissions.cancel(
        job_id, requester_id=principal.key_id, admin="admin" in principal.scopes
    )
    return views.job_out(job)


def _model_id(org: str, name: str) -> str:
    return validate_model_id(f"{org}/{name}")
