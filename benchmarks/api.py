"""Coordinate lookup under load vs a bare FastAPI constant endpoint; lookup at 1,000 vs 100,000 models.

Every app is served the same way (uvicorn, one process, same settings, loopback). The load generator (32
keep-alive HTTP/1.1 clients on asyncio) runs in its own process, so it never shares the server's GIL. Each
round loads the bare app, then the lookup on both catalogs, back to back; the figures are medians over the
rounds, so a burst of load from elsewhere on the machine moves all three alike and the ratios stay robust.
Before measuring, every lookup path is requested once (the steady state of a warm server), then the
clients warm up for `--warmup` seconds. Prints throughput and p50/p99 latency, and the ratios the targets
are stated in: throughput ratio >= 0.5 and p99 < 50 ms on 2 cores; lookup p50 at 100,000 models within
1.5x of 1,000. A single client against servers without a response cache measures the database path.

    .venv/bin/python benchmarks/api.py [--clients 32] [--duration 5] [--warmup 1] [--rounds 3]
        [--small 1000] [--large 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
                        "request_key": "0" * 64,
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
        from api.settings import ApiSettings

        settings = ApiSettings(
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

    @classmethod
    def median_of(cls, runs: list[Figures]) -> Figures:
        """A summary whose throughput, p50 and p99 are the medians over `runs`."""
        summary = cls(sum(r.requests for r in runs) // len(runs), 1.0, [])
        summary.medians = (
            statistics.median(r.throughput for r in runs),
            statistics.median(r.percentile(0.5) for r in runs),
            statistics.median(r.percentile(0.99) for r in runs),
        )
        return summary

    medians: tuple[float, float, float] | None = None

    def figures(self) -> tuple[float, float, float]:
        """(throughput, p50, p99)."""
        if self.medians is not None:
            return self.medians
        return self.throughput, self.percentile(0.5), self.percentile(0.99)

    def line(self, name: str) -> str:
        throughput, p50, p99 = self.figures()
        return (
            f"{name:<30} {throughput:7.0f} req/s   p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   "
            f"({self.requests} requests{' per round' if self.medians else ''})"
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


async def _prefill(port: int, paths: list[str]) -> None:
    """Request every path once (as a warm server would have seen it), eight at a time."""
    queue = list(paths)

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while queue:
                writer.write(f"GET {queue.pop()} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(8)))


async def _load(
    port: int, paths: list[str], clients: int, duration: float, warmup: float, prefill: bool
) -> Figures:
    if prefill:
        await _prefill(port, paths)
    now = time.perf_counter()
    record_from, stop_at = now + warmup, now + warmup + duration
    latencies: list[float] = []
    counts = await asyncio.gather(
        *(_client(port, paths, stop_at, record_from, latencies) for _ in range(clients))
    )
    return Figures(requests=sum(counts), seconds=duration, latencies_ms=latencies)


def load(
    port: int,
    paths: list[str],
    clients: int,
    duration: float,
    warmup: float = 2.0,
    prefill: bool = False,
) -> Figures:
    """Run `clients` keep-alive clients for `duration` s after a warm-up, in a separate process."""
    spec = {
        "port": port,
        "paths": paths,
        "clients": clients,
        "duration": duration,
        "warmup": warmup,
        "prefill": prefill,
    }
    result = subprocess.run(
        [sys.executable, __file__, "--load-spec", json.dumps(spec)],
        capture_output=True,
        check=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    data = json.loads(result.stdout)
    return Figures(requests=data["requests"], seconds=data["seconds"], latencies_ms=data["latencies_ms"])


def _run_load_spec(spec: dict[str, object]) -> None:
    figures = asyncio.run(_load(**spec))  # type: ignore[arg-type]
    json.dump(
        {"requests": figures.requests, "seconds": figures.seconds, "latencies_ms": figures.latencies_ms},
        sys.stdout,
    )


def lookup_paths(ids: list[str], working_set: int = 1000) -> list[str]:
    """The same number of distinct models whatever the catalog size: only the catalog size differs."""
    rng = random.Random(0)
    return [f"/v1/models/{model}/super-weights" for model in rng.sample(ids, min(working_set, len(ids)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0, help="Seconds measured per run.")
    parser.add_argument("--warmup", type=float, default=1.0, help="Seconds of load before measuring.")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds; figures are their medians.")
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--serve", choices=["bare", "catalog"], help=argparse.SUPPRESS)
    parser.add_argument("--load-spec", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--cache-entries", type=int, default=4096, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.database_url, args.port, args.cache_entries)
        return
    if args.load_spec:
        _run_load_spec(json.loads(args.load_spec))
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
        load_average = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"{os.cpu_count()} CPUs (load average {load_average}), {args.clients} clients, "
            f"{args.rounds} rounds of {args.duration:.0f} s, loopback, SQLite, load generator in its own "
            "process"
        )

        small_paths, large_paths = lookup_paths(small_ids), lookup_paths(large_ids)
        servers = {
            "bare": Server("bare"),
            "small": Server("catalog", small_url),
            "large": Server("catalog", large_url),
        }
        paths = {"bare": ["/constant"], "small": small_paths, "large": large_paths}
        runs: dict[str, list[Figures]] = {name: [] for name in servers}
        try:
            for round_index in range(args.rounds):
                for name, server in servers.items():
                    figures = load(
                        server.port,
                        paths[name],
                        args.clients,
                        args.duration,
                        warmup=args.warmup,
                        prefill=round_index == 0 and name != "bare",
                    )
                    runs[name].append(figures)
                    print(figures.line(f"round {round_index + 1}: {name}"))
        finally:
            for server in servers.values():
                server.stop()

        cold: dict[str, Figures] = {}
        for name, url in (("small", small_url), ("large", large_url)):
            uncached = Server("catalog", url, cache_entries=0)
            try:
                cold[name] = load(uncached.port, paths[name], 1, min(4.0, args.duration), warmup=0.5)
            finally:
                uncached.stop()

        bare, small, large = (Figures.median_of(runs[name]) for name in ("bare", "small", "large"))
        print()
        print(f"medians over {args.rounds} rounds:")
        print(bare.line("bare constant endpoint"))
        print(small.line(f"lookup, {args.small} models"))
        print(large.line(f"lookup, {args.large} models"))
        print(cold["small"].line(f"uncached, 1 client, {args.small}"))
        print(cold["large"].line(f"uncached, 1 client, {args.large}"))
        print()

        def paired(index: int) -> list[float]:
            """Per-round lookup/bare ratios of one figure (0: throughput, 1: p50, 2: p99)."""
            return [
                s.figures()[index] / b.figures()[index]
                for s, b in zip(runs["small"], runs["bare"], strict=True)
            ]

        for label, index, target in (("throughput", 0, "   (target >= 0.5)"), ("p50", 1, ""), ("p99", 2, "")):
            ratios = paired(index)
            print(
                f"{label} ratio lookup/bare, median of rounds: {statistics.median(ratios):.2f}{target}   "
                f"(per round: {', '.join(f'{r:.2f}' for r in ratios)})"
            )
        print(f"lookup p99 under load: {small.figures()[2]:.1f} ms   (target < 50 ms)")
        print(
            f"p50 {args.large} vs {args.small} models, {args.clients} clients: "
            f"{large.figures()[1] / small.figures()[1]:.2f}x   (target <= 1.5x)"
        )
        cold_ratio = cold["large"].percentile(0.5) / cold["small"].percentile(0.5)
        print(f"p50 {args.large} vs {args.small} models, uncached, 1 client: {cold_ratio:.2f}x")


if __name__ == "__main__":
    main()
