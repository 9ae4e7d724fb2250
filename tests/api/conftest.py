"""Fixtures of the API tests: the real app on real PostgreSQL, served by uvicorn on a loopback port."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from api.settings import ApiSettings
from catalog.db import make_engine, make_session_factory
from catalog.repositories import ApiKeyRepository
from catalog.seed import load_seed
from tests.live_server import served
from tests.postgres import migrated_database, truncate_all


@dataclass
class Enqueued:
    """A test enqueuer: records job ids, and fails on demand (a broker that is down)."""

    ids: list[uuid.UUID] = field(default_factory=list)
    broken: bool = False

    def __call__(self, job_id: uuid.UUID) -> None:
        if self.broken:
            raise ConnectionError("broker unreachable")
        self.ids.append(job_id)


@pytest.fixture(scope="session")
def api_pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database at the newest schema for the API tests."""
    with migrated_database("swi_api") as url:
        yield url


@pytest.fixture
def settings(api_pg_url: str) -> ApiSettings:
    """Settings of the app under test (an empty, seeded catalog)."""
    truncate_all(api_pg_url)
    engine = make_engine(api_pg_url)
    with make_session_factory(engine)() as session:
        load_seed(session)
        session.commit()
    engine.dispose()
    return ApiSettings(
        database_url=api_pg_url, rate_limit_submissions=5, rate_limit_window_s=60, auto_migrate=False
    )


@pytest.fixture
def enqueued() -> Enqueued:
    """The enqueuer the app hands committed jobs to."""
    return Enqueued()


@pytest.fixture
def app(settings: ApiSettings, enqueued: Enqueued) -> FastAPI:
    """The app under test."""
    return create_app(settings, enqueuer=enqueued)


@pytest.fixture
def make_key(settings: ApiSettings) -> Callable[..., str]:
    """Create an API key with the given scopes; returns the secret."""

    def create(*scopes: str, owner: str = "tester") -> str:
        engine = make_engine(settings.resolved_database_url())
        try:
            with make_session_factory(engine)() as session:
                _, secret = ApiKeyRepository(session).create(owner, list(scopes))
                session.commit()
                return secret
        finally:
            engine.dispose()

    return create


@pytest.fixture
def live_url(app: FastAPI) -> Iterator[str]:
    """The app served by uvicorn in a thread on a free loopback port (real HTTP)."""
    with served(app, start_timeout_s=10) as url:
        yield url


@pytest.fixture
def http(live_url: str) -> Iterator[httpx.Client]:
    """An HTTP client on the live server."""
    with httpx.Client(base_url=live_url, timeout=30) as client:
        yield client
