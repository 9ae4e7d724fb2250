"""Tensors mapped from a safetensors checkpoint: the stored bytes, private, resident only where touched."""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from indexer.model.checkpoint import SafetensorsCheckpoint
from indexer.model.loading import LoadOptions, load_model, resolve_model
from indexer.model.streaming import open_streamed
from tests.tiny import tiny_model

EMBEDDINGS = "model.embed_tokens.weight"


def saved(folder: Path, dtype: torch.dtype = torch.float32) -> Path:
    """A tiny Llama saved as safetensors in `dtype`."""
    loaded = tiny_model("llama", seed=0)
    loaded.model.to(dtype).save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    return folder


def mapped_files(address: int) -> list[str]:
    """The files mapped at `address` in this process (Linux's /proc/self/maps)."""
    found = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        span, *rest = line.split(maxsplit=5)
        low, high = (int(part, 16) for part in span.split("-"))
        if low <= address < high and len(rest) == 5:
            found.append(rest[4])
    return found


def test_a_mapped_tensor_is_the_stored_one_and_writes_stay_private(tmp_path: Path) -> None:
    checkpoint = SafetensorsCheckpoint(saved(tmp_path))
    file = tmp_path / "model.safetensors"
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    for name in sorted(checkpoint.names):
        mapped = checkpoint.mapped(name, torch.float32)
        assert mapped is not None
        assert torch.equal(mapped, checkpoint.read([name])[name]), name
    embeddings = checkpoint.mapped(EMBEDDINGS, torch.float32)
    assert embeddings is not None
    embeddings.zero_()  # copy-on-write: the checkpoint is never written
    assert hashlib.sha256(file.read_bytes()).hexdigest() == digest
    assert not torch.equal(checkpoint.read([EMBEDDINGS])[EMBEDDINGS], embeddings)


def test_a_tensor_stored_in_another_dtype_is_not_mapped(tmp_path: Path) -> None:
    checkpoint = SafetensorsCheckpoint(saved(tmp_path, torch.bfloat16))
    assert checkpoint.mapped(EMBEDDINGS, torch.float32) is None
    assert checkpoint.mapped(EMBEDDINGS, torch.bfloat16) is not None


@pytest.mark.skipif(platform.system() != "Linux", reason="reads /proc/self/maps")
def test_the_streamed_engine_maps_its_resident_weights_when_stored_as_the_run_needs(tmp_path: Path) -> None:
    folder = saved(tmp_path)
    streamed = open_streamed(resolve_model(str(folder), options=LoadOptions(device="cpu", dtype="float32")))
    embeddings = streamed.loaded.model.get_parameter(EMBEDDINGS)
    assert str(folder / "model.safetensors") in mapped_files(embeddings.data_ptr())
    assert streamed.checkpoint.bytes_read == streamed.resident_bytes  # counted as read once
    # another dtype than the stored one: read and converted, as before
    other = open_streamed(resolve_model(str(folder), options=LoadOptions(device="cpu", dtype="bfloat16")))
    weight = other.loaded.model.get_parameter(EMBEDDINGS)
    assert weight.dtype == torch.bfloat16
    assert str(folder / "model.safetensors") not in mapped_files(weight.data_ptr())


@pytest.mark.skipif(platform.system() != "Linux", reason="reads /proc/self/smaps_rollup")
def test_dropped_pages_leave_the_resident_set_and_read_back_the_same(tmp_path: Path) -> None:
    # a tensor of 8 MiB, so its pages are far above the noise of the rest of the process
    folder = tmp_path / "big"
    folder.mkdir()
    stored = torch.randn(2048, 1024, generator=torch.Generator().manual_seed(0))
    save_file({"big.weight": stored}, str(folder / "model.safetensors"))
    checkpoint = SafetensorsCheckpoint(folder)
    mapped = checkpoint.mapped("big.weight", torch.float32)
    assert mapped is not None
    assert torch.equal(mapped, stored)  # every page touched
    touched = file_backed_resident()
    checkpoint.drop_mapped_pages()
    assert touched - file_backed_resident() >= stored.numel() * 4 * 0.9
    assert torch.equal(mapped, stored)  # read back from the file when touched again


def file_backed_resident() -> int:
    """Bytes of this process's resident set backed by files (Linux)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:])
    kib = {name: int(value.split()[0]) for name, value in fields.items()}
    return (kib["Rss"] - kib["Anonymous"]) * 1024


@pytest.mark.skipif(platform.system() != "Linux", reason="reads /proc/self/maps")
def test_the_in_memory_loader_maps_every_weight_and_an_edit_never_reaches_the_file(tmp_path: Path) -> None:
    """Loading maps the weights (no copy); zeroing a super weight writes a private page, never the file."""
    folder = saved(tmp_path)
    file = folder / "model.safetensors"
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    loaded = load_model(str(folder), options=LoadOptions(device="cpu", dtype="float32"))
    down = loaded.model.get_parameter("model.layers.0.mlp.down_proj.weight")
    assert str(file) in mapped_files(down.data_ptr())
    stored = SafetensorsCheckpoint(folder).read(["model.layers.0.mlp.down_proj.weight"])
    assert torch.equal(down, stored["model.layers.0.mlp.down_proj.weight"])
    with torch.no_grad():
        down[0, 0] = 0.0
    assert float(down[0, 0]) == 0.0
    assert hashlib.sha256(file.read_bytes()).hexdigest() == digest
    # another dtype than the stored one: read and converted into memory of its own
    other = load_model(str(folder), options=LoadOptions(device="cpu", dtype="bfloat16"))
    weight = other.model.get_parameter("model.layers.0.mlp.down_proj.weight")
    assert str(file) not in mapped_files(weight.data_ptr())
