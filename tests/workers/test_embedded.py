"""The embedded default (SQLite, no broker): `swi index` runs the same pipeline in-process; the API runs
submissions in a thread; `swi jobs` lists them."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from catalog import migrate
from catalog.db import make_engine, make_session_factory
from catalog.models import utcnow
from catalog.repositories import ApiKeyRepository, JobRepository
from swi.cli import app
from tests.workers.conftest import DETECT_ONLY, TINY_REPO, TINY_SHA
from tests.workers.faults import with_transient_failures
from workers.embedded import run_to_completion
from workers.enqueue import make_enqueuer
from workers.runtime import pipeline_context
from workers.settings import WorkerSettings

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The embedded catalog of this test (SQLite file), and no broker."""
    monkeypatch.setenv("SWI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SWI_DATABASE_URL", raising=False)
    monkeypatch.delenv("SWI_BROKER_URL", raising=False)
    return tmp_path / "data"


def test_swi_index_runs_a_local_model_in_process_once(data_dir: Path, tiny_folder: Path) -> None:
    result = runner.invoke(app, ["index", str(tiny_folder), "--skip-validation", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "local/tiny-llama@sha256:" in result.output
    row = next(line for line in result.output.splitlines() if "candidate" in line)
    assert row.split("│")[1:4] == ["     1 ", "  10 ", "  20 "], row

    again = runner.invoke(app, ["index", str(tiny_folder), "--skip-validation", "--json"])
    assert again.exit_code == 0, again.output
    assert "already indexed" in again.output
    assert '"layer": 1' in again.output and '"col": 20' in again.output

    jobs = runner.invoke(app, ["jobs", "--json"])
    assert jobs.exit_code == 0 and jobs.output.count('"status": "succeeded"') == 1, jobs.output
    assert runner.invoke(app, ["jobs", "--status", "succeeded"]).exit_code == 0
    bad = runner.invoke(app, ["jobs", "--status", "done"])
    assert bad.exit_code == 2 and "unknown status" in bad.output
    assert runner.invoke(app, ["jobs", "--cancel"]).exit_code == 2
    finished = jobs.output.split('"id": "')[1].split('"')[0]
    refused = runner.invoke(app, ["jobs", finished, "--cancel"])
    assert refused.exit_code != 0 and "already succeeded" in refused.output


def test_swi_jobs_cancels_a_queued_job(data_dir: Path) -> None:
    url = f"sqlite+pysqlite:///{data_dir / 'catalog.db'}"
    data_dir.mkdir(parents=True)
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            job = JobRepository(session).submit(model="org/waiting", config={}, resolved_sha=None).job
            assert job is not None
            session.commit()
            job_id = str(job.id)
    finally:
        engine.dispose()
    result = runner.invoke(app, ["jobs", job_id, "--cancel", "--json"])
    assert result.exit_code == 0, result.output
    assert '"status": "cancelled"' in result.output
    again = runner.invoke(app, ["jobs", job_id, "--cancel", "--json"])
    assert again.exit_code == 0 and '"status": "cancelled"' in again.output


def test_swi_index_takes_over_a_job_whose_process_died(
    data_dir: Path, tiny_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workers.embedded

    real_run = workers.embedded.run_to_completion
    outcomes: list[str] = []

    def claim_then_die(job_id: object, context: Any) -> None:
        with context.write() as session:
            job = JobRepository(session).claim(str(job_id))
            assert job is not None
            # killed mid-job: the row stays `running`, its heartbeat fresh for a few more seconds
            job.heartbeat_at = utcnow() + timedelta(seconds=2)
            session.commit()
        raise SystemExit(137)

    def recorded(job_id: object, context: Any) -> Any:
        outcome = real_run(job_id, context)
        outcomes.append(outcome.status)
        return outcome

    arguments = ["index", str(tiny_folder), "--skip-validation", "--device", "cpu"]
    monkeypatch.setattr(workers.embedded, "run_to_completion", claim_then_die)
    assert runner.invoke(app, arguments).exit_code == 137
    monkeypatch.setattr(workers.embedded, "run_to_completion", recorded)
    monkeypatch.setenv("SWI_STALE_AFTER_S", "1")
    started = time.monotonic()
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert "identical to one already queued" in result.output
    # the job was first seen running elsewhere, then taken over once its heartbeat went stale
    assert outcomes == ["skipped", "succeeded"]
    assert time.monotonic() - started < 60
    jobs = runner.invoke(app, ["jobs", "--json"])
    assert jobs.output.count('"status": "succeeded"') == 1 and '"attempts": 2' in jobs.output, jobs.output


def test_swi_index_reports_a_permanent_failure(data_dir: Path, hub_env: Path) -> None:
    result = runner.invoke(app, ["index", "acme/missing", "--skip-validation"])
    assert result.exit_code == 1
    assert "failed after 1 attempt(s): resolve: acme/missing@main is not" in " ".join(result.output.split())


def test_swi_index_refuses_paths_when_workers_would_run_them(
    data_dir: Path, tiny_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWI_BROKER_URL", "redis://127.0.0.1:9/0")
    result = runner.invoke(app, ["index", str(tiny_folder)])
    assert result.exit_code == 2 and "SWI_ALLOW_LOCAL_MODELS" in result.output
    assert runner.invoke(app, ["index", "not a model"]).exit_code == 2


def test_swi_worker_needs_a_broker(data_dir: Path) -> None:
    result = runner.invoke(app, ["worker"])
    assert result.exit_code == 2 and "SWI_BROKER_URL" in result.output
    assert runner.invoke(app, ["worker", "--queues", "cpu"]).exit_code == 2


def test_a_transient_failure_is_retried_in_process(tmp_path: Path, hub_env: Path) -> None:
    url = f"sqlite+pysqlite:///{tmp_path / 'catalog.db'}"
    migrate.upgrade(url)
    settings = WorkerSettings(
        database_url=url,
        retry_backoff_s=0.01,
        device="cpu",
        hub_cache_dir=str(hub_env),
    )
    context = with_transient_failures(pipeline_context(settings), 1)
    with context.write() as session:
        outcome = JobRepository(session).submit(model=TINY_REPO, config=DETECT_ONLY)
        session.commit()
    assert outcome.job is not None
    waits: list[float] = []
    result = run_to_completion(outcome.job.id, context, sleep=waits.append)
    assert result.status == "succeeded" and len(waits) == 1
    with context.sessions() as session:
        job = JobRepository(session).get(outcome.job.id)
        assert (job.attempts, job.resolved_sha) == (2, TINY_SHA)
        assert job.last_error is None  # the failed attempt's error no longer describes the job


def test_the_embedded_api_runs_submissions_in_a_thread(tmp_path: Path, hub_env: Path) -> None:
    url = f"sqlite+pysqlite:///{tmp_path / 'catalog.db'}"
    migrate.upgrade(url)
    settings = WorkerSettings(database_url=url, device="cpu", auto_migrate=False, hub_cache_dir=str(hub_env))
    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        _, key = ApiKeyRepository(session).create("embedded", ["submit"])
        session.commit()
    engine.dispose()
    with TestClient(create_app(settings, enqueuer=make_enqueuer(settings))) as client:
        response = client.post(
            "/v1/submissions",
            json={"model": TINY_REPO, "options": DETECT_ONLY},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status_code == 202, response.text
        location = response.headers["Location"]
        deadline = time.monotonic() + 120
        while (job := client.get(location).json())["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        assert job["status"] == "succeeded" and job["run_id"] is not None, job
        weights = client.get(f"/v1/models/{TINY_REPO}/super-weights").json()
        assert [1, 10, 20] in [[w["layer"], w["row"], w["col"]] for w in weights["super_weights"]], weights


def test_the_pipeline_logs_progress_lines_with_the_job_id(
    data_dir: Path, tiny_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="workers.pipeline"):
        result = runner.invoke(app, ["index", str(tiny_folder), "--skip-validation", "--json"])
    assert result.exit_code == 0, result.output
    job_id = json.loads(runner.invoke(app, ["jobs", "--json"]).stdout)[0]["id"]
    logged = [r.getMessage() for r in caplog.records if r.name == "workers.pipeline"]
    for phase in ("resolve", "load", "detect", "store"):
        assert any(m.startswith(f"[job {job_id}] {phase} ") and "% elapsed" in m for m in logged), logged
    # the same lines on stderr (with --json, stdout holds only the entry)
    assert any(line.startswith("detect ") and "%" in line for line in result.stderr.splitlines())
    assert json.loads(result.stdout)["model"].startswith("local/")


def test_swi_index_streams_a_model_above_the_memory_budget(data_dir: Path, tiny_folder: Path) -> None:
    budget = (tiny_folder / "model.safetensors").stat().st_size // 2
    arguments = ["index", str(tiny_folder), "--skip-validation", "--device", "cpu", "--json"]
    result = runner.invoke(app, [*arguments, "--max-memory", str(budget)])
    assert result.exit_code == 0, result.output
    assert '"layer": 1' in result.stdout and '"row": 10' in result.stdout and '"col": 20' in result.stdout
    # the engine is not part of the run key: the same settings with the memory engine find that run
    again = runner.invoke(app, [*arguments, "--engine", "memory"])
    assert again.exit_code == 0 and "already indexed" in again.output
    # validation streams too (the layer-major suite): a run with validation under the same budget
    validated = runner.invoke(
        app,
        [
            *["index", str(tiny_folder), "--device", "cpu", "--engine", "streamed", "--json"],
            *["--experiments", "joint", "--max-tokens", "256", "--skip-quantization"],
        ],
    )
    assert validated.exit_code == 0, validated.output
    assert "(streamed engine)" in validated.output and "variant state(s)" in validated.output
    assert json.loads(validated.stdout)["timings"]["validate"] > 0
    bad = runner.invoke(app, [*arguments, "--engine", "disk"])
    assert bad.exit_code != 0 and "invalid option" in bad.output
