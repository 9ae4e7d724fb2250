"""Jobs: submission with deduplication, and every transition of a job's status (claim, progress, heartbeat,
success, retry, failure, cancellation, sweeping)."""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from catalog.errors import ConflictError, InvalidInputError, NotFoundError, RateLimitedError
from catalog.models import Job, utcnow
from catalog.repositories.runs import run_for_request
from contracts.identifiers import canonical_json, config_hash, validate_model_id, validate_revision_digest
from contracts.jobs import RequestKey
from contracts.status import ACTIVE_JOB_STATUSES, CLAIMABLE_JOB_STATUSES, JobStatus

MAX_ERROR_LENGTH = 4000
#: first key of the advisory lock that serialises one requester's submissions (an arbitrary constant)
SUBMISSION_LOCK_CLASS = 0x5357


@dataclass(frozen=True)
class SubmissionOutcome:
    """What a submission led to: a new job, an existing job, or an existing run (job may then be None)."""

    job: Job | None
    run_id: int | None
    created: bool


def parse_job_id(job_id: uuid.UUID | str) -> uuid.UUID:
    """A job id as UUID, else `InvalidInputError`."""
    if isinstance(job_id, uuid.UUID):
        return job_id
    try:
        return uuid.UUID(str(job_id))
    except ValueError as exc:
        raise InvalidInputError(f"invalid job id {str(job_id)[:60]!r}") from exc


def dedup_key(model: str, resolved_sha: str | None, requested_revision: str | None, digest: str) -> str:
    """The key that makes identical active submissions one job."""
    revision = resolved_sha or f"ref:{requested_revision or 'main'}"
    return f"{model}@{revision}#{digest}"


