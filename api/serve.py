"""The served app (`uvicorn --factory api.serve:create_served_app`, what `swi serve` runs).

What runs committed jobs is named by the setting `SWI_JOB_RUNNER` (`module:function`, by default the
workers' Celery or in-process runner), resolved by name so that the API imports no worker code.
"""

from __future__ import annotations

import pkgutil
from collections.abc import Callable
from typing import Protocol

from fastapi import FastAPI

from api.app import create_app
from catalog.services import Enqueue
from catalog.settings import Settings


class JobRunner(Protocol):
    """What a runner factory returns: how to send a committed job, and how to ask the broker if it answers."""

    @property
    def enqueue(self) -> Enqueue:
        """Sends a committed job (bounded in time by the submission service)."""

    @property
    def ping(self) -> Callable[[], None] | None:
        """Raises unless the broker answers within the readiness timeout; None without a broker."""


def create_served_app(settings: Settings | None = None) -> FastAPI:
    """The API with submissions wired to the configured job runner (none: jobs wait in the outbox)."""
    settings = settings or Settings()
    if not settings.job_runner:
        return create_app(settings)
    factory: Callable[[Settings], JobRunner] = pkgutil.resolve_name(settings.job_runner)
    runner = factory(settings)
    return create_app(settings, enqueuer=runner.enqueue, broker_ping=runner.ping)
