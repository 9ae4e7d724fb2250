"""`swi detect` on a local tiny model, and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from swi.cli import app
from tests.unit.test_loading import save_tiny

runner = CliRunner()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("cli-tiny"))


def test_json_output(folder: Path) -> None:
    result = runner.invoke(app, ["detect", str(folder), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"super_weights", "super_activation", "layer_profile", "provenance"} <= set(data)
    assert [[sw["layer"], sw["row"], sw["col"]] for sw in data["super_weights"]] == [[1, 10, 20]]
    assert data["super_weights"][0]["value"] == 2.0


def test_table_and_chart(folder: Path) -> None:
    result = runner.invoke(app, ["detect", str(folder), "--prompt", "Paris is nice."])
    assert result.exit_code == 0, result.output
    assert "super weights" in result.stdout
    assert "max |activation| per layer" in result.stdout
    assert "1*" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["detect", "./missing/folder"], "no such folder"),
        (["detect", "missing.gguf"], "GGUF file not found"),
        (["detect", "{folder}", "--dtype", "float8"], "unknown dtype"),
        (["detect", "{folder}", "--max-memory", "1KB"], "need about"),
        (["detect", "{folder}", "--max-memory", "lots"], "memory size"),
    ],
)
def test_bad_input_is_one_clear_line(folder: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, [a.format(folder=folder) for a in args])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_unsupported_architecture_exits_non_zero(tmp_path: Path, folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "mamba"
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    result = runner.invoke(app, ["detect", str(tmp_path)])
    assert result.exit_code == 2
    assert "unsupported architecture 'mamba'" in result.output
