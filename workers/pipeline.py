"""The indexing pipeline of one job: claim, resolve, load, detect, validate, check quantization, store.

The job row is the source of truth. `run_job` receives only the job id, claims it atomically (a second
delivery is a no-op), writes phase, progress and heartbeats to the row in short transactions, and stores the
results in one transaction keyed by the job. Celery tasks and the in-process runner call it the same way.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError as ConfigValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from catalog.db import begin_write
from catalog.errors import CatalogError
from catalog.models import Job, utcnow
from catalog.repositories import JobRepository, RunRecorder, RunRepository, record_run
from catalog.repositories.jobs import parse_job_id
from contracts.errors import InvalidInputError
from contracts.identifiers import is_commit_sha
from contracts.jobs import QUANTIZATION_EXPERIMENTS, JobConfig, RunSettings, versioned_run_config
from contracts.lineage import RelationKind
from contracts.status import JobStatus
from contracts.validation import CorpusIdentity, ValidationDocument
from contracts.versions import RUN_VERSIONS
from indexer.progress import ProgressLines
from workers.settings import WorkerSettings
from workers.sources import content_digest

if TYPE_CHECKING:
    from contracts.results import DetectionResult
    from indexer.detection.detect import DetectConfig
    from indexer.model.loading import ModelSource
    from indexer.model.streaming import OpenedModel
    from indexer.validation.corpus import Corpus
    from indexer.validation.validate import ProgressEvent, ValidateConfig, ValidationResult

logger = logging.getLogger(__name__)

Phase = Literal["claimed", "resolve", "load", "detect", "validate", "quantization", "store"]
#: the share of the progress bar each phase covers (start, end)
PHASE_SPAN: dict[str, tuple[float, float]] = {
    "claimed": (0.0, 0.0),
    "resolve": (0.0, 0.05),
    "load": (0.05, 0.30),
    "detect": (0.30, 0.40),
    "validate": (0.40, 0.75),
    "quantization": (0.75, 0.95),
    "store": (0.95, 1.0),
}
#: progress writes are throttled to one per this many seconds (phase changes are written at once)
PROGRESS_WRITE_INTERVAL_S = 0.5


class PipelineError(Exception):
    """A job cannot succeed as submitted (a permanent failure with a message the user can act on)."""

    permanent = True


class JobLostError(Exception):
    """The job is no longer this worker's (cancelled, or re-queued by the sweeper): stop working on it."""


@dataclass(frozen=True)
class JobProgress:
    """One progress update, as in-process observers (the CLI's progress bar) see it."""

    job_id: uuid.UUID
    phase: str
    progress: float
    message: str | None = None
    done: int | None = None  # items of the phase done (validation figures), when counted
    total: int | None = None


@dataclass(frozen=True)
class Outcome:
    """What one run of the pipeline did with a job."""

    status: Literal["succeeded", "failed", "retry", "skipped", "lost"]
    job_id: uuid.UUID
    run_id: int | None = None
    retry_in_s: float | None = None
    error: str | None = None


@dataclass
class PipelineContext:
    """What the pipeline needs: settings, a session factory, and optional in-process observers."""

    settings: WorkerSettings
    sessions: sessionmaker[Session]
    listeners: list[Callable[[JobProgress], None]] = field(default_factory=list)

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A short write transaction (SQLite: the write lock up front); the caller commits."""
        with self.sessions() as session:
            begin_write(session)
            yield session


@dataclass(frozen=True)
class ClaimedJob:
    """The fields of a claimed job row the pipeline reads (detached from the session)."""

    id: uuid.UUID
    model: str
    requested_revision: str | None
    resolved_sha: str | None
    config: dict[str, Any]
    attempts: int
    max_attempts: int

    @classmethod
    def of(cls, job: Job) -> ClaimedJob:
        """Copy the row's fields."""
        return cls(
            id=job.id,
            model=job.model,
            requested_revision=job.requested_revision,
            resolved_sha=job.resolved_sha,
            config=dict(job.config),
            attempts=job.attempts,
            max_attempts=job.max_attempts,
        )


