"""The test PostgreSQL server (`SWI_TEST_POSTGRES_URL`): fresh databases on it at the newest schema."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from catalog import migrate
from catalog.models import Base

POSTGRES_ADMIN_URL = os.environ.get(
    "SWI_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@contextmanager
def temporary_postgres_database(admin_url: str, prefix: str = "swi_test") -> Iterator[str]:
    """Create a uniquely named database next to `admin_url`'s, yield its URL, drop it afterwards."""
    url = make_url(admin_url)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def truncate_all(connection_url: str) -> None:
    """Empty every catalog table (PostgreSQL: TRUNCATE; SQLite: DELETE), keeping the schema."""
    engine = create_engine(connection_url)
    try:
        with engine.begin() as connection:
            tables = [table.name for table in Base.metadata.sorted_tables]
            if connection.dialect.name == "postgresql":
                connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
            else:
                for table in reversed(tables):
                    connection.execute(text(f"DELETE FROM {table}"))
    finally:
        engine.dispose()


@contextmanager
def migrated_database(prefix: str) -> Iterator[str]:
    """A fresh database migrated by Alembic (never `create_all`), dropped afterwards; yields its URL."""
    with temporary_postgres_database(POSTGRES_ADMIN_URL, prefix=prefix) as url:
        migrate.upgrade(url)
        yield url
