"""The test PostgreSQL server (`SWI_TEST_POSTGRES_URL`): fresh databases on it at the newest schema."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from catalog import migrate
from catalog.testing import temporary_postgres_database

POSTGRES_ADMIN_URL = os.environ.get(
    "SWI_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@contextmanager
def migrated_database(prefix: str) -> Iterator[str]:
    """A fresh database migrated by Alembic (never `create_all`), dropped afterwards; yields its URL."""
    with temporary_postgres_database(POSTGRES_ADMIN_URL, prefix=prefix) as url:
        migrate.upgrade(url)
        yield url
