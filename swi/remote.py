"""The remote side of the CLI: `--server URL` (or `SWI_SERVER`) sends `swi get`, `swi bundle`, `swi index`,
`swi jobs` and `swi compare` to a running service through `swi.client`; `SWI_API_KEY` authorises writes.

Each command prints what its local form prints: both build the same API documents and share the renderer.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from swi.console import clear_errors, err_console, fail, weight_row
from swi.output import job_row, show_entry, show_jobs
from swi.progress import progress_reporter

if TYPE_CHECKING:
    from contracts.documents import RunReportOut
    from swi.client import Client

ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="SWI_SERVER",
        help="Talk to this running service (e.g. http://127.0.0.1:8000) instead of the local catalog; "
        "writes use the key in SWI_API_KEY.",
        show_envvar=True,
    ),
]


@contextmanager
def remote(server: str) -> Iterator[Client]:
    """A client of `server` (key from `SWI_API_KEY`); its errors become one clear line and exit code 2."""
    # the HTTP client loads only for --server: the local commands and `swi --help` stay fast
    import httpx

    from swi.client import ApiError, Client, ClientError

    with clear_errors(ClientError, httpx.HTTPError, TimeoutError):
        try:
            with Client(server, api_key=os.environ.get("SWI_API_KEY") or None) as client:
                yield client
        except ApiError as exc:
            fail(exc.detail or str(exc))  # the line the local command prints for the same error


def entry_of(report: RunReportOut) -> dict[str, Any]:
    """The catalog entry `swi index` prints, from a server's run report (the run's own measurements)."""
    return {
        "model": report.model,
        "revision": report.revision.sha,
        "run_id": report.id,
        "model_verdict": report.model_verdict,
        "super_weights": [weight_row(w) for w in report.super_weights if w.source == "measured"],
        "timings": report.timings,
        "url": f"/v1/models/{report.model}",
    }


def index(
    server: str,
    model: str,
    revision: str | None,
    options: dict[str, Any],
    *,
    wait: bool,
    as_json: bool,
) -> None:
    """`swi index --server`: submit, follow the job with progress, print the entry."""
    with remote(server) as client:
        submitted = client.submit(model, revision, options)
        job = submitted.job
        if job is None or (job.status == "succeeded" and not submitted.created):
            err_console.print(f"[dim]{model} is already indexed with these settings[/]")
            run_id = submitted.run_id if job is None else job.run_id
            if run_id is None:
                fail("the server returned neither a job nor a run", 1)
            show_entry(entry_of(client.run(run_id)), as_json)
            return
        err_console.print(
            f"job {job.id} {'submitted' if submitted.created else '(identical to one already queued)'}: "
            f"{model} on {server}"
        )
        if not wait:
            print(job.id)
            return
        try:
            with progress_reporter(
                per_phase=False, prefix=f"job {str(job.id)[:8]}", log_to_stdout=not as_json
            ) as reporter:
                job = client.wait(job.id, progress=reporter.update)
        except KeyboardInterrupt:
            err_console.print(f"stopped following job {job.id}; it goes on (`swi jobs {job.id} --cancel`)")
            raise
        if job.status != "succeeded" or job.run_id is None:
            fail(
                f"job {job.id} {job.status} after {job.attempts} attempt(s): {job.last_error or 'no error'}",
                1,
            )
        show_entry(entry_of(client.run(job.run_id)), as_json)


def jobs(server: str, job_id: str | None, cancel: bool, as_json: bool) -> None:
    """`swi jobs --server`: one job (the API lists no jobs), or cancel it."""
    if job_id is None:
        fail("with --server, give the id of the job to show (the API does not list jobs)")
    with remote(server) as client:
        job = client.cancel(job_id) if cancel else client.job(job_id)
    show_jobs([job_row(job)], None, as_json)


def bundle(
    server: str,
    model: str,
    format: str,
    output: str | None,
    revision: str | None,
    tensor_type: str | None,
    scheme: str,
    keep: str,
    group_size: int | None,
) -> None:
    """`swi bundle --server`: download the checked bundle (revalidated by ETag when cached)."""
    with remote(server) as client:
        if output == "-":
            with tempfile.TemporaryDirectory() as folder:
                got = client.bundle(
                    model,
                    format,
                    Path(folder),
                    revision=revision,
                    tensor_type=tensor_type,
                    scheme=scheme,
                    keep=keep,
                    group_size=group_size,
                )
                sys.stdout.buffer.write(got.path.read_bytes())
                sys.stdout.flush()
            return
        got = client.bundle(
            model,
            format,
            output or Path.cwd(),
            revision=revision,
            tensor_type=tensor_type,
            scheme=scheme,
            keep=keep,
            group_size=group_size,
        )
    count = len(got.manifest.super_weights)
    err_console.print(
        f"wrote {got.path} ({got.content_type}, {got.path.stat().st_size:,} bytes): {count} super weight(s) "
        f"of {got.manifest.model} at {got.revision or 'no pinned revision'}"
        + (" (unchanged: revalidated by its ETag)" if got.revalidated else "")
    )
    if format not in ("json", "safetensors"):
        err_console.print(
            "[dim]coarse: the whole module of each super weight is kept at higher precision; "
            "docs/bundles.md shows the exact per-weight hold-out[/]"
        )
