"""Celery tasks: `workers.index_job(job_id)` on the GPU queue, `workers.sweep()` on the default queue."""

from __future__ import annotations

import functools
import logging
import uuid
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError

from catalog.services import SubmissionService
from workers.app import INDEX_TASK, SWEEP_TASK, app
from workers.enqueue import celery_enqueuer
from workers.pipeline import PipelineContext, run_job
from workers.runtime import pipeline_context
from workers.sweeper import sweep

logger = logging.getLogger(__name__)


@app.task(  # type: ignore[untyped-decorator]
    name=INDEX_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    # the catalog unreachable before the job could even be claimed: let the broker redeliver later
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=5,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=8,
)
def index_job(job_id: str) -> str:
    """Run the pipeline of one job (a repeated delivery is a no-op); schedule a transient failure's retry."""
    context = pipeline_context()
    outcome = run_job(job_id, context)
    logger.info("job %s: %s%s", job_id, outcome.status, f" ({outcome.error})" if outcome.error else "")
    if outcome.status == "retry":
        _send_retry(context, outcome.job_id, outcome.retry_in_s or 0.0)
    return outcome.status


def _send_retry(context: PipelineContext, job_id: uuid.UUID, delay_s: float) -> None:
    """Schedule the next attempt (bounded in time; if the broker does not take it, the sweeper sends it)."""
    send_later = functools.partial(celery_enqueuer(context.settings), countdown=delay_s)
    sender = SubmissionService(
        context.sessions, enqueue=send_later, enqueue_timeout_s=context.settings.enqueue_timeout_s
    )
    if not sender.send(job_id):
        logger.warning("could not schedule the retry of job %s; the sweeper will", job_id)


@app.task(name=SWEEP_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def sweep_task() -> dict[str, Any]:
    """One sweep on demand (e.g. from a scheduler): stale jobs re-queued, unsent jobs sent."""
    context = pipeline_context()
    report = sweep(context, celery_enqueuer(context.settings))
    return {"requeued": len(report.requeued), "failed": len(report.failed), "enqueued": len(report.enqueued)}
