"""`swi index`, `swi worker`, `swi jobs`: submit models to the indexing pipeline, run it, watch it."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from contracts.status import FINISHED_JOB_STATUSES, JobStatus
from swi import remote
from swi.console import clear_errors, err_console, fail, weight_row
from swi.detect_cmd import ENGINE_HELP, parse_memory
from swi.output import job_row, show_entry, show_jobs
from swi.progress import progress_reporter
from swi.remote import ServerOption

if TYPE_CHECKING:
    from catalog.models import Job
    from catalog.services import SubmissionService
    from workers.pipeline import JobProgress, PipelineContext
    from workers.settings import WorkerSettings

POLL_INTERVAL_S = 0.5
#: how often a process following an embedded job looks for a stale heartbeat
SWEEP_INTERVAL_S = 5.0
QUEUE_NAMES = ("gpu", "default")


def register(app: typer.Typer) -> None:
    """Add the `index`, `worker` and `jobs` commands."""
    app.command("index")(index_command)
    app.command("worker")(worker_command)
    app.command("jobs")(jobs_command)


def _errors() -> AbstractContextManager[None]:
    from sqlalchemy.exc import OperationalError

    from contracts.errors import DomainError

    return clear_errors(DomainError, OperationalError)


def _settings(**overrides: Any) -> WorkerSettings:
    from catalog.bootstrap import prepare_database
    from workers.settings import WorkerSettings

    settings = WorkerSettings(**{k: v for k, v in overrides.items() if v is not None})
    if settings.should_auto_migrate:
        prepare_database(settings)
    return settings


def _context(settings: WorkerSettings) -> PipelineContext:
    from workers.runtime import pipeline_context

    return pipeline_context(settings)


def index_command(
    model: Annotated[str, typer.Argument(help="Hub id (org/name), a local model folder, or a .gguf file.")],
    revision: Annotated[str | None, typer.Option(help="Hub branch, tag or commit sha.")] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option(help="Validation token budget (default 4096 on a CPU, 65536 on a GPU).", min=2),
    ] = None,
    window: Annotated[int | None, typer.Option(help="Validation window length.", min=2)] = None,
    corpus: Annotated[
        str | None,
        typer.Option(
            help="auto (default: WikiText-2 where `datasets` loads it, else builtin), builtin, wikitext2, "
            "or a text file."
        ),
    ] = None,
    experiments: Annotated[
        str | None, typer.Option(help="Comma-separated validation experiments (default: all).")
    ] = None,
    null_sets: Annotated[
        int | None,
        typer.Option(help="Random magnitude-matched sets of the null (default 32).", min=0, max=1024),
    ] = None,
    null_column_sets: Annotated[
        int | None, typer.Option(help="Same-column sets of the null (default 8).", min=0, max=1024)
    ] = None,
    skip_validation: Annotated[
        bool, typer.Option("--skip-validation", help="Detect only: no pruning, no quantization checks.")
    ] = False,
    skip_quantization: Annotated[
        bool, typer.Option("--skip-quantization", help="No RTN / W8A8 quantization checks.")
    ] = False,
    prompt: Annotated[str | None, typer.Option(help="Detection prompt (default: the paper's).")] = None,
    max_super_weights: Annotated[int, typer.Option(help="Stop after this many.", min=1, max=64)] = 8,
    dtype: Annotated[str, typer.Option(help="auto, float32, float16, bfloat16.")] = "auto",
    device: Annotated[
        str | None,
        typer.Option(help="Embedded default only: auto, cpu, cuda, cuda:N (workers choose their own)."),
    ] = None,
    build_of: Annotated[
        str | None,
        typer.Option(
            "--build-of",
            metavar="ORG/NAME",
            help="The hub model a .gguf file is a quantized build of (its runs then show on that model).",
        ),
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(help=ENGINE_HELP + " Streamed, validation reads each layer about once per suite."),
    ] = None,
    max_memory: Annotated[
        str | None,
        typer.Option(help="Embedded default only: memory budget of the weights (e.g. 8GB)."),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the job until it ends.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the catalog entry as JSON.")] = False,
    server: ServerOption = None,
) -> None:
    """Submit MODEL to the indexing pipeline, follow it with a progress bar, then print its catalog entry.

    On the embedded default (no SWI_BROKER_URL) the job runs in this process; with a broker, a `swi worker`
    runs it; with --server, the service does (hub ids only). The same model, revision and settings are
    indexed once: a repeat prints the existing entry.
    """
    if server:
        local_only = {"--max-tokens": max_tokens, "--window": window, "--corpus": corpus}
        local_only |= {"--experiments": experiments, "--device": device, "--build-of": build_of}
        local_only |= {"--engine": engine, "--max-memory": max_memory}
        local_only |= {"--null-sets": null_sets, "--null-column-sets": null_column_sets}
        given = [name for name, value in local_only.items() if value is not None]
        if given:
            fail(f"{', '.join(given)}: not a submission option of the API; the service chooses them")
        options = {
            "prompt": prompt,
            "max_super_weights": max_super_weights,
            "dtype": dtype,
            "validate": not skip_validation,
            "quantization_checks": not (skip_validation or skip_quantization),
        }
        options = {key: value for key, value in options.items() if value is not None}
        remote.index(server, model, revision, options, wait=wait, as_json=as_json)
        return
    from catalog.repositories import RunRecorder
    from catalog.services import Submission
    from contracts.identifiers import is_commit_sha, local_model_id
    from contracts.jobs import JobConfig, versioned_run_config
    from contracts.versions import RUN_VERSIONS
    from workers.sources import content_digest, local_path_of

    with _errors():
        settings = _settings(device=device, worker_memory_limit_bytes=parse_memory(max_memory))
        path = local_path_of(model)
        if path is not None:
            if revision is not None:
                fail("--revision only applies to hub models")
            if not settings.local_models_allowed:
                fail(
                    "local paths are indexed on the embedded default only; with a broker, set "
                    "SWI_ALLOW_LOCAL_MODELS=true on workers (where the path must exist) or submit a hub id"
                )
            model_id = local_model_id(path)
            _explain_lineage(path, build_of)
            with err_console.status(f"hashing {path.name}"):
                sha: str | None = content_digest(path)
        else:
            if build_of is not None:
                fail("--build-of applies to a local .gguf file")
            model_id, sha = model, (revision if revision is not None and is_commit_sha(revision) else None)
        try:
            job_config = JobConfig.model_validate(
                {
                    "prompt": prompt,
                    "max_super_weights": max_super_weights,
                    "dtype": dtype,
                    "validate": not skip_validation,
                    "quantization_checks": not (skip_validation or skip_quantization),
                    "max_tokens": max_tokens,
                    "window": window,
                    "corpus": corpus,
                    "experiments": _names(experiments),
                    "null_sets": null_sets,
                    "null_column_sets": null_column_sets,
                    "source_path": str(path) if path is not None else None,
                    "build_of": build_of,
                    "engine": engine,
                }
            ).as_config()
        except ValueError as exc:
            fail(f"invalid option: {exc}")
        context = _context(settings)
        service = _service(context)
        result = service.submit(
            Submission(
                model=model_id,
                config=job_config,
                revision=revision,
                resolved_sha=sha,
                request_config=versioned_run_config(job_config, RUN_VERSIONS),
            )
        )
        if result.run_id is not None and build_of is not None:
            with context.write() as session:
                RunRecorder(session).link_build(result.run_id, build_of)
                session.commit()
        if result.job is None or (result.run_id is not None and result.job.status == "succeeded"):
            err_console.print(f"[dim]{model_id} is already indexed with these settings[/]")
            _print_entry(context, result.run_id, as_json)
            return
        job_id, created = result.job.id, result.created
        err_console.print(
            f"job {job_id} {'submitted' if created else '(identical to one already queued)'}: {model_id}"
        )
        if created and not settings.embedded and not result.enqueued:
            err_console.print(
                "[yellow]the broker did not take the job; it waits in the catalog and a worker's sweeper "
                "sends it when the broker is back[/]"
            )
        if settings.embedded:
            job = _run_here(context, job_id, as_json)
        else:
            if not wait:
                print(job_id)
                return
            job = _follow(context, job_id, as_json=as_json)
    if job.status != JobStatus.SUCCEEDED:
        fail(
            f"job {job.id} {job.status} after {job.attempts} attempt(s): {job.last_error or 'no error'}",
            1,
        )
    _print_entry(context, job.run_id, as_json)


def _explain_lineage(path: Path, build_of: str | None) -> None:
    """Show what a GGUF file's metadata says it was built from; the link is made only with --build-of."""
    if path.suffix != ".gguf":
        if build_of is not None:
            fail("--build-of applies to a .gguf file")
        return
    from contracts.identifiers import validate_model_id
    from indexer.model.loading import gguf_lineage

    if build_of is not None:
        validate_model_id(build_of)
    lineage = gguf_lineage(path)
    said = ", ".join(
        f"{label} {value}"
        for label, value in (
            ("organization", lineage.organization),
            ("basename", lineage.basename),
            ("size", lineage.size_label),
            ("finetune", lineage.finetune),
            ("base model", ", ".join(lineage.base_models) or None),
        )
        if value
    )
    if said:
        err_console.print(f"[dim]{path.name} metadata: {said}[/]")
    if build_of is not None:
        err_console.print(f"indexing {path.name} as a quantized build of {build_of}")
    elif lineage.suggestion is not None:
        err_console.print(
            f"[yellow]not linked to a hub model: if it is a build of one, pass --build-of ORG/NAME "
            f"(the metadata suggests {lineage.suggestion}; check it: it is not always the hub id)[/]"
        )


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def _service(context: PipelineContext) -> SubmissionService:
    """The submission service on this catalog; with a broker it sends jobs to Celery (embedded: none)."""
    from catalog.services import SubmissionService
    from workers.broker import celery_enqueuer

    settings = context.settings
    return SubmissionService(
        context.sessions,
        enqueue=None if settings.embedded else celery_enqueuer(settings),
        max_attempts=settings.job_max_attempts,
        enqueue_timeout_s=settings.enqueue_timeout_s,
    )


