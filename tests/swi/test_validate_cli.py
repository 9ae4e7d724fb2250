"""`swi validate` end to end on a tiny planted model saved as a local folder, and its clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from swi.cli import app
from tests.indexer.validation.conftest import PLANTED, bos_corpus
from tests.tiny import plant_super_weight, tiny_model

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny llama with a planted super weight, saved as safetensors with its tokenizer."""
    loaded = tiny_model("llama", num_layers=4)
    plant_super_weight(loaded, *PLANTED, weight=4.0, pre_activation=16.0)
    folder = tmp_path_factory.mktemp("tiny-llama")
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    path.write_text(bos_corpus(3).text, encoding="utf-8")
    return path


QUICK = [
    "--window",
    "128",
    "--max-tokens",
    "256",
    "--rtn-bits",
    "4",
    "--granularities",
    "g32",
    "--scale-factors",
    "0,2",
    "--device",
    "cpu",
]


def test_report_puts_the_verdicts_first(model_dir: Path, corpus_file: Path) -> None:
    result = runner.invoke(app, ["validate", str(model_dir), "--corpus", str(corpus_file), *QUICK])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.index("verdict:") < out.index("pruning experiments") < out.index("weight RTN")
    assert "tiny.txt" in out and "256 tokens in 2 window(s) of 128" in out
    assert "W8A8" in out


def test_json_holds_detection_and_validation(model_dir: Path, corpus_file: Path) -> None:
    result = runner.invoke(
        app,
        [
            "validate",
            str(model_dir),
            "--corpus",
            str(corpus_file),
            *QUICK,
            "--experiments",
            "joint,controls",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [sw["layer"] for sw in data["detection"]["super_weights"]] == [1]
    validation = data["validation"]
    assert validation["corpus"]["tokens_used"] == 256
    assert {f["key"] for f in validation["figures"]} == {
        "baseline",
        "zero/joint",
        "control/largest",
        "control/random",
    }
    assert validation["verdict"]["verdict"] in ("confirmed", "inert")


def _assert_one_error_line(result, fragment: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_experiment(model_dir: Path) -> None:
    result = runner.invoke(app, ["validate", str(model_dir), "--experiments", "joint,prune"])
    _assert_one_error_line(result, "unknown experiment 'prune'")


def test_empty_corpus(model_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    _assert_one_error_line(runner.invoke(app, ["validate", str(model_dir), "--corpus", str(empty)]), "empty")


def test_too_short_corpus(model_dir: Path, tmp_path: Path) -> None:
    short = tmp_path / "short.txt"
    short.write_text("only a few characters")
    result = runner.invoke(app, ["validate", str(model_dir), "--corpus", str(short), "--device", "cpu"])
    _assert_one_error_line(result, "too short")


def test_budget_below_one_window(model_dir: Path, corpus_file: Path) -> None:
    result = runner.invoke(
        app,
        [
            "validate",
            str(model_dir),
            "--corpus",
            str(corpus_file),
            "--window",
            "128",
            "--max-tokens",
            "64",
            "--device",
            "cpu",
        ],
    )
    _assert_one_error_line(result, "smaller than one 128-token window")


def test_report_names_blocks_that_quantize_like_another(model_dir: Path, corpus_file: Path) -> None:
    quick = [*QUICK]
    quick[quick.index("g32")] = "tensor,16384,g32"
    result = runner.invoke(
        app,
        ["validate", str(model_dir), "--corpus", str(corpus_file), "--experiments", "rtn", *quick],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "16384 (= tensor)" in result.stdout  # every tiny weight fits one block of 16,384
    assert "g32 (=" not in result.stdout and "tensor (=" not in result.stdout
