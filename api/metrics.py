"""Request metrics in the Prometheus text format (a small registry: counters and a latency histogram)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    body = ",".join(f'{name}="{_escape(value)}"' for name, value in pairs)
    return "{" + body + "}" if body else ""


class Metrics:
    """Thread-safe request counters and latency histograms keyed by method, route template and status."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self._buckets: dict[tuple[str, str], list[int]] = {}
        self._sums: dict[tuple[str, str], float] = defaultdict(float)
        self._counts: dict[tuple[str, str], int] = defaultdict(int)
        self._started = time.time()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one finished request."""
        with self._lock:
            self._requests[(method, route, str(status))] += 1
            key = (method, route)
            buckets = self._buckets.setdefault(key, [0] * len(BUCKETS_S))
            for index, bound in enumerate(BUCKETS_S):
                if seconds <= bound:
                    buckets[index] += 1
            self._sums[key] += seconds
            self._counts[key] += 1

    def render(self, gauges: dict[str, tuple[str, dict[tuple[tuple[str, str], ...], float]]]) -> str:
        """The exposition text; `gauges` maps name -> (help, {label pairs: value}) measured at scrape time."""
        lines = [
            "# HELP swi_http_requests_total HTTP requests by method, route template and status.",
            "# TYPE swi_http_requests_total counter",
        ]
        with self._lock:
            for (method, route, status), count in sorted(self._requests.items()):
                labels = _labels((("method", method), ("route", route), ("status", status)))
                lines.append(f"swi_http_requests_total{labels} {count}")
            lines += [
                "# HELP swi_http_request_duration_seconds Time to answer HTTP requests.",
                "# TYPE swi_http_request_duration_seconds histogram",
            ]
            for (method, route), buckets in sorted(self._buckets.items()):
                base = (("method", method), ("route", route))
                for bound, count in zip(BUCKETS_S, buckets, strict=True):
                    labels = _labels((*base, ("le", repr(bound))))
                    lines.append(f"swi_http_request_duration_seconds_bucket{labels} {count}")
                inf = _labels((*base, ("le", "+Inf")))
                lines.append(f"swi_http_request_duration_seconds_bucket{inf} {self._counts[(method, route)]}")
                lines.append(
                    f"swi_http_request_duration_seconds_sum{_labels(base)} {self._sums[(method, route)]}"
                )
                lines.append(
                    f"swi_http_request_duration_seconds_count{_labels(base)} {self._counts[(method, route)]}"
                )
        lines += [
            "# HELP swi_process_start_time_seconds When the API process started (Unix time).",
            "# TYPE swi_process_start_time_seconds gauge",
            f"swi_process_start_time_seconds {self._started}",
        ]
        for name, (help_text, samples) in gauges.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
            for pairs, value in sorted(samples.items()):
                lines.append(f"{name}{_labels(pairs)} {value}")
        return "\n".join(lines) + "\n"


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
