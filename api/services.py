"""What the routes need, built once per app: settings, database sessions and the injectable hooks."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.cache import ResponseCache
from api.metrics import Metrics
from catalog.db import begin_write
from catalog.settings import Settings
from contracts.identifiers import is_commit_sha

#: Hands a committed job to whatever runs it (Celery, the in-process runner). Raising is allowed:
#: the job stays queued and a sweeper enqueues it later.
Enqueuer = Callable[[uuid.UUID], None]
#: Resolves (model id, requested revision or None) to a commit sha, or None to leave resolution to the worker.
#: May raise `catalog.errors.NotFoundError` (unknown model or revision) or `UnavailableError`.
RevisionResolver = Callable[[str, str | None], str | None]


def leave_queued(job_id: uuid.UUID) -> None:
    """The default enqueuer: nothing runs the job yet; it waits in `queued`."""


def resolve_sha_only(model: str, revision: str | None) -> str | None:
    """The default resolver (no network): a full sha is used as is; anything else is left to the worker."""
    return revision if revision is not None and is_commit_sha(revision) else None


@dataclass
class Services:
    """The app's shared state (one per `create_app`)."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    enqueuer: Enqueuer = leave_queued
    resolver: RevisionResolver = resolve_sha_only
    metrics: Metrics = field(default_factory=Metrics)
    cache: ResponseCache = field(default_factory=ResponseCache)

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session for one unit of work; on SQLite, `write` takes the write lock up front."""
        with self.sessions() as session:
            if write:
                begin_write(session)
            yield session


async def get_services(request: Request) -> Services:
    """The app's services (async: FastAPI would run a plain function in the thread pool)."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