class JobRepository:
    """Every query and state transition of jobs (the worker side uses claim/progress/retry/fail)."""

    def __init__(self, session: Session):
        self.session = session

    # -- submission ----------------------------------------------------------------------------------------

    def submit(
        self,
        *,
        model: str,
        config: Mapping[str, Any],
        requested_revision: str | None = None,
        resolved_sha: str | None = None,
        requester_id: int | None = None,
        idempotency_key: str | None = None,
        max_attempts: int = 3,
        rate_limit: tuple[int, int] | None = None,
        request_key: RequestKey | None = None,
    ) -> SubmissionOutcome:
        """Create a queued job, or return the job/run an identical submission already has.

        Order: the same `idempotency_key` (same requester) returns its job (409 if the body differs); a run of
        the same model + sha + config returns that run; an active job with the same dedup key is returned;
        otherwise a new job is inserted (rate limit `(limit, window_s)` applies here only). Concurrent
        identical inserts collide on unique constraints and resolve to the winner. `request_key` keys the
        run lookup (the newest run made for this request; default: the hash of `config`). With a
        requester, the submission holds a per-requester lock until the caller commits, so the rate limit's
        count and the insert are one step. The caller commits.
        """
        validate_model_id(model)
        if resolved_sha is not None:
            validate_revision_digest(resolved_sha)
        digest = config_hash(config)
        request_hash = hashlib.sha256(
            canonical_json({"model": model, "revision": requested_revision, "config": dict(config)}).encode()
        ).hexdigest()
        key = dedup_key(model, resolved_sha, requested_revision, digest)
        request = request_key or RequestKey(digest)
        if requester_id is not None:
            self._lock_requester(requester_id)

        found = self._existing(requester_id, idempotency_key, request_hash, model, resolved_sha, request, key)
        if found is not None:
            return found
        if rate_limit is not None and requester_id is not None:
            self._check_rate(requester_id, *rate_limit)
        try:
            with self.session.begin_nested():
                job = Job(
                    model=model,
                    requested_revision=requested_revision,
                    resolved_sha=resolved_sha,
                    config=dict(config),
                    config_hash=digest,
                    dedup_key=key,
                    idempotency_key=idempotency_key,
                    request_hash=request_hash,
                    requester_id=requester_id,
                    status=JobStatus.QUEUED,
                    max_attempts=max_attempts,
                )
                self.session.add(job)
        except IntegrityError:
            found = self._existing(
                requester_id, idempotency_key, request_hash, model, resolved_sha, request, key
            )
            if found is None:
                raise ConflictError("a concurrent submission changed this job; retry the request") from None
            return found
        return SubmissionOutcome(job=job, run_id=None, created=True)

    def _existing(
        self,
        requester_id: int | None,
        idempotency_key: str | None,
        request_hash: str,
        model: str,
        resolved_sha: str | None,
        request: RequestKey,
        key: str,
    ) -> SubmissionOutcome | None:
        if idempotency_key is not None:
            job = self.session.scalars(
                select(Job).where(Job.requester_id == requester_id, Job.idempotency_key == idempotency_key)
            ).one_or_none()
            if job is not None:
                if job.request_hash != request_hash:
                    raise ConflictError(
                        "this Idempotency-Key was already used for a different request; use a new key"
                    )
                return SubmissionOutcome(job=job, run_id=job.run_id, created=False)
        if resolved_sha is not None:
            run_id = run_for_request(self.session, model, resolved_sha, request)
            if run_id is not None:
                job = self.session.scalars(
                    select(Job).where(Job.run_id == run_id).order_by(Job.created_at).limit(1)
                ).first()
                return SubmissionOutcome(job=job, run_id=run_id, created=False)
        active = self.session.scalars(
            select(Job).where(Job.dedup_key == key, Job.status.in_(ACTIVE_JOB_STATUSES))
        ).first()
        if active is not None:
            return SubmissionOutcome(job=active, run_id=None, created=False)
        return None

    def _lock_requester(self, requester_id: int) -> None:
        """Serialise this requester's submissions until commit (PostgreSQL: a transaction advisory lock).

        SQLite needs nothing: a write transaction (`begin_write`) already excludes every other writer.
        """
        if self.session.get_bind().dialect.name == "postgresql":
            self.session.execute(select(func.pg_advisory_xact_lock(SUBMISSION_LOCK_CLASS, requester_id)))

    def _check_rate(self, requester_id: int, limit: int, window_s: int) -> None:
        since = utcnow() - timedelta(seconds=window_s)
        count, oldest = self.session.execute(
            select(func.count(), func.min(Job.created_at)).where(
                Job.requester_id == requester_id, Job.created_at > since
            )
        ).one()
        if count >= limit:
            retry_after = 1
            if oldest is not None:
                oldest_at = oldest if oldest.tzinfo else oldest.replace(tzinfo=since.tzinfo)
                retry_after = max(1, math.ceil((oldest_at - since).total_seconds()))
            raise RateLimitedError(
                f"rate limit reached: {limit} submissions per {window_s} s for this key", retry_after
            )

    # -- reading -------------------------------------------------------------------------------------------

    def get(self, job_id: uuid.UUID | str) -> Job:
        """The job, else `NotFoundError`."""
        job = self.session.get(Job, parse_job_id(job_id))
        if job is None:
            raise NotFoundError(f"no job with id {job_id}")
        return job

    def lock(self, job_id: uuid.UUID | str) -> Job:
        """The job, locked for update until the caller's transaction ends, else `NotFoundError`."""
        key = parse_job_id(job_id)
        job = self.session.get(Job, key, with_for_update=True)
        if job is None:
            raise NotFoundError(f"no job with id {key}")
        return job

    def recent(self, status: str | None = None, limit: int = 50) -> list[Job]:
        """Jobs, newest first, optionally of one status."""
        query = select(Job).order_by(Job.created_at.desc()).limit(limit)
        if status is not None:
            query = query.where(Job.status == status)
        return list(self.session.scalars(query))

    def counts_by_status(self) -> dict[str, int]:
        """Number of jobs per status (for metrics)."""
        rows = self.session.execute(select(Job.status, func.count()).group_by(Job.status))
        return {str(status): int(count) for status, count in rows}

    # -- worker side ---------------------------------------------------------------------------------------

    def claim(self, job_id: uuid.UUID | str) -> Job | None:
        """Atomically move a queued/retry job to running (one UPDATE ... RETURNING); None if not claimable.

        A second delivery of the same task, or a job already running, finished, cancelled or out of
        attempts, returns None: the caller must then do nothing.
        """
        now = utcnow()
        statement = (
            update(Job)
            .where(
                Job.id == parse_job_id(job_id),
                Job.status.in_(CLAIMABLE_JOB_STATUSES),
                Job.attempts < Job.max_attempts,
            )
            .values(
                status=JobStatus.RUNNING,
                attempts=Job.attempts + 1,
                phase="claimed",
                heartbeat_at=now,
                started_at=func.coalesce(Job.started_at, now),
                run_after=None,
                updated_at=now,
            )
            .returning(Job)
            .execution_options(populate_existing=True, synchronize_session=False)
        )
        return self.session.scalars(statement).one_or_none()

    def update_progress(
        self, job_id: uuid.UUID | str, *, phase: str | None = None, progress: float | None = None
    ) -> bool:
        """Record phase/progress and a heartbeat; False if the job is no longer running (stop working)."""
        now = utcnow()
        values: dict[str, Any] = {"heartbeat_at": now, "updated_at": now}
        if phase is not None:
            values["phase"] = phase[:32]
        if progress is not None:
            values["progress"] = min(1.0, max(0.0, float(progress)))
        result = self.session.execute(
            update(Job)
            .where(Job.id == parse_job_id(job_id), Job.status == JobStatus.RUNNING)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def heartbeat(self, job_id: uuid.UUID | str) -> bool:
        """Refresh the heartbeat of a running job; False if it is no longer running."""
        return self.update_progress(job_id)

    def set_resolved_sha(self, job_id: uuid.UUID | str, sha: str) -> None:
        """Record the commit sha the requested revision resolved to."""
        validate_revision_digest(sha)
        self.session.execute(
            update(Job)
            .where(Job.id == parse_job_id(job_id))
            .values(resolved_sha=sha, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )

    def succeed(self, job: Job, run_id: int, sha: str) -> None:
        """A job (locked by `lock`) completed by the run `run_id` at `sha`: `succeeded`, from any state."""
        now = utcnow()
        job.run_id = run_id
        job.status = JobStatus.SUCCEEDED
        job.last_error = None  # an earlier attempt's error no longer describes the job
        job.phase = "stored"
        job.progress = 1.0
        job.resolved_sha = sha
        job.finished_at = now
        job.heartbeat_at = now

    def complete_with_run(self, job_id: uuid.UUID | str, run_id: int, sha: str) -> bool:
        """Mark a running job `succeeded` by an existing run (same model, sha and run key)."""
        now = utcnow()
        result = self.session.execute(
            update(Job)
            .where(Job.id == parse_job_id(job_id), Job.status == JobStatus.RUNNING)
            .values(
                status=JobStatus.SUCCEEDED,
                last_error=None,
                run_id=run_id,
                resolved_sha=sha,
                phase="stored",
                progress=1.0,
                finished_at=now,
                heartbeat_at=now,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def retry_or_fail(self, job_id: uuid.UUID | str, error: str, delay_s: float = 0.0) -> str:
        """After a transient failure: back to `retry` (after `delay_s`) if attempts remain, else `failed`."""
        job = self.get(job_id)
        now = utcnow()
        job.last_error = error[:MAX_ERROR_LENGTH]
        job.heartbeat_at = now
        if job.attempts < job.max_attempts:
            job.status = JobStatus.RETRY
            job.run_after = now + timedelta(seconds=max(0.0, delay_s))
            job.enqueued_at = None
        else:
            job.status = JobStatus.FAILED
            job.finished_at = now
        return job.status

    def fail(self, job_id: uuid.UUID | str, error: str) -> None:
        """A permanent failure: `failed` at once, with a message the user can act on."""
        job = self.get(job_id)
        now = utcnow()
        job.status = JobStatus.FAILED
        job.last_error = error[:MAX_ERROR_LENGTH]
        job.finished_at = now
        job.heartbeat_at = now

    def cancel(self, job_id: uuid.UUID | str) -> Job:
        """Cancel a job that has not finished (a running worker sees it at its next progress update).

        Cancelling a cancelled job changes nothing; a succeeded or failed one is a `ConflictError`.
        """
        job = self.get(job_id)
        if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
            raise ConflictError(f"job {job.id} has already {job.status}; there is nothing to cancel")
        if job.status in ACTIVE_JOB_STATUSES:
            job.status = JobStatus.CANCELLED
            job.finished_at = utcnow()
        return job

    def requeue_stale(self, stale_after_s: float) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
        """Running jobs whose heartbeat is older than `stale_after_s`: back to `retry`, or `failed` when out
        of attempts. Returns (requeued ids, failed ids)."""
        now = utcnow()
        cutoff = now - timedelta(seconds=stale_after_s)
        stale = (Job.status == JobStatus.RUNNING, Job.heartbeat_at < cutoff)
        message = "the worker stopped sending heartbeats (crashed or was killed)"
        requeued = list(
            self.session.scalars(
                update(Job)
                .where(*stale, Job.attempts < Job.max_attempts)
                .values(status=JobStatus.RETRY, last_error=message, enqueued_at=None, updated_at=now)
                .returning(Job.id)
                .execution_options(synchronize_session=False)
            )
        )
        failed = list(
            self.session.scalars(
                update(Job)
                .where(*stale, Job.attempts >= Job.max_attempts)
                .values(status=JobStatus.FAILED, last_error=message, finished_at=now, updated_at=now)
                .returning(Job.id)
                .execution_options(synchronize_session=False)
            )
        )
        return requeued, failed

    def exhausted_claimable(self) -> list[uuid.UUID]:
        """Queued/retry jobs that have no attempt left (they can never be claimed): end them as failed."""
        now = utcnow()
        return list(
            self.session.scalars(
                update(Job)
                .where(Job.status.in_(CLAIMABLE_JOB_STATUSES), Job.attempts >= Job.max_attempts)
                .values(
                    status=JobStatus.FAILED,
                    finished_at=now,
                    updated_at=now,
                    last_error=func.coalesce(Job.last_error, "no attempt left"),
                )
                .returning(Job.id)
                .execution_options(synchronize_session=False)
            )
        )
