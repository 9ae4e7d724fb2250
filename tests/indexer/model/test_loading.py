"""Loading from a local folder and a locally built Hugging Face cache, and every refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from indexer.detection.detect import detect
from indexer.errors import (
    HubUnavailableError,
    InsufficientMemoryError,
    InvalidInputError,
    ModelNotFoundError,
    RemoteCodeRequiredError,
    UnsafeWeightsError,
    UnsupportedArchitectureError,
)
from indexer.model.loading import LoadOptions, load_model, parse_source, wrap_model
from tests.tiny import plant_super_weight, tiny_model

SHA_MAIN = "0123456789abcdef0123456789abcdef01234567"
SHA_OLD = "fedcba9876543210fedcba9876543210fedcba98"
CPU = LoadOptions(device="cpu")


def save_tiny(folder: Path, model_type: str = "llama", planted: bool = True) -> Path:
    """Save a tiny model (planted at (1, 10, 20)) with safetensors weights and its tokenizer."""
    loaded = tiny_model(model_type)
    if planted:
        plant_super_weight(loaded, layer=1, row=10, col=20)
    loaded.model.save_pretrained(folder, safe_serialization=True)
    loaded.tokenizer.save_pretrained(folder)
    return folder


def build_hub_cache(cache: Path, repo: str, snapshots: dict[str, Path], refs: dict[str, str]) -> None:
    """Lay out a Hugging Face hub cache folder by hand (no network)."""
    root = cache / f"models--{repo.replace('/', '--')}"
    for sha, source in snapshots.items():
        target = root / "snapshots" / sha
        target.mkdir(parents=True)
        for file in source.iterdir():
            (target / file.name).write_bytes(file.read_bytes())
    (root / "refs").mkdir(parents=True)
    for ref, sha in refs.items():
        (root / "refs" / ref).write_text(sha)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory: pytest.TempPathFactory, tiny_folder: Path) -> Path:
    cache = tmp_path_factory.mktemp("hf-cache")
    clean = save_tiny(tmp_path_factory.mktemp("clean"), planted=False)
    build_hub_cache(
        cache, "acme/tiny", {SHA_MAIN: tiny_folder, SHA_OLD: clean}, {"main": SHA_MAIN, "v0": SHA_OLD}
    )
    return cache


def test_local_folder_loads_and_detects(tiny_folder: Path) -> None:
    loaded = load_model(str(tiny_folder), options=CPU)
    assert loaded.source.kind == "local"
    assert loaded.revision_sha is None
    assert loaded.dtype == torch.float32
    result = detect(loaded)
    assert [sw.coordinates for sw in result.super_weights] == [(1, 10, 20)]
    assert result.provenance.source_kind == "local"


def test_hub_model_offline_from_the_cache_is_pinned_to_a_sha(hub_cache: Path) -> None:
    options = LoadOptions(device="cpu", cache_dir=str(hub_cache), offline=True)
    loaded = load_model("acme/tiny", options=options)
    assert loaded.revision_sha == SHA_MAIN
    assert loaded.model_id == "acme/tiny"
    result = detect(loaded)
    assert result.provenance.revision == SHA_MAIN
    assert [sw.coordinates for sw in result.super_weights] == [(1, 10, 20)]


def test_hub_revision_tag_resolves_to_its_commit(hub_cache: Path) -> None:
    options = LoadOptions(device="cpu", cache_dir=str(hub_cache), offline=True)
    loaded = load_model("acme/tiny", revision="v0", options=options)
    assert loaded.revision_sha == SHA_OLD
    assert loaded.source.revision == "v0"
    assert detect(loaded).super_weights == ()


def test_hub_offline_mode_follows_the_environment(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = load_model(
        "acme/tiny", revision=SHA_MAIN, options=LoadOptions(device="cpu", cache_dir=str(hub_cache))
    )
    assert loaded.revision_sha == SHA_MAIN


def test_hub_unknown_model_or_revision_is_refused(hub_cache: Path) -> None:
    options = LoadOptions(device="cpu", cache_dir=str(hub_cache), offline=True)
    with pytest.raises(ModelNotFoundError, match="acme/missing"):
        load_model("acme/missing", options=options)
    with pytest.raises(ModelNotFoundError, match="nope"):
        load_model("acme/tiny", revision="nope", options=options)


def test_unreachable_hub_is_a_transient_error(tmp_path: Path) -> None:
    options = LoadOptions(device="cpu", cache_dir=str(tmp_path), offline=False, endpoint="http://127.0.0.1:9")
    with pytest.raises(HubUnavailableError, match="could not be reached") as info:
        load_model("acme/tiny", options=options)
    assert info.value.permanent is False


def test_pickle_only_weights_are_refused(tmp_path: Path, tiny_folder: Path) -> None:
    (tmp_path / "config.json").write_text((tiny_folder / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(UnsafeWeightsError, match="pickle"):
        load_model(str(tmp_path), options=CPU)


def test_pickle_only_hub_snapshot_is_refused(tmp_path: Path, tiny_folder: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "config.json").write_text((tiny_folder / "config.json").read_text())
    (source / "pytorch_model.bin.index.json").write_text("{}")
    build_hub_cache(tmp_path / "cache", "acme/pickled", {SHA_MAIN: source}, {"main": SHA_MAIN})
    with pytest.raises(UnsafeWeightsError):
        load_model(
            "acme/pickled", options=LoadOptions(device="cpu", cache_dir=str(tmp_path / "cache"), offline=True)
        )


def test_remote_code_is_refused(tmp_path: Path) -> None:
    config = {"model_type": "acme_custom", "auto_map": {"AutoModelForCausalLM": "modeling_acme.AcmeModel"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(RemoteCodeRequiredError, match="trust_remote_code"):
        load_model(str(tmp_path), options=CPU)


def test_unsupported_architecture_is_refused(tmp_path: Path, tiny_folder: Path) -> None:
    config = json.loads((tiny_folder / "config.json").read_text())
    config["model_type"] = "mamba"
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes((tiny_folder / "model.safetensors").read_bytes())
    with pytest.raises(UnsupportedArchitectureError, match=r"supported: .*llama"):
        load_model(str(tmp_path), options=CPU)


def test_too_little_memory_is_refused_before_loading(tiny_folder: Path) -> None:
    with pytest.raises(InsufficientMemoryError, match="need about"):
        load_model(str(tiny_folder), options=LoadOptions(device="cpu", memory_limit_bytes=1000))


def test_missing_paths_and_bad_names(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError):
        parse_source(str(tmp_path / "absent.gguf"))
    with pytest.raises(ModelNotFoundError):
        parse_source("./no/such/folder")
    with pytest.raises(ModelNotFoundError):
        parse_source("not a model id")
    with pytest.raises(InvalidInputError):
        parse_source("")
    (tmp_path / "weights.txt").write_text("x")
    with pytest.raises(InvalidInputError):
        parse_source(str(tmp_path / "weights.txt"))
    with pytest.raises(ModelNotFoundError, match=r"config\.json"):
        load_model(str(tmp_path), options=CPU)


def test_bad_dtype_and_device(tiny_folder: Path) -> None:
    with pytest.raises(InvalidInputError, match="dtype"):
        load_model(str(tiny_folder), options=LoadOptions(device="cpu", dtype="float8"))
    with pytest.raises(InvalidInputError, match="device"):
        load_model(str(tiny_folder), options=LoadOptions(device="tpu"))


def test_explicit_dtype(tiny_folder: Path) -> None:
    loaded = load_model(str(tiny_folder), options=LoadOptions(device="cpu", dtype="bfloat16"))
    assert loaded.dtype == torch.bfloat16
    assert loaded.adapter.down_weight(loaded.model, 0).dtype == torch.bfloat16


def test_wrap_model_takes_a_model_already_in_memory() -> None:
    model = tiny_model("gpt2", num_layers=1).model.train()
    model.requires_grad_(True)
    loaded = wrap_model(model.to(torch.float64), name="mine")
    assert loaded.model_id == "mine" and loaded.adapter.model_type == "gpt2"
    assert loaded.dtype == torch.float64 and loaded.device == torch.device("cpu")
    assert not loaded.model.training and not any(p.requires_grad for p in loaded.model.parameters())
    assert loaded.parameter_count == sum(p.numel() for p in model.parameters())
    model.config.model_type = "mystery"
    with pytest.raises(UnsupportedArchitectureError):
        wrap_model(model)
