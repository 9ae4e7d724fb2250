"""The Celery worker application (`celery -A workers.app worker`): its tasks and the sweeper's timer.

`workers.index_job(job_id)` runs on the `gpu` queue, `workers.sweep()` on `default`. CUDA is never touched in
the parent: torch is at most imported there (`preload_libraries`), and each job runs in a forked child that is
replaced after `worker_max_tasks_per_child` jobs. The configuration and the sending side are
`workers.broker`'s.
"""

from __future__ import annotations

import functools
import logging
import sys
import uuid
from typing import Any

from celery import bootsteps, signals
from sqlalchemy.exc import InterfaceError, OperationalError

from catalog.services import SubmissionService
from workers.broker import INDEX_TASK, SWEEP_TASK, celery_config, celery_enqueuer, create_celery
from workers.pipeline import PipelineContext, run_job
from workers.runtime import forget_inherited_connections, pipeline_context
from workers.settings import get_settings
from workers.sweeper import sweep

__all__ = ["INDEX_TASK", "SWEEP_TASK", "app", "celery_config", "create_celery"]

logger = logging.getLogger(__name__)


def sweep_safely() -> None:
    """A sweep from a Celery worker (its own settings and broker); failures are logged, never raised."""
    try:
        context = pipeline_context()
        sweep(context, celery_enqueuer(context.settings))
    except Exception:
        logger.warning("sweep failed; retrying at the next interval", exc_info=True)


class SweeperStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Sweeps the job table on the worker's own timer (stale heartbeats, the outbox).

    The timer runs in the parent's main thread, the one that forks job processes: no other thread can hold
    a lock at the moment of a fork. Every worker sweeps; sweeps are idempotent and never send a job twice.
    """

    requires = ("celery.worker.components:Timer",)

    def __init__(self, worker: Any, **kwargs: Any):
        super().__init__(worker, **kwargs)
        self.tref: Any = None

    def start(self, worker: Any) -> None:
        self.tref = worker.timer.call_repeatedly(get_settings().sweep_interval_s, sweep_safely, priority=10)

    def stop(self, worker: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None


app = create_celery()
if get_settings().worker_sweeps:
    app.steps["worker"].add(SweeperStep)


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


@signals.worker_init.connect  # type: ignore[untyped-decorator]
def _preload(**_kwargs: Any) -> None:
    """Import the heavy libraries once in the parent (never CUDA), so every forked job starts fast."""
    if not get_settings().preload_libraries:
        return
    import torch
    import transformers  # noqa: F401

    initialised = torch.cuda.is_initialized()  # type: ignore[no-untyped-call]
    assert not initialised, "CUDA must not be initialised before the worker forks"


@signals.worker_ready.connect  # type: ignore[untyped-decorator]
def _ready(**_kwargs: Any) -> None:
    """Say what the parent holds (logging is configured by now; it was not at `worker_init`)."""
    torch = sys.modules.get("torch")
    if torch is None:
        logger.info("torch not preloaded; each job process imports it")
    else:
        initialised = torch.cuda.is_initialized()
        logger.info(
            "torch %s preloaded; CUDA %s",
            torch.__version__,
            "INITIALISED (a bug)" if initialised else "not initialised",
        )


@signals.worker_process_init.connect  # type: ignore[untyped-decorator]
def _after_fork(**_kwargs: Any) -> None:
    forget_inherited_connections()
