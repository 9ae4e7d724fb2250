"""Coordinate lookup under load vs a bare FastAPI constant endpoint; lookup at 1,000 vs 100,000 models.

Both apps are served the same way (uvicorn, one process, loopback); 32 keep-alive HTTP/1.1 clients run in
this process. Prints throughput and p50/p99 latency, and the ratios the targets are stated in:
throughput ratio >= 0.5 and p99 < 50 ms on 2 cores; lookup p50 at 100,000 models within 1.5x of 1,000.

    .venv/bin/python benchmarks/api.py [--clients 32] [--duration 8] [--small 1000] [--large 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_catalog(url: str, models: int) -> list[str]:
    """A migrated SQLite catalog with `models` models, each with one run and two super weights."""
    from sqlalchemy import insert

    from catalog import migrate
    from catalog.db import make_engine
    from catalog.models import CatalogModel, IndexRun, Revision, SuperWeight, utcnow

    migrate.upgrade(url)
    engine = make_engine(url)
    now = utcnow()
    ids = [f"org{i % 997}/model-{i}" for i in range(models)]
    chunk = 20_000
    with engine.begin() as connection:
        for start in range(0, models, chunk):
            block = range(start, min(models, start + chunk))
            connection.execute(
                insert(CatalogModel),
                [
                    {
                        "id": i + 1,
                        "hub_id": ids[i],
                        "org": ids[i].split("/")[0],
                        "name": ids[i].split("/")[1],
                        "model_type": "llama",
                        "family": "Bench",
                        "source_kind": "hub",
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in block
                ],
            )
            connection.execute(
                insert(Revision),
                [
                    {
                        "id": i + 1,
                        "model_id": i + 1,
                        "sha": f"{i:040x}",
                        "resolved_from": "main",
                        "resolved_at": now,
                    }
                    for i in block
                ],
            )
            connection.execute(
                insert(IndexRun),
                [
                    {
                        "id": i + 1,
                        "model_id": i + 1,
                        "revision_id": i + 1,
                        "status": "succeeded",
                        "config": {},
                        "config_hash": "0" * 64,
                        "provenance": {"detector_version": "1.0.0"},
                        "profile_removed": [],
                        "timings": {},
                        "created_at": now,
                        "finished_at": now,
                    }
                    for i in block
                ],
            )
            connection.execute(
                insert(SuperWeight),
                [
                    {
                        "model_id": i + 1,
                        "run_id": i + 1,
                        "layer": 1 + k,
                        "row": 100 + i % 4000,
                        "col": 7000 + k,
                        "status": "confirmed",
                        "value": -1.5,
                        "dtype": "float16",
                        "hf_tensor": f"model.layers.{1 + k}.mlp.down_proj.weight",
                        "gguf_tensor": f"blk.{1 + k}.ffn_down.weight",
                        "gguf_index": [7000 + k, 100 + i % 4000],
                        "input_activation": 40.0,
                        "output_activation": -900.0,
                        "token": 0,
                        "magnitude_rank": 1,
                        "iteration": k,
                        "created_at": now,
                    }
                    for i in block
                    for k in range(2)
                ],
            )
    engine.dispose()
    return ids


def serve(kind: str, database_url: str, port: int, cache_entries: int) -> None:
    """Run one app under uvicorn (called in a child process)."""
    import uvicorn
    from fastapi import FastAPI

    if kind == "bare":
        app = FastAPI()

        @app.get("/constant")
        async def constant() -> dict[str, str]:
            return {"status": "ok"}

    else:
        from api.app import create_app
        from catalog.settings import Settings

        settings = Settings(
            database_url=database_url, auto_migrate=False, response_cache_entries=cache_entries
        )
        app = create_app(settings)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A uvicorn child process serving one app."""

    def __init__(self, kind: str, database_url: str = "", cache_entries: int = 4096):
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                kind,
                "--database-url",
                database_url,
                "--port",
                str(self.port),
                "--cache-entries",
                str(cache_entries),
            ],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"the {kind} server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@dataclass
class Figures:
    """Throughput and latency of one load run."""

    requests: int
    seconds: float
    latencies_ms: list[float]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def line(self, name: str) -> str:
        return (
            f"{name:<28} {self.throughput:9.0f} req/s   p50 {self.percentile(0.5):7.2f} ms   "
            f"p99 {self.percentile(0.99):7.2f} ms   ({self.requests} requests)"
        )


