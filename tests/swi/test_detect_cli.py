"""`swi detect` on a local tiny model, and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from swi.cli import app
from tests.indexer.model.test_loading import save_tiny

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


def _coordinates(stdout: str) -> list[list[int]]:
    return [[sw["layer"], sw["row"], sw["col"]] for sw in json.loads(stdout)["super_weights"]]


def test_engine_streamed_gives_the_in_memory_result(folder: Path) -> None:
    memory = runner.invoke(app, ["detect", str(folder), "--json", "--device", "cpu", "--engine", "memory"])
    streamed = runner.invoke(
        app, ["detect", str(folder), "--json", "--device", "cpu", "--engine", "streamed"]
    )
    assert memory.exit_code == 0 and streamed.exit_code == 0, streamed.output
    assert "(streamed engine)" in streamed.stderr and "(memory engine)" in memory.stderr
    assert _coordinates(streamed.stdout) == _coordinates(memory.stdout) == [[1, 10, 20]]
    assert json.loads(streamed.stdout)["layer_profile"] == json.loads(memory.stdout)["layer_profile"]


def test_auto_streams_when_the_weights_exceed_max_memory_and_says_so(folder: Path) -> None:
    weights = (folder / "model.safetensors").stat().st_size
    args = ["detect", str(folder), "--json", "--device", "cpu", "--max-memory", str(weights // 2)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "(streamed engine)" in result.stderr
    assert "streaming the decoder layers one at a time instead" in result.stderr
    assert _coordinates(result.stdout) == [[1, 10, 20]]
    refused = runner.invoke(app, [*args, "--engine", "memory"])
    assert refused.exit_code != 0 and "need about" in refused.output


def test_unknown_engine_is_one_clear_line(folder: Path) -> None:
    result = runner.invoke(app, ["detect", str(folder), "--engine", "disk"])
    assert result.exit_code != 0 and "unknown engine 'disk'" in result.output


def test_validate_streams_and_gives_the_in_memory_figures(folder: Path) -> None:
    weights = (folder / "model.safetensors").stat().st_size
    base = ["validate", str(folder), "--device", "cpu", "--max-tokens", "256", "--json"]
    base += ["--experiments", "joint,alone,w8a8"]
    memory = runner.invoke(app, [*base, "--engine", "memory"])
    assert memory.exit_code == 0, memory.output
    expected = {f["key"]: f["perplexity"] for f in json.loads(memory.stdout)["validation"]["figures"]}
    for extra in (["--engine", "streamed"], ["--max-memory", str(weights // 2)]):
        result = runner.invoke(app, [*base, *extra])
        assert result.exit_code == 0, result.output
        assert "(streamed engine)" in result.stderr
        figures = {f["key"]: f["perplexity"] for f in json.loads(result.stdout)["validation"]["figures"]}
        assert figures.keys() == expected.keys()
        assert all(abs(figures[k] - expected[k]) <= 1e-4 * expected[k] for k in expected)
