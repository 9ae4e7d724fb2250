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

import bundles as formats
from bundles import render_bundle
from contracts.errors import BundleFormatError
from contracts.manifest import build_manifest, manifest_sha256
from indexer.bundles import load as bundles
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
    with pytest.raises(BundleFormatError, match="unknown keep mode"):
        render_bundle(manifest, "gptqmodel", keep="fp4")


@pytest.mark.parametrize("lower", ["q6_k", "q5_k", "q5_1", "q5_0", "q4_k", "q2_k"])
def test_llama_cpp_types_below_any_mix_are_refused_with_the_reason(lower: str) -> None:
    with pytest.raises(BundleFormatError, match=r"Q4_K_M keeps blk\.N\.ffn_down at Q6_K by itself"):
        render_bundle(sample_manifest(), "llama.cpp", tensor_type=lower)


def _module_names(layers: int = 12) -> list[str]:
    return [f"model.layers.{i}.{part}" for i in range(layers) for part in ("mlp.down_proj", "mlp.up_proj")]


def _smollm2_like(dtype: str = "float32") -> dict[str, Any]:
    """A manifest whose provenance has SmolLM2's widths: 576 columns, which 128 does not divide."""
    manifest = sample_manifest(dtype)
    manifest["provenance"] = {**manifest["provenance"], "hidden_size": 576, "intermediate_size": 1536}
    manifest["sha256"] = manifest_sha256(manifest)
    return manifest


def _tensor_types(manifest: dict[str, Any], **options: Any) -> list[str]:
    archive = zipfile.ZipFile(io.BytesIO(render_bundle(manifest, "llama.cpp", **options).body))
    return archive.read("tensor-types.txt").decode().split()


def test_llama_cpp_tensor_type_file_is_pure_pattern_type_lines() -> None:
    rendered = render_bundle(sample_manifest(), "llama.cpp", tensor_type="F16")
    archive = zipfile.ZipFile(io.BytesIO(rendered.body))
    assert sorted(archive.namelist()) == ["README.txt", "mapping.json", "tensor-types.txt"]
    text = archive.read("tensor-types.txt").decode()
    entries = text.split()  # llama-quantize reads whitespace-separated tokens, each `pattern=type`
    assert entries == [r"^blk\.1\.ffn_down\.weight$=f16", r"^blk\.11\.ffn_down\.weight$=f16"]
    names = [f"blk.{i}.{t}.weight" for i in range(12) for t in ("ffn_down", "ffn_up", "attn_q")]
    for entry in entries:
        pattern = entry.split("=", 1)[0].lower()  # llama.cpp lower-cases the pattern
        assert len([n for n in names if re.search(pattern, n)]) == 1
    mapping = json.loads(archive.read("mapping.json"))
    first = mapping["tensors"][0]
    assert first["hf_tensor"] == "model.layers.1.mlp.down_proj.weight"
    assert first["super_weights"][0]["gguf_index"] == [7890, 2533]
    assert first["super_weights"][0]["hf_index"] == [2533, 7890]
    assert "coarse" in mapping["note"] and "lm_head" in mapping["lm_head"]


@pytest.mark.parametrize(("dtype", "exact"), [("float32", "f32"), ("bfloat16", "bf16"), ("float16", "f16")])
def test_llama_cpp_keeps_8_bits_by_default_and_the_exact_type_for_full(dtype: str, exact: str) -> None:
    manifest = sample_manifest(dtype)
    assert {e.split("=")[1] for e in _tensor_types(manifest)} == {"q8_0"}
    assert {e.split("=")[1] for e in _tensor_types(manifest, keep="full")} == {exact}
    assert {e.split("=")[1] for e in _tensor_types(manifest, keep="full", tensor_type="f32")} == {"f32"}


def test_group_size_divides_the_models_widths_or_is_refused() -> None:
    manifest = _smollm2_like()
    assert formats.group_size_for(manifest) == 64, "128 does not divide 576 columns"
    assert formats.group_size_for(manifest, 32) == 32
    with pytest.raises(BundleFormatError, match="does not divide the model's input widths 576"):
        formats.group_size_for(manifest, 128)
    assert formats.group_size_for(sample_manifest()) == 128, "widths unknown: the tools' usual 128"


