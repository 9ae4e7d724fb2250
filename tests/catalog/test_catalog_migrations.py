"""Alembic owns the schema: round trip on PostgreSQL, and the models match the migrations."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from catalog import migrate
from catalog.db import make_engine, make_session_factory
from catalog.models import Base
from catalog.repositories import CoordinateRepository, ModelFilter, ModelRepository
from catalog.seed import load_seed
from tests.catalog.old_seed import OLD_HEAD, load_old_seed
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
    "reported_sources",
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


def _upgrade_an_old_seeded_catalog(url: str) -> None:
    """Build a catalog as the previous release left it (schema 0001 + its seed), then upgrade it to head."""
    migrate.upgrade(url, OLD_HEAD)
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            load_old_seed(connection)
            # a run-created model whose free-text base model names a catalogued one keeps the link
            connection.execute(
                text(
                    "INSERT INTO models (hub_id, org, name, base_model, source_kind, created_at, updated_at)"
                    " VALUES ('org/tuned', 'org', 'tuned', 'huggyllama/llama-7b', 'hub', :t, :t)"
                ),
                {"t": datetime.now(UTC)},
            )
    finally:
        engine.dispose()
    migrate.upgrade(url)


def _check_upgraded(url: str) -> None:
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            models = ModelRepository(session)
            runs = CoordinateRepository(session)
            assert len(models.search(ModelFilter(), limit=100).items) == 20  # 19 published + org/tuned
            olmo = models.get("allenai/OLMo-1B-0724-hf")
            entries = {e.weight.coordinates: e for e in runs.coordinates(olmo).entries}
            layer2, layer1 = entries[(2, 1764, 8041)], entries[(1, 1764, 8041)]
            assert layer2.citation_source == "reference code" and layer1.citation_source == "paper table"
            assert layer2.readings == [(1, 1764, 8041)] and layer1.readings == [(2, 1764, 8041)]
            assert {s.kind for s in layer2.sources} == {"reference code", "replication"}
            assert [s.kind for s in layer1.sources] == ["paper table", "replication"]
            tuned = models.get("org/tuned")
            assert (tuned.base_model, tuned.relation) == ("huggyllama/llama-7b", "fine-tune")
            again = load_seed(session)
            assert (again.models_added, again.coordinates_added, again.sources_added) == (0, 0, 0)
    finally:
        engine.dispose()


@pytest.mark.services
def test_postgres_upgrade_of_a_catalog_seeded_by_the_previous_release(pg_admin_url: str) -> None:
    with temporary_postgres_database(pg_admin_url, prefix="swi_old_catalog") as url:
        _upgrade_an_old_seeded_catalog(url)
        _check_upgraded(url)
        assert _schema_differences(url) == []


def test_sqlite_upgrade_of_a_catalog_seeded_by_the_previous_release(tmp_path: Path) -> None:
    url = f"sqlite+pysqlite:///{tmp_path / 'old.db'}"
    _upgrade_an_old_seeded_catalog(url)
    _check_upgraded(url)


def test_an_empty_catalog_stays_empty_after_the_data_migration(tmp_path: Path) -> None:
    url = f"sqlite+pysqlite:///{tmp_path / 'empty.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM models")).scalar_one() == 0
    finally:
        engine.dispose()
