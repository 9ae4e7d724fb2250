"""The bundle formats: lossless json <-> safetensors, and each tool's real configuration syntax."""

from __future__ import annotations

import io
import json
import re
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
import yaml

from catalog import bundle_formats as formats
from catalog.bundle_formats import render_bundle
from contracts.errors import BundleFormatError
from contracts.manifest import build_manifest, manifest_sha256
from indexer import bundles
from tests.bundles.conftest import SHA, sample_manifest

DTYPES = ("float32", "bfloat16", "float16")


@pytest.mark.parametrize("dtype", DTYPES)
def test_safetensors_round_trip_is_bit_exact(dtype: str) -> None:
    manifest = sample_manifest(dtype)
    body = render_bundle(manifest, "safetensors").body
    tensors = safetensors.torch.load(body)
    torch_dtype = getattr(torch, dtype)
    for tensor, entries in (
        ("model.layers.1.mlp.down_proj.weight", manifest["super_weights"][:2]),
        ("model.layers.11.mlp.down_proj.weight", manifest["super_weights"][2:]),
    ):
        assert tensors[f"{tensor}.rows"].dtype == torch.int32
        assert tensors[f"{tensor}.rows"].tolist() == [w["row"] for w in entries]
        assert tensors[f"{tensor}.cols"].tolist() == [w["col"] for w in entries]
        values = tensors[f"{tensor}.values"]
        assert values.dtype == torch_dtype
        expected = torch.tensor([w["value"] for w in entries], dtype=torch.float64).to(torch_dtype)
        assert torch.equal(
            values.view(torch.int16 if values.element_size() == 2 else torch.int32),
            expected.view(torch.int16 if values.element_size() == 2 else torch.int32),
        )
        assert tensors[f"{tensor}.values_f32"].tolist() == [w["value_float32"] for w in entries]
    # back to JSON: the same manifest, the same bytes
    recovered = formats.manifest_from_safetensors(body)
    assert recovered == manifest
    assert render_bundle(recovered, "json").body == render_bundle(manifest, "json").body
    # the indexer reads both forms into the same bundle
    from_json = bundles.parse_bundle_bytes(render_bundle(manifest, "json").body)
    from_safetensors = bundles.parse_bundle_bytes(body)
    assert from_json == from_safetensors
    assert [w.value for w in from_json.weights] == [w["value"] for w in manifest["super_weights"]]


def test_safetensors_metadata_identifies_the_model(tmp_path: Path) -> None:
    manifest = sample_manifest()
    body = render_bundle(manifest, "safetensors").body
    from safetensors import safe_open

    path = tmp_path / "bundle.safetensors"
    path.write_bytes(body)
    with safe_open(str(path), framework="pt") as opened:
        metadata = opened.metadata()
    assert metadata["swi.model"] == "acme/llama-tiny"
    assert metadata["swi.revision"] == SHA
    assert metadata["swi.manifest_sha256"] == manifest["sha256"]
    assert metadata["swi.schema_version"] == "1"


def test_values_a_dtype_cannot_hold_are_refused_not_rounded() -> None:
    manifest = sample_manifest("float32")
    for entry in manifest["super_weights"]:
        entry["dtype"] = "bfloat16"  # claims bf16, holds float32 values
    manifest["sha256"] = manifest_sha256(manifest)
    with pytest.raises(BundleFormatError, match="not a bfloat16 value"):
        render_bundle(manifest, "safetensors")


def test_a_tampered_manifest_is_refused_on_both_sides() -> None:
    manifest = sample_manifest()
    manifest["super_weights"][0]["col"] += 1
    with pytest.raises(BundleFormatError, match="sha256 mismatch"):
        render_bundle(manifest, "json")
    with pytest.raises(bundles.BundleFormatError, match="sha256 mismatch"):
        bundles.parse_manifest(manifest)
    manifest = sample_manifest()
    manifest["schema_version"] = 2
    with pytest.raises(bundles.BundleFormatError, match="schema_version"):
        bundles.parse_manifest(manifest)


@pytest.mark.parametrize(
    ("name", "content_type", "suffix"),
    [
        ("json", "application/json", ".swi.json"),
        ("safetensors", "application/octet-stream", ".swi.safetensors"),
        ("llama.cpp", "application/zip", ".llama-cpp.zip"),
        ("llm-compressor", "application/yaml", ".llm-compressor.yaml"),
        ("gptqmodel", "application/json", ".gptqmodel.json"),
        ("autoround", "text/x-shellscript; charset=utf-8", ".autoround.sh"),
        ("torchao", "text/x-python; charset=utf-8", ".torchao.py"),
    ],
)
def test_every_format_has_its_media_type_and_names_the_revision(
    name: str, content_type: str, suffix: str
) -> None:
    manifest = sample_manifest()
    rendered = render_bundle(manifest, name)
    assert rendered.content_type == content_type
    assert rendered.filename == f"acme__llama-tiny-{SHA[:12]}{suffix}"
    assert rendered.content_disposition == f'attachment; filename="{rendered.filename}"'
    if name == "llama.cpp":
        text = zipfile.ZipFile(io.BytesIO(rendered.body)).read("mapping.json")
    else:
        text = rendered.body
    assert SHA.encode() in text and manifest["sha256"].encode() in text
    assert render_bundle(manifest, name).body == rendered.body, "rendering is deterministic (strong ETags)"


def test_unknown_formats_and_options_are_refused() -> None:
    manifest = sample_manifest()
    with pytest.raises(BundleFormatError, match="unknown bundle format"):
        render_bundle(manifest, "gguf")
    with pytest.raises(BundleFormatError, match=r"llama\.cpp tensor type"):
        render_bundle(manifest, "llama.cpp", tensor_type="q4_0")
    with pytest.raises(BundleFormatError, match="scheme"):
        render_bundle(manifest, "llm-compressor", scheme="W4A16; rm -rf")


