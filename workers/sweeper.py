"""The sweeper: re-queues jobs whose worker died, ends exhausted ones, sends jobs never sent (the outbox)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from catalog.repositories import JobRepository, OutboxRepository
from workers.pipeline import PipelineContext

logger = logging.getLogger(__name__)

#: jobs sent per sweep at most (the rest wait for the next sweep)
SWEEP_BATCH = 200


@dataclass(frozen=True)
class SweepReport:
    """What one sweep did."""

    requeued: list[uuid.UUID] = field(default_factory=list)
    failed: list[uuid.UUID] = field(default_factory=list)
    enqueued: list[uuid.UUID] = field(default_factory=list)


def sweep(context: PipelineContext, enqueue: Callable[[uuid.UUID], None] | None) -> SweepReport:
    """One sweep. Without `enqueue`, only stale and exhausted jobs are handled (nothing is sent)."""
    settings = context.settings
    with context.write() as session:
        requeued, failed = JobRepository(session).requeue_stale(settings.stale_after_s)
        failed += JobRepository(session).exhausted_claimable()
        session.commit()
    for job_id in requeued:
        logger.warning("job %s: heartbeat stale for %.0f s, re-queued", job_id, settings.stale_after_s)
    for job_id in failed:
        logger.warning("job %s: out of attempts, failed", job_id)
    enqueued: list[uuid.UUID] = []
    if enqueue is not None:
        with context.write() as session:
            due = OutboxRepository(session).reserve_for_enqueue(
                settings.enqueue_grace_s, settings.resend_after_s, SWEEP_BATCH
            )
            session.commit()
        for index, job_id in enumerate(due):
            try:
                enqueue(job_id)
            except Exception:
                logger.warning("could not send job %s; it stays queued", job_id, exc_info=True)
                with context.write() as session:
                    for unsent in due[index:]:
                        OutboxRepository(session).release_enqueue(unsent)
                    session.commit()
                break
            enqueued.append(job_id)
    if enqueued:
        logger.info("sweeper sent %d job(s)", len(enqueued))
    return SweepReport(requeued=requeued, failed=failed, enqueued=enqueued)
