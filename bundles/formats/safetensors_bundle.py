"""`safetensors`: the coordinates and stored values as tensors, the manifest in the metadata
(`bundles.safetensors_codec`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bundles import safetensors_codec
from bundles.common import FormatSpec
from bundles.options import RenderOptions


def render_safetensors(manifest: Mapping[str, Any]) -> bytes:
    """A safetensors file: per source tensor `.rows`/`.cols` (int32), `.values` (stored dtype), `.values_f32`.

    `__metadata__` holds the identifying fields as strings and the whole manifest (compact JSON), so the
    file converts back to the JSON manifest losslessly.
    """
    return safetensors_codec.encode(manifest)


def _render(manifest: Mapping[str, Any], _options: RenderOptions) -> bytes:
    return render_safetensors(manifest)


SPEC = FormatSpec("safetensors", _render, "application/octet-stream", ".swi.safetensors")
