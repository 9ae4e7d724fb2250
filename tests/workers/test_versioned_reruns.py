"""Runs are never lost: `swi index` of the same model and settings with a new detector version stores a
second run next to the first, on PostgreSQL, and the model API lists both with each coordinate's marks."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import indexer.detection.detect
from api.app import create_app
from catalog.settings import Settings
from contracts.identifiers import local_model_id
from contracts.versions import DETECTOR_VERSION, RUN_VERSIONS
from swi.cli import app
from tests.postgres import truncate_all

pytestmark = pytest.mark.services
runner = CliRunner()
NEWER = "99.0.0"


@pytest.fixture
def pg_catalog(workers_pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """`swi index` writes to the emptied PostgreSQL catalog and runs its job in-process (no broker)."""
    truncate_all(workers_pg_url)
    monkeypatch.setenv("SWI_DATABASE_URL", workers_pg_url)
    monkeypatch.setenv("SWI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SWI_BROKER_URL", raising=False)
    return workers_pg_url


def _index(folder: Path) -> str:
    result = runner.invoke(app, ["index", str(folder), "--skip-validation", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return result.output


def test_a_new_detector_version_stores_a_second_run_and_both_show(
    pg_catalog: str, tiny_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _index(tiny_folder)
    assert "already indexed" in _index(tiny_folder)  # same settings, same versions: the same run
    # what a release with a new detector does: the run key and the detection's provenance name it
    monkeypatch.setitem(RUN_VERSIONS, "detector", NEWER)
    monkeypatch.setattr(indexer.detection.detect, "DETECTOR_VERSION", NEWER)
    assert "already indexed" not in _index(tiny_folder)

    model = local_model_id(tiny_folder)
    with TestClient(create_app(Settings(database_url=pg_catalog), enqueuer=lambda _job: None)) as client:
        body = client.get(f"/v1/models/{model}").json()
    runs = body["runs"]
    assert [r["detector_version"] for r in runs] == [NEWER, DETECTOR_VERSION]
    assert len({r["config_hash"] for r in runs}) == 2
    (history,) = body["history"]
    assert (history["layer"], history["row"], history["col"]) == (1, 10, 20)
    assert [(v["run_id"], v["reproduction"]) for v in history["runs"]] == [
        (runs[0]["id"], "reproduced"),
        (runs[1]["id"], "reproduced"),
    ]
    assert [v["prompt_agreement"] for v in history["runs"]] == [1.0, 1.0]
