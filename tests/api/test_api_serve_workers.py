"""`swi serve --workers 2` on real PostgreSQL: /metrics counts the requests of both processes."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from catalog.settings import Settings

pytestmark = pytest.mark.services

REPO_ROOT = Path(__file__).resolve().parents[2]
LIST_COUNT = re.compile(
    r'^swi_http_requests_total\{method="GET",route="/v1/models",status="200"\} (\S+)$', re.M
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pids(folder: Path) -> set[str]:
    """The server processes that wrote samples (prometheus_client names its files `<kind>_<pid>.db`)."""
    return {match.group(1) for file in folder.glob("*.db") if (match := re.search(r"_(\d+)\.db$", file.name))}


def test_metrics_are_summed_over_the_processes_of_swi_serve(settings: Settings, tmp_path: Path) -> None:
    port = _free_port()
    folder = tmp_path / "metrics"
    env = {
        **os.environ,
        "SWI_DATABASE_URL": settings.resolved_database_url(),
        "SWI_AUTO_MIGRATE": "false",
        "SWI_JOB_RUNNER": "",  # no pipeline: this test is about the API processes
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
    }
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "swi", "serve", "--workers", "2", "--port", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.3)
        sent = 0
        # a new connection per request: the kernel spreads them over both processes
        while sent < 400 and (sent < 40 or len(_pids(folder)) < 2):
            assert (
                httpx.get(f"{base}/v1/models", headers={"Connection": "close"}, timeout=30).status_code == 200
            )
            sent += 1
        assert len(_pids(folder)) == 2, "every request went to one process"
        for _ in range(6):  # each scrape may land on either process: all must see every request
            text = httpx.get(f"{base}/metrics", headers={"Connection": "close"}, timeout=30).text
            counts = LIST_COUNT.findall(text)
            assert counts == [f"{sent}.0"], counts
            assert "swi_catalog_models 19.0" in text
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
        log.close()
