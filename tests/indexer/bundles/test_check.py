"""`swi check`: reading quantized artifacts and judging each super weight.

The safetensors and torchao artifacts were recorded from the real tools on the tiny planted model
(`tests/tools/record_fixtures.py`); the GGUF files are written by the `gguf` library, which quantizes them.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest
from typer.testing import CliRunner

from indexer.bundles.artifacts import ArtifactError, check_artifact
from indexer.bundles.bundle import Bundle
from indexer.bundles.load import load_bundle
from swi.cli import app

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "quantized"
runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_bundle() -> Bundle:
    return load_bundle(FIXTURES / "tiny.swi.json")


def _write_gguf(path: Path, bundle: Bundle, kind: gguf.GGMLQuantizationType) -> float:
    """A one-tensor GGUF holding the bundle's down projection, quantized by the gguf library to `kind`."""
    weight = bundle.weights[0]
    rng = np.random.default_rng(0)
    rows, cols = 64, 128
    data = rng.normal(0, 0.02, size=(rows, cols)).astype(np.float32)  # (rows, cols) = ne reversed
    assert weight.value is not None
    data[weight.row, weight.col] = weight.value
    writer = gguf.GGUFWriter(str(path), "llama")
    stored = gguf.quants.quantize(data, kind) if kind != gguf.GGMLQuantizationType.F32 else data
    writer.add_tensor(weight.gguf_tensor, stored, raw_shape=stored.shape, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return float(weight.value)


@pytest.mark.parametrize(
    ("kind", "passes"),
    [(gguf.GGMLQuantizationType.F32, True), (gguf.GGMLQuantizationType.Q8_0, True)],
)
def test_gguf_tensors_are_dequantized_at_the_gguf_index(
    tiny_bundle: Bundle, tmp_path: Path, kind: gguf.GGMLQuantizationType, passes: bool
) -> None:
    path = tmp_path / "model.gguf"
    exact = _write_gguf(path, tiny_bundle, kind)
    result = check_artifact(path, tiny_bundle)
    (check,) = result.weights
    assert result.kind == "gguf" and check.storage == kind.name
    assert check.passed is passes and result.passed is passes
    if kind == gguf.GGMLQuantizationType.F32:
        assert check.dequantized == exact and check.bits == 32
    else:
        assert check.bits == 8.5 and check.relative_error is not None and check.relative_error < 0.01


def test_a_super_weight_quantized_away_fails(tiny_bundle: Bundle, tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    _write_gguf(path, tiny_bundle, gguf.GGMLQuantizationType.F32)
    strict = check_artifact(path, tiny_bundle, tolerance=0.0)
    assert strict.passed
    other = tmp_path / "other.gguf"
    writer = gguf.GGUFWriter(str(other), "llama")
    writer.add_tensor(tiny_bundle.weights[0].gguf_tensor, np.zeros((64, 128), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    failed = check_artifact(other, tiny_bundle)
    assert not failed.passed and failed.weights[0].dequantized == 0.0


@pytest.mark.parametrize(
    ("artifact", "kind", "storage", "passes"),
    [
        ("llm-compressor-with", "compressed-tensors", "int8 per channel", True),
        ("llm-compressor-without", "compressed-tensors", "int4 group 32", None),
        ("gptqmodel-with", "gptq", "int8 group 32", True),
        ("gptqmodel-without", "gptq", "int4 group 32", None),
        # AutoRound names the 8-bit module only in `extra_config`: its bits are not the config's 4
        ("autoround-with", "gptq", "int8 group 32", True),
        ("autoround-without", "gptq", "int4 group 32", None),
        ("torchao-with", "torchao", "Int8Tensor", True),
        ("torchao-without", "torchao", "IntxUnpackedToInt8Tensor torch.int4", None),
    ],
)
def test_recorded_tool_artifacts_are_read_per_their_layout(
    tiny_bundle: Bundle, artifact: str, kind: str, storage: str, passes: bool | None
) -> None:
    path = FIXTURES / artifact
    if kind == "torchao":
        pytest.importorskip("torchao")
        path = path / "model.pt"
    result = check_artifact(path, tiny_bundle)
    (check,) = result.weights
    assert result.kind == kind and check.storage.startswith(storage.split(" torch.")[0])
    if passes is not None:
        assert check.passed is passes
    exact = tiny_bundle.weights[0].value
    assert exact is not None and abs(check.dequantized - exact) < 0.25 * abs(exact), "the layout is decoded"


def test_swi_check_prints_each_weight_and_exits_by_the_verdict(tmp_path: Path) -> None:
    bundle = FIXTURES / "tiny.swi.json"
    path = tmp_path / "model.gguf"
    _write_gguf(path, load_bundle(bundle), gguf.GGMLQuantizationType.Q8_0)
    result = runner.invoke(app, ["check", str(path), "--bundle", str(bundle), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] and report["weights"][0]["storage"] == "Q8_0"
    failed = runner.invoke(app, ["check", str(path), "--bundle", str(bundle), "--tolerance", "0"])
    assert failed.exit_code == 1 and "FAIL" in failed.output
    neither = runner.invoke(app, ["check", str(path)])
    assert neither.exit_code == 2 and "exactly one of --bundle" in neither.output


def test_unreadable_artifacts_are_one_clear_error(tiny_bundle: Bundle, tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("no")
    with pytest.raises(ArtifactError, match=r"not a \.gguf file"):
        check_artifact(tmp_path / "x.txt", tiny_bundle)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="no safetensors files"):
        check_artifact(tmp_path / "empty", tiny_bundle)
