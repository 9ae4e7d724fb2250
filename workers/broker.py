"""Talking to the broker: the Celery configuration, one Celery client per settings, sending a job.

Model work goes to the `gpu` queue, light tasks (sweeps) to `default`. Messages carry job ids only; the
catalog holds every result (no result backend). No torch import.
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import Any

from celery import Celery
from kombu.entity import Exchange, Queue

from workers.settings import WorkerSettings, get_settings

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
    celery = Celery("swi", set_as_current=False)
    celery.conf.update(celery_config(settings))
    return celery


_apps: dict[str, Celery] = {}
_apps_lock = threading.Lock()
os.register_at_fork(
    before=_apps_lock.acquire, after_in_parent=_apps_lock.release, after_in_child=_apps_lock.release
)


def _celery_for(settings: WorkerSettings) -> Celery:
    """One Celery app (and its connection pool) per distinct settings, reused by every send."""
    key = settings.model_dump_json()
    with _apps_lock:
        if key not in _apps:
            _apps[key] = create_celery(settings)
        return _apps[key]


class CeleryEnqueuer:
    """Sends `workers.index_job(job_id)` to the GPU queue of the configured broker."""

    def __init__(self, settings: WorkerSettings):
        if not settings.broker_url:
            raise ValueError("no broker configured (SWI_BROKER_URL)")
        self.settings = settings

    def __call__(self, job_id: uuid.UUID, countdown: float | None = None) -> None:
        _celery_for(self.settings).send_task(
            INDEX_TASK, args=[str(job_id)], queue=self.settings.gpu_queue, countdown=countdown
        )


def celery_enqueuer(settings: WorkerSettings) -> CeleryEnqueuer:
    """The Celery enqueuer of these settings."""
    return CeleryEnqueuer(settings)
