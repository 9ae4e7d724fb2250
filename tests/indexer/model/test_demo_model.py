"""The demo model fetcher and the GGUF dequantization cache."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from indexer.model.demo_model import SHA256, fetch_demo_model, sha256_of
from indexer.model.loading import LoadedModel, dequantized_cache_folder


def test_fetch_is_a_no_op_when_the_file_is_there(
    demo_model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_download(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("fetch_demo_model downloaded although the file was present")

    monkeypatch.setattr(subprocess, "run", no_download)
    assert fetch_demo_model(quiet=True) == demo_model_file
    assert sha256_of(demo_model_file) == SHA256


@pytest.mark.slow
def test_gguf_load_leaves_a_safetensors_copy(smollm2: LoadedModel, demo_model_file: Path) -> None:
    folder = dequantized_cache_folder(demo_model_file)
    assert (folder / "config.json").is_file()
    assert (folder / "model.safetensors").is_file()
    assert "quantization_config" not in (folder / "config.json").read_text()
    assert smollm2.source.kind == "gguf"
    assert smollm2.quantization == "Q4_1"
