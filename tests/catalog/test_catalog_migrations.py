"""Alembic owns the schema: round trip on PostgreSQL, and the models match the migrations."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from catalog import migrate
from catalog.db import make_engine
from catalog.models import Base
from tests.postgres import temporary_postgres_database

TABLES = {
    "alembic_version",
    "api_keys",
    "models",
    "revisions",
    "index_runs",
    "super_weights",
    "super_activations",
    "layer_profiles",
    "quality_results",
    "jobs",
}


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _schema_differences(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))
    finally:
        engine.dispose()


@pytest.mark.services
def test_postgres_round_trip_upgrade_downgrade_upgrade(pg_admin_url: str) -> None:
    with temporary_postgres_database(pg_admin_url, prefix="swi_migrations") as url:
        migrate.upgrade(url)
        assert _tables(url) == TABLES
        assert migrate.current_revision(url) == migrate.head_revision()
        migrate.downgrade(url, "base")
        assert _tables(url) <= {"alembic_version"}
        assert migrate.current_revision(url) is None
        migrate.upgrade(url)
        assert _tables(url) == TABLES
        assert _schema_differences(url) == []


def test_sqlite_round_trip_and_models_match(tmp_path: Path) -> None:
    url = f"sqlite+pysqlite:///{tmp_path / 'catalog.db'}"
    migrate.upgrade(url)
    assert _tables(url) == TABLES
    migrate.downgrade(url, "base")
    assert _tables(url) <= {"alembic_version"}
    migrate.upgrade(url)
    assert migrate.current_revision(url) == migrate.head_revision()


def test_alembic_ini_at_repository_root_points_at_migrations() -> None:
    root = Path(__file__).resolve().parents[2]
    text = (root / "alembic.ini").read_text()
    assert "script_location = %(here)s/migrations" in text
    assert "sqlalchemy.url" not in text.split("[loggers]")[0].replace("# ", "")
