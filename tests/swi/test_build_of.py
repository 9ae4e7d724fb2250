"""`swi index FILE.gguf --build-of ORG/NAME` on the real SmolLM2 Q4_1 file: the run shows on the hub model."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from catalog.settings import Settings
from swi.cli import app

BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"
runner = CliRunner()


@pytest.mark.slow
def test_a_gguf_build_is_indexed_on_its_hub_model(
    demo_model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SWI_DATABASE_URL", raising=False)
    monkeypatch.delenv("SWI_BROKER_URL", raising=False)
    result = runner.invoke(
        app, ["index", str(demo_model_file), "--build-of", BASE, "--skip-validation", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert f"as a quantized build of {BASE}" in " ".join(result.output.split())
    again = runner.invoke(app, ["index", str(demo_model_file), "--skip-validation"])
    said = " ".join(again.output.split())
    # without --build-of the metadata's guess is only shown, never used (and the run is not repeated)
    assert "already indexed" in said and "pass --build-of ORG/NAME" in said
    assert "HuggingFaceTB/smollm2-135M-8k-lc100k-mix1-ep2" in said
    with TestClient(create_app(Settings(data_dir=tmp_path / "data"))) as client:
        base = client.get(f"/v1/models/{BASE}").json()
        (build,) = base["derived"]
        assert build["relation"] == "quantized build" and build["quantization"] == "Q4_1"
        assert base["runs"][0]["model"] == build["id"] and base["runs"][0]["quantization"] == "Q4_1"
        weights = client.get(f"/v1/models/{BASE}/super-weights").json()
        assert weights["measured_on"]["quantization"] == "Q4_1"
        assert (11, 507, 1229) in {(w["layer"], w["row"], w["col"]) for w in weights["super_weights"]}
        page = client.get(f"/models/{BASE}").text
        assert "measured on the Q4_1 build" in page
