"""The pipeline on real Redis, real PostgreSQL and real `swi worker` processes: nothing accepted is lost,
nothing is stored twice."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select

from catalog.models import IndexRun, Job, SuperWeight
from catalog.repositories import JobRepository
from tests.workers.conftest import DETECT_ONLY, TINY_REPO, TINY_SHA, Api, Services, WorkerProcess
from workers.enqueue import CeleryEnqueuer
from workers.settings import WorkerSettings

pytestmark = pytest.mark.services

StartWorker = Callable[..., WorkerProcess]
ServeApi = Callable[[Callable[[uuid.UUID], None]], Api]


def _counts(services: Services) -> tuple[int, int, int]:
    """(jobs, runs, measured super-weight rows) in the catalog."""
    with services.sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(Job)) or 0,
            session.scalar(select(func.count()).select_from(IndexRun)) or 0,
            session.scalar(
                select(func.count()).select_from(SuperWeight).where(SuperWeight.run_id.is_not(None))
            )
            or 0,
        )


def _live_members(group: int, timeout: float = 10.0) -> list[int]:
    """Processes of a process group that are still alive (zombies, dead but not yet reaped, excluded)."""
    deadline = time.monotonic() + timeout
    while True:
        live = []
        for entry in Path("/proc").iterdir():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == group and fields[0] != "Z":  # fields: state, ppid, pgrp, ...
                live.append(int(entry.name))
        if not live or time.monotonic() > deadline:
            return live
        time.sleep(0.1)


def _submit(services: Services, model: str = TINY_REPO, **config: object) -> uuid.UUID:
    """Commit a job the way the API does, then send it."""
    with services.sessions() as session:
        outcome = JobRepository(session).submit(
            model=model, config={**DETECT_ONLY, **config}, max_attempts=services.settings.job_max_attempts
        )
        session.commit()
        assert outcome.job is not None
        job_id = outcome.job.id
    CeleryEnqueuer(services.settings)(job_id)
    return job_id


def test_a_submission_becomes_a_catalog_entry(
    services: Services, start_worker: StartWorker, serve_api: ServeApi
) -> None:
    worker = start_worker()
    assert "CUDA not initialised" in worker.text()  # torch preloaded in the parent, CUDA untouched
    api = serve_api(CeleryEnqueuer(services.settings))
    response = api.submit()
    assert response.status_code == 202, response.text
    job_id = response.json()["job"]["id"]

    job = services.wait_done(job_id)
    assert (job.status, job.phase, job.progress, job.attempts) == ("succeeded", "stored", 1.0, 1)
    assert job.resolved_sha == TINY_SHA
    with services.sessions() as session:
        weights = session.scalars(select(SuperWeight).where(SuperWeight.run_id == job.run_id)).all()
        assert [(w.layer, w.row, w.col, w.status) for w in weights] == [(1, 10, 20, "candidate")]
        run = session.get(IndexRun, job.run_id)
        assert run is not None and set(run.timings) >= {"resolve", "load", "detect", "store"}

    # the same model and options again: `main` resolves to the same sha on the worker, which then links
    # the new job to the existing run instead of indexing twice
    again = api.submit()
    assert again.status_code == 202, again.text
    repeat = services.wait_done(again.json()["job"]["id"])
    assert (repeat.status, repeat.run_id) == ("succeeded", job.run_id)
    assert _counts(services) == (2, 1, 1)


def test_a_killed_worker_s_job_completes_once_on_a_new_worker(
    services: Services, start_worker: StartWorker
) -> None:
    slow = start_worker(SWI_TESTING_DELAY_PHASE="detect", SWI_TESTING_DELAY_S="600")
    job_id = _submit(services)
    services.wait_for(job_id, lambda j: j.phase == "detect", timeout=120)
    slow.kill()  # parent and the forked job process, mid-job
    assert _live_members(slow.process.pid) == [], "an orphaned job process would finish the job behind us"
    assert services.job(job_id).status == "running"

    start_worker()  # its sweeper sees the stale heartbeat, re-queues and sends the job
    job = services.wait_done(job_id, timeout=120)
    assert job.status == "succeeded", job.last_error
    assert job.attempts == 2
    assert _counts(services) == (1, 1, 1)


def test_identical_submissions_and_duplicate_messages_give_one_run(
    services: Services, start_worker: StartWorker, serve_api: ServeApi
) -> None:
    worker = start_worker()
    api = serve_api(CeleryEnqueuer(services.settings))
    barrier = threading.Barrier(2)
    responses: list[dict[str, object]] = []

    def submit() -> None:
        barrier.wait()
        responses.append(api.submit().json())

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    ids = {r["job"]["id"] for r in responses}  # type: ignore[index]
    assert len(ids) == 1, responses
    job_id = ids.pop()

    enqueue = CeleryEnqueuer(services.settings)
    enqueue(uuid.UUID(job_id))  # the broker delivers the same message twice more
    enqueue(uuid.UUID(job_id))
    job = services.wait_done(job_id)
    assert job.status == "succeeded" and job.attempts == 1
    deadline = time.monotonic() + 60
    while worker.text().count(f"job {job_id}: skipped") < 2:
        assert time.monotonic() < deadline, worker.text()[-3000:]
        time.sleep(0.2)
    assert _counts(services) == (1, 1, 1)
    assert services.job(job_id).attempts == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A private redis-server on its own port, to take the broker down and bring it back."""

    def __init__(self, port: int):
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is needed (it runs the test broker)"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


