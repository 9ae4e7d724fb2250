"""The enqueue outbox: which committed jobs were handed to the queue, and which are due to be (again).

A submission stamps its job once the runner took it (`mark_enqueued`); the sweeper reserves the jobs
never sent, or sent long ago, and sends them (`reserve_for_enqueue`), releasing those the broker refused.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from catalog.models import Job, utcnow
from catalog.repositories.jobs import parse_job_id
from contracts.status import CLAIMABLE_JOB_STATUSES


class OutboxRepository:
    """The `enqueued_at` stamp of jobs: sent, due, reserved, released."""

    def __init__(self, session: Session):
        self.session = session

    def mark_enqueued(self, job_id: uuid.UUID | str) -> None:
        """Record that a message for the job was handed to the queue."""
        self.session.execute(
            update(Job)
            .where(Job.id == parse_job_id(job_id))
            .values(enqueued_at=utcnow())
            .execution_options(synchronize_session=False)
        )

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
