"""Queue overhead: submission -> catalog entry through Redis, a Celery worker and PostgreSQL, against the same
work (load, detect, validate) called directly in this process, in the same run.

    .venv/bin/python benchmarks/pipeline.py [--repeats 3] [--max-tokens 512]

Needs PostgreSQL (a throw-away database is created next to $SWI_TEST_POSTGRES_URL) and Redis
($SWI_TEST_REDIS_URL), and the demo model (scripts/fetch_model.py). The worker is started once and is
ready before the clock starts (steady state); each job runs in a freshly forked process as in production.
Target: queue path - direct <= max(10% of direct, 2 s).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from catalog import migrate  # noqa: E402
from catalog.db import make_engine, make_session_factory  # noqa: E402
from catalog.models import Job  # noqa: E402
from catalog.repositories import JobRepository  # noqa: E402
from contracts.identifiers import local_model_id  # noqa: E402
from contracts.jobs import JobConfig  # noqa: E402
from tests.postgres import temporary_postgres_database, truncate_all  # noqa: E402
from workers.enqueue import CeleryEnqueuer  # noqa: E402
from workers.settings import WorkerSettings  # noqa: E402
from workers.sources import content_digest  # noqa: E402

POSTGRES_ADMIN_URL = os.environ.get(
    "SWI_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("SWI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
EXPERIMENTS = ["baseline", "joint", "alone", "restore_sa"]


def direct(model_path: Path, config: JobConfig) -> float:
    """Seconds for the indexer calls a job makes, in this process (no catalog, no queue)."""
    from indexer.detection.detect import DetectConfig, detect
    from indexer.model.loading import LoadOptions, load_model
    from indexer.validation.corpus import load_corpus
    from indexer.validation.validate import ValidateConfig, validate

    started = time.perf_counter()
    loaded = load_model(str(model_path), options=LoadOptions(device="cpu"))
    detection = detect(loaded, DetectConfig())
    validate(
        loaded,
        detection,
        load_corpus("builtin"),
        ValidateConfig(experiments=tuple(EXPERIMENTS), max_tokens=config.max_tokens, window=config.window),
    )
    return time.perf_counter() - started


def queued(sessions: object, settings: WorkerSettings, model_path: Path, config: JobConfig) -> float:
    """Seconds from the submission's commit to the job's `succeeded` (catalog entry written)."""
    factory = sessions  # a sessionmaker
    started = time.perf_counter()
    with factory() as session:  # type: ignore[operator]
        outcome = JobRepository(session).submit(
            model=local_model_id(model_path),
            config=config.as_config(),
            resolved_sha=content_digest(model_path),
        )
        session.commit()
        job_id = outcome.job.id
    CeleryEnqueuer(settings)(job_id)
    while True:
        with factory() as session:  # type: ignore[operator]
            job = session.get(Job, job_id)
            if job.status in ("succeeded", "failed"):
                assert job.status == "succeeded", job.last_error
                return time.perf_counter() - started
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--window", type=int, default=256)
    args = parser.parse_args()

    from indexer.model.demo_model import fetch_demo_model

    model_path = fetch_demo_model(quiet=True)
    config = JobConfig(
        max_tokens=args.max_tokens,
        window=args.window,
        experiments=tuple(EXPERIMENTS),
        quantization_checks=False,
        source_path=str(model_path),
    )
    import torch  # noqa: F401  (the worker parent preloads it too: neither side pays the import)

    prefix = f"swi-bench-{uuid.uuid4().hex[:8]}-"
    with (
        temporary_postgres_database(POSTGRES_ADMIN_URL, prefix="swi_bench") as url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        migrate.upgrade(url)
        settings = WorkerSettings(
            database_url=url, broker_url=REDIS_URL, queue_prefix=prefix, auto_migrate=False
        )
        env = {
            **os.environ,
            "SWI_DATABASE_URL": url,
            "SWI_BROKER_URL": REDIS_URL,
            "SWI_QUEUE_PREFIX": prefix,
            "SWI_ALLOW_LOCAL_MODELS": "true",
            "SWI_DEVICE": "cpu",
            "SWI_HEARTBEAT_INTERVAL_S": "5",
        }
        log = Path(tmp) / "worker.log"
        with log.open("wb") as handle:
            worker = subprocess.Popen(
                [sys.executable, "-m", "swi", "worker", "--concurrency", "1", "--device", "cpu"],
                cwd=REPO_ROOT,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        engine = make_engine(url)
        sessions = make_session_factory(engine)
        try:
            deadline = time.monotonic() + 300
            while " ready." not in log.read_text(errors="replace"):
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the worker did not start:\n{log.read_text()[-2000:]}")
                time.sleep(0.2)
            print(
                f"SmolLM2 GGUF, CPU, experiments {','.join(EXPERIMENTS)}, {args.max_tokens} tokens, "
                f"window {args.window}; {args.repeats} repeats, alternating"
            )
            direct(model_path, config)  # warm-up: page cache, the dequantized safetensors copy
            direct_times, queue_times = [], []
            for repeat in range(args.repeats):
                truncate_all(url)  # a fresh catalog: the idempotency shortcut must not answer
                queue_times.append(queued(sessions, settings, model_path, config))
                direct_times.append(direct(model_path, config))
                print(
                    f"  repeat {repeat + 1}: queue {queue_times[-1]:.2f} s, direct {direct_times[-1]:.2f} s"
                )
        finally:
            engine.dispose()
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(60)
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            stale = list(client.scan_iter(f"{prefix}*"))
            if stale:
                client.delete(*stale)
            client.close()
    d, q = statistics.median(direct_times), statistics.median(queue_times)
    overhead = q - d
    target = max(0.10 * d, 2.0)
    print(f"median direct {d:.2f} s, median queue path {q:.2f} s")
    print(
        f"overhead {overhead:+.2f} s = {100 * overhead / d:+.1f}% (ratio {q / d:.3f}); "
        f"target <= {target:.2f} s: {'met' if overhead <= target else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