async def _client(
    port: int, paths: list[str], stop_at: float, record_from: float, latencies: list[float]
) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    count = 0
    rng = random.Random(port + id(latencies) + len(latencies))
    try:
        while True:
            path = paths[rng.randrange(len(paths))]
            started = time.perf_counter()
            if started >= stop_at:
                return count
            writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            if status != 200:
                raise RuntimeError(f"GET {path} answered {status}")
            if started >= record_from:
                latencies.append((time.perf_counter() - started) * 1000)
                count += 1
    finally:
        writer.close()


async def _load(port: int, paths: list[str], clients: int, duration: float, warmup: float) -> Figures:
    now = time.perf_counter()
    record_from, stop_at = now + warmup, now + warmup + duration
    latencies: list[float] = []
    counts = await asyncio.gather(
        *(_client(port, paths, stop_at, record_from, latencies) for _ in range(clients))
    )
    return Figures(requests=sum(counts), seconds=duration, latencies_ms=latencies)


def load(port: int, paths: list[str], clients: int, duration: float, warmup: float = 2.0) -> Figures:
    """Run `clients` concurrent keep-alive clients for `duration` seconds after a warm-up."""
    return asyncio.run(_load(port, paths, clients, duration, warmup))


def lookup_paths(ids: list[str], working_set: int = 1000) -> list[str]:
    """The same number of distinct models whatever the catalog size: only the catalog size differs."""
    rng = random.Random(0)
    return [f"/v1/models/{model}/super-weights" for model in rng.sample(ids, min(working_set, len(ids)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--serve", choices=["bare", "catalog"], help=argparse.SUPPRESS)
    parser.add_argument("--database-url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--cache-entries", type=int, default=4096, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.database_url, args.port, args.cache_entries)
        return

    with tempfile.TemporaryDirectory(prefix="swi-bench-") as folder:
        small_url = f"sqlite+pysqlite:///{Path(folder) / 'small.db'}"
        large_url = f"sqlite+pysqlite:///{Path(folder) / 'large.db'}"
        started = time.perf_counter()
        small_ids = build_catalog(small_url, args.small)
        large_ids = build_catalog(large_url, args.large)
        print(
            f"catalogs built in {time.perf_counter() - started:.1f} s ({args.small} and {args.large} models)"
        )
        print(
            f"{os.cpu_count()} CPUs, {args.clients} clients, {args.duration:.0f} s per run, loopback, SQLite"
        )

        bare_server = Server("bare")
        try:
            bare = load(bare_server.port, ["/constant"], args.clients, args.duration)
        finally:
            bare_server.stop()
        print(bare.line("bare constant endpoint"))
        warm: dict[int, Figures] = {}
        cold: dict[int, Figures] = {}
        for size, url, ids in ((args.small, small_url, small_ids), (args.large, large_url, large_ids)):
            paths = lookup_paths(ids)
            server = Server("catalog", url)
            try:
                load(server.port, paths, args.clients, 0.0, warmup=3.0)  # fill the response cache
                warm[size] = load(server.port, paths, args.clients, args.duration)
            finally:
                server.stop()
            print(warm[size].line(f"lookup, {size} models"))
            uncached = Server("catalog", url, cache_entries=0)
            try:
                cold[size] = load(uncached.port, paths, 1, min(4.0, args.duration), warmup=0.5)
            finally:
                uncached.stop()
            print(cold[size].line("  uncached, one client"))

        small, large = warm[args.small], warm[args.large]
        print()
        print(f"throughput ratio lookup/bare: {small.throughput / bare.throughput:.2f}   (target >= 0.5)")
        print(f"lookup p99 under load: {small.percentile(0.99):.1f} ms   (target < 50 ms)")
        print(
            f"p50 {args.large} vs {args.small} models, {args.clients} clients: "
            f"{large.percentile(0.5) / small.percentile(0.5):.2f}x   (target <= 1.5x)"
        )
        cold_ratio = statistics.median(cold[args.large].latencies_ms) / statistics.median(
            cold[args.small].latencies_ms
        )
        print(f"p50 {args.large} vs {args.small} models, uncached, 1 client: {cold_ratio:.2f}x")


if __name__ == "__main__":
    main()
