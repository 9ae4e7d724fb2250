"""Fixtures of the pipeline tests: a tiny planted model in a local hub cache, real PostgreSQL, Redis and
Celery worker subprocesses (each in its own process group, so SIGKILL takes the whole worker down)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy.orm import Session

from api.app import create_app
from catalog.db import make_engine, make_session_factory
from catalog.models import Job
from catalog.repositories import ApiKeyRepository
from tests.indexer.model.test_loading import build_hub_cache, save_tiny
from tests.live_server import served
from tests.postgres import migrated_database, truncate_all
from workers.enqueue import Enqueuer
from workers.settings import WorkerSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("SWI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TINY_REPO = "acme/tiny"
TINY_SHA = "1" * 40
#: detection only: the fastest job (a second or two on the tiny model)
DETECT_ONLY = {"validate": False, "quantization_checks": False}
#: a closed loopback port: a broker that is down
DEAD_BROKER_URL = "redis://127.0.0.1:9/0"
#: how fast the test workers heartbeat, sweep and retry (seconds)
FAST_TIMINGS = {
    "SWI_HEARTBEAT_INTERVAL_S": "0.5",
    "SWI_STALE_AFTER_S": "4",
    "SWI_SWEEP_INTERVAL_S": "1",
    "SWI_ENQUEUE_GRACE_S": "1",
    "SWI_RETRY_BACKOFF_S": "0.5",
    "SWI_RETRY_BACKOFF_MAX_S": "2",
}


@pytest.fixture(scope="session")
def tiny_hub_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hugging Face cache holding `acme/tiny` (planted at (1, 10, 20)) at `main` = TINY_SHA."""
    cache = tmp_path_factory.mktemp("hf-cache")
    folder = save_tiny(tmp_path_factory.mktemp("tiny-src"))
    build_hub_cache(cache, TINY_REPO, {TINY_SHA: folder}, {"main": TINY_SHA})
    return cache


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny planted model as a local folder."""
    return save_tiny(tmp_path_factory.mktemp("tiny-local") / "tiny-llama")


@pytest.fixture
def hub_env(tiny_hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process reads hub models from the tiny cache, offline."""
    monkeypatch.setenv("SWI_HUB_CACHE_DIR", str(tiny_hub_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tiny_hub_cache


@pytest.fixture(scope="session")
def workers_pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database at the newest schema for the pipeline tests."""
    with migrated_database("swi_workers") as url:
        yield url


@pytest.fixture
def pg_url(workers_pg_url: str) -> str:
    """The session database, emptied before the test."""
    truncate_all(workers_pg_url)
    return workers_pg_url


@pytest.fixture
def queue_prefix() -> Iterator[str]:
    """Queue names and Redis keys of this test only; the keys are deleted afterwards."""
    prefix = f"swi-test-{uuid.uuid4().hex[:10]}-"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@dataclass
class Services:
    """Settings pointing at the test database and broker, and a session factory on the database."""

    settings: WorkerSettings
    env: dict[str, str]
    sessions: Callable[[], Session]

    def job(self, job_id: uuid.UUID | str) -> Job:
        """The job row, fresh from the database."""
        with self.sessions() as session:
            job = session.get(Job, uuid.UUID(str(job_id)))
            assert job is not None
            return job

    def wait_for(
        self, job_id: uuid.UUID | str, predicate: Callable[[Job], bool], timeout: float = 90.0
    ) -> Job:
        """Poll the job row until `predicate` holds."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if predicate(job):
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; job is {job.status}/{job.phase}, error {job.last_error!r}")
            time.sleep(0.2)

    def wait_done(self, job_id: uuid.UUID | str, timeout: float = 90.0) -> Job:
        """Poll until the job ends."""
        return self.wait_for(job_id, lambda j: j.status in ("succeeded", "failed", "cancelled"), timeout)


@pytest.fixture
def services(pg_url: str, queue_prefix: str, tiny_hub_cache: Path) -> Iterator[Services]:
    """Settings and environment of the workers, the API and the submitting side of one test."""
    env = {
        "SWI_DATABASE_URL": pg_url,
        "SWI_BROKER_URL": REDIS_URL,
        "SWI_QUEUE_PREFIX": queue_prefix,
        "SWI_DEVICE": "cpu",
        "HF_HUB_CACHE": str(tiny_hub_cache),
        "HF_HUB_OFFLINE": "1",
        **FAST_TIMINGS,
    }
    settings = WorkerSettings(
        database_url=pg_url,
        broker_url=REDIS_URL,
        queue_prefix=queue_prefix,
        auto_migrate=False,
        enqueue_grace_s=1,
        job_max_attempts=3,
    )
    engine = make_engine(pg_url, pool_size=4)
    yield Services(settings=settings, env=env, sessions=make_session_factory(engine))
    engine.dispose()


@dataclass
class WorkerProcess:
    """A `swi worker` subprocess, leader of its own process group."""

    process: subprocess.Popen[bytes]
    log: Path
    killed: bool = field(default=False)

    def text(self) -> str:
        """The worker's log so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until Celery says the worker is ready."""
        deadline = time.monotonic() + timeout
        while " ready." not in self.text():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the worker exited with {self.process.returncode}:\n{self.text()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start:\n{self.text()[-3000:]}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL the whole worker (parent and forked job processes), like a crashed machine."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        self.killed = True

    def stop(self) -> None:
        """Warm shutdown, then SIGKILL if it lingers."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


@pytest.fixture
def start_worker(services: Services, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start `swi worker` subprocesses (or `python -m entry worker`) with extra environment; all are stopped
    after the test."""
    started: list[WorkerProcess] = []

    def start(wait: bool = True, entry: str = "swi", **extra_env: str) -> WorkerProcess:
        log = tmp_path / f"worker-{len(started)}.log"
        env = {**os.environ, **services.env, **extra_env, "PYTHONUNBUFFERED": "1"}
        handle = log.open("wb")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                entry,
                "worker",
                "--queues",
                "gpu,default",
                "--concurrency",
                "1",
                "--device",
                "cpu",
                "--hostname",
                f"test{len(started)}-{uuid.uuid4().hex[:6]}@%h",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        handle.close()
        worker = WorkerProcess(process, log)
        started.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()


@dataclass
class Api:
    """The real API served over loopback HTTP, with a `submit` key."""

    url: str
    key: str

    def submit(self, model: str = TINY_REPO, options: dict[str, object] | None = None) -> httpx.Response:
        """POST /v1/submissions."""
        body = {"model": model, "options": DETECT_ONLY if options is None else options}
        headers = {"Authorization": f"Bearer {self.key}"}
        return httpx.post(f"{self.url}/v1/submissions", json=body, headers=headers, timeout=30)


@pytest.fixture
def serve_api(services: Services) -> Iterator[Callable[[Enqueuer], Api]]:
    """Serve `create_app(settings, enqueuer=...)` with uvicorn in a thread; stopped after the test."""
    with ExitStack() as servers:

        def serve(enqueuer: Enqueuer) -> Api:
            with services.sessions() as session:
                _, key = ApiKeyRepository(session).create("pipeline-tests", ["submit"])
                session.commit()
            app = create_app(services.settings, enqueuer=enqueuer)
            url = servers.enter_context(served(app, start_timeout_s=15, lifespan="auto"))
            return Api(url, key)

        yield serve
