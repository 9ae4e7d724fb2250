"""`llm-compressor`: a recipe with explicit `config_groups`, the super-weight modules at 8 bits or ignored."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bundles.common import (
    LM_HEAD_RULE,
    FormatSpec,
    header_lines,
    model_check,
    protected_modules,
    regex_for_module,
)
from bundles.options import RenderOptions, group_size_for, scheme_bits


def _int_weights(bits: int, strategy: str, group_size: int | None) -> dict[str, Any]:
    weights: dict[str, Any] = {"num_bits": bits, "type": "int", "symmetric": True, "strategy": strategy}
    if group_size is not None:
        weights["group_size"] = group_size
    return weights


def llm_compressor_recipe(
    manifest: Mapping[str, Any], options: RenderOptions | None = None
) -> dict[str, Any]:
    """The llm-compressor recipe as data: explicit `config_groups`, super-weight modules at 8 bits or ignored.

    The grouped scheme's group size divides every input width the provenance names; the super-weight
    modules' group quantizes per output channel at 8 bits (keep=int8), or they are in `ignore` (keep=full).
    """
    options = options or RenderOptions()
    bits = scheme_bits(options.scheme)
    modules = [f"re:{regex_for_module(m)}" for m in protected_modules(manifest)]
    groups: dict[str, Any] = {
        "group_0": {
            "targets": ["Linear"],
            "weights": _int_weights(bits, "group", group_size_for(manifest, options.group_size)),
        }
    }
    ignore = ["lm_head"]
    if options.keep == "full":
        ignore += modules
    elif modules:
        # a module name target is more specific than a class target: compressed-tensors picks this group
        groups["super_weights"] = {"targets": modules, "weights": _int_weights(8, "channel", None)}
    return {
        "quant_stage": {
            "quant_modifiers": {"QuantizationModifier": {"ignore": ignore, "config_groups": groups}}
        }
    }


def render_llm_compressor(manifest: Mapping[str, Any], options: RenderOptions | None = None) -> bytes:
    """An llm-compressor recipe (YAML, written as JSON-compatible flow values) with explicit config_groups."""
    recipe = llm_compressor_recipe(manifest, options)
    check = model_check(manifest)
    lines = [
        *header_lines(manifest, "#"),
        f"# lm_head: {LM_HEAD_RULE}",
        f"# model check (swi check verifies the saved folder): {json.dumps(check)}",
        *_yaml_lines(recipe, 0),
        "",
    ]
    return "\n".join(lines).encode("utf-8")


def _yaml_lines(value: Mapping[str, Any], indent: int) -> list[str]:
    """Block YAML for nested mappings; lists and scalars as JSON (a YAML subset): no YAML library needed."""
    lines = []
    pad = " " * indent
    for key, item in value.items():
        if isinstance(item, Mapping) and item:
            lines.append(f"{pad}{key}:")
            lines += _yaml_lines(item, indent + 2)
        else:
            lines.append(f"{pad}{key}: {json.dumps(item)}")
    return lines


SPEC = FormatSpec("llm-compressor", render_llm_compressor, "application/yaml", ".llm-compressor.yaml")
