"""The Celery application (`celery -A workers.app worker`): configuration only, no torch import.

Model work goes to the `gpu` queue, light tasks (sweeps) to `default`. Messages carry job ids only; the
catalog holds every result (no result backend). CUDA is never touched in the parent: torch is at most
imported there (`preload_libraries`), and each job runs in a forked child that is replaced after
`worker_max_tasks_per_child` jobs.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, bootsteps, signals
from kombu.entity import Exchange, Queue

from workers.settings import WorkerSettings, get_settings

logger = logging.getLogger(__name__)

INDEX_TASK = "workers.index_job"
SWEEP_TASK = "workers.sweep"


def celery_config(settings: WorkerSettings) -> dict[str, Any]:
    """The Celery configuration of these settings (see the module docstring)."""
    transport: dict[str, Any] = {
        "visibility_timeout": settings.visibility_timeout_s,
        # a broker that accepts connections and never answers must fail a publish, not hang it
        "socket_timeout": settings.broker_timeout_s,
        "socket_connect_timeout": settings.broker_timeout_s,
    }
    if settings.queue_prefix:
        transport["global_keyprefix"] = settings.queue_prefix
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": settings.readiness_timeout_s,
        "result_backend": None,
        "task_ignore_result": True,
        "task_store_errors_even_if_ignored": False,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "worker_max_tasks_per_child": settings.worker_max_tasks_per_child,
        "task_time_limit": settings.job_time_limit_s,
        "task_soft_time_limit": max(5, settings.job_time_limit_s - 60),
        "task_queues": tuple(
            Queue(name, Exchange(name, type="direct"), routing_key=name)  # type: ignore[no-untyped-call]
            for name in (settings.gpu_queue, settings.default_queue)
        ),
        "task_default_queue": settings.default_queue,
        "task_routes": {
            INDEX_TASK: {"queue": settings.gpu_queue},
            SWEEP_TASK: {"queue": settings.default_queue},
        },
        # a broker that is down must not hold a submission for long: the job row waits in the outbox
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "enable_utc": True,
    }


def create_celery(settings: WorkerSettings | None = None) -> Celery:
    """A Celery app configured from `settings` (default: the environment)."""
    settings = settings or get_settings()
    celery = Celery("swi", include=["workers.tasks"], set_as_current=False)
    celery.conf.update(celery_config(settings))
    if settings.worker_sweeps:
        celery.steps["worker"].add(SweeperStep)
    return celery


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
        from workers.sweeper import sweep_safely

        self.tref = worker.timer.call_repeatedly(get_settings().sweep_interval_s, sweep_safely, priority=10)

    def stop(self, worker: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None


app = create_celery()


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
    import sys

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
    from workers.runtime import forget_inherited_connections

    forget_inherited_connections()
