"""Request metrics with prometheus_client; summed over every process under `swi serve --workers N`.

With several server processes (`PROMETHEUS_MULTIPROC_DIR` set before the first import of
prometheus_client, as `swi serve` does), each process writes its samples to files in that folder and a
scrape of any process reads them all (prometheus_client's multiprocess mode). Catalog gauges are
measured at scrape time by a collector and are never summed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: the environment variable that switches prometheus_client to its multiprocess mode
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: name -> (help, {label pairs: value}) measured at scrape time
Gauges = dict[str, tuple[str, dict[tuple[tuple[str, str], ...], float]]]


def multiprocess_dir() -> str | None:
    """The folder shared by the server processes, when metrics are kept across processes."""
    return os.environ.get(MULTIPROC_ENV) or None


class _ScrapeGauges(Collector):
    """Gauges computed when scraped (jobs by status, catalog sizes): one process's view of the database."""

    def __init__(self, measure: Callable[[], Gauges]):
        self.measure = measure

    def collect(self) -> Iterator[Metric]:
        for name, (help_text, samples) in self.measure().items():
            labels = sorted({label for pairs in samples for label, _ in pairs})
            family = GaugeMetricFamily(name, help_text, labels=labels)
            for pairs, value in sorted(samples.items()):
                family.add_metric([dict(pairs)[label] for label in labels], value)
            yield family


class _Union(Collector):
    def __init__(self, collectors: Iterable[Collector]):
        self.collectors = tuple(collectors)

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


class Metrics:
    """Request counters and latency histograms keyed by method, route template and status."""

    def __init__(self) -> None:
        # a registry per app: several apps in one process (tests) never share counts
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "swi_http_requests",
            "HTTP requests by method, route template and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "swi_http_request_duration_seconds",
            "Time to answer HTTP requests.",
            ("method", "route"),
            buckets=BUCKETS_S,
            registry=self.registry,
        )
        started = Gauge(
            "swi_process_start_time_seconds",
            "When the (oldest) API process started (Unix time).",
            registry=self.registry,
            multiprocess_mode="min",
        )
        started.set(time.time())

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one finished request."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self, measure: Callable[[], Gauges]) -> bytes:
        """The exposition text: every process's requests (multiprocess mode) or this one's, plus gauges."""
        gauges = _ScrapeGauges(measure)
        folder = multiprocess_dir()
        if folder is None:
            return generate_latest(_Union((self.registry, gauges)))
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
        registry.register(gauges)
        return generate_latest(registry)


class MetricsMiddleware:
    """Pure ASGI middleware (no per-request task or body buffering) that feeds `Metrics`."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(scope["method"], template, status, time.perf_counter() - started)