@contextmanager
def _progress_bar(as_json: bool) -> Iterator[Callable[..., None]]:
    """The job's progress: a bar on a terminal, one line per phase and per 10% in a log (stdout too)."""
    with progress_reporter(per_phase=False, log_to_stdout=not as_json) as reporter:

        def update(
            phase: str,
            fraction: float,
            message: str | None,
            done: int | None = None,
            total: int | None = None,
        ) -> None:
            reporter.update(phase, fraction, done=done, total=total, message=message)

        yield update


def _run_here(context: PipelineContext, job_id: uuid.UUID, as_json: bool = False) -> Job:
    """The embedded default: run the job in this process (or follow it if another process runs it)."""
    from workers.embedded import run_to_completion
    from workers.sweeper import sweep

    while True:
        sweep(context, None)  # a job an earlier, crashed process left `running` becomes claimable again
        with _progress_bar(as_json) as update:

            def listener(event: JobProgress) -> None:
                update(event.phase, event.progress, event.message, event.done, event.total)

            context.listeners.append(listener)
            try:
                outcome = run_to_completion(job_id, context)
            except KeyboardInterrupt:
                _cancel(context, job_id)
                raise
            finally:
                context.listeners.remove(listener)
        if outcome.status not in ("skipped", "lost"):
            return _job(context, job_id)
        # another process runs it; should that process die, its heartbeat goes stale, a sweep hands the job
        # back and this process takes it over (on the embedded default no worker would ever do it)
        job = _follow(context, job_id, take_over=True, as_json=as_json)
        if job.status in FINISHED_JOB_STATUSES:
            return job


