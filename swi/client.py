"""A Python client of the Super-Weight Index REST API (`swi serve`, or any deployment of `api/`).

    from swi.client import Client

    with Client("http://127.0.0.1:8000") as client:
        weights = client.super_weights("meta-llama/Llama-2-7b-hf")
        for w in weights.super_weights:
            print(w.layer, w.row, w.col, w.status)

- Reads are cached on disk by hishel (RFC 9111): the API's strong ETags make a repeated read a `304` with no
  body, answered from the cache.
- Retries are stamina's: `429` and `503` are waited out for the `Retry-After` the server sends (up to
  `max_wait_s` in all); connection errors are retried with exponential backoff. A submission carries an
  `Idempotency-Key`, so a retried POST returns the same job.
- Errors are typed from the RFC 9457 problem+json body: `NotFound` (404), `Conflict` (409),
  `InvalidRequest` (400/422), `RateLimited` (429), `Unavailable` (503), `Unauthorized`/`Forbidden`
  (401/403), all `ApiError`s carrying the problem document.
- `bundle()` checks the manifest's sha256 before writing the file; the manifest comes from the same cache.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import hishel
import httpx
import stamina
from hishel.httpx import CacheTransport

from bundles import manifest_from_safetensors
from contracts.documents import (
    CompareOut,
    JobOut,
    ModelDetailOut,
    ModelSummaryOut,
    RunReportOut,
    SubmissionOut,
    SuperWeightsOut,
)
from contracts.errors import BundleFormatError, InvalidInputError
from contracts.identifiers import split_model_id
from contracts.jobs import SubmissionOptions
from contracts.manifest import BundleManifest, check_manifest
from contracts.status import FINISHED_JOB_STATUSES

#: what `Client.wait` reports progress to: (phase, fraction 0..1, message=...)
ProgressCallback = Callable[..., None]
DEFAULT_TIMEOUT_S = 30.0
#: the longest a request may spend waiting out 429/503s and retrying connection errors
DEFAULT_MAX_WAIT_S = 120.0
DEFAULT_ATTEMPTS = 6
USER_AGENT = "swi-client/1"


def default_cache_dir() -> Path:
    """Where the HTTP cache lives: `$SWI_CLIENT_CACHE`, else the user cache folder."""
    configured = os.environ.get("SWI_CLIENT_CACHE")
    if configured:
        return Path(configured).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser()
    return base / "super-weight-index" / "http"


# ---- errors ----


class ClientError(Exception):
    """Base class of everything this client raises on purpose."""


class BundleIntegrityError(ClientError):
    """A downloaded bundle does not match its manifest (damaged in transit or in the cache)."""


class ApiError(ClientError):
    """The API answered with a problem document (RFC 9457)."""

    def __init__(self, status: int, problem: Mapping[str, Any], retry_after_s: float | None = None) -> None:
        self.status = status
        self.problem = dict(problem)
        self.title = str(problem.get("title") or f"HTTP {status}")
        self.detail = problem.get("detail")
        self.type = str(problem.get("type") or "about:blank")
        self.instance = problem.get("instance")
        self.errors: list[dict[str, Any]] = list(problem.get("errors") or [])
        self.retry_after_s = retry_after_s
        super().__init__(f"{status} {self.title}: {self.detail}" if self.detail else f"{status} {self.title}")


class InvalidRequest(ApiError):  # noqa: N818 (named after the HTTP condition, like httpx's)
    """400 or 422: the parameters or body are invalid (`errors` lists the fields)."""


class Unauthorized(ApiError):  # noqa: N818
    """401: no valid API key."""


class Forbidden(ApiError):  # noqa: N818
    """403: the key lacks the scope, or is not the one that submitted the job."""


class NotFound(ApiError):  # noqa: N818
    """404: no such model, revision, run or job."""


class Conflict(ApiError):  # noqa: N818
    """409: e.g. cancelling a finished job, or an Idempotency-Key reused for another request."""


class RateLimited(ApiError):  # noqa: N818
    """429: too many submissions; `retry_after_s` says when to try again."""


class Unavailable(ApiError):  # noqa: N818
    """503: a dependency of the service is down; `retry_after_s` says when to try again."""


class ServerError(ApiError):
    """Any other 5xx (a bug on the server)."""


_ERRORS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: InvalidRequest,
    429: RateLimited,
    503: Unavailable,
}


def _retry_after(response: httpx.Response, problem: Mapping[str, Any]) -> float | None:
    header = response.headers.get("retry-after")
    for value in (header, problem.get("retry_after")):
        try:
            if value is not None:
                return max(0.0, float(value))
        except (TypeError, ValueError):
            continue  # an HTTP date: not sent by this API; fall back to the body or backoff
    return None


def error_of(response: httpx.Response) -> ApiError:
    """The typed error of a failed response, from its problem+json body (or its status alone)."""
    try:
        problem = response.json()
    except ValueError:
        problem = None
    if not isinstance(problem, dict):
        problem = {"title": response.reason_phrase, "status": response.status_code}
    status = response.status_code
    kind = _ERRORS.get(status, ServerError if status >= 500 else ApiError)
    return kind(status, problem, _retry_after(response, problem))


def _backoff(exc: BaseException) -> bool | float:
    """stamina's hook: wait out 429/503 for their Retry-After, back off on connection errors."""
    if isinstance(exc, RateLimited | Unavailable):
        return exc.retry_after_s if exc.retry_after_s is not None else True
    return isinstance(exc, httpx.TransportError)


