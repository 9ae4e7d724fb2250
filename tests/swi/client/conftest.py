"""A live `swi serve` for the client tests: the app `swi serve` runs (`api.serve.create_served_app`), on
SQLite and on PostgreSQL, served by uvicorn on a loopback port, running submissions in-process from a
local hub cache that holds the tiny planted model `acme/tiny`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy.exc import OperationalError

from api.serve import create_served_app
from catalog import migrate
from catalog.db import make_engine, make_session_factory
from catalog.repositories import ApiKeyRepository, JobRepository
from catalog.seed import load_seed
from contracts.errors import DomainError
from contracts.status import ACTIVE_JOB_STATUSES
from tests.live_server import served
from tests.postgres import migrated_database, truncate_all
from tests.workers.conftest import DETECT_ONLY, TINY_REPO, TINY_SHA, tiny_hub_cache

__all__ = ["DETECT_ONLY", "TINY_REPO", "TINY_SHA", "tiny_hub_cache"]
#: submissions allowed per key per window on the test server (small: the 429 test waits one out)
RATE_LIMIT = 4
RATE_WINDOW_S = 2
#: every job pauses this long in its resolve phase, so a test can cancel it while it runs
RESOLVE_DELAY_S = 1.0


@dataclass(frozen=True)
class Live:
    """A running service: its URL, its database URL, and keys with scope `submit` (two owners) and `admin`."""

    url: str
    database_url: str
    key: str
    other_key: str
    admin_key: str
    backend: str


class Recorder(httpx.BaseTransport):
    """The client's inner transport, recording what the network carried: (method, path, status, bytes)."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.seen: list[tuple[str, str, int, int]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        body = response.read()
        self.seen.append((request.method, request.url.path, response.status_code, len(body)))
        return httpx.Response(
            response.status_code, headers=response.headers, content=body, extensions=response.extensions
        )

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(scope="session")
def client_pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database at the newest schema for the client tests."""
    with migrated_database("swi_client") as url:
        yield url


def _keys(database_url: str) -> tuple[str, str, str]:
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            keys = ApiKeyRepository(session)
            secrets = (
                keys.create("alice", ["submit"])[1],
                keys.create("bob", ["submit"])[1],
                keys.create("admin", ["submit", "admin"])[1],
            )
            session.commit()
            return secrets
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def live(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    tiny_hub_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Live]:
    """`swi serve` on a fresh catalog (SQLite file, or the emptied PostgreSQL database), seeded."""
    backend = str(request.param)
    if backend == "sqlite":
        database_url = f"sqlite+pysqlite:///{tmp_path / 'catalog.db'}"
        migrate.upgrade(database_url)
    else:
        database_url = request.getfixturevalue("client_pg_url")
        truncate_all(database_url)
    engine = make_engine(database_url)
    with make_session_factory(engine)() as session:
        load_seed(session)
        session.commit()
    engine.dispose()
    env = {
        "SWI_DATABASE_URL": database_url,
        "SWI_AUTO_MIGRATE": "false",
        "SWI_HUB_CACHE_DIR": str(tiny_hub_cache),
        "HF_HUB_OFFLINE": "1",
        "SWI_DEVICE": "cpu",
        "SWI_RATE_LIMIT_SUBMISSIONS": str(RATE_LIMIT),
        "SWI_RATE_LIMIT_WINDOW_S": str(RATE_WINDOW_S),
        "SWI_TESTING_DELAY_PHASE": "resolve",
        "SWI_TESTING_DELAY_S": str(RESOLVE_DELAY_S),
        "SWI_HEARTBEAT_INTERVAL_S": "0.2",
        "SWI_JOB_MAX_ATTEMPTS": "1",  # a job that cannot resolve fails at once
        "SWI_CLIENT_CACHE": str(tmp_path / "http-cache"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SWI_BROKER_URL", raising=False)
    monkeypatch.delenv("SWI_SERVER", raising=False)
    monkeypatch.delenv("SWI_API_KEY", raising=False)
    key, other_key, admin_key = _keys(database_url)
    with served(create_served_app()) as url:
        yield Live(url, database_url, key, other_key, admin_key, backend)
    _cancel_leftovers(database_url)


def _cancel_leftovers(database_url: str) -> None:
    """Cancel what the test left queued, so the in-process runner does not start it after the test.

    Best effort: the runner may finish a job, or hold SQLite's write lock, at the same moment; what it then
    runs fails at once (not in the hub cache), so nothing outlives the test for long.
    """
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            jobs = JobRepository(session)
            for job in jobs.recent(None, 1000):
                if job.status in ACTIVE_JOB_STATUSES:
                    jobs.cancel(job.id)
            session.commit()
    except (DomainError, OperationalError):
        pass
    finally:
        engine.dispose()
