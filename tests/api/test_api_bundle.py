"""The API's JSON bundle (embedded SQLite catalog): both readers accept it and every format renders it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from bundles import FORMATS, render_bundle
from catalog.settings import Settings
from contracts.manifest import check_manifest
from indexer.bundles.load import parse_bundle_bytes


@pytest.mark.parametrize("model", ["allenai/OLMo-1B-0724-hf", "microsoft/Phi-3-mini-4k-instruct"])
def test_the_served_json_bundle_is_a_valid_manifest(tmp_path: Path, model: str) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path / "data"), enqueuer=lambda _job: None)) as client:
        response = client.get(f"/v1/models/{model}/bundle", params={"format": "json"})
    assert response.status_code == 200, response.text
    manifest = json.loads(response.content)
    check_manifest(manifest)
    bundle = parse_bundle_bytes(response.content)
    assert bundle.model == model and all(w.status == "reported" for w in bundle.weights)
    for name in FORMATS:
        rendered = render_bundle(manifest, name)
        assert rendered.body and rendered.filename.startswith(model.replace("/", "__"))
