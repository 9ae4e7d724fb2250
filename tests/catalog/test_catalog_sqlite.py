"""The embedded default on SQLite: migrations, seed, submissions, claim, record_run, CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC
from pathlib import Path

import pytest
import typer
from sqlalchemy import text
from typer.testing import CliRunner

from catalog import migrate
from catalog.bootstrap import prepare_database
from catalog.db import make_engine, make_session_factory
from catalog.repositories import CoordinateRepository, JobRepository, ModelFilter, ModelRepository, record_run
from catalog.settings import Settings
from contracts.results import DetectionResult
from contracts.validation import Measurement, ValidationDocument
from swi import catalog_cmd
from tests.documents import recorded_planted, sample_detection, sample_validation

SHA = "e" * 40
ROOT = Path(__file__).resolve().parents[2]


def test_settings_default_creates_the_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SWI_DATABASE_URL", raising=False)
    settings = Settings()
    url = settings.resolved_database_url()
    assert url == f"sqlite+pysqlite:///{tmp_path / 'data' / 'catalog.db'}"
    assert (tmp_path / "data").is_dir() and settings.is_sqlite and settings.should_auto_migrate
    assert Settings(database_url="postgresql+psycopg://x@h/db").should_auto_migrate is False


def test_sqlite_pragmas_and_full_cycle(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    sessions = make_session_factory(engine)
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    with sessions() as session:
        jobs = JobRepository(session)
        job = jobs.submit(model="org/model", config={"a": 1}, requested_revision="main").job
        assert job is not None
        session.commit()
        assert jobs.claim(job.id) is not None
        assert jobs.claim(job.id) is None
        assert jobs.update_progress(job.id, phase="detect", progress=0.3)
        detection = sample_detection([(1, 2, 3)])
        recorded = record_run(
            session,
            job.id,
            "org/model",
            SHA,
            "main",
            {"a": 1},
            detection,
            sample_validation({(1, 2, 3): "inert"}),
        )
        session.commit()
        again = record_run(session, job.id, "org/model", SHA, "main", {"a": 1}, detection)
        assert again.run_id == recorded.run_id and not again.created
        model = ModelRepository(session).get("org/model")
        (entry,) = CoordinateRepository(session).coordinates(model).entries
        assert entry.weight.status == "inert"
        assert model.updated_at.tzinfo is UTC
        page = ModelRepository(session).search(ModelFilter(status="inert"))
        assert [s.model.hub_id for s in page.items] == ["org/model"]
    engine.dispose()


def test_prepare_database_seeds_only_a_fresh_catalog(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite+pysqlite:///{tmp_path / 'c.db'}")
    first = prepare_database(settings)
    assert first is not None and first.coordinates_added == 54
    assert prepare_database(settings) is None
    again = prepare_database(settings, seed=True)
    assert again is not None and again.coordinates_added == 0


def test_alembic_command_line_from_the_repository_root(tmp_path: Path) -> None:
    url = f"sqlite+pysqlite:///{tmp_path / 'cli.db'}"
    env = {**os.environ, "SWI_DATABASE_URL": url}
    alembic = Path(sys.executable).with_name("alembic")
    subprocess.run([str(alembic), "upgrade", "head"], cwd=ROOT, env=env, check=True, capture_output=True)
    assert migrate.current_revision(url) == migrate.head_revision()


def test_cli_seed_migrate_and_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWI_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SWI_DATABASE_URL", raising=False)
    app = typer.Typer()
    catalog_cmd.register(app)
    runner = CliRunner()
    assert runner.invoke(app, ["catalog", "migrate"]).exit_code == 0
    seeded = runner.invoke(app, ["catalog", "seed"])
    assert seeded.exit_code == 0 and "19 models and 54 coordinates" in seeded.output
    assert "0 models and 0 coordinates" in runner.invoke(app, ["catalog", "seed"]).output
    created = runner.invoke(app, ["keys", "create", "--owner", "ci", "--scope", "submit", "--scope", "admin"])
    assert created.exit_code == 0
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("swi_")
    listed = runner.invoke(app, ["keys", "list"])
    assert "ci" in listed.output and secret not in listed.output
    bad = runner.invoke(app, ["keys", "create", "--owner", "ci", "--scope", "root"])
    assert bad.exit_code == 2 and "scopes must be among" in bad.output


def test_a_recorded_jointly_confirmed_run_keeps_the_validator_s_meaning(sqlite_url: str) -> None:
    """The recorded producer output: each weight inert alone, confirmed as a set, and stored so."""
    detection, validation = recorded_planted()
    assert DetectionResult.model_validate(detection).to_dict() == detection, "the recording is current"
    document = ValidationDocument.model_validate(validation)
    assert document.model_dump(mode="json") == validation
    sessions = make_session_factory(make_engine(sqlite_url))
    with sessions() as session:
        record_run(session, None, "local/joint-llama", "sha256:" + "a" * 64, None, {}, detection, validation)
        session.commit()
        model = ModelRepository(session).get("local/joint-llama")
        entries = CoordinateRepository(session).coordinates(model).entries
        assert [e.weight.coordinates for e in entries] == [v.coordinates for v in document.verdicts]
        for entry, verdict in zip(entries, document.verdicts, strict=True):
            assert verdict.verdict == "inert" and verdict.member_of_confirmed_set
            assert entry.weight.status == verdict.status == "confirmed"
            assert entry.weight.member_of_confirmed_set is True
            assert entry.weight.verdict_reason == verdict.reason and "jointly" in verdict.reason
            keys = sorted(
                str(Measurement.model_validate(r, from_attributes=True).figure) for r in entry.decided_by
            )
            assert keys == sorted(["zero/joint", "zero/alone/{}-{}-{}".format(*verdict.coordinates)])


def test_set_level_statuses_are_stored_and_searchable(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    sessions = make_session_factory(engine)
    statuses = {(1, 2, 3): "set-confirmed", (1, 4, 5): "redundant", (2, 6, 7): "not_measured"}
    with sessions() as session:
        record_run(
            session,
            None,
            "org/jointly",
            SHA,
            "main",
            {"b": 1},
            sample_detection(list(statuses)),
            sample_validation(statuses),
        )
        session.commit()
        model = ModelRepository(session).get("org/jointly")
        stored = {
            e.weight.coordinates: e.weight.status
            for e in CoordinateRepository(session).coordinates(model).entries
        }
        # an undecided weight is stored as a candidate (`contracts.validation.Verdict.status`)
        assert stored == {**statuses, (2, 6, 7): "candidate"}
        for status in ("set-confirmed", "redundant"):
            page = ModelRepository(session).search(ModelFilter(status=status))
            assert [s.model.hub_id for s in page.items] == ["org/jointly"]
    engine.dispose()
