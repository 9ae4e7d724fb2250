"""Fixtures of the catalog tests: a throw-away PostgreSQL database per session, SQLite files per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from catalog import migrate
from catalog.db import make_engine, make_session_factory
from tests.postgres import POSTGRES_ADMIN_URL, migrated_database, truncate_all


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database at the newest schema (Alembic, never create_all)."""
    with migrated_database("swi_catalog") as url:
        yield url


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    """An engine on the session database, emptied before the test."""
    truncate_all(pg_url)
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(pg_engine: Engine) -> Iterator[Session]:
    """A PostgreSQL session (the test commits where the boundary would)."""
    with make_session_factory(pg_engine)() as session:
        yield session


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite catalog file."""
    url = f"sqlite+pysqlite:///{tmp_path / 'catalog.db'}"
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """The URL of the PostgreSQL database that new test databases are created from."""
    return POSTGRES_ADMIN_URL
