"""The Python helper on a tiny planted model: loading, checks, bit-exact restore, the activation hold-out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from bundles import render_bundle
from contracts.errors import BundleError, BundleFormatError
from contracts.manifest import manifest_sha256
from indexer.bundles.bundle import BundleMismatchError, BundleUnavailableError, parse_manifest
from indexer.bundles.hold_out import quantize_holding_out, super_activation_hold_out
from indexer.bundles.load import load_bundle
from indexer.bundles.protect import UnsupportedQuantizerError, protect_super_weights
from indexer.model.loading import LoadedModel
from indexer.validation.quantize import (
    ClipSpec,
    Granularity,
    fake_quantized_activations,
    linear_targets,
    rtn_quantize_model_,
)
from tests.bundles.conftest import PLANTED, SHA
from tests.live_server import serving_folder
from tests.tiny import plant_super_weight, tiny_model

GRANULARITIES = (Granularity(), Granularity(group_size=16), Granularity(block_size=1024))


def _weights(loaded: LoadedModel) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in loaded.model.named_parameters()}


def _fresh() -> LoadedModel:
    loaded = tiny_model("llama", num_layers=4)
    plant_super_weight(loaded, *PLANTED, weight=4.0, pre_activation=16.0)
    return loaded


def _rehashed(manifest: dict[str, Any]) -> dict[str, Any]:
    manifest["sha256"] = manifest_sha256(manifest)
    return manifest


@pytest.mark.parametrize("granularity", GRANULARITIES, ids=lambda g: g.label)
def test_protection_around_rtn_gives_the_projects_hold_out_exactly(
    planted: LoadedModel, planted_manifest: dict[str, Any], granularity: Granularity
) -> None:
    bundle = parse_manifest(planted_manifest)
    original = planted.model.get_submodule("model.layers.1.mlp.down_proj").weight[10, 20].clone()
    with protect_super_weights(planted, bundle) as protected:
        assert protected.values == (float(original),)
        rtn_quantize_model_(planted.model, 4, granularity)  # any quantizer; this one knows nothing of bundles
    after = planted.model.get_submodule("model.layers.1.mlp.down_proj").weight[10, 20]
    assert torch.equal(after, original), "the super weight is back, bit for bit"
    reference = _fresh()
    rtn_quantize_model_(reference.model, 4, granularity, hold_out=protected.hold_out)
    for name, weight in _weights(reference).items():
        assert torch.equal(weight, planted.model.get_parameter(name)), name


def test_clipping_first_gives_the_projects_clipped_variant_exactly(
    planted: LoadedModel, planted_manifest: dict[str, Any]
) -> None:
    clip = ClipSpec("zscore", 3.0)
    with protect_super_weights(
        planted, parse_manifest(planted_manifest), hold_out=False, clip=clip
    ) as protected:
        rtn_quantize_model_(planted.model, 3, Granularity(group_size=16))
    reference = _fresh()
    rtn_quantize_model_(reference.model, 3, Granularity(group_size=16), restore=protected.hold_out, clip=clip)
    for name, weight in _weights(reference).items():
        assert torch.equal(weight, planted.model.get_parameter(name)), name


def test_originals_come_back_after_a_failing_quantizer(
    planted: LoadedModel, planted_manifest: dict[str, Any]
) -> None:
    before = _weights(planted)
    with (
        pytest.raises(RuntimeError, match="quantizer broke"),
        protect_super_weights(planted, parse_manifest(planted_manifest)),
    ):
        raise RuntimeError("quantizer broke")
    for name, weight in before.items():
        assert torch.equal(weight, planted.model.get_parameter(name)), name


def _state(loaded: LoadedModel) -> dict[str, tuple[type, torch.Tensor]]:
    """Every parameter and buffer with its type, and every module's class: what must come back exactly."""
    model = loaded.model
    state = {f"p:{n}": (type(p.data), p.detach().clone()) for n, p in model.named_parameters()}
    state |= {f"b:{n}": (type(b), b.detach().clone()) for n, b in model.named_buffers()}
    state |= {f"m:{n}": (type(m), torch.empty(0)) for n, m in model.named_modules()}
    return state


def _assert_identical(loaded: LoadedModel, before: dict[str, tuple[type, torch.Tensor]]) -> None:
    after = _state(loaded)
    assert after.keys() == before.keys()
    for name, (kind, tensor) in before.items():
        assert after[name][0] is kind, name
        assert after[name][1].dtype == tensor.dtype and torch.equal(
            after[name][1].view(torch.uint8) if tensor.numel() else after[name][1],
            tensor.view(torch.uint8) if tensor.numel() else tensor,
        ), f"{name} is not bit-identical"