# ---- results that are not API documents ----


@dataclass(frozen=True)
class BundleFile:
    """A downloaded bundle: where it is, the checked manifest it renders, and how it was fetched."""

    path: Path
    format: str
    content_type: str
    manifest: BundleManifest = field(repr=False)
    etag: str | None
    revalidated: bool  # the server answered 304: the body came from the local cache

    @property
    def sha256(self) -> str:
        """The manifest's sha256 (checked)."""
        return self.manifest.sha256

    @property
    def revision(self) -> str | None:
        """The commit sha the coordinates were measured on (None: only published entries)."""
        return self.manifest.revision


# ---- the client ----


class Client:
    """The REST API of a Super-Weight Index service; `api_key` is needed for `submit` and `cancel`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        attempts: int = DEFAULT_ATTEMPTS,
        cache_dir: Path | str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.max_wait_s = max_wait_s
        self.attempts = attempts
        folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        storage = hishel.SqliteStorage(database_path=folder / "responses.db")
        cached = CacheTransport(
            next_transport=transport or httpx.HTTPTransport(),
            storage=storage,
            rfc=hishel.CacheOptions(shared=False),
        )
        self._http = httpx.Client(
            base_url=self.base_url,
            transport=cached,
            timeout=timeout_s,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        )

    # -- plumbing --

    def close(self) -> None:
        """Close the connections and the cache."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        write: bool = False,
    ) -> httpx.Response:
        """One API call with the retries; raises the typed `ApiError` of a problem response."""
        all_headers = dict(headers or {})
        if write:
            if self.api_key is None:
                raise Unauthorized(
                    401, {"title": "Unauthorized", "detail": "this call needs an API key (SWI_API_KEY)"}
                )
            all_headers["Authorization"] = f"Bearer {self.api_key}"
        query = {k: v for k, v in (params or {}).items() if v is not None}
        for attempt in stamina.retry_context(
            on=_backoff, attempts=self.attempts, timeout=self.max_wait_s, wait_initial=0.2, wait_max=10.0
        ):
            with attempt:
                response = self._http.request(method, path, params=query, json=json_body, headers=all_headers)
                if response.is_error:
                    raise error_of(response)
        return response

    def _get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params).json()

    # -- reads --

    def models(
        self,
        *,
        architecture: str | None = None,
        family: str | None = None,
        status: str | None = None,
        layer: int | None = None,
        has_super_weights: bool | None = None,
        q: str | None = None,
        sort: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[ModelSummaryOut]:
        """Every model matching the filters, fetching one cursor page at a time as the iteration goes."""
        params: dict[str, Any] = {
            "architecture": architecture,
            "family": family,
            "status": status,
            "layer": layer,
            "has_super_weights": None if has_super_weights is None else str(has_super_weights).lower(),
            "q": q,
            "sort": sort,
            "limit": page_size,
        }
        cursor: str | None = None
        while True:
            page = self._get("/v1/models", **params, cursor=cursor)
            for item in page["items"]:
                yield ModelSummaryOut.model_validate(item)
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def model(self, model_id: str) -> ModelDetailOut:
        """One model with its latest revision and its runs."""
        return ModelDetailOut.model_validate(self._get(_model_path(model_id)))

    def super_weights(self, model_id: str, revision: str | None = None) -> SuperWeightsOut:
        """The model's super weights (at `revision`, default the newest indexed one) with their evidence."""
        return SuperWeightsOut.model_validate(
            self._get(f"{_model_path(model_id)}/super-weights", revision=revision)
        )

    def run(self, run_id: int) -> RunReportOut:
        """The full report of one index run (profile, quality results, provenance)."""
        return RunReportOut.model_validate(self._get(f"/v1/runs/{int(run_id)}"))

    def compare(self, a: str, b: str) -> CompareOut:
        """Which coordinates two models share, which moved, vanished or appeared."""
        return CompareOut.model_validate(self._get("/v1/compare", a=a, b=b))

    def manifest(self, model_id: str, revision: str | None = None) -> BundleManifest:
        """The model's bundle manifest, with its sha256 checked."""
        return self._manifest(model_id, revision)[1]

    def bundle_manifest(self, model_id: str, revision: str | None = None) -> Mapping[str, Any]:
        """The checked manifest as served (the coordinate source `indexer.bundles` asks for by model id)."""
        return self._manifest(model_id, revision)[0]

    def _manifest(self, model_id: str, revision: str | None) -> tuple[dict[str, Any], BundleManifest]:
        response = self.request(
            "GET", f"{_model_path(model_id)}/bundle", params={"format": "json", "revision": revision}
        )
        raw, manifest = _checked_manifest(response.content, "json")
        _check_identity(manifest, model_id)
        return raw, manifest

    def bundle(
        self,
        model_id: str,
        format: str = "json",
        dest: Path | str | None = None,
        *,
        revision: str | None = None,
        tensor_type: str | None = None,
        scheme: str | None = None,
        keep: str | None = None,
        group_size: int | None = None,
    ) -> BundleFile:
        """Download the bundle in `format` to `dest` (a file, or a folder for the server's file name).

        The manifest's sha256 is checked (and, for a tool format, that the file is that manifest's
        rendering) before anything is written; a repeat download revalidates its ETag (a 304, no body).
        """
        response = self.request(
            "GET",
            f"{_model_path(model_id)}/bundle",
            params={
                "format": format,
                "revision": revision,
                "tensor_type": tensor_type,
                "scheme": scheme,
                "keep": keep,
                "group_size": group_size,
            },
            headers={"Accept": "*/*"},
        )
        body = response.content
        if format in ("json", "safetensors"):
            manifest = _checked_manifest(body, format)[1]
        else:
            manifest = self.manifest(model_id, revision)
            _check_rendering(body, manifest, format)
        _check_identity(manifest, model_id)
        path = _destination(dest, response)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
        partial.write_bytes(body)
        partial.replace(path)  # never a half-written bundle under the real name
        caching = response.extensions.get("caching") or {}
        return BundleFile(
            path=path,
            format=format,
            content_type=response.headers.get("content-type", "application/octet-stream"),
            manifest=manifest,
            etag=response.headers.get("etag"),
            revalidated=bool(caching.get("revalidated")),
        )

    # -- jobs --

    def submit(
        self,
        model_id: str,
        revision: str | None = None,
        options: SubmissionOptions | Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> SubmissionOut:
        """Submit `model_id` for indexing (needs a key with scope `submit`); the job, new or identical."""
        # a mapping goes as given: the server validates it (a 422 names the field)
        chosen = options.model_dump(by_alias=True) if isinstance(options, SubmissionOptions) else options
        response = self.request(
            "POST",
            "/v1/submissions",
            json_body={"model": model_id, "revision": revision, "options": dict(chosen or {})},
            # the same key on every retry of this call: a retried POST finds the job it created
            headers={"Idempotency-Key": idempotency_key or uuid.uuid4().hex},
            write=True,
        )
        return SubmissionOut.model_validate(response.json())

    def job(self, job_id: uuid.UUID | str) -> JobOut:
        """A job's status, phase, progress, attempts and last error."""
        return JobOut.model_validate(self._get(f"/v1/jobs/{_job_id(job_id)}"))

    def cancel(self, job_id: uuid.UUID | str) -> JobOut:
        """Cancel a job that has not finished (`Conflict` when it has)."""
        response = self.request("POST", f"/v1/jobs/{_job_id(job_id)}/cancel", write=True)
        return JobOut.model_validate(response.json())

    def wait(
        self,
        job_id: uuid.UUID | str,
        progress: bool | ProgressCallback = True,
        *,
        poll_s: float = 1.0,
        timeout_s: float | None = None,
    ) -> JobOut:
        """Poll the job until it ends (succeeded, failed or cancelled).

        `progress`: True shows it on stderr (a bar on a terminal, else a line per phase and per 10%); a
        callable gets `(phase, fraction, message=...)` instead.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        if progress is False:
            return self._poll(job_id, poll_s, deadline, None)
        if callable(progress):
            return self._poll(job_id, poll_s, deadline, progress)
        with _progress_display(f"job {str(job_id)[:8]}") as update:
            return self._poll(job_id, poll_s, deadline, update)

    def _poll(
        self, job_id: uuid.UUID | str, poll_s: float, deadline: float | None, update: ProgressCallback | None
    ) -> JobOut:
        while True:
            job = self.job(job_id)
            if update is not None:
                message = (
                    f"attempt {job.attempts}/{job.max_attempts}" if job.attempts else "waiting for a worker"
                )
                if job.status == "retry" and job.last_error:
                    message = f"retrying: {job.last_error}"
                update(job.phase or job.status, job.progress, message=message)
            if job.status in FINISHED_JOB_STATUSES:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job.id} is still {job.status} ({job.phase}, {job.progress:.0%})")
            time.sleep(poll_s)


# ---- helpers ----


@contextmanager
def _progress_display(prefix: str) -> Iterator[ProgressCallback]:
    """The CLI's display (bars on a terminal, lines elsewhere) where the server extra is installed, else
    plain lines on stderr."""
    try:
        # the CLI's display needs rich (the server extra), which the client itself does not
        from swi.progress import progress_reporter
    except ModuleNotFoundError:
        yield _StderrLines(prefix)
        return
    with progress_reporter(per_phase=False, prefix=prefix) as reporter:
        yield reporter.update


class _StderrLines:
    """Progress as stderr lines without rich: one when the phase changes and one per 10% it passes."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.last: tuple[str, int] | None = None

    def __call__(self, phase: str, fraction: float | None, *, message: str | None = None, **_: Any) -> None:
        step = int(10 * (fraction or 0.0))
        if (phase, step) == self.last:
            return
        self.last = (phase, step)
        detail = f": {message}" if message else ""
        print(f"[{self.prefix}] {phase} {10 * step:3d}%{detail}", file=sys.stderr, flush=True)


def _model_path(model_id: str) -> str:
    try:
        org, name = split_model_id(model_id)
    except InvalidInputError as exc:
        raise InvalidRequest(400, {"title": "Bad Request", "detail": str(exc)}) from None
    return f"/v1/models/{quote(org, safe='')}/{quote(name, safe='')}"


def _job_id(job_id: uuid.UUID | str) -> str:
    try:
        return str(uuid.UUID(str(job_id)))
    except ValueError:
        raise InvalidRequest(
            422, {"title": "Unprocessable Content", "detail": f"not a job id: {job_id!r}"}
        ) from None


def _checked_manifest(body: bytes, format: str) -> tuple[dict[str, Any], BundleManifest]:
    """The manifest a json or safetensors bundle carries, as sent and checked (`contracts.manifest`)."""
    try:
        raw = manifest_from_safetensors(body) if format == "safetensors" else json.loads(body)
        return dict(raw), check_manifest(raw)
    except (ValueError, BundleFormatError) as exc:
        raise BundleIntegrityError(f"the {format} bundle failed its check: {exc}") from None


def _check_identity(manifest: BundleManifest, model_id: str) -> None:
    if manifest.model.lower() != model_id.lower():
        raise BundleIntegrityError(f"asked for the bundle of {model_id}, got one of {manifest.model}")


def _check_rendering(body: bytes, manifest: BundleManifest, format: str) -> None:
    """A tool format names the sha256 of the manifest it renders: it must be the checked one."""
    sha = manifest.sha256.encode()
    if body[:2] == b"PK":  # a zip archive (llama.cpp): look inside its members
        try:
            with zipfile.ZipFile(io.BytesIO(body)) as archive:
                found = any(sha in archive.read(name) for name in archive.namelist())
        except zipfile.BadZipFile as exc:
            raise BundleIntegrityError(f"the {format} bundle is a damaged zip archive: {exc}") from None
    else:
        found = sha in body
    if not found:
        raise BundleIntegrityError(f"the {format} bundle does not name the manifest sha256 {sha.decode()}")


def _destination(dest: Path | str | None, response: httpx.Response) -> Path:
    disposition = response.headers.get("content-disposition", "")
    filename = disposition.partition('filename="')[2].partition('"')[0]
    filename = Path(filename).name or "bundle"  # a server name never picks the folder
    if dest is None:
        return Path(filename)
    path = Path(dest).expanduser()
    return path / filename if path.is_dir() else path
