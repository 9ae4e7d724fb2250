"""Migration 0006: the runs stored before it get their request key (their old run key) and keep their
run key; runs recorded with effective settings are keyed by them."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from catalog import migrate
from catalog.db import make_engine, make_session_factory
from catalog.models import IndexRun
from catalog.repositories import record_run
from contracts.jobs import JobConfig, RunSettings, request_key, versioned_run_config
from contracts.versions import RUN_VERSIONS
from tests.documents import sample_detection
from tests.postgres import temporary_postgres_database

SHA = "d" * 40
CONFIG = versioned_run_config(JobConfig().as_config(), RUN_VERSIONS)
SETTINGS = RunSettings(versions=RUN_VERSIONS, device="cpu", dtype="float32", detection={"z_threshold": 3.0})


def _keys(url: str) -> dict[str, tuple[str, str, bool]]:
    """Per model: (run key, request key, whether the effective settings are stored)."""
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            runs = session.scalars(select(IndexRun).order_by(IndexRun.id)).all()
            return {r.model.hub_id: (r.config_hash, r.request_key, r.settings is not None) for r in runs}
    finally:
        engine.dispose()


def _check(url: str) -> None:
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            record_run(session, None, "org/documents", SHA, "main", CONFIG, sample_detection())
            record_run(
                session, None, "org/worker", SHA, "main", CONFIG, sample_detection(), settings=SETTINGS
            )
            session.commit()
    finally:
        engine.dispose()
    request = request_key(CONFIG)
    expected = {"org/documents": (request, request, False), "org/worker": (SETTINGS.key(), request, True)}
    assert _keys(url) == expected
    migrate.downgrade(url, "0005")
    migrate.upgrade(url)
    # before 0006 a run was keyed by its request configuration: that is its request key; nothing else kept
    assert _keys(url) == {**expected, "org/worker": (SETTINGS.key(), request, False)}


def test_sqlite_migration_derives_the_request_keys(tmp_path: Path) -> None:
    _check(f"sqlite+pysqlite:///{tmp_path / 'catalog.db'}")


@pytest.mark.services
def test_postgres_migration_derives_the_request_keys(pg_admin_url: str) -> None:
    with temporary_postgres_database(pg_admin_url, prefix="swi_request_keys") as url:
        _check(url)