class JobReporter:
    """Writes phase, progress and heartbeats of one running job to its row; notices when it is lost."""

    def __init__(self, context: PipelineContext, job_id: uuid.UUID):
        self.context = context
        self.job_id = job_id
        self.phase_name: str = "claimed"
        self.timings: dict[str, float] = {}
        self._phase_started = time.perf_counter()
        self._last_write = 0.0
        self._lost = threading.Event()
        self._stop = threading.Event()
        # the same phase/10% lines the CLI prints off a terminal, in the worker's log
        self._lines = ProgressLines(logger.info, prefix=f"job {job_id}", per_phase=False)

    @contextmanager
    def running(self) -> Iterator[None]:
        """Heartbeat from a background thread while the body runs (long phases make no progress calls)."""
        thread = threading.Thread(target=self._heartbeats, name=f"heartbeat-{self.job_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join(timeout=5)

    def _heartbeats(self) -> None:
        while not self._stop.wait(self.context.settings.heartbeat_interval_s):
            try:
                with self.context.write() as session:
                    alive = JobRepository(session).heartbeat(self.job_id)
                    session.commit()
                if not alive:
                    self._lost.set()
            except Exception:  # a database blip: the next beat (or the phase write) tells
                logger.warning("heartbeat of job %s failed", self.job_id, exc_info=True)

    def check(self) -> None:
        """Raise `JobLostError` when the job stopped being ours."""
        if self._lost.is_set():
            raise JobLostError(f"job {self.job_id} is no longer running here (cancelled or re-queued)")

    def phase(self, name: Phase) -> None:
        """Enter a phase: record the previous one's duration, write the row, apply the testing delay."""
        now = time.perf_counter()
        if self.phase_name != "claimed":
            self.timings[self.phase_name] = round(now - self._phase_started, 4)
        self.phase_name, self._phase_started = name, now
        self._write(PHASE_SPAN[name][0], None, force=True)
        settings = self.context.settings
        if settings.testing_delay_phase == name and settings.testing_delay_s > 0:
            deadline = time.monotonic() + settings.testing_delay_s
            while time.monotonic() < deadline:
                self.check()
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def finish_timings(self) -> dict[str, float]:
        """The per-phase durations, the current phase included."""
        self.timings[self.phase_name] = round(time.perf_counter() - self._phase_started, 4)
        return dict(self.timings)

    def within(
        self, fraction: float, message: str | None = None, done: int | None = None, total: int | None = None
    ) -> None:
        """Progress inside the current phase (0..1), optionally `done` of `total` items; throttled."""
        start, end = PHASE_SPAN[self.phase_name]
        self._write(start + (end - start) * min(1.0, max(0.0, fraction)), message, done=done, total=total)

    def say(self, message: str) -> None:
        """A status message of the indexer (also a chance to notice a lost job)."""
        self.check()
        for listener in self.context.listeners:
            listener(JobProgress(self.job_id, self.phase_name, PHASE_SPAN[self.phase_name][0], message))

    def _write(
        self,
        progress: float,
        message: str | None,
        force: bool = False,
        done: int | None = None,
        total: int | None = None,
    ) -> None:
        self.check()
        self._lines.update(self.phase_name, progress, done=done, total=total, message=message)
        for listener in self.context.listeners:
            listener(JobProgress(self.job_id, self.phase_name, progress, message, done, total))
        now = time.monotonic()
        if not force and now - self._last_write < PROGRESS_WRITE_INTERVAL_S:
            return
        self._last_write = now
        with self.context.write() as session:
            alive = JobRepository(session).update_progress(
                self.job_id, phase=self.phase_name, progress=progress
            )
            session.commit()
        if not alive:
            self._lost.set()
            self.check()


def backoff_delay(settings: WorkerSettings, attempts: int) -> float:
    """Exponential backoff with jitter: base * 2^(attempt-1), capped, times a random factor in [0.5, 1.5)."""
    delay = min(settings.retry_backoff_max_s, settings.retry_backoff_s * 2 ** max(0, attempts - 1))
    return float(round(delay * random.uniform(0.5, 1.5), 3))


def classify(exc: BaseException) -> tuple[bool, str]:
    """(permanent, message) of a failure: our errors say which; infrastructure failures are transient."""
    from celery.exceptions import SoftTimeLimitExceeded

    if isinstance(exc, SoftTimeLimitExceeded):
        return True, "the job ran past this worker's time limit (SWI_JOB_TIME_LIMIT_S); use a smaller budget"
    if isinstance(exc, ConfigValidationError):
        return True, f"invalid job configuration: {exc.errors()[0]['msg']}"
    if isinstance(exc, InvalidInputError):
        return True, str(exc)
    if isinstance(exc, CatalogError):  # a catalog read or write that failed: the database, most likely
        return False, f"catalog database unavailable: {str(exc).splitlines()[0]}"
    permanent = getattr(exc, "permanent", None)
    if isinstance(permanent, bool):
        return permanent, str(exc)
    if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, without importing torch
        return True, f"the model does not fit in this worker's device memory: {exc}"
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        return False, f"catalog database unavailable: {str(exc).splitlines()[0]}"
    return False, f"{type(exc).__name__}: {exc}"


def run_job(job_id: uuid.UUID | str, context: PipelineContext) -> Outcome:
    """Run one job by id: claim it (no-op when not claimable), run the phases, store or record the failure."""
    key = parse_job_id(job_id)
    with context.write() as session:
        row = JobRepository(session).claim(key)
        if row is None:
            session.rollback()
            return Outcome("skipped", key)
        job = ClaimedJob.of(row)
        session.commit()
    logger.info("job %s: attempt %d of %d for %s", key, job.attempts, job.max_attempts, job.model)
    reporter = JobReporter(context, key)
    try:
        with reporter.running():
            run_id = _execute(job, context, reporter)
    except JobLostError as exc:
        logger.warning("job %s: %s", key, exc)
        return Outcome("lost", key, error=str(exc))
    except Exception as exc:
        permanent, message = classify(exc)
        logger.warning(
            "job %s failed in %s (%s): %s",
            key,
            reporter.phase_name,
            "permanent" if permanent else "transient",
            message,
            exc_info=not permanent,
        )
        return _record_failure(context, job, f"{reporter.phase_name}: {message}", permanent)
    return Outcome("succeeded", key, run_id=run_id)


def _record_failure(context: PipelineContext, job: ClaimedJob, message: str, permanent: bool) -> Outcome:
    with context.write() as session:
        jobs = JobRepository(session)
        row = jobs.get(job.id)
        if row.status != JobStatus.RUNNING:
            session.rollback()
            return Outcome("lost", job.id, error=message)
        if permanent:
            jobs.fail(job.id, message)
            session.commit()
            return Outcome("failed", job.id, error=message)
        delay = backoff_delay(context.settings, row.attempts)
        status = jobs.retry_or_fail(job.id, message, delay)
        session.commit()
    if status == JobStatus.RETRY:
        return Outcome("retry", job.id, retry_in_s=delay, error=message)
    return Outcome("failed", job.id, error=message)


@dataclass(frozen=True)
class _Resolved:
    spec: str | ModelSource  # what `load_model` gets: a local path, or the hub source as classified
    revision: str | None  # the commit sha to load (hub only)
    sha: str  # the catalog revision: commit sha or sha256 digest
    resolved_from: str | None


def _execute(job: ClaimedJob, context: PipelineContext, reporter: JobReporter) -> int:
    settings = context.settings
    config = JobConfig.model_validate(job.config)
    # what the user asked for (the run's request key); the run key follows once the worker resolved it
    run_config = versioned_run_config(job.config, RUN_VERSIONS)
    started_at = utcnow()

    reporter.phase("resolve")
    resolved = _resolve(job, config, settings, reporter)
    with context.write() as session:
        JobRepository(session).set_resolved_sha(job.id, resolved.sha)
        session.commit()

    reporter.phase("load")
    opened = _load(resolved, config, settings, reporter)
    # the device, dtype and default budget are known only now: so is the run key
    plan = plan_run(opened, config, settings)
    with context.write() as session:
        existing = RunRepository(session).find_run(job.model, resolved.sha, plan.settings.key())
        if existing is not None:
            JobRepository(session).complete_with_run(job.id, existing, resolved.sha)
            if config.build_of is not None:
                RunRecorder(session).link_build(existing, config.build_of)
        session.commit()
    if existing is not None:
        logger.info("job %s: %s@%s already indexed as run %d", job.id, job.model, resolved.sha, existing)
        return existing

    reporter.phase("detect")
    detection = _detect(opened, plan.detect, reporter)

    validation: ValidationDocument | None = None
    if plan.validate is not None and plan.corpus is not None:
        from indexer.validation.document import validation_document

        reporter.phase("validate")
        validation = validation_document(_validate(opened, detection, plan.validate, plan.corpus, reporter))

    reporter.phase("store")
    timings = reporter.finish_timings()
    with context.write() as session:
        recorded = record_run(
            session,
            job.id,
            job.model,
            resolved.sha,
            resolved.resolved_from,
            run_config,
            detection,
            validation,
            timings=timings,
            started_at=started_at,
            finished_at=utcnow(),
            base_model=config.build_of,
            relation=RelationKind.QUANTIZED_BUILD if config.build_of else None,
            settings=plan.settings,
        )
        session.commit()
    for listener in context.listeners:
        listener(JobProgress(job.id, "stored", 1.0, None))
    return recorded.run_id


def _resolve(
    job: ClaimedJob, config: JobConfig, settings: WorkerSettings, reporter: JobReporter
) -> _Resolved:
    from indexer.errors import ModelNotFoundError
    from indexer.model.loading import LoadOptions, ModelSource, parse_source, snapshot_hub_model

    if config.source_path is not None:
        if not settings.local_models_allowed:
            raise PipelineError(
                "this worker does not load local paths (SWI_ALLOW_LOCAL_MODELS is off); "
                "submit a hub id org/name"
            )
        source = parse_source(config.source_path)
        if source.kind == "hub":
            raise PipelineError(f"{config.source_path} is not a local folder or .gguf file")
        reporter.say(f"hashing {source.display_name}")
        return _Resolved(source.reference, None, content_digest(source.reference), None)
    # A submitted hub id is never looked up on this worker's file system: no error may tell whether a
    # path of that name exists here (`org/name` was validated as a hub id when it was submitted).
    pinned = job.resolved_sha if job.resolved_sha and is_commit_sha(job.resolved_sha) else None
    revision = pinned or job.requested_revision
    wanted = f"{job.model}@{revision or 'main'}"
    reporter.say(f"resolving {wanted}")
    try:
        _, sha = snapshot_hub_model(
            ModelSource("hub", job.model, revision), LoadOptions(cache_dir=settings.hub_cache_dir)
        )
    except ModelNotFoundError:
        # the loader's own wording may name the worker's cache or paths: say only what the user can act on
        raise ModelNotFoundError(
            f"{wanted} is not available: not on the hub, private (set HF_TOKEN on workers), or not in "
            "the cache of an offline worker"
        ) from None
    return _Resolved(ModelSource("hub", job.model, sha), sha, sha, job.requested_revision)


def _load(
    resolved: _Resolved, config: JobConfig, settings: WorkerSettings, reporter: JobReporter
) -> OpenedModel:
    from indexer.model.loading import LoadOptions
    from indexer.model.streaming import open_model

    options = LoadOptions(
        dtype=config.dtype,
        device=settings.device,
        memory_limit_bytes=settings.worker_memory_limit_bytes,
        cache_dir=settings.hub_cache_dir,
        # the resolve phase put the pinned snapshot in the cache: never ask the hub twice
        offline=True if resolved.revision is not None else None,
    )
    opened = open_model(
        resolved.spec, resolved.revision, options, config.engine or "auto", progress=reporter.say
    )
    if opened.note:
        logger.info("%s: %s", resolved.spec, opened.note)
    reporter.within(1.0, f"loaded in {opened.loaded.load_time_s:.1f}s ({opened.engine} engine)")
    return opened


@dataclass(frozen=True)
class RunPlan:
    """What a job runs, resolved on this worker, and the settings record (its key) that describes it."""

    detect: DetectConfig
    validate: ValidateConfig | None  # None: nothing is measured
    corpus: Corpus | None
    settings: RunSettings


def plan_run(opened: OpenedModel, config: JobConfig, settings: WorkerSettings) -> RunPlan:
    """Resolve what the job leaves to the worker (budget, window, corpus, dtype, device) into the configs
    that run and the `RunSettings` that record them: the run key covers exactly what runs."""
    from indexer.detection.detect import DEFAULT_PROMPT, DetectConfig
    from indexer.validation.corpus import load_corpus
    from indexer.validation.perplexity import default_window

    loaded = opened.loaded
    detect_config = DetectConfig(
        prompt=config.prompt or DEFAULT_PROMPT,
        max_super_weights=config.max_super_weights,
        z_threshold=config.z_threshold,
    )
    detect_config.validate()
    validate_config: ValidateConfig | None = None
    corpus: Corpus | None = None
    if config.measures_anything:
        on_gpu = loaded.device.type == "cuda"
        budget = config.max_tokens or (
            settings.default_max_tokens_gpu if on_gpu else settings.default_max_tokens_cpu
        )
        validate_config = validate_config_of(config, budget, default_window(loaded.model, budget))
        validate_config.check()
        corpus = load_corpus(config.corpus or "auto")
    run_settings = RunSettings(
        versions=RUN_VERSIONS,
        device=loaded.device.type,
        dtype=str(loaded.dtype).removeprefix("torch."),
        detection=asdict(detect_config),
        validation=validate_config.result_settings() if validate_config is not None else None,
        corpus=CorpusIdentity(name=corpus.name, sha256=corpus.sha256) if corpus is not None else None,
    )
    return RunPlan(detect_config, validate_config, corpus, run_settings)


def _detect(opened: OpenedModel, detect_config: DetectConfig, reporter: JobReporter) -> DetectionResult:
    from indexer.detection.opened import detect_opened

    result = detect_opened(opened, detect_config, progress=reporter.say)
    reporter.within(1.0, f"{len(result.super_weights)} super weight(s)")
    return result


def experiments_of(config: JobConfig) -> tuple[str, ...]:
    """The validation experiments a job runs (prune validation and/or the quantization checks)."""
    from indexer.validation.validate import EXPERIMENTS, parse_experiments

    names = parse_experiments(",".join(config.experiments)) if config.experiments else EXPERIMENTS
    if not config.validate_:
        names = tuple(n for n in names if n == "baseline" or n in QUANTIZATION_EXPERIMENTS)
    if not config.quantization_checks:
        names = tuple(n for n in names if n not in QUANTIZATION_EXPERIMENTS)
    return names


def validate_config_of(config: JobConfig, budget: int, window: int | None = None) -> ValidateConfig:
    """The validation settings of a job on a token budget (unset window and null sizes: `window` and the
    validator's defaults)."""
    from indexer.validation.validate import ValidateConfig

    defaults = ValidateConfig()
    return ValidateConfig(
        experiments=experiments_of(config),
        window=config.window or window,
        max_tokens=budget,
        null_sets=defaults.null_sets if config.null_sets is None else config.null_sets,
        null_column_sets=(
            defaults.null_column_sets if config.null_column_sets is None else config.null_column_sets
        ),
    )


def _validate(
    opened: OpenedModel,
    detection: DetectionResult,
    validate_config: ValidateConfig,
    corpus: Corpus,
    reporter: JobReporter,
) -> ValidationResult:
    from indexer.validation.validate import validate

    def on_event(event: ProgressEvent) -> None:
        if event.phase == "quantization" and reporter.phase_name != "quantization":
            reporter.phase("quantization")
        share = event.completed / max(1, event.total)
        if event.phase == "baseline":
            share *= 0.1
        elif event.phase == "pruning":
            share = 0.1 + 0.9 * share
        reporter.within(share, event.label, done=event.completed, total=event.total)

    return validate(opened.model, detection, corpus, validate_config, progress=on_event)
