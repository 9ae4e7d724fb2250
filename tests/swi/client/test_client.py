"""`swi.client.Client` against a live `swi serve` (SQLite and PostgreSQL): every method, every typed error,
ETag revalidation, a 429 waited out, pagination over several pages."""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.schemas import CompareOut, JobOut, ModelDetailOut, ModelSummaryOut, SuperWeightsOut
from catalog.published import published_models
from catalog.settings import Settings
from swi.client import (
    BundleIntegrityError,
    Client,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
)
from tests.live_server import served
from tests.swi.client.conftest import DETECT_ONLY, RATE_LIMIT, TINY_REPO, TINY_SHA, Live, Recorder

MISTRAL = "mistralai/Mistral-7B-v0.1"
SEEDED_MODELS = len(published_models())  # the data set `swi catalog seed` loads


def test_reads_follow_cursor_pages(live: Live, tmp_path: Path) -> None:
    recorder = Recorder()
    with Client(live.url, cache_dir=tmp_path / "cache", transport=recorder) as client:
        models = list(client.models(page_size=3))
        assert len(models) == SEEDED_MODELS and all(isinstance(m, ModelSummaryOut) for m in models)
        assert [m.id for m in models] == sorted(m.id for m in models)  # in name order, each once
        pages = [seen for seen in recorder.seen if seen[1] == "/v1/models"]
        assert len(pages) == -(-SEEDED_MODELS // 3) > 1  # full pages of 3, then the rest
        assert [m.id for m in client.models(family="Mistral")] == [MISTRAL]
        assert list(client.models(q="no-such-model")) == []

        detail = client.model(MISTRAL)
        assert isinstance(detail, ModelDetailOut) and detail.architecture == "mistral"
        weights = client.super_weights(MISTRAL)
        assert isinstance(weights, SuperWeightsOut)
        # the paper's coordinate, and a replication's (the data set gives every source)
        first = weights.super_weights[0]
        assert (first.layer, first.row, first.col, first.status) == (1, 2070, 7310, "reported")
        assert {w.status for w in weights.super_weights} == {"reported"}
        comparison = client.compare("huggyllama/llama-7b", "huggyllama/llama-13b")
        assert isinstance(comparison, CompareOut)
        assert (comparison.a.model, comparison.b.basis) == ("huggyllama/llama-7b", "reported")
        assert [(c.layer, c.row, c.col) for c in comparison.vanished] == [(2, 3968, 7003)]


def test_bundles_are_checked_and_revalidated_by_etag(live: Live, tmp_path: Path) -> None:
    recorder = Recorder()
    with Client(live.url, cache_dir=tmp_path / "cache", transport=recorder) as client:
        first = client.bundle(MISTRAL, "json", tmp_path / "out")
        assert first.path.parent == tmp_path / "out" or first.path == tmp_path / "out"
        assert not first.revalidated and first.etag
        manifest = json.loads(first.path.read_text())
        assert manifest["sha256"] == first.sha256 and manifest["model"] == MISTRAL
        coordinates = [(w["layer"], w["row"], w["col"]) for w in manifest["super_weights"]]
        assert coordinates[0] == (1, 2070, 7310)

        recorder.seen.clear()
        second = client.bundle(MISTRAL, "json", tmp_path / "again.json")
        assert second.revalidated and second.etag == first.etag and second.sha256 == first.sha256
        assert recorder.seen == [("GET", f"/v1/models/{MISTRAL}/bundle", 304, 0)]  # a 304, no body
        assert (tmp_path / "again.json").read_bytes() == first.path.read_bytes()

        tensors = client.bundle(MISTRAL, "safetensors", tmp_path / "b.safetensors")
        assert tensors.sha256 == first.sha256 and tensors.path.read_bytes()[8:9] == b"{"
        archive = client.bundle(MISTRAL, "llama.cpp", tmp_path / "b.zip", tensor_type="q8_0")
        assert archive.sha256 == first.sha256 and zipfile.is_zipfile(archive.path)
        recipe = client.bundle(MISTRAL, "llm-compressor", tmp_path)
        assert recipe.path.parent == tmp_path and recipe.path.suffix == ".yaml"

        with pytest.raises(NotFound):
            client.bundle("org/unknown", "json", tmp_path / "none.json")
        assert not (tmp_path / "none.json").exists()


def test_a_damaged_bundle_is_refused(live: Live, tmp_path: Path) -> None:
    class Damaging(Recorder):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = super().handle_request(request)
            body = response.read().replace(b"2070", b"2071")  # one coordinate changed in transit
            return httpx.Response(response.status_code, headers=response.headers, content=body)

    client = Client(live.url, cache_dir=tmp_path / "cache", transport=Damaging())
    with client, pytest.raises(BundleIntegrityError, match="sha256 mismatch"):
        client.bundle(MISTRAL, "json", tmp_path / "damaged.json")
    assert not (tmp_path / "damaged.json").exists()


def test_submit_wait_and_cancel(live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Client(live.url, api_key=live.key, cache_dir=tmp_path / "cache") as client:
        submitted = client.submit(TINY_REPO, options=DETECT_ONLY)
        assert submitted.created and submitted.job is not None
        job = client.wait(submitted.job.id, progress=True, poll_s=0.2, timeout_s=120)
        assert isinstance(job, JobOut) and job.status == "succeeded", job
        lines = capsys.readouterr().err.splitlines()
        assert any(line.startswith(f"[job {str(job.id)[:8]}] resolve") for line in lines), lines
        assert any("100%" in line for line in lines), lines

        weights = client.super_weights(TINY_REPO)
        assert weights.revision is not None and weights.revision.sha == TINY_SHA
        assert (1, 10, 20) in [(w.layer, w.row, w.col) for w in weights.super_weights]
        assert client.job(job.id).run_id == job.run_id
        repeat = client.submit(TINY_REPO, TINY_SHA, options=DETECT_ONLY)
        assert not repeat.created and repeat.run_id == job.run_id  # indexed once at that commit

        running = client.submit(TINY_REPO, options={**DETECT_ONLY, "max_super_weights": 3})
        assert running.job is not None
        cancelled = client.cancel(running.job.id)
        assert cancelled.status == "cancelled"
        assert client.cancel(running.job.id).status == "cancelled"  # twice is a no-op
        assert client.wait(running.job.id, progress=False).status == "cancelled"


def test_every_typed_error(live: Live, tmp_path: Path) -> None:
    with Client(live.url, api_key=live.key, cache_dir=tmp_path / "cache") as client:
        with pytest.raises(NotFound) as missing:
            client.model("org/unknown")
        assert missing.value.status == 404 and missing.value.type == "urn:swi:problem:not-found"
        assert missing.value.instance == "/v1/models/org/unknown"
        with pytest.raises(NotFound):
            client.job("0b9f7a51-3a83-4b8e-9c6e-2a4c1c0f5d11")

        with pytest.raises(InvalidRequest) as invalid:
            client.super_weights(MISTRAL, revision="not a revision!")
        assert invalid.value.status == 422 and invalid.value.errors
        with pytest.raises(InvalidRequest) as bad_cursor:
            client.request("GET", "/v1/models", params={"cursor": "garbage"})
        assert bad_cursor.value.status == 400
        with pytest.raises(InvalidRequest) as bad_option:
            client.submit(TINY_REPO, options={"max_super_weights": 0})
        assert bad_option.value.status == 422
        assert bad_option.value.errors[0]["loc"] == ["body", "options", "max_super_weights"]

        with pytest.raises(Unauthorized):
            Client(live.url, cache_dir=tmp_path / "cache").submit(TINY_REPO)  # no key at all
        with pytest.raises(Unauthorized) as wrong_key:
            Client(live.url, api_key="swi_wrong", cache_dir=tmp_path / "cache").submit(TINY_REPO)
        assert wrong_key.value.status == 401

        failed = client.submit("org/absent", options=DETECT_ONLY)  # not in the hub cache: it fails
        assert failed.job is not None
        with pytest.raises(Forbidden):
            Client(live.url, api_key=live.other_key, cache_dir=tmp_path / "cache").cancel(failed.job.id)
        assert client.wait(failed.job.id, progress=False, poll_s=0.2, timeout_s=60).status == "failed"
        with pytest.raises(Conflict) as conflict:
            client.cancel(failed.job.id)
        assert conflict.value.status == 409 and "nothing to cancel" in str(conflict.value)


def test_a_rate_limit_is_waited_out(live: Live, tmp_path: Path) -> None:
    recorder = Recorder()
    with Client(live.url, api_key=live.other_key, cache_dir=tmp_path / "c", transport=recorder) as client:
        started = time.monotonic()
        jobs = [client.submit(f"org/limited-{i}", options=DETECT_ONLY) for i in range(RATE_LIMIT + 1)]
        assert all(j.created for j in jobs)
        statuses = [status for method, _, status, _ in recorder.seen if method == "POST"]
        assert statuses[:RATE_LIMIT] == [202] * RATE_LIMIT
        assert 429 in statuses[RATE_LIMIT:] and statuses[-1] == 202
        assert time.monotonic() - started >= 1.0  # it waited for the Retry-After

    impatient = Client(live.url, api_key=live.admin_key, cache_dir=tmp_path / "c", attempts=1)
    with impatient:
        for i in range(RATE_LIMIT):
            impatient.submit(f"org/impatient-{i}", options=DETECT_ONLY)
        with pytest.raises(RateLimited) as limited:
            impatient.submit("org/impatient-last", options=DETECT_ONLY)
    assert limited.value.retry_after_s is not None and limited.value.retry_after_s >= 1


def test_unavailable_when_the_database_is_down(tmp_path: Path) -> None:
    settings = Settings(database_url="postgresql+psycopg://postgres@127.0.0.1:9/none", auto_migrate=False)
    with served(create_app(settings)) as url:
        client = Client(url, cache_dir=tmp_path / "cache", max_wait_s=1.0)
        with client, pytest.raises(Unavailable) as down:
            client.model(MISTRAL)
    assert down.value.status == 503 and down.value.retry_after_s == 5
