"""Enqueuers: how a committed job reaches what runs it (Celery, or a thread of this process when embedded).

An enqueuer takes a job id; it may raise (broker down): the job then waits in `queued` and the sweeper sends
it later. The served API gets them through `job_runner`, which its composition root passes in (`swi serve`)
or names (`api.serve.DEFAULT_JOB_RUNNER`); plug one into an app by hand with
`api.app.create_app(enqueuer=make_enqueuer(settings))`.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from catalog.settings import Settings
from workers.broker import CeleryEnqueuer
from workers.embedded import run_to_completion
from workers.runtime import pipeline_context
from workers.settings import WorkerSettings
from workers.sweeper import sweep

logger = logging.getLogger(__name__)

Enqueuer = Callable[[uuid.UUID], None]


class BackgroundRunner:
    """The embedded default's enqueuer: runs jobs one at a time in a thread of this process."""

    def __init__(self, settings: WorkerSettings):
        self.context = pipeline_context(settings)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="swi-job")
        self._resumed = threading.Event()

    def __call__(self, job_id: uuid.UUID) -> None:
        self.resume()
        self._submit(job_id)

    def resume(self) -> None:
        """Once: pick up jobs an earlier process left behind (stale, or never run)."""
        if self._resumed.is_set():
            return
        self._resumed.set()
        try:
            sweep(self.context, self._submit)
        except Exception:
            logger.warning("could not resume earlier jobs", exc_info=True)

    def _submit(self, job_id: uuid.UUID) -> None:
        self.executor.submit(self._run, job_id)

    def _run(self, job_id: uuid.UUID) -> None:
        try:
            run_to_completion(job_id, self.context)
        except Exception:
            logger.exception("job %s could not be run in-process", job_id)


def make_enqueuer(settings: WorkerSettings) -> Enqueuer:
    """Celery when a broker is configured, else the in-process background runner."""
    return BackgroundRunner(settings) if settings.embedded else CeleryEnqueuer(settings)


def ping_broker(url: str, timeout_s: float) -> None:
    """Ask the broker to answer within `timeout_s` (Redis: PING; others: a handshake); raise if not.

    A listener that accepts connections and never answers fails here, where a TCP connect would pass.
    """
    if urlsplit(url).scheme in ("redis", "rediss"):
        import redis

        client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        try:
            client.ping()
        finally:
            client.close()
        return
    from kombu.connection import Connection

    with Connection(url, connect_timeout=timeout_s) as connection:  # type: ignore[no-untyped-call]
        connection.connect()


@dataclass(frozen=True)
class JobRunner:
    """What the served API needs of the pipeline: how to send a committed job, how to ask the broker."""

    enqueue: Enqueuer
    ping: Callable[[], None] | None


def job_runner(settings: Settings) -> JobRunner:
    """The served API's runner (its composition root passes it): Celery with a broker, else in-process."""
    worker_settings = (
        settings
        if isinstance(settings, WorkerSettings)
        else WorkerSettings(**settings.model_dump(exclude_unset=True))  # the rest from the environment
    )
    enqueue = make_enqueuer(worker_settings)
    url = worker_settings.broker_url
    if not url:
        return JobRunner(enqueue=enqueue, ping=None)
    timeout_s = worker_settings.readiness_timeout_s
    return JobRunner(enqueue=enqueue, ping=lambda: ping_broker(url, timeout_s))
