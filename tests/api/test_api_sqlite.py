"""The embedded default: the API on a fresh SQLite file migrates and seeds itself on start."""

from __future__ import annotations

import uuid
from pathlib import Path

from fastapi.testclient import TestClient

from api.app import create_app
from catalog.db import make_engine, make_session_factory
from catalog.repositories import ApiKeyRepository
from catalog.settings import Settings


def test_embedded_default_reads_and_submits(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    enqueued: list[uuid.UUID] = []
    with TestClient(create_app(settings, enqueuer=enqueued.append)) as client:
        assert client.get("/readyz").status_code == 200
        listing = client.get("/v1/models", params={"limit": 100}).json()
        assert len(listing["items"]) == 19  # a fresh embedded catalog serves every published model
        weights = client.get("/v1/models/mistralai/Mistral-7B-v0.1/super-weights").json()
        assert [(w["layer"], w["row"], w["col"]) for w in weights["super_weights"]] == [
            (1, 2070, 7310),
            (31, 53, 2187),
        ]
        olmo = client.get("/v1/models/allenai/OLMo-1B-0724-hf/super-weights").json()["super_weights"]
        disputed = {(w["layer"], w["row"], w["col"]): w for w in olmo if w["disputed"]}
        assert set(disputed) == {(1, 1764, 8041), (2, 1764, 8041)}
        assert disputed[(2, 1764, 8041)]["readings"] == [{"layer": 1, "row": 1764, "col": 8041}]
        assert {s["kind"] for s in disputed[(2, 1764, 8041)]["sources"]} == {"reference code", "replication"}
        assert disputed[(1, 1764, 8041)]["citation_source"] == "paper table"
        engine = make_engine(settings.resolved_database_url())
        with make_session_factory(engine)() as session:
            _, secret = ApiKeyRepository(session).create("local", ["submit"])
            session.commit()
        engine.dispose()
        headers = {"Authorization": f"Bearer {secret}"}
        first = client.post("/v1/submissions", json={"model": "org/model"}, headers=headers)
        second = client.post("/v1/submissions", json={"model": "org/model"}, headers=headers)
        assert first.status_code == second.status_code == 202
        assert first.json()["job"]["id"] == second.json()["job"]["id"]
        assert [str(i) for i in enqueued] == [first.json()["job"]["id"]]
        job = client.get(first.headers["location"]).json()
        assert job["status"] == "queued" and job["attempts"] == 0
    assert (tmp_path / "data" / "catalog.db").is_file()
