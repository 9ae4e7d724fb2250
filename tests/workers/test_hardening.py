"""Hardening against a bad network and bad input on the pipeline side: a hung broker never holds a
submission (the outbox sends it later, each job runs once); a submitted hub id never reveals the worker's
file system; an error of an earlier attempt does not outlive a success."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from api.app import create_app
from api.settings import ApiSettings
from catalog import migrate
from catalog.models import IndexRun, Job
from catalog.repositories import ApiKeyRepository
from catalog.services import Submission, SubmissionService
from tests.live_server import served
from tests.workers.conftest import DETECT_ONLY, TINY_REPO, Services, WorkerProcess
from workers.embedded import run_to_completion
from workers.enqueue import CeleryEnqueuer, ping_broker
from workers.runtime import pipeline_context
from workers.settings import WorkerSettings

#: what a submission may take with the broker hung: the send's bound (2 s) plus a loaded CI machine's slack
SUBMISSION_BOUND_S = 15.0


@contextmanager
def hung_broker() -> Iterator[str]:
    """A TCP listener that accepts connections and never answers a byte; yields a redis:// URL to it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(256)
    server.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    finally:
        stop.set()
        thread.join(2)
        for connection in held:
            connection.close()
        server.close()


def test_a_hung_broker_never_holds_a_submission_and_the_outbox_sends_each_job_once(
    services: Services, start_worker: Callable[..., WorkerProcess]
) -> None:
    with hung_broker() as hung_url:
        settings = services.settings.model_copy(update={"broker_url": hung_url, "enqueue_timeout_s": 2.0})
        hung = settings.model_copy(update={"broker_timeout_s": 1.0})
        app = create_app(
            ApiSettings.of(settings).model_copy(update={"rate_limit_submissions": 1000}),
            enqueuer=CeleryEnqueuer(hung),
            broker_ping=lambda: ping_broker(hung_url, 1.0),
        )
        with services.sessions() as session:
            _, key = ApiKeyRepository(session).create("hung-broker", ["submit"])
            session.commit()
        with served(app, start_timeout_s=15) as url:
            # 50 concurrent submissions of 5 distinct jobs (the tiny model, five thresholds)
            barrier = threading.Barrier(50)
            latencies: list[float] = []
            statuses: list[int] = []
            reads: list[float] = []
            done = threading.Event()

            def submit(index: int) -> None:
                options = {**DETECT_ONLY, "z_threshold": 3.0 + index % 5}
                with httpx.Client(base_url=url, timeout=60) as client:
                    barrier.wait()
                    started = time.perf_counter()
                    response = client.post(
                        "/v1/submissions",
                        json={"model": TINY_REPO, "options": options},
                        headers={"Authorization": f"Bearer {key}"},
                    )
                    latencies.append(time.perf_counter() - started)
                    statuses.append(response.status_code)

            def read() -> None:
                with httpx.Client(base_url=url, timeout=60) as client:
                    while not done.is_set():
                        started = time.perf_counter()
                        assert client.get("/v1/models").status_code == 200
                        reads.append(time.perf_counter() - started)
                        time.sleep(0.05)

            reader = threading.Thread(target=read)
            reader.start()
            threads = [threading.Thread(target=submit, args=(i,)) for i in range(50)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            done.set()
            reader.join()
            assert statuses == [202] * 50
            assert max(latencies) < SUBMISSION_BOUND_S, sorted(latencies)[-5:]
            assert reads and max(reads) < SUBMISSION_BOUND_S, sorted(reads)[-5:]

            started = time.perf_counter()
            ready = httpx.get(f"{url}/readyz", timeout=30)
            assert ready.status_code == 503 and time.perf_counter() - started < 10
            assert ready.headers["content-type"] == "application/problem+json"
            assert "broker: unreachable" in ready.json()["detail"]

    # the broker "comes back": a worker on the real one sweeps the outbox and runs every job once
    with services.sessions() as session:
        jobs = list(session.scalars(select(Job)))
        assert len(jobs) == 5 and all(job.enqueued_at is None for job in jobs)
        ids = [job.id for job in jobs]
    start_worker()
    for job_id in ids:
        job = services.wait_done(job_id, timeout=180)
        assert (job.status, job.attempts) == ("succeeded", 1), job.last_error
    with services.sessions() as session:
        assert session.query(IndexRun).count() == 5


@pytest.mark.parametrize(
    "model", ["tests/workers", "tests/no-such-folder", "org/model.gguf", "tests/conftest.py"]
)
def test_a_submitted_hub_id_never_reveals_the_worker_file_system(
    model: str, tmp_path: Path, hub_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the worker runs in the repository root, where `tests/workers` is a folder and `tests/conftest.py` a file
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    url = f"sqlite+pysqlite:///{tmp_path / 'catalog.db'}"
    migrate.upgrade(url)
    settings = WorkerSettings(database_url=url, device="cpu", hub_cache_dir=str(hub_env), broker_url=None)
    context = pipeline_context(settings)
    result = SubmissionService(context.sessions).submit(Submission(model=model, config=DETECT_ONLY))
    assert result.job is not None
    outcome = run_to_completion(result.job.id, context, sleep=lambda _s: None)
    job = SubmissionService(context.sessions).job(result.job.id)
    assert outcome.status == "failed" and job.last_error is not None
    error = job.last_error
    # the same words whether or not a file or folder of that name exists on the worker
    assert error == (
        f"resolve: {model}@main is not available: not on the hub, private (set HF_TOKEN on workers), "
        "or not in the cache of an offline worker"
    )
