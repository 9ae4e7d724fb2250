"""`swi bundle` on a local tiny model (embedded: a fresh detection, no catalog)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from indexer.bundles.load import load_bundle
from swi.cli import app
from tests.indexer.model.test_loading import save_tiny

runner = CliRunner()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("bundle-tiny"))


def test_json_bundle_from_a_fresh_detection(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny.swi.json"
    result = runner.invoke(
        app, ["bundle", str(folder), "--source", "detect", "--device", "cpu", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    bundle = load_bundle(out)
    assert [w.coordinates for w in bundle.weights] == [(1, 10, 20)]
    assert bundle.weights[0].status == "candidate"


def test_llama_cpp_bundle_to_stdout(folder: Path) -> None:
    args = [
        "bundle",
        str(folder),
        "-f",
        "llama.cpp",
        "--tensor-type",
        "f16",
        "--source",
        "detect",
        "-o",
        "-",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    archive = zipfile.ZipFile(io.BytesIO(result.stdout_bytes))
    assert archive.read("tensor-types.txt").decode() == "^blk\\.1\\.ffn_down\\.weight$=f16\n"
    assert (
        json.loads(archive.read("mapping.json"))["tensors"][0]["hf_tensor"]
        == "model.layers.1.mlp.down_proj.weight"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-f", "gguf"], "unknown bundle format"),
        (["-f", "llama.cpp", "--tensor-type", "q2_k"], "llama.cpp tensor type"),
        (["-f", "llama.cpp", "--tensor-type", "q6_k"], "below q8_0 can lower a super-weight tensor"),
        (["-f", "llm-compressor", "--group-size", "96"], "power of two"),
        (["-f", "torchao", "--keep", "fp4"], "unknown keep mode"),
        (["--source", "somewhere"], "unknown --source"),
        (["--source", "catalog"], "not a hub id"),
    ],
)
def test_bad_input_is_one_clear_line(folder: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["bundle", str(folder), "--device", "cpu", "-o", str(tmp_path / "x"), *args])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
