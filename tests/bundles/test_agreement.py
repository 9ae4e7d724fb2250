"""Every reader of a run agrees with the validator on every coordinate's status.

A planted tiny llama whose two super weights matter only jointly (each inert alone, the pair destroys the
model) is validated by `swi validate --json` and indexed by `swi index` into the embedded catalog; the API,
the model page and all seven bundle formats served from the catalog, and the bundle `swi bundle --source
detect --validate` builds on the user's side, must all give each coordinate the status the validator's
verdict means (`contracts.validation.Verdict.status`).
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from bundles import FORMATS
from catalog.settings import Settings
from contracts.base import Coordinates
from contracts.identifiers import local_model_id
from contracts.status import SuperWeightStatus
from contracts.validation import Verdict
from indexer.bundles.load import manifest_from_safetensors, parse_bundle_bytes
from swi.cli import app
from tests.indexer.validation.conftest import bos_corpus
from tests.tiny import plant_joint_super_weights, tiny_model

runner = CliRunner()
BUDGET = ["--window", "128", "--max-tokens", "256", "--experiments", "baseline,joint,alone,controls"]


@pytest.fixture(scope="module")
def joint_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The planted model saved as a local folder, and a corpus file for it."""
    loaded = tiny_model("llama", num_layers=4)
    plant_joint_super_weights(loaded)
    folder = tmp_path_factory.mktemp("joint") / "joint-llama"
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    corpus = folder.parent / "corpus.txt"
    corpus.write_text(bos_corpus(2).text, encoding="utf-8")
    return folder, corpus


def _statuses(weights: list[dict[str, Any]]) -> dict[Coordinates, str]:
    return {(w["layer"], w["row"], w["col"]): str(w["status"]) for w in weights}


def test_api_page_and_every_bundle_agree_with_the_validator(
    joint_model: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, corpus = joint_model
    monkeypatch.setenv("SWI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SWI_DATABASE_URL", raising=False)
    monkeypatch.delenv("SWI_BROKER_URL", raising=False)

    validated = runner.invoke(app, ["validate", str(folder), "--corpus", str(corpus), *BUDGET, "--json"])
    assert validated.exit_code == 0, validated.output
    verdicts = [
        Verdict.model_validate(v) for v in json.loads(validated.stdout)["validation"]["super_weight_verdicts"]
    ]
    assert [v.verdict for v in verdicts] == ["inert", "inert"], "each alone is inert"
    assert all(v.member_of_confirmed_set for v in verdicts), "together they are the confirmed set"
    expected = {v.coordinates: str(v.status) for v in verdicts}
    assert set(expected.values()) == {SuperWeightStatus.CONFIRMED}

    indexed = runner.invoke(
        app,
        ["index", str(folder), "--corpus", str(corpus), *BUDGET, "--skip-quantization", "--device", "cpu"],
    )
    assert indexed.exit_code == 0, indexed.output
    model = local_model_id(folder)
    with TestClient(create_app(Settings(data_dir=tmp_path / "data"), enqueuer=lambda _job: None)) as client:
        served = client.get(f"/v1/models/{model}/super-weights").json()["super_weights"]
        assert _statuses(served) == expected
        assert all(w["member_of_confirmed_set"] for w in served)
        assert all("jointly" in str(w["verdict_reason"]) for w in served)

        page = client.get(f"/models/{model}").text
        rows = re.findall(r'data-layer="(\d+)" data-row="(\d+)" data-col="(\d+)" data-status="([^"]+)"', page)
        assert {(int(a), int(b), int(c)): s for a, b, c, s in rows} == expected
        assert page.count('data-field="member_of_confirmed_set"') == len(expected)

        bodies = {}
        for name in FORMATS:
            response = client.get(f"/v1/models/{model}/bundle", params={"format": name})
            assert response.status_code == 200, (name, response.text)
            bodies[name] = response.content
    assert _statuses(json.loads(bodies["json"])["super_weights"]) == expected
    assert {w.coordinates: w.status for w in parse_bundle_bytes(bodies["json"]).weights} == expected
    assert _statuses(manifest_from_safetensors(bodies["safetensors"])["super_weights"]) == expected
    mapping = json.loads(zipfile.ZipFile(io.BytesIO(bodies["llama.cpp"])).read("mapping.json"))
    assert _statuses([w for t in mapping["tensors"] for w in t["super_weights"]]) == expected
    # the module-level tool formats keep every non-inert super weight's down projection
    kept = {layer for (layer, _, _), status in expected.items() if status != SuperWeightStatus.INERT}
    for name in ("llm-compressor", "gptqmodel", "autoround", "torchao"):
        text = bodies[name].decode("utf-8")
        layers = {int(n) for n in re.findall(r"model\\*\.layers\\*\.(\d+)\\*\.mlp\\*\.down_proj", text)}
        assert layers == kept, (name, layers)

    out = tmp_path / "detected.swi.json"
    built = runner.invoke(
        app,
        [
            "bundle",
            str(folder),
            "--source",
            "detect",
            "--validate",
            "--corpus",
            str(corpus),
            "--max-tokens",
            "256",
            "--device",
            "cpu",
            "-o",
            str(out),
        ],
    )
    assert built.exit_code == 0, built.output
    detected = json.loads(out.read_text())["super_weights"]
    assert _statuses(detected) == expected
    # the same figures decided each weight on both sides, named by their keys
    for side in (detected, json.loads(bodies["json"])["super_weights"]):
        assert [sorted(d["experiment"] for d in w["decided_by"]) for w in side] == [
            sorted([f"zero/alone/{w['layer']}-{w['row']}-{w['col']}", "zero/joint"]) for w in side
        ]