def _cancel(context: PipelineContext, job_id: uuid.UUID) -> None:
    """Ctrl-C on the embedded default cancels the job (nothing else would ever finish it)."""
    from catalog.errors import ConflictError

    try:
        _service(context).cancel(job_id)
    except ConflictError:
        return  # it ended just before the interrupt: nothing to cancel
    err_console.print(f"job {job_id} cancelled")


def _job(context: PipelineContext, job_id: uuid.UUID) -> Job:
    return _service(context).job(job_id)


def _follow(
    context: PipelineContext, job_id: uuid.UUID, take_over: bool = False, as_json: bool = False
) -> Job:
    """Poll the job row until it ends, showing its phase and progress.

    `take_over`: also sweep now and then, and return as soon as the job is claimable again (its process died).
    """
    from contracts.status import CLAIMABLE_JOB_STATUSES
    from workers.sweeper import sweep

    stale_after_s = context.settings.stale_after_s
    sweep_every_s = min(SWEEP_INTERVAL_S, stale_after_s / 4)
    last_sweep = time.monotonic()
    with _progress_bar(as_json) as update:
        while True:
            if take_over and time.monotonic() - last_sweep >= sweep_every_s:
                sweep(context, None)
                last_sweep = time.monotonic()
            job = _job(context, job_id)
            message = f"attempt {job.attempts}/{job.max_attempts}" if job.attempts else "waiting for a worker"
            if take_over and job.status == "running":
                message = f"run by another process (taken over if its heartbeat stops {stale_after_s:.0f}s)"
            if job.status == "retry" and job.last_error:
                message = f"retrying: {job.last_error}"
            update(job.phase or job.status, job.progress, message)
            if job.status in FINISHED_JOB_STATUSES or (take_over and job.status in CLAIMABLE_JOB_STATUSES):
                return job
            time.sleep(POLL_INTERVAL_S)