def _llm_compressor(manifest: dict[str, Any], **options: Any) -> dict[str, Any]:
    recipe = yaml.safe_load(render_bundle(manifest, "llm-compressor", **options).body)
    modifier: dict[str, Any] = recipe["quant_stage"]["quant_modifiers"]["QuantizationModifier"]
    return modifier


def test_llm_compressor_recipe_has_explicit_groups_and_promotes_the_super_weight_modules() -> None:
    modifier = _llm_compressor(_smollm2_like())
    assert modifier["ignore"] == ["lm_head"]
    groups = modifier["config_groups"]
    assert groups["group_0"]["targets"] == ["Linear"]
    assert groups["group_0"]["weights"] == {
        "num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": 64
    }  # fmt: skip
    assert groups["super_weights"]["weights"]["num_bits"] == 8
    assert groups["super_weights"]["weights"]["strategy"] == "channel"
    patterns = [t.removeprefix("re:") for t in groups["super_weights"]["targets"]]
    promoted = {n for n in _module_names() if any(re.match(p, n) for p in patterns)}
    assert promoted == {"model.layers.1.mlp.down_proj", "model.layers.11.mlp.down_proj"}
    assert (
        _llm_compressor(_smollm2_like(), group_size=32)["config_groups"]["group_0"]["weights"]["group_size"]
        == 32
    )
    assert (
        _llm_compressor(_smollm2_like(), scheme="W8A16")["config_groups"]["group_0"]["weights"]["num_bits"]
        == 8
    )


def test_llm_compressor_full_ignores_exactly_the_super_weight_modules() -> None:
    modifier = _llm_compressor(sample_manifest(), keep="full")
    assert modifier["ignore"][0] == "lm_head"
    assert set(modifier["config_groups"]) == {"group_0"}
    patterns = [item.removeprefix("re:") for item in modifier["ignore"][1:]]
    assert all(item.startswith("re:") for item in modifier["ignore"][1:])
    ignored = {n for n in _module_names() if any(re.match(p, n) for p in patterns)}
    assert ignored == {"model.layers.1.mlp.down_proj", "model.layers.11.mlp.down_proj"}


@pytest.mark.parametrize(("keep", "prefix", "override"), [("int8", "+:", {"bits": 8}), ("full", "-:", {})])
def test_gptqmodel_dynamic_promotes_or_skips_exactly_the_super_weight_modules(
    keep: str, prefix: str, override: dict[str, Any]
) -> None:
    document = json.loads(render_bundle(_smollm2_like(), "gptqmodel", keep=keep).body)
    assert document["revision"] == SHA and "coarse" in document["note"]
    assert document["group_size"] == 64 and document["bits"] == 4
    assert document["model_check"]["down_proj_shape"] == [576, 1536]
    keys = list(document["dynamic"])
    assert all(key.startswith(prefix) and document["dynamic"][key] == override for key in keys)
    matched = {n for n in _module_names() if any(re.match(k[2:], n) for k in keys)}
    assert matched == {"model.layers.1.mlp.down_proj", "model.layers.11.mlp.down_proj"}


