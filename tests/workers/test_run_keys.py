"""Two keys per run, on real PostgreSQL: the request key answers a repeated submission, the run key keeps
every run whose effective settings differ.

A job that names no token budget gets the worker's (`SWI_DEFAULT_MAX_TOKENS_CPU` here): two workers with
different defaults make two runs of one request, both listed by the model API; a worker with the defaults of
the first finds the first run again; a repeated submission at a known revision is answered by the newest.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from catalog.models import IndexRun, Job
from catalog.services import Submission, SubmissionService
from catalog.settings import Settings
from contracts.jobs import JobConfig, request_key, versioned_run_config
from contracts.versions import RUN_VERSIONS
from tests.postgres import truncate_all
from tests.workers.conftest import TINY_REPO, TINY_SHA
from workers.pipeline import run_job
from workers.runtime import pipeline_context
from workers.settings import WorkerSettings

pytestmark = pytest.mark.services
#: validation that leaves the budget and the window to the worker (the fastest that measures anything)
OPTIONS = JobConfig(
    quantization_checks=False, corpus="builtin", experiments=("baseline", "joint")
).as_config()


@pytest.fixture
def worker_env(workers_pg_url: str, hub_env: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An emptied PostgreSQL catalog and a CPU worker whose default budget is 64 tokens."""
    truncate_all(workers_pg_url)
    monkeypatch.setenv("SWI_DATABASE_URL", workers_pg_url)
    monkeypatch.setenv("SWI_DEVICE", "cpu")
    monkeypatch.setenv("SWI_DEFAULT_MAX_TOKENS_CPU", "64")
    monkeypatch.delenv("SWI_BROKER_URL", raising=False)
    return workers_pg_url


def _index(revision: str | None = None) -> int | None:
    """Submit the request as the API does and run its job on a worker configured by the environment."""
    context = pipeline_context(WorkerSettings())
    result = SubmissionService(context.sessions).submit(
        Submission(model=TINY_REPO, config=OPTIONS, revision=revision)
    )
    if result.job is None or result.finished:
        return result.run_id
    outcome = run_job(result.job.id, context)
    assert outcome.status == "succeeded", outcome.error
    return outcome.run_id


def _runs(url: str) -> list[IndexRun]:
    with pipeline_context(WorkerSettings(database_url=url)).sessions() as session:
        return list(session.scalars(select(IndexRun).order_by(IndexRun.id)))


def _jobs(url: str) -> int:
    with pipeline_context(WorkerSettings(database_url=url)).sessions() as session:
        return session.scalar(select(func.count()).select_from(Job)) or 0


def test_a_rerun_with_the_same_effective_settings_is_the_same_run(worker_env: str) -> None:
    first = _index()  # no revision: the submission cannot look a run up, the worker does
    assert first is not None and _index() == first
    (run,) = _runs(worker_env)
    assert _jobs(worker_env) == 2
    assert run.request_key == request_key(versioned_run_config(OPTIONS, RUN_VERSIONS))
    assert run.settings is not None and run.config_hash != run.request_key
    validation = run.settings["validation"]
    assert (validation["max_tokens"], validation["window"]) == (64, 64)
    assert (
        run.settings["corpus"]["name"].startswith("builtin") and len(run.settings["corpus"]["sha256"]) == 64
    )
    assert (run.settings["device"], run.settings["dtype"]) == ("cpu", "float32")
    assert run.settings["versions"] == RUN_VERSIONS
    assert run.settings["detection"]["persistence"] == 0.5  # every detection setting, defaults included


def test_another_default_budget_stores_a_second_run_and_both_show(
    worker_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _index()
    monkeypatch.setenv("SWI_DEFAULT_MAX_TOKENS_CPU", "128")  # another worker's default
    second = _index()
    assert None not in (first, second) and first != second
    runs = _runs(worker_env)
    assert [r.id for r in runs] == [first, second]
    assert len({r.request_key for r in runs}) == 1 and len({r.config_hash for r in runs}) == 2
    assert [r.settings["validation"]["max_tokens"] for r in runs if r.settings] == [64, 128]
    monkeypatch.setenv("SWI_DEFAULT_MAX_TOKENS_CPU", "64")
    assert _index() == first  # the first worker's settings again: its run, nothing stored
    assert len(_runs(worker_env)) == 2

    app = create_app(Settings(database_url=worker_env), enqueuer=lambda _job: None)
    with TestClient(app) as client:
        listed = client.get(f"/v1/models/{TINY_REPO}").json()["runs"]
        report = client.get(f"/v1/runs/{second}").json()
    assert sorted(r["id"] for r in listed) == sorted([first, second])
    assert len({r["config_hash"] for r in listed}) == 2 and len({r["request_key"] for r in listed}) == 1
    assert report["settings"]["validation"]["max_tokens"] == 128
    assert report["request_key"] == runs[0].request_key and report["config_hash"] == runs[1].config_hash


def test_a_repeated_submission_is_answered_by_the_run_of_its_request(
    worker_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _index()
    jobs = _jobs(worker_env)
    # the revision is known at submission: the request key finds the run, no job is made
    assert _index(TINY_SHA) == first and _jobs(worker_env) == jobs
    monkeypatch.setenv("SWI_DEFAULT_MAX_TOKENS_CPU", "128")
    second = _index()
    assert second != first
    # whichever worker would run it, the request is answered by the newest run made for it
    assert _index(TINY_SHA) == second and _jobs(worker_env) == jobs + 1
    # another request (an explicit budget) is not answered by them: its job runs
    context = pipeline_context(WorkerSettings())
    other = SubmissionService(context.sessions).submit(
        Submission(model=TINY_REPO, config={**OPTIONS, "max_tokens": 128}, revision=TINY_SHA)
    )
    assert other.created and other.job is not None
    # and its worker resolves it to the settings of the second run: that run, not a third
    assert run_job(other.job.id, context).run_id == second
    assert len(_runs(worker_env)) == 2


def test_the_model_page_names_both_keys_and_what_the_worker_resolved(worker_env: str) -> None:
    run_id = _index()
    (run,) = _runs(worker_env)
    app = create_app(Settings(database_url=worker_env), enqueuer=lambda _job: None)
    with TestClient(app) as client:
        page = client.get(f"/models/{TINY_REPO}", params={"run": run_id}).text
    assert f"request key <code>{run.request_key[:12]}</code>" in page
    assert f"run key <code>{run.config_hash[:12]}</code>" in page
    assert "cpu, float32, 64 tokens in 64-token windows of builtin" in page