def test_a_quantizer_that_fails_half_way_leaves_the_model_bit_identical(
    planted: LoadedModel, planted_manifest: dict[str, Any]
) -> None:
    before = _state(planted)

    def quantizer_that_fails() -> None:
        rtn_quantize_model_(planted.model, 2, Granularity(group_size=16))
        planted.model.get_submodule("model.layers.2.mlp.up_proj").weight.data = torch.zeros(3)
        raise RuntimeError("out of memory")

    with (
        pytest.raises(RuntimeError, match="out of memory"),
        protect_super_weights(planted, parse_manifest(planted_manifest)),
    ):
        quantizer_that_fails()
    _assert_identical(planted, before)


def _store_scales(model: torch.nn.Module) -> None:
    """What llm-compressor does: a scale parameter per module, the weight clamped to the stored range."""
    for target in linear_targets(model):
        scale = target.weight.detach().abs().amax(dim=1, keepdim=True) / 7
        target.module.register_parameter("weight_scale", torch.nn.Parameter(scale, requires_grad=False))
        with torch.no_grad():
            target.weight.copy_((target.weight / scale).round().clamp(-8, 7) * scale)


class _Packed(torch.nn.Module):
    """A module swapped in for a Linear (what torchao and packing quantizers do)."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.register_buffer("qweight", linear.weight.detach().to(torch.int8))


def _swap_modules(model: torch.nn.Module) -> None:
    mlp = model.get_submodule("model.layers.1.mlp")
    mlp.down_proj = _Packed(mlp.down_proj)


def _replace_tensor_type(model: torch.nn.Module) -> None:
    weight = model.get_submodule("model.layers.1.mlp.down_proj").weight
    weight.data = weight.data.to(torch.float16)


@pytest.mark.parametrize(
    ("quantize", "named"),
    [(_store_scales, "weight_scale"), (_swap_modules, "_Packed"), (_replace_tensor_type, "float16")],
    ids=["stores-scales", "swaps-modules", "replaces-tensor-types"],
)
def test_quantizers_that_store_scales_or_replace_types_are_refused_and_undone(
    planted: LoadedModel, planted_manifest: dict[str, Any], quantize: Any, named: str
) -> None:
    before = _state(planted)
    with (
        pytest.raises(UnsupportedQuantizerError, match=rf"{named}.*Use the tool's bundle format"),
        protect_super_weights(planted, parse_manifest(planted_manifest)),
    ):
        quantize(planted.model)
    _assert_identical(planted, before)


def test_a_bundle_of_another_revision_is_refused(
    planted: LoadedModel, planted_manifest: dict[str, Any]
) -> None:
    manifest = _rehashed({**planted_manifest, "revision": SHA})
    bundle = parse_manifest(manifest)
    # a local copy has no commit sha: its layers, shapes and exact stored values identify it
    assert len(bundle.check(planted)) == 1
    with pytest.raises(BundleMismatchError, match="revision is unknown"):
        bundle.check(planted, check_values=False)
    with pytest.raises(BundleMismatchError, match=f"the model is {'0' * 40}"):
        bundle.check(planted, revision="0" * 40)
    assert len(bundle.check(planted, revision=SHA)) == 1
    assert len(bundle.check(planted, check_revision=False)) == 1


def test_a_bundle_of_another_shape_or_other_weights_is_refused(
    planted: LoadedModel, planted_manifest: dict[str, Any]
) -> None:
    wider = dict(planted_manifest)
    wider["provenance"] = {**planted_manifest["provenance"], "intermediate_size": 256}
    with pytest.raises(BundleMismatchError, match=r"64x128 here, \(64, 256\) in the bundle"):
        parse_manifest(_rehashed(wider)).check(planted)
    deeper = dict(planted_manifest)
    deeper["provenance"] = {**planted_manifest["provenance"], "num_layers": 30}
    with pytest.raises(BundleMismatchError, match="has 30 layers, this one 4"):
        parse_manifest(_rehashed(deeper)).check(planted)
    outside = dict(planted_manifest)
    outside["super_weights"] = [{**planted_manifest["super_weights"][0], "row": 64}]
    with pytest.raises(BundleMismatchError, match="outside"):
        parse_manifest(_rehashed(outside)).check(planted)
    other = tiny_model("llama", num_layers=4, seed=1)  # same shapes, other weights
    before = _weights(other)
    with (
        pytest.raises(BundleMismatchError, match="the model stores"),
        protect_super_weights(other, parse_manifest(planted_manifest)),
    ):
        pass
    for name, weight in before.items():
        assert torch.equal(weight, other.model.get_parameter(name)), "a refused bundle changes nothing"


def test_a_plain_transformers_module_is_checked_too(
    planted: LoadedModel, planted_manifest: dict[str, Any]
) -> None:
    bundle = parse_manifest(planted_manifest)
    resolved = bundle.check(planted.model)  # nn.Module: adapter from config.model_type
    assert [r.module for r in resolved] == ["model.layers.1.mlp.down_proj"]
    with pytest.raises(BundleMismatchError, match=r"config\.model_type"):
        bundle.check(torch.nn.Linear(2, 2))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A local HTTP server over `tmp_path` (the bundle download path, without any network)."""
    with serving_folder(tmp_path) as url:
        yield tmp_path, url