def _autoround_values(tmp_path: Path, **options: Any) -> list[str]:
    path = tmp_path / "bundle.autoround.sh"
    path.write_bytes(render_bundle(_smollm2_like(), "autoround", **options).body)
    script = '. "$1" && printf "%s|%s|%s|%s" "$SWI_LAYER_CONFIG" "$SWI_IGNORE_LAYERS" '
    script += '"$SWI_REVISION" "$SWI_GROUP_SIZE"'
    shown = subprocess.run(
        ["sh", "-c", script, "sh", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return shown.split("|")


def test_autoround_snippet_sets_the_layer_config_or_the_ignored_layers(tmp_path: Path) -> None:
    layer_config, ignored, revision, group = _autoround_values(tmp_path)
    assert json.loads(layer_config) == {
        "model.layers.1.mlp.down_proj": {"bits": 8},
        "model.layers.11.mlp.down_proj": {"bits": 8},
    }
    assert ignored == "" and revision == SHA and group == "64"
    layer_config, ignored, _, _ = _autoround_values(tmp_path, keep="full")
    assert json.loads(layer_config) == {}
    assert ignored == "model.layers.1.mlp.down_proj,model.layers.11.mlp.down_proj"
    # AutoRound matches each name as a substring: layer 1's name is no substring of layer 11's
    names = ignored.split(",")
    assert {n for n in _module_names() if any(name in n for name in names)} == set(names)


def test_autoround_model_check_refuses_another_model(tmp_path: Path) -> None:
    path = tmp_path / "bundle.autoround.sh"
    path.write_bytes(render_bundle(_smollm2_like(), "autoround").body)
    (tmp_path / "model").mkdir()
    config = {"num_hidden_layers": 12, "hidden_size": 576, "intermediate_size": 1536}
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    check = ["sh", "-c", '. "$1" && swi_check_model "$2"', "sh", str(path), str(tmp_path / "model")]
    assert subprocess.run(check, capture_output=True, text=True).returncode == 0
    config["intermediate_size"] = 1024
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    refused = subprocess.run(check, capture_output=True, text=True)
    assert refused.returncode != 0 and "down_proj is [576, 1024]" in refused.stderr


def _torchao(manifest: dict[str, Any], **options: Any) -> dict[str, Any]:
    source = render_bundle(manifest, "torchao", **options).body.decode()
    namespace: dict[str, Any] = {}
    exec(compile(source, "bundle.torchao.py", "exec"), namespace)  # generated by us, not downloaded
    return namespace


def test_torchao_snippet_maps_every_linear_but_lm_head_without_default() -> None:
    from tests.tiny import tiny_model

    model = tiny_model("llama", num_layers=12).model
    namespace = _torchao(sample_manifest())
    assert namespace["REVISION"] == SHA
    mapping = namespace["fqn_to_config"](model, "int4", "int8")
    assert "_default" not in mapping and "lm_head" not in mapping
    assert mapping["model.layers.1.mlp.down_proj"] == "int8"
    assert mapping["model.layers.11.mlp.down_proj"] == "int8"
    assert mapping["model.layers.2.mlp.down_proj"] == "int4"
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"]
    assert sorted(mapping) == sorted(linears)
    full = _torchao(sample_manifest(), keep="full")["fqn_to_config"](model, "int4", "int8")
    assert full["model.layers.1.mlp.down_proj"] is None
    linear = torch.nn.Linear(2, 2)
    assert namespace["quantize_filter"](linear, "model.layers.2.mlp.down_proj")
    assert not namespace["quantize_filter"](linear, "model.layers.1.mlp.down_proj")
    assert not namespace["quantize_filter"](linear, "lm_head")
    assert not namespace["quantize_filter"](torch.nn.LayerNorm(2), "model.norm")


def test_torchao_model_check_enforces_shapes_and_a_known_commit_only() -> None:
    from tests.tiny import tiny_model

    loaded = tiny_model("llama", num_layers=12)
    model = loaded.model
    hidden, intermediate = model.get_submodule("model.layers.1.mlp.down_proj").weight.shape
    manifest = sample_manifest()
    manifest["provenance"] = {
        **manifest["provenance"],
        "hidden_size": hidden,
        "intermediate_size": intermediate,
    }
    manifest["sha256"] = manifest_sha256(manifest)
    check = _torchao(manifest)["check_model"]
    check(model)  # a local model without a commit sha: shapes and layers decide
    model.config._commit_hash = "0" * 40
    with pytest.raises(ValueError, match="the model is revision 0000"):
        check(model)
    model.config._commit_hash = SHA
    model.config._name_or_path = "acme/llama-tiny"
    check(model)
    wrong = dict(manifest, provenance={**manifest["provenance"], "intermediate_size": intermediate * 2})
    wrong["sha256"] = manifest_sha256(wrong)
    with pytest.raises(ValueError, match="bundle mismatch"):
        _torchao(wrong)["check_model"](model)
    # a GGUF bundle has a sha256: revision no model can have: it is not compared
    gguf = dict(manifest, revision="sha256:" + "a" * 64, model="SmolLM2.Q4_1.gguf")
    gguf["sha256"] = manifest_sha256(gguf)
    namespace = _torchao(gguf)
    assert namespace["REVISION"] is None
    namespace["check_model"](model)


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
