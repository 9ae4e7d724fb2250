"""The read cache's consistency contract: in-process writes at once, other processes' within the TTL."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from api.app import create_app
from api.cache import ResponseCache
from api.etag import etag_for
from api.settings import ApiSettings
from catalog.db import make_engine
from catalog.models import CatalogModel, utcnow

MODEL = "/v1/models/huggyllama/llama-7b"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _write_elsewhere(settings: ApiSettings, family: str) -> None:
    """A write from another process: a Core UPDATE on its own engine, no ORM session in this process."""
    engine = make_engine(settings.resolved_database_url())
    try:
        with engine.begin() as connection:
            connection.execute(
                update(CatalogModel)
                .where(CatalogModel.hub_id == "huggyllama/llama-7b")
                .values(family=family, updated_at=utcnow())
            )
    finally:
        engine.dispose()


def _install_clock(app: FastAPI) -> tuple[ResponseCache, FakeClock]:
    cache: ResponseCache = app.state.services.cache
    clock = FakeClock()
    cache.clock = clock
    return cache, clock


def test_other_process_writes_show_within_the_ttl(
    http: httpx.Client, app: FastAPI, settings: ApiSettings
) -> None:
    cache, clock = _install_clock(app)
    first = http.get(MODEL)
    assert first.status_code == 200 and len(cache) == 1
    _write_elsewhere(settings, "Changed")
    clock.now += cache.ttl_s / 4
    cached = http.get(MODEL, headers={"If-None-Match": first.headers["etag"]})
    assert cached.status_code == 304 and cached.headers["etag"] == first.headers["etag"]
    clock.now += cache.ttl_s
    fresh = http.get(MODEL, headers={"If-None-Match": first.headers["etag"]})
    assert fresh.status_code == 200 and fresh.json()["family"] == "Changed"
    assert fresh.headers["etag"] != first.headers["etag"]
    assert http.get(MODEL, headers={"If-None-Match": fresh.headers["etag"]}).status_code == 304


def test_cache_hits_send_the_same_bytes_and_etags(http: httpx.Client, app: FastAPI) -> None:
    cache: ResponseCache = app.state.services.cache
    paths = [MODEL, f"{MODEL}/super-weights", "/v1/compare?a=huggyllama/llama-7b&b=meta-llama/Llama-2-7b-hf"]
    first = {path: http.get(path) for path in paths}
    assert len(cache) == len(paths)
    for path, response in first.items():
        again = http.get(path)
        assert response.status_code == again.status_code == 200 and again.content == response.content
        assert again.headers["etag"] == response.headers["etag"] == etag_for(response.content)
        assert again.headers["content-type"] == "application/json"
        assert http.get(path, headers={"If-None-Match": f'W/{again.headers["etag"]}, "x"'}).status_code == 304


def test_missing_models_are_problems_not_cached(http: httpx.Client, app: FastAPI) -> None:
    cache: ResponseCache = app.state.services.cache
    for _ in range(2):
        missing = http.get("/v1/models/nobody/nothing/super-weights")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
    assert len(cache) == 0


def test_the_ttl_is_a_setting(settings: ApiSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWI_RESPONSE_CACHE_TTL_S", "7.5")
    configured = ApiSettings(database_url=settings.database_url, auto_migrate=False)
    assert configured.response_cache_ttl_s == 7.5
    assert create_app(configured).state.services.cache.ttl_s == 7.5