def _module_names(layers: int = 12) -> list[str]:
    return [f"model.layers.{i}.{part}" for i in range(layers) for part in ("mlp.down_proj", "mlp.up_proj")]


def test_llama_cpp_tensor_type_file_is_pure_pattern_type_lines() -> None:
    rendered = render_bundle(sample_manifest(), "llama.cpp", tensor_type="Q6_K")
    archive = zipfile.ZipFile(io.BytesIO(rendered.body))
    assert sorted(archive.namelist()) == ["README.txt", "mapping.json", "tensor-types.txt"]
    text = archive.read("tensor-types.txt").decode()
    entries = text.split()  # llama-quantize reads whitespace-separated tokens, each `pattern=type`
    assert entries == [r"^blk\.1\.ffn_down\.weight$=q6_k", r"^blk\.11\.ffn_down\.weight$=q6_k"]
    names = [f"blk.{i}.{t}.weight" for i in range(12) for t in ("ffn_down", "ffn_up", "attn_q")]
    for entry in entries:
        pattern = entry.split("=", 1)[0].lower()  # llama.cpp lower-cases the pattern
        assert len([n for n in names if re.search(pattern, n)]) == 1
    mapping = json.loads(archive.read("mapping.json"))
    first = mapping["tensors"][0]
    assert first["hf_tensor"] == "model.layers.1.mlp.down_proj.weight"
    assert first["super_weights"][0]["gguf_index"] == [7890, 2533]
    assert first["super_weights"][0]["hf_index"] == [2533, 7890]
    assert "coarse" in mapping["note"]


def test_llm_compressor_recipe_ignores_exactly_the_super_weight_modules() -> None:
    recipe = yaml.safe_load(render_bundle(sample_manifest(), "llm-compressor").body)
    modifier = recipe["quant_stage"]["quant_modifiers"]["QuantizationModifier"]
    assert modifier["scheme"] == "W4A16" and modifier["targets"] == ["Linear"]
    assert modifier["ignore"][0] == "lm_head"
    patterns = [item.removeprefix("re:") for item in modifier["ignore"][1:]]
    assert all(item.startswith("re:") for item in modifier["ignore"][1:])
    ignored = {n for n in _module_names() if any(re.match(p, n) for p in patterns)}
    assert ignored == {"model.layers.1.mlp.down_proj", "model.layers.11.mlp.down_proj"}


def test_gptqmodel_dynamic_skips_exactly_the_super_weight_modules() -> None:
    document = json.loads(render_bundle(sample_manifest(), "gptqmodel").body)
    assert document["revision"] == SHA and "coarse" in document["note"]
    keys = list(document["dynamic"])
    assert all(key.startswith("-:") and document["dynamic"][key] == {} for key in keys)
    skipped = {n for n in _module_names() if any(re.match(k.removeprefix("-:"), n) for k in keys)}
    assert skipped == {"model.layers.1.mlp.down_proj", "model.layers.11.mlp.down_proj"}


def test_autoround_snippet_sets_the_fp_layers_value(tmp_path: Path) -> None:
    path = tmp_path / "bundle.autoround.sh"
    path.write_bytes(render_bundle(sample_manifest(), "autoround").body)
    shown = subprocess.run(
        ["sh", "-c", '. "$1" && printf "%s|%s" "$SWI_FP_LAYERS" "$SWI_REVISION"', "sh", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert shown == f"model.layers.1.mlp.down_proj,model.layers.11.mlp.down_proj|{SHA}"
    # AutoRound matches each name as a substring: layer 1's name is no substring of layer 11's
    names = shown.split("|")[0].split(",")
    assert {n for n in _module_names() if any(name in n for name in names)} == set(names)


def test_torchao_snippet_filters_the_super_weight_modules() -> None:
    source = render_bundle(sample_manifest(), "torchao").body.decode()
    namespace: dict[str, Any] = {}
    exec(compile(source, "bundle.torchao.py", "exec"), namespace)  # generated by us, not downloaded
    assert namespace["REVISION"] == SHA
    linear = torch.nn.Linear(2, 2)
    assert namespace["quantize_filter"](linear, "model.layers.2.mlp.down_proj")
    assert not namespace["quantize_filter"](linear, "model.layers.1.mlp.down_proj")
    assert not namespace["quantize_filter"](torch.nn.LayerNorm(2), "model.norm")
    config = namespace["fqn_to_config"]("int4")
    assert config == {
        "_default": "int4",
        "model.layers.1.mlp.down_proj": None,
        "model.layers.11.mlp.down_proj": None,
    }


def test_reported_coordinates_without_values_still_render() -> None:
    manifest = build_manifest(
        model="huggyllama/llama-7b",
        revision=None,
        super_weights=[
            {
                "layer": 2,
                "row": 3968,
                "col": 7003,
                "value": None,
                "value_float32": None,
                "dtype": None,
                "hf_tensor": None,
                "gguf_tensor": None,
                "gguf_index": None,
                "status": "reported",
                "decided_by": [],
            }
        ],
        super_activation=None,
        provenance={},
    )
    for name in formats.FORMATS:
        rendered = render_bundle(manifest, name)
        assert rendered.filename.startswith("huggyllama__llama-7b-reported")
    tensors = safetensors.torch.load(render_bundle(manifest, "safetensors").body)
    assert set(tensors) == {
        "model.layers.2.mlp.down_proj.weight.rows",
        "model.layers.2.mlp.down_proj.weight.cols",
    }
    bundle = bundles.parse_bundle_bytes(render_bundle(manifest, "safetensors").body)
    assert bundle.weights[0].gguf_tensor == "blk.2.ffn_down.weight" and bundle.weights[0].value is None
