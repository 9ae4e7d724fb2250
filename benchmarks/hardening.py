"""Three hardening figures of the API, measured on real PostgreSQL against the served app.

1. A hung broker (a TCP listener that accepts and never answers) behind the Celery enqueuer: the latency of
   `--hung` concurrent submissions (median, max, how many ran past the client's `--timeout`), a read route's
   latency meanwhile, and what `/readyz` says.
2. NUL bytes (and a lone surrogate) in text inputs of every kind: the status of each request.
3. `--burst` concurrent submissions with one key whose limit is `--limit` per hour: how many were accepted.

It uses only what the app has long offered (`create_app(settings, enqueuer=...)`, `CeleryEnqueuer`), so the
same script measures an older tree too: `PYTHONPATH=<that tree> .venv/bin/python benchmarks/hardening.py`.

    .venv/bin/python benchmarks/hardening.py [--hung 50] [--burst 60] [--limit 30] [--timeout 20]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# this folder holds benchmarks/api.py, which would shadow the `api` package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

ADMIN_URL = os.environ.get("SWI_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextmanager
def hung_listener() -> Iterator[str]:
    """A TCP listener that accepts connections and never answers; yields a redis:// URL to it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(512)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            held.append(connection)  # never read, never answered

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


@contextmanager
def database() -> Iterator[str]:
    """A fresh migrated and seeded PostgreSQL database."""
    from catalog import migrate
    from catalog.db import make_engine, make_session_factory
    from catalog.seed import load_seed

    try:
        from tests.postgres import temporary_postgres_database
    except ImportError:  # an older tree
        from catalog.testing import temporary_postgres_database  # type: ignore[no-redef]

    with temporary_postgres_database(ADMIN_URL, prefix="swi_bench_hardening") as url:
        migrate.upgrade(url)
        engine = make_engine(url)
        with make_session_factory(engine)() as session:
            load_seed(session)
            session.commit()
        engine.dispose()
        yield url


def make_key(url: str) -> str:
    """A fresh API key with the submit scope."""
    from catalog.db import make_engine, make_session_factory
    from catalog.repositories import ApiKeyRepository

    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            _, secret = ApiKeyRepository(session).create("bench", ["submit"])
            session.commit()
            return secret
    finally:
        engine.dispose()


@contextmanager
def served(url: str, limit: int, broker_url: str | None) -> Iterator[str]:
    """The app on `url` (Celery enqueuer on `broker_url` when given), served by uvicorn in a thread."""
    from api.app import create_app
    from api.settings import ApiSettings
    from tests.live_server import served as serve

    settings = ApiSettings(
        database_url=url,
        broker_url=broker_url,
        rate_limit_submissions=limit,
        rate_limit_window_s=3600,
        auto_migrate=False,
    )
    enqueuer = None
    if broker_url is not None:
        from workers.enqueue import CeleryEnqueuer
        from workers.settings import WorkerSettings

        worker_settings = WorkerSettings(database_url=url, broker_url=broker_url, auto_migrate=False)
        enqueuer = CeleryEnqueuer(worker_settings)
    with serve(create_app(settings, enqueuer=enqueuer), start_timeout_s=20) as base:
        yield base