def _print_entry(context: PipelineContext, run_id: int | None, as_json: bool) -> None:
    """Print the catalog entry of a run: model, revision, verdict, super weights with their status."""
    from catalog.repositories import RunRepository

    if run_id is None:
        fail("the job finished without a run", 1)
    with context.sessions() as session:
        runs = RunRepository(session)
        run = runs.get(run_id)
        weights = runs.weights(run)
        model, sha = run.model.hub_id, run.revision.sha
        rows: list[dict[str, Any]] = [weight_row(w) for w in weights]
        entry: dict[str, Any] = {
            "model": model,
            "revision": sha,
            "run_id": run.id,
            "model_verdict": run.model_verdict,
            "super_weights": rows,
            "timings": run.timings,
            "url": f"/v1/models/{model}",
        }
    show_entry(entry, as_json)


def worker_command(
    queues: Annotated[
        str, typer.Option(help="Comma-separated: gpu (model work), default (light tasks).")
    ] = "gpu,default",
    concurrency: Annotated[int, typer.Option(help="Jobs run at once (one per GPU is usual).", min=1)] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N.")] = "auto",
    loglevel: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
    hostname: Annotated[str | None, typer.Option(help="Worker name (default swi@<host>).")] = None,
) -> None:
    """Start a Celery worker on the configured broker (SWI_BROKER_URL) and catalog (SWI_DATABASE_URL)."""
    from workers.settings import WorkerSettings, get_settings

    names = [name.strip() for name in queues.split(",") if name.strip()]
    unknown = sorted(set(names) - set(QUEUE_NAMES))
    if unknown or not names:
        fail(f"unknown queue(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(QUEUE_NAMES)}")
    os.environ["SWI_DEVICE"] = device  # forked job processes read it from the environment
    get_settings.cache_clear()
    settings = WorkerSettings()
    if settings.embedded:
        fail(
            "no broker configured: set SWI_BROKER_URL (e.g. redis://localhost:6379/0); "
            "without one, `swi index` runs jobs in-process"
        )
    if device != "auto" and not device.startswith(("cpu", "cuda")):
        fail(f"unknown device {device!r}; choose auto, cpu, cuda or cuda:N")
    resolved = [settings.gpu_queue if name == "gpu" else settings.default_queue for name in names]
    from workers.app import app

    argv = [
        "worker",
        f"--queues={','.join(resolved)}",
        f"--concurrency={concurrency}",
        f"--loglevel={loglevel.upper()}",
        f"--hostname={hostname or 'swi@%h'}",
    ]
    app.worker_main(argv)


def jobs_command(
    job_id: Annotated[str | None, typer.Argument(help="Show this job only.")] = None,
    status: Annotated[str | None, typer.Option(help=f"{', '.join(JobStatus)}.")] = None,
    limit: Annotated[int, typer.Option(help="How many (newest first).", min=1, max=1000)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    cancel: Annotated[
        bool,
        typer.Option(
            "--cancel",
            help="Cancel the job given: a queued one never starts, a running one stops at its next progress "
            "update.",
        ),
    ] = False,
    server: ServerOption = None,
) -> None:
    """List jobs with their status, phase, progress, attempts and last error (or cancel one)."""
    if server:
        remote.jobs(server, job_id, cancel, as_json)
        return
    from catalog.repositories import JobRepository
    from contracts.status import JobStatus

    if status is not None and status not in {s.value for s in JobStatus}:
        fail(f"unknown status {status!r}; choose from {', '.join(s.value for s in JobStatus)}")
    if cancel and not job_id:
        fail("--cancel needs the id of the job to cancel")
    with _errors():
        context = _context(_settings())
        if cancel and job_id:
            _service(context).cancel(job_id)
        with context.sessions() as session:
            repository = JobRepository(session)
            jobs = [repository.get(job_id)] if job_id else repository.recent(status, limit)
            rows = [job_row(job) for job in jobs]
    show_jobs(rows, status, as_json)
