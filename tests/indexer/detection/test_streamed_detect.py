"""The layer-streamed engine finds what the in-memory detector finds, on a checkpoint of every family."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from contracts.results import DetectionResult
from indexer.detection.detect import detect
from indexer.detection.opened import detect_opened
from indexer.model.adapters import supported_model_types
from indexer.model.loading import LoadOptions, load_model, resolve_model
from indexer.model.streaming import OpenedModel, StreamedModel, open_model, open_streamed
from tests.tiny import plant_super_weight, tiny_model

FAMILIES = sorted(supported_model_types())
CPU = LoadOptions(device="cpu", dtype="float32")


def planted_checkpoint(folder: Path, model_type: str, *, seed: int = 0) -> Path:
    """A tiny model of `model_type` with super weights planted at (1, 10, 20) and (3, 7, 40), saved."""
    loaded = tiny_model(model_type, seed=seed)
    plant_super_weight(loaded, layer=1, row=10, col=20)
    plant_super_weight(loaded, layer=3, row=7, col=40, weight=1.5, token=2)
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    return folder


def assert_same_detection(streamed: DetectionResult, memory: DetectionResult) -> None:
    """Same coordinates and values, same per-layer statistics up to float rounding."""
    assert [sw.coordinates for sw in streamed.super_weights] == [
        sw.coordinates for sw in memory.super_weights
    ]
    for a, b in zip(streamed.super_weights, memory.super_weights, strict=True):
        assert a.value == b.value and a.magnitude_rank == b.magnitude_rank and a.iteration == b.iteration
        assert math.isclose(a.output_activation, b.output_activation, rel_tol=1e-5)
    assert len(streamed.layer_profile) == len(memory.layer_profile)
    for pa, pb in zip(streamed.layer_profile, memory.layer_profile, strict=True):
        assert pa.removed == pb.removed
        for sa, sb in zip(pa.layers, pb.layers, strict=True):
            for key, value in sa.model_dump().items():
                other = sb.model_dump()[key]
                if isinstance(value, float):
                    assert math.isclose(value, other, rel_tol=1e-5, abs_tol=1e-7), (
                        pa.iteration,
                        sa.layer,
                        key,
                    )
                else:
                    assert value == other, (pa.iteration, sa.layer, key)
    assert streamed.super_activation == memory.super_activation or (
        streamed.super_activation is not None
        and memory.super_activation is not None
        and streamed.super_activation.channel == memory.super_activation.channel
    )
    assert streamed.provenance.forward_passes == memory.provenance.forward_passes


@pytest.mark.parametrize("model_type", FAMILIES)
def test_streamed_detection_equals_in_memory(tmp_path: Path, model_type: str) -> None:
    folder = planted_checkpoint(tmp_path, model_type)
    memory = detect(load_model(str(folder), options=CPU))
    streamed = open_streamed(resolve_model(str(folder), options=CPU))
    result = detect_opened(OpenedModel(streamed))
    assert (1, 10, 20) in [sw.coordinates for sw in result.super_weights]
    assert_same_detection(result, memory)
    layers = streamed.layers
    assert all(p.device.type == "meta" for p in layers.parameters()), "a decoder layer stayed resident"
    for name, module in streamed.loaded.model.named_modules():
        assert not module._forward_hooks and not module._forward_pre_hooks, f"hook left on {name}"


def test_streamed_reads_each_layer_once_per_pass(tmp_path: Path) -> None:
    folder = planted_checkpoint(tmp_path, "llama")
    streamed = open_streamed(resolve_model(str(folder), options=CPU))
    after_open = streamed.checkpoint.bytes_read
    assert after_open == streamed.resident_bytes
    result = detect_opened(OpenedModel(streamed))
    layer_bytes = streamed.checkpoint.weight_bytes - streamed.resident_bytes
    passes = result.provenance.forward_passes
    read = streamed.checkpoint.bytes_read - after_open
    down = streamed.checkpoint.nbytes("model.layers.1.mlp.down_proj.weight")
    assert passes * layer_bytes <= read <= passes * layer_bytes + 4 * len(result.super_weights) * down


def test_auto_streams_below_the_memory_budget_and_gives_the_in_memory_result(tmp_path: Path) -> None:
    folder = planted_checkpoint(tmp_path, "llama")
    memory = detect(load_model(str(folder), options=CPU))
    weights = resolve_model(str(folder), options=CPU).weight_bytes
    limited = dataclasses.replace(CPU, memory_limit_bytes=weights // 2)
    said: list[str] = []
    opened = open_model(str(folder), options=limited, engine="auto", progress=said.append)
    assert opened.engine == "streamed"
    assert "streaming the decoder layers" in opened.note and any("streaming" in m for m in said)
    assert_same_detection(detect_opened(opened), memory)


def test_memory_engine_refuses_below_the_budget(tmp_path: Path) -> None:
    from indexer.errors import InsufficientMemoryError

    folder = planted_checkpoint(tmp_path, "llama")
    weights = resolve_model(str(folder), options=CPU).weight_bytes
    limited = dataclasses.replace(CPU, memory_limit_bytes=weights // 2)
    with pytest.raises(InsufficientMemoryError):
        open_model(str(folder), options=limited, engine="memory")


def test_auto_keeps_the_in_memory_engine_when_the_weights_fit(tmp_path: Path) -> None:
    folder = planted_checkpoint(tmp_path, "llama")
    opened = open_model(str(folder), options=CPU, engine="auto")
    assert opened.engine == "memory" and opened.note == ""


def test_a_checkpoint_missing_layer_tensors_falls_back_to_memory_with_a_message(tmp_path: Path) -> None:
    import safetensors.torch

    folder = planted_checkpoint(tmp_path, "llama")
    file = folder / "model.safetensors"
    tensors = safetensors.torch.load_file(str(file))
    tensors.pop("model.layers.2.mlp.up_proj.weight")
    safetensors.torch.save_file(tensors, str(file))
    said: list[str] = []
    opened = open_model(str(folder), options=CPU, engine="streamed", progress=said.append)
    assert opened.engine == "memory"
    assert "lacks decoder-layer tensors" in opened.note and "in-memory engine" in opened.note
    assert opened.note in said


def test_zeroed_overrides_apply_on_every_read_and_are_removed(tmp_path: Path) -> None:
    folder = planted_checkpoint(tmp_path, "llama")
    streamed = open_streamed(resolve_model(str(folder), options=CPU))
    assert isinstance(streamed, StreamedModel)
    assert float(streamed.down_weight(1)[10, 20]) == 2.0
    with streamed.zeroed([(1, 10, 20)]):
        assert float(streamed.down_weight(1)[10, 20]) == 0.0
        streamed.materialise(1)
        assert float(streamed.adapter.down_weight(streamed.loaded.model, 1)[10, 20]) == 0.0
        streamed.release(1)
    assert float(streamed.down_weight(1)[10, 20]) == 2.0
    assert all(p.device.type == "meta" for p in streamed.layers.parameters())
    assert torch.equal(streamed.down_weight(1), streamed.down_weight(1))
