"""The submission use case: submit (dedup, idempotency, rate limit, commit, send), cancel, find a run.

The REST route, the web form and `swi index` all call `SubmissionService`; what runs a job is injected
as an `Enqueue` callable by the composition roots (the API factory, the CLI), so the catalog never
imports Celery or the workers. Sending happens after the commit and is bounded in time: a broker that
is down or hung never holds a submission longer than `enqueue_timeout_s`, the job row stays `queued`
and the outbox (the workers' sweeper) sends it later.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from catalog.db import begin_write
from catalog.errors import PermissionDeniedError
from catalog.models import Job
from catalog.repositories import JobRepository, OutboxRepository, RunRepository
from contracts.identifiers import is_commit_sha
from contracts.jobs import RequestKey, request_key, versioned_run_config
from contracts.status import ACTIVE_JOB_STATUSES
from contracts.text import check_storable
from contracts.versions import RUN_VERSIONS

logger = logging.getLogger(__name__)


class Enqueue(Protocol):
    """Hands a committed job to what runs it (Celery, an in-process runner); raising leaves it queued."""

    def __call__(self, job_id: uuid.UUID, /) -> None:
        """Send the job; may raise (broker down)."""


#: (model id, requested revision or None) -> commit sha, or None to leave resolution to the worker.
#: May raise `catalog.errors.NotFoundError` (unknown model or revision) or `UnavailableError`.
RevisionResolver = Callable[[str, str | None], str | None]


def resolve_sha_only(model: str, revision: str | None) -> str | None:
    """The default resolver (no network): a full sha is used as is; anything else is left to the worker."""
    return revision if revision is not None and is_commit_sha(revision) else None


@dataclass(frozen=True)
class Submission:
    """One request to index `model` at `revision` with the job configuration `config`."""

    model: str
    config: Mapping[str, Any]
    revision: str | None = None
    #: the revision's digest when the caller knows it (a local file's content digest)
    resolved_sha: str | None = None
    #: the request configuration (its hash is the request key), when it is not the job's settings and the
    #: code versions (`versioned_run_config`)
    request_config: Mapping[str, Any] | None = None
    requester_id: int | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True)
class SubmissionResult:
    """What a submission led to: a new job, an identical active one, or an existing run (job may be None)."""

    job: Job | None
    run_id: int | None
    created: bool
    #: whether the job's message reached the runner during this call (else the outbox sends it)
    enqueued: bool = False

    @property
    def finished(self) -> bool:
        """Whether nothing more will happen: an existing run, or a job that has ended."""
        return self.job is None or self.job.status not in ACTIVE_JOB_STATUSES


@dataclass
class _Dispatcher:
    """Sends committed jobs from daemon threads and waits a bounded time for each send."""

    enqueue: Enqueue | None
    timeout_s: float
    max_in_flight: int
    record: Callable[[uuid.UUID], None]
    _in_flight: threading.BoundedSemaphore = field(init=False)

    def __post_init__(self) -> None:
        self._in_flight = threading.BoundedSemaphore(self.max_in_flight)

    def send(self, job_id: uuid.UUID) -> bool:
        """True when the job was sent (and recorded) within the time bound."""
        if self.enqueue is None:
            return False
        if not self._in_flight.acquire(blocking=False):
            logger.warning(
                "job %s: %d sends already pending; the outbox sends it", job_id, self.max_in_flight
            )
            return False
        done = threading.Event()
        sent: list[bool] = []

        def run() -> None:
            try:
                assert self.enqueue is not None
                self.enqueue(job_id)
                sent.append(True)
                self.record(job_id)
            except Exception:
                logger.warning("could not send job %s; it stays queued for the outbox", job_id, exc_info=True)
            finally:
                self._in_flight.release()
                done.set()

        # a daemon thread: a send stuck on a hung broker never keeps the process from exiting
        threading.Thread(target=run, name=f"swi-send-{job_id}", daemon=True).start()
        if not done.wait(self.timeout_s):
            logger.warning(
                "job %s: the broker did not answer in %.1f s; the outbox sends it", job_id, self.timeout_s
            )
            return False
        return bool(sent)


class SubmissionService:
    """Submit, cancel and look up runs; one instance per process (it owns the bounded sender)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        enqueue: Enqueue | None = None,
        resolver: RevisionResolver = resolve_sha_only,
        max_attempts: int = 3,
        rate_limit: tuple[int, int] | None = None,
        enqueue_timeout_s: float = 2.0,
        max_pending_sends: int = 8,
    ):
        self.sessions = sessions
        self.resolver = resolver
        self.max_attempts = max_attempts
        self.rate_limit = rate_limit
        self._dispatcher = _Dispatcher(enqueue, enqueue_timeout_s, max_pending_sends, self._record_sent)

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with self.sessions() as session:
            begin_write(session)
            yield session

    def submit(self, submission: Submission) -> SubmissionResult:
        """Create (or find) the job for `submission`, commit it, then send it (bounded; else the outbox).

        The rate limit applies to submissions with a requester; it is checked and the job inserted under a
        per-requester lock, so concurrent submissions of one key never exceed it.
        """
        check_storable(submission.model, "model")
        if submission.revision is not None:
            check_storable(submission.revision, "revision")
        _check_config(submission.config)
        resolved = submission.resolved_sha or self.resolver(submission.model, submission.revision)
        # what the user asked for: the settings that shape results plus the code versions. A run made for
        # the same request answers it, whichever worker resolved its defaults (the run key says how)
        request = request_key(
            submission.request_config or versioned_run_config(dict(submission.config), RUN_VERSIONS)
        )
        with self._write() as session:
            outcome = JobRepository(session).submit(
                model=submission.model,
                config=submission.config,
                requested_revision=submission.revision,
                resolved_sha=resolved,
                requester_id=submission.requester_id,
                idempotency_key=submission.idempotency_key,
                max_attempts=self.max_attempts,
                rate_limit=self.rate_limit if submission.requester_id is not None else None,
                request_key=request,
            )
            session.commit()
        job = outcome.job
        run_id = outcome.run_id or (job.run_id if job is not None else None)
        enqueued = job is not None and outcome.created and self.send(job.id)
        return SubmissionResult(job=job, run_id=run_id, created=outcome.created, enqueued=enqueued)

    def send(self, job_id: uuid.UUID) -> bool:
        """Hand a committed job to the runner within the time bound; False leaves it to the outbox."""
        return self._dispatcher.send(job_id)

    def _record_sent(self, job_id: uuid.UUID) -> None:
        with self._write() as session:
            OutboxRepository(session).mark_enqueued(job_id)
            session.commit()

    def cancel(self, job_id: uuid.UUID | str, *, requester_id: int | None = None, admin: bool = False) -> Job:
        """Cancel a job that has not finished; with `requester_id`, only its submitter (or an admin) may.

        Cancelling a cancelled job changes nothing; a finished one is a `ConflictError`.
        """
        with self._write() as session:
            jobs = JobRepository(session)
            job = jobs.get(job_id)
            if requester_id is not None and job.requester_id != requester_id and not admin:
                raise PermissionDeniedError(
                    "only the key that submitted a job, or an admin key, can cancel it"
                )
            job = jobs.cancel(job.id)
            session.commit()
            return job

    def existing_run(self, model: str, sha: str, key: RequestKey) -> int | None:
        """The id of the newest succeeded run of `model` at `sha` made for the request `key`, if any."""
        with self.sessions() as session:
            return RunRepository(session).find_run_for_request(model, sha, key)

    def job(self, job_id: uuid.UUID | str) -> Job:
        """The job, else `NotFoundError`."""
        with self.sessions() as session:
            return JobRepository(session).get(job_id)


def _check_config(config: Mapping[str, Any], where: str = "options") -> None:
    for key, value in config.items():
        if isinstance(value, str):
            check_storable(value, f"{where}.{key}")
        elif isinstance(value, Mapping):
            _check_config(value, f"{where}.{key}")
        elif isinstance(value, list | tuple):
            for item in value:
                if isinstance(item, str):
                    check_storable(item, f"{where}.{key}")
