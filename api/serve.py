"""The served app (`uvicorn --factory api.serve:create_served_app`, the Docker image's entry point).

What runs committed jobs is passed in by the composition root: `swi serve` passes the workers' runner
(`swi.served`). Run by name, as uvicorn does, this factory uses `DEFAULT_JOB_RUNNER`, the workers' Celery
or in-process runner, resolved by name so that the API imports no worker code. The setting
`SWI_JOB_RUNNER` (`module:function`; empty: none, jobs wait in the outbox) replaces either.
"""

from __future__ import annotations

import pkgutil
from collections.abc import Callable
from typing import Protocol

from fastapi import FastAPI

from api.app import create_app
from api.settings import ApiSettings
from catalog.services import Enqueue
from catalog.settings import Settings

#: the runner factory of the served app when no composition root passes one
DEFAULT_JOB_RUNNER = "workers.enqueue:job_runner"


class JobRunner(Protocol):
    """What a runner factory returns: how to send a committed job, and how to ask the broker if it answers."""

    @property
    def enqueue(self) -> Enqueue:
        """Sends a committed job (bounded in time by the submission service)."""

    @property
    def ping(self) -> Callable[[], None] | None:
        """Raises unless the broker answers within the readiness timeout; None without a broker."""


#: builds the job runner of the served app from its settings
JobRunnerFactory = Callable[[ApiSettings], JobRunner]


def create_served_app(
    settings: Settings | None = None, *, job_runner: JobRunnerFactory | None = None
) -> FastAPI:
    """The API with submissions wired to the job runner (none: jobs wait in the outbox).

    `job_runner` builds it (default: `DEFAULT_JOB_RUNNER`); the setting `SWI_JOB_RUNNER`, when set, wins.
    """
    served = ApiSettings.of(settings)
    factory = job_runner
    if served.job_runner is not None:
        factory = pkgutil.resolve_name(served.job_runner) if served.job_runner else None
    elif factory is None:
        factory = pkgutil.resolve_name(DEFAULT_JOB_RUNNER)
    if factory is None:
        return create_app(served)
    runner = factory(served)
    return create_app(served, enqueuer=runner.enqueue, broker_ping=runner.ping)