@pytest.mark.parametrize("name", ["json", "safetensors"])
def test_load_bundle_from_a_file_and_a_url(
    planted_manifest: dict[str, Any], served: tuple[Path, str], name: str
) -> None:
    folder, url = served
    rendered = render_bundle(planted_manifest, name)
    (folder / rendered.filename).write_bytes(rendered.body)
    from_file = load_bundle(folder / rendered.filename)
    from_url = load_bundle(f"{url}/{rendered.filename}")
    assert from_file == from_url == parse_manifest(planted_manifest)
    assert from_file.weights[0].coordinates == PLANTED
    with pytest.raises(BundleUnavailableError, match="could not download"):
        load_bundle(f"{url}/missing.json")


def test_load_bundle_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(BundleUnavailableError, match="not found"):
        load_bundle(tmp_path / "missing.swi.json")
    with pytest.raises(BundleUnavailableError, match="scheme"):
        load_bundle("ftp://example.org/bundle.json")
    (tmp_path / "junk.swi.json").write_text("{not json")
    with pytest.raises(BundleFormatError, match="not valid JSON"):
        load_bundle(tmp_path / "junk.swi.json")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 4)
    with pytest.raises(BundleFormatError, match="neither JSON nor safetensors"):
        load_bundle(tmp_path / "junk.safetensors")
    assert issubclass(BundleFormatError, BundleError)


def test_super_activation_is_held_out_of_activation_quantization(
    planted: LoadedModel, planted_manifest: dict[str, Any]
) -> None:
    bundle = parse_manifest(planted_manifest)
    assert bundle.super_activation is not None and bundle.super_activation.channel == PLANTED[1]
    targets = linear_targets(planted.model)
    by_name = {t.name: t for t in targets}
    ids = planted.tokenizer("Apple Inc. is a worldwide tech company.", return_tensors="pt")["input_ids"]
    seen: dict[str, Any] = {}
    captured: dict[str, torch.Tensor] = {}

    def capture(name: str) -> Any:
        def hook(_module: torch.nn.Module, args: tuple[Any, ...]) -> None:
            captured[name] = args[0].detach().clone()

        return hook

    watched = ["model.layers.1.mlp.down_proj", "model.layers.2.self_attn.q_proj"]
    with super_activation_hold_out(planted, bundle) as hold_out:

        def positions(target: Any) -> Any:
            found = hold_out.positions(target)
            seen[target.name] = found
            return found

        handles = [by_name[n].module.register_forward_pre_hook(capture(n)) for n in watched]
        try:
            with fake_quantized_activations(planted.model, targets, 8, positions), torch.inference_mode():
                planted.model(input_ids=ids, use_cache=False)
        finally:
            for handle in handles:
                handle.remove()
    sites, channels = seen["model.layers.1.mlp.down_proj"]
    assert (0, 0) in sites and list(channels) == [PLANTED[2]]
    assert list(seen["model.layers.2.self_attn.q_proj"][1]) == [PLANTED[1]]
    assert seen["model.layers.0.mlp.down_proj"] == ((), ())
    assert hold_out.sites == [], "the tracking hook is gone"


def test_quantize_holding_out_puts_the_exact_values_back() -> None:
    x = torch.randn(1, 4, 8)
    x[0, 0, 3] = 1000.0
    out = quantize_holding_out(x, [(0, 0)], [3], lambda t: t.round())
    assert out[0, 0, 3] == 1000.0
    assert torch.equal(out[0, 1:], x[0, 1:].round())
