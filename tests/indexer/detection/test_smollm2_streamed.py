"""SmolLM2 through the layer-streamed engine: the dequantized cache, the GGUF file itself, a fresh cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from contracts.results import DetectionResult
from indexer.detection.detect import detect
from indexer.detection.opened import detect_opened
from indexer.model.loading import LoadedModel, LoadOptions, dequantized_cache_folder, resolve_model
from indexer.model.streaming import OpenedModel, open_streamed
from tests.indexer.detection.test_streamed_detect import assert_same_detection

pytestmark = pytest.mark.slow

CPU = LoadOptions(device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def in_memory(smollm2: LoadedModel) -> DetectionResult:
    return detect(smollm2)


def test_streamed_from_the_dequantized_cache_equals_in_memory(
    demo_model_file: Path, in_memory: DetectionResult, smollm2: LoadedModel
) -> None:
    assert (dequantized_cache_folder(demo_model_file) / "config.json").is_file()  # the fixture wrote it
    streamed = open_streamed(resolve_model(str(demo_model_file), options=CPU))
    result = detect_opened(OpenedModel(streamed))
    assert result.super_weights, "SmolLM2 has a super weight"
    assert_same_detection(result, in_memory)
    assert result.provenance.quantization == "Q4_1" and result.provenance.source_kind == "gguf"
    assert streamed.resident_bytes < 0.25 * streamed.weight_bytes  # tied embedding and final norm only
    # the resident part is the in-memory model's, bit for bit
    embedding = streamed.loaded.model.get_input_embeddings().weight
    assert torch.equal(embedding, smollm2.model.get_input_embeddings().weight)


def test_streamed_from_the_gguf_file_equals_in_memory(
    demo_model_file: Path, in_memory: DetectionResult
) -> None:
    options = LoadOptions(device="cpu", dtype="float32", gguf_cache=False)
    streamed = open_streamed(resolve_model(str(demo_model_file), options=options))
    assert_same_detection(detect_opened(OpenedModel(streamed)), in_memory)


def test_streamed_writes_the_cache_one_tensor_at_a_time(
    demo_model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smollm2: LoadedModel
) -> None:
    monkeypatch.setenv("SWI_MODEL_CACHE", str(tmp_path))
    gguf = tmp_path / demo_model_file.name
    shutil.copyfile(demo_model_file, gguf)
    assert not dequantized_cache_folder(gguf).exists()
    open_streamed(resolve_model(str(gguf), options=CPU))
    folder = dequantized_cache_folder(gguf)
    assert (folder / "config.json").is_file()
    again = resolve_model(str(gguf), options=CPU)
    assert again.folder == folder and again.gguf_file is None  # the next load reads the copy
    import safetensors.torch

    written = safetensors.torch.load_file(str(folder / "model.safetensors"))
    expected = smollm2.model.state_dict()
    for name, tensor in written.items():
        assert torch.equal(tensor, expected[name]), name


def test_layer_major_suite_equals_the_in_memory_suite(
    demo_model_file: Path, in_memory: DetectionResult, smollm2: LoadedModel
) -> None:
    """Every figure within 1e-4 relative, on a small budget (two 64-token windows, one batch each)."""
    from indexer.validation.corpus import load_corpus
    from indexer.validation.validate import ValidateConfig, validate
    from tests.indexer.validation.engines.test_layered_suite import assert_same_figures

    config = ValidateConfig(
        max_tokens=128,
        window=64,
        batch_size=1,
        rtn_bits=(4,),
        rtn_granularities=("tensor", "g128"),
        scale_factors=(0.0, 2.0),
        null_sets=2,
        null_column_sets=1,
        bootstrap_samples=100,
    )
    corpus = load_corpus("builtin")
    memory = validate(smollm2, in_memory, corpus, config)
    streamed_model = open_streamed(resolve_model(str(demo_model_file), options=CPU))
    before = streamed_model.checkpoint.bytes_read
    streamed = validate(streamed_model, in_memory, corpus, config)
    assert_same_figures(streamed, memory)
    assert memory.figures[1].ratio is not None and memory.figures[1].ratio > 2  # the joint zeroing hurts
    # each layer once, the down projections once more for the planning: under 1.1x the weights
    assert streamed_model.checkpoint.bytes_read - before <= 1.1 * streamed_model.weight_bytes
