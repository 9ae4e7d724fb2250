"""Queries of the indexing pipeline (workers, sweeper, `swi index`); callers commit at their boundary."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from catalog.models import Job, utcnow
from catalog.repositories.jobs import parse_job_id, run_for_request, successful_run_id
from contracts.jobs import RequestKey, RunKey
from contracts.status import CLAIMABLE_JOB_STATUSES, JobStatus


class PipelineRepository:
    """Run lookups by key, completing a job with an existing run, and the enqueue outbox."""

    def __init__(self, session: Session):
        self.session = session

    def find_run(self, model: str, sha: str, run_key: RunKey) -> int | None:
        """The id of the successful run of `model` at `sha` with these effective settings, if any."""
        return successful_run_id(self.session, model, sha, run_key)

    def find_run_for_request(self, model: str, sha: str, request_key: RequestKey) -> int | None:
        """The id of the newest successful run of `model` at `sha` made for this request, if any."""
        return run_for_request(self.session, model, sha, request_key)

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

    def reserve_for_enqueue(self, grace_s: float, resend_after_s: float, limit: int = 100) -> list[uuid.UUID]:
        """Atomically stamp `enqueued_at` on the jobs due to be sent, and return them (the outbox).

        Due: queued/retry, past `run_after`, and either never sent and older than `grace_s` (the submitter
        had its chance to send it) or sent more than `resend_after_s` ago (the broker may have lost it).
        Concurrent sweepers never reserve the same job twice.
        """
        now = utcnow()
        due = (
            select(Job.id)
            .where(
                Job.status.in_(CLAIMABLE_JOB_STATUSES),
                Job.attempts < Job.max_attempts,
                or_(Job.run_after.is_(None), Job.run_after <= now),
                or_(
                    and_(Job.enqueued_at.is_(None), Job.created_at <= now - timedelta(seconds=grace_s)),
                    Job.enqueued_at <= now - timedelta(seconds=resend_after_s),
                ),
            )
            .order_by(Job.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        ids = list(self.session.scalars(due))
        if not ids:
            return []
        return list(
            self.session.scalars(
                update(Job)
                .where(Job.id.in_(ids), Job.status.in_(CLAIMABLE_JOB_STATUSES))
                .values(enqueued_at=now)
                .returning(Job.id)
                .execution_options(synchronize_session=False)
            )
        )

    def release_enqueue(self, job_id: uuid.UUID | str) -> None:
        """Forget that a job was sent (the broker refused it): the sweeper sends it again."""
        self.session.execute(
            update(Job)
            .where(Job.id == parse_job_id(job_id))
            .values(enqueued_at=None)
            .execution_options(synchronize_session=False)
        )

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