def concurrently(count: int, call: Callable[[int], Any]) -> list[Any]:
    """`call(i)` for i in range(count), all started at once (a barrier), in threads."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        results[index] = call(index)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def nul_statuses(base: str, key: str) -> dict[str, int | str]:
    """The status of each request with a NUL (or a lone surrogate) in a text input."""
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, timeout=10) as client:
        model = client.get("/v1/models", params={"limit": 1}).json()["items"][0]["id"]
        requests: dict[str, Callable[[], httpx.Response]] = {
            "GET /v1/models?q=%00": lambda: client.get("/v1/models?q=%00"),
            "GET /v1/models?architecture=%00": lambda: client.get("/v1/models?architecture=%00"),
            "GET /v1/models?family=%00": lambda: client.get("/v1/models?family=%00"),
            "GET /?q=%00": lambda: client.get("/?q=%00"),
            "GET /models/M?revision=a%00": lambda: client.get(f"/models/{model}?revision=a%00"),
            "GET /v1/models/M/super-weights?revision=a%00": lambda: client.get(
                f"/v1/models/{model}/super-weights?revision=a%00"
            ),
            "POST /v1/submissions prompt \\u0000": lambda: client.post(
                "/v1/submissions",
                content=json.dumps({"model": "org/nul", "options": {"prompt": "a\u0000b"}}),
                headers={**auth, "Content-Type": "application/json"},
            ),
            "POST /v1/submissions prompt \\ud800": lambda: client.post(
                "/v1/submissions",
                content=json.dumps({"model": "org/surrogate", "options": {"prompt": "a\ud800b"}}),
                headers={**auth, "Content-Type": "application/json"},
            ),
            "POST /jobs/new prompt %00": lambda: client.post(
                "/jobs/new",
                content=b"model=org%2Fform&prompt=a%00b&api_key=" + key.encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            ),
        }
        statuses: dict[str, int | str] = {}
        for name, request in requests.items():
            try:
                statuses[name] = request().status_code
            except httpx.HTTPError as exc:
                statuses[name] = type(exc).__name__
        return statuses


def rate_limit_burst(base: str, key: str, burst: int) -> int:
    """How many of `burst` concurrent submissions (distinct models, one key) were accepted."""

    def submit(index: int) -> int:
        with httpx.Client(base_url=base, timeout=60) as client:
            response = client.post(
                "/v1/submissions",
                json={"model": f"org/burst-{index}"},
                headers={"Authorization": f"Bearer {key}"},
            )
            return response.status_code

    statuses = concurrently(burst, submit)
    return sum(1 for status in statuses if status in (200, 202))


def hung_broker(base: str, key: str, count: int, timeout_s: float, tag: str) -> dict[str, Any]:
    """Latency of `count` concurrent submissions (distinct models), a read route's latency meanwhile."""
    reads: list[float] = []
    done = threading.Event()

    def read_meanwhile() -> None:
        with httpx.Client(base_url=base, timeout=timeout_s) as client:
            while not done.is_set():
                started = time.perf_counter()
                try:
                    client.get("/v1/models", params={"q": f"x{len(reads)}"})
                    reads.append(time.perf_counter() - started)
                except httpx.HTTPError:
                    reads.append(float("inf"))
                time.sleep(0.1)

    def submit(index: int) -> float:
        started = time.perf_counter()
        try:
            with httpx.Client(base_url=base, timeout=timeout_s) as client:
                client.post(
                    "/v1/submissions",
                    json={"model": f"org/{tag}-{index}"},
                    headers={"Authorization": f"Bearer {key}"},
                )
        except httpx.HTTPError:
            return float("inf")
        return time.perf_counter() - started

    reader = threading.Thread(target=read_meanwhile, daemon=True)
    reader.start()
    latencies = concurrently(count, submit)
    done.set()
    reader.join(timeout_s + 1)
    with httpx.Client(base_url=base, timeout=timeout_s) as client:
        started = time.perf_counter()
        try:
            ready: int | str = client.get("/readyz").status_code
        except httpx.HTTPError as exc:
            ready = type(exc).__name__
        ready_s = time.perf_counter() - started
    finite = [s for s in latencies if s != float("inf")]
    finite_reads = [s for s in reads if s != float("inf")]
    return {
        "submissions": count,
        "answered": len(finite),
        "timed_out": count - len(finite),
        "median_s": round(statistics.median(latencies), 3) if finite else None,
        "max_s": round(max(latencies), 3) if finite and len(finite) == count else f">{timeout_s}",
        "read_p50_s": round(statistics.median(finite_reads), 3) if finite_reads else None,
        "read_max_s": round(max(reads), 3) if reads else None,
        "readyz": ready,
        "readyz_s": round(ready_s, 3),
    }


def main() -> None:
    """Measure the three figures and print them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hung", type=int, default=50, help="Concurrent submissions, broker hung.")
    parser.add_argument("--burst", type=int, default=60, help="Concurrent submissions with one key.")
    parser.add_argument("--limit", type=int, default=30, help="The key's submissions per hour.")
    parser.add_argument("--timeout", type=float, default=20.0, help="The client's timeout (seconds).")
    args = parser.parse_args()
    figures: dict[str, Any] = {}
    with database() as url:
        with served(url, 10 * args.hung, broker_url=None) as base:
            figures["baseline_no_broker"] = hung_broker(base, make_key(url), args.hung, args.timeout, "base")
        with served(url, args.limit, broker_url=None) as base:
            figures["nul"] = nul_statuses(base, make_key(url))
            figures["rate_limit"] = {
                "burst": args.burst,
                "limit": args.limit,
                "accepted": rate_limit_burst(base, make_key(url), args.burst),
            }
        with hung_listener() as broker_url, served(url, 10 * args.hung, broker_url) as base:
            figures["hung_broker"] = hung_broker(base, make_key(url), args.hung, args.timeout, "hung")
            baseline, hung = figures["baseline_no_broker"]["median_s"], figures["hung_broker"]["median_s"]
            if baseline and hung:
                figures["hung_over_baseline_median"] = round(hung / baseline, 2)
            print(json.dumps(figures, indent=2), flush=True)
    # threads of an old tree may still wait on the hung broker: do not wait for them
    os._exit(0)


if __name__ == "__main__":
    main()
