"""`json`: the schema-1 manifest itself, as indented UTF-8 JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bundles.common import FormatSpec
from bundles.options import RenderOptions


def render_json(manifest: Mapping[str, Any]) -> bytes:
    """The manifest as indented UTF-8 JSON (the hash is over the canonical form, not these bytes)."""
    return (json.dumps(manifest, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def _render(manifest: Mapping[str, Any], _options: RenderOptions) -> bytes:
    return render_json(manifest)


SPEC = FormatSpec("json", _render, "application/json", ".swi.json")