def test_a_broker_outage_loses_no_submission(
    services: Services, start_worker: StartWorker, serve_api: ServeApi
) -> None:
    broker = RedisServer(_free_port())
    broker_url = f"redis://127.0.0.1:{broker.port}/0"
    broker.start()
    try:
        settings = WorkerSettings(**{**services.settings.model_dump(), "broker_url": broker_url})
        api = serve_api(CeleryEnqueuer(settings))
        broker.stop()  # the broker goes down before the submission arrives

        started = time.monotonic()
        response = api.submit()
        assert response.status_code == 202, response.text
        assert time.monotonic() - started < 10
        job = services.job(response.json()["job"]["id"])
        assert (job.status, job.enqueued_at) == ("queued", None)  # kept in the catalog, not sent

        broker.start()  # back: a worker's sweeper sends what was never sent
        start_worker(SWI_BROKER_URL=broker_url)
        done = services.wait_done(job.id)
        assert done.status == "succeeded" and done.attempts == 1
        assert _counts(services) == (1, 1, 1)
    finally:
        broker.stop()


def test_a_permanent_failure_fails_at_once_with_a_readable_error(
    services: Services, start_worker: StartWorker
) -> None:
    start_worker()
    job = services.wait_done(_submit(services, model="acme/missing"))
    assert (job.status, job.attempts, job.run_id) == ("failed", 1, None)
    assert job.last_error is not None
    assert job.last_error.startswith("resolve: acme/missing@main is not") and "cache" in job.last_error
    assert _counts(services) == (1, 0, 0)


def test_transient_failures_retry_with_backoff_until_out_of_attempts(
    services: Services, start_worker: StartWorker
) -> None:
    start_worker(entry="tests.workers.flaky_worker", SWI_TEST_TRANSIENT_FAILURES="2")  # 2 attempts fail
    recovers = _submit(services)  # three attempts: succeeds on the third
    with services.sessions() as session:  # two attempts only: keeps failing
        outcome = JobRepository(session).submit(
            model=TINY_REPO, config={**DETECT_ONLY, "z_threshold": 3.5}, max_attempts=2
        )
        session.commit()
        assert outcome.job is not None
        exhausted = outcome.job.id
    CeleryEnqueuer(services.settings)(exhausted)

    job = services.wait_done(recovers)
    assert (job.status, job.attempts) == ("succeeded", 3)
    assert job.last_error is None  # cleared on success: the retries' errors no longer apply
    failed = services.wait_done(exhausted)
    assert (failed.status, failed.attempts, failed.run_id) == ("failed", 2, None)
    assert failed.last_error is not None and failed.last_error.startswith("load: testing: injected")
    assert _counts(services)[1] == 1
