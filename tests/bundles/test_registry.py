"""The format registry: one spec per format, in order, and a package without torch or a database."""

from __future__ import annotations

import subprocess
import sys

import pytest

import bundles
from bundles.registry import REGISTRY
from tests.bundles.conftest import sample_manifest


def test_formats_are_the_registry_in_order() -> None:
    assert bundles.FORMATS == (
        "json",
        "safetensors",
        "llama.cpp",
        "llm-compressor",
        "gptqmodel",
        "autoround",
        "torchao",
    )
    assert all(REGISTRY[name].name == name for name in bundles.FORMATS)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_each_spec_names_its_rendering(name: str) -> None:
    spec = REGISTRY[name]
    manifest = sample_manifest()
    rendered = bundles.render_bundle(manifest, name)
    assert rendered.body == spec.render(manifest, bundles.RenderOptions())
    assert rendered.content_type == spec.content_type
    assert rendered.filename == bundles.bundle_filename_stem(manifest) + spec.suffix


def test_safetensors_codec_round_trips() -> None:
    manifest = sample_manifest()
    body = bundles.render_bundle(manifest, "safetensors").body
    assert bundles.manifest_from_safetensors(body) == manifest


def test_bundles_loads_no_torch_database_or_web() -> None:
    code = (
        "import bundles, sys; "
        "print(sorted(m for m in ('torch', 'numpy', 'sqlalchemy', 'fastapi', 'rich', 'catalog', 'api', "
        "'indexer') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
