"""The bundle formats by name, and rendering a manifest in one of them.

Adding a format: one module in `bundles/formats/` with its `SPEC`, one entry in `REGISTRY`, one test.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bundles.common import FormatSpec, RenderedBundle, bundle_filename_stem
from bundles.formats import (
    autoround,
    gptqmodel,
    json_manifest,
    llama_cpp,
    llm_compressor,
    safetensors_bundle,
    torchao,
)
from bundles.options import DEFAULT_KEEP, DEFAULT_SCHEME, RenderOptions, check_render_options
from contracts.errors import BundleFormatError
from contracts.manifest import check_manifest

#: every format, in the order the API, the CLI and the web pages list them
REGISTRY: dict[str, FormatSpec] = {
    spec.name: spec
    for spec in (
        json_manifest.SPEC,
        safetensors_bundle.SPEC,
        llama_cpp.SPEC,
        llm_compressor.SPEC,
        gptqmodel.SPEC,
        autoround.SPEC,
        torchao.SPEC,
    )
}
FORMATS = tuple(REGISTRY)


def check_options(format: str, options: RenderOptions | None = None) -> str:
    """The normalised format name; `BundleFormatError` for an unknown format or option (check before work)."""
    options = options or RenderOptions()
    name = format.strip().lower()
    if name not in REGISTRY:
        raise BundleFormatError(f"unknown bundle format {format!r}; choose from {', '.join(FORMATS)}")
    check_render_options(options)
    return name


def render_bundle(
    manifest: Mapping[str, Any],
    format: str,
    *,
    tensor_type: str | None = None,
    scheme: str = DEFAULT_SCHEME,
    keep: str = DEFAULT_KEEP,
    group_size: int | None = None,
) -> RenderedBundle:
    """Render a checked manifest in `format` (one of `FORMATS`); the options are `RenderOptions`' fields."""
    options = RenderOptions(keep=keep, tensor_type=tensor_type, scheme=scheme, group_size=group_size)
    spec = REGISTRY[check_options(format, options)]
    check_manifest(manifest)
    stem = bundle_filename_stem(manifest)
    return RenderedBundle(spec.render(manifest, options), spec.content_type, f"{stem}{spec.suffix}")
