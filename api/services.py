"""What the routes need, built once per app: settings, database sessions, the submission service."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.cache import ResponseCache
from api.settings import ApiSettings
from catalog.db import begin_write
from catalog.services import SubmissionService

#: Asks the broker whether it answers (a PING with a timeout); raises when it does not.
BrokerPing = Callable[[], None]


@dataclass
class Services:
    """The app's shared state (one per `create_app`)."""

    settings: ApiSettings
    engine: Engine
    sessions: sessionmaker[Session]
    submissions: SubmissionService
    broker_ping: BrokerPing | None = None
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
