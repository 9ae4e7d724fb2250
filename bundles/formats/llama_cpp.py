"""`llama.cpp`: a zip of a `--tensor-type-file` for llama-quantize, the HF <-> GGUF mapping and a README."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from bundles.common import (
    LM_HEAD_RULE,
    FormatSpec,
    gguf_index,
    gguf_tensor_name,
    header_lines,
    hf_tensor_name,
    identity,
    write_zip,
)
from bundles.options import RenderOptions, llama_cpp_type_for
from contracts.manifest import COARSE_NOTE


def llama_cpp_pattern(gguf_tensor: str) -> str:
    """An anchored regular expression that names exactly one GGUF tensor (llama.cpp lower-cases patterns)."""
    return "^" + re.escape(gguf_tensor) + "$"


def llama_cpp_mapping(manifest: Mapping[str, Any], options: RenderOptions | None = None) -> dict[str, Any]:
    """HF <-> GGUF names, indices and shapes of every super-weight tensor, with the type it is kept at."""
    kept = llama_cpp_type_for(manifest, options or RenderOptions())
    provenance = manifest.get("provenance") or {}
    hidden, intermediate = provenance.get("hidden_size"), provenance.get("intermediate_size")
    ne = [intermediate, hidden] if isinstance(hidden, int) and isinstance(intermediate, int) else None
    tensors: dict[str, dict[str, Any]] = {}
    for weight in manifest["super_weights"]:
        name = gguf_tensor_name(weight)
        entry = tensors.setdefault(
            name,
            {
                "gguf_tensor": name,
                "hf_tensor": hf_tensor_name(weight),
                "layer": weight["layer"],
                "type": kept,
                "pattern": llama_cpp_pattern(name),
                "ne": ne,
                "super_weights": [],
            },
        )
        entry["super_weights"].append(
            {
                "layer": weight["layer"],
                "row": weight["row"],
                "col": weight["col"],
                "hf_index": [weight["row"], weight["col"]],
                "gguf_index": gguf_index(weight),
                "value": weight.get("value"),
                "status": weight.get("status"),
            }
        )
    return {
        **identity(manifest),
        "schema_version": manifest["schema_version"],
        "note": COARSE_NOTE,
        "lm_head": LM_HEAD_RULE,
        "gguf_index_order": "ne order, fastest dimension first: [col, row] = [input channel, output channel]",
        "tensor_type": kept,
        "tensors": sorted(tensors.values(), key=lambda t: (t["layer"], t["gguf_tensor"])),
    }


def llama_cpp_tensor_types(manifest: Mapping[str, Any], options: RenderOptions | None = None) -> str:
    """The `--tensor-type-file` text: `pattern=type` lines and nothing else (llama.cpp has no comments)."""
    mapping = llama_cpp_mapping(manifest, options)
    return "".join(f"{t['pattern']}={t['type']}\n" for t in mapping["tensors"])


def render_llama_cpp(manifest: Mapping[str, Any], options: RenderOptions | None = None) -> bytes:
    """A zip of `tensor-types.txt` (for `llama-quantize --tensor-type-file`), `mapping.json`, `README.txt`."""
    mapping = llama_cpp_mapping(manifest, options)
    types_text = llama_cpp_tensor_types(manifest, options)
    readme = "\n".join(
        [
            *header_lines(manifest, "#"),
            "",
            "tensor-types.txt keeps every GGUF tensor that holds a super weight at "
            f"{mapping['tensor_type']}; mapping.json names the HF tensor, the GGUF tensor, its `ne` shape",
            "and both indices (GGUF `ne` order is [col, row]). Quantize from an F16/BF16/F32 GGUF of this",
            "revision:",
            "",
            "    llama-quantize --tensor-type-file tensor-types.txt model-f32.gguf model-q4_k_m.gguf Q4_K_M",
            "    swi check model-q4_k_m.gguf --bundle <this bundle as .swi.json>",
            "",
            "The type is never below what any mix would pick (q8_0, or f16/bf16/f32 for the exact value); do",
            "not use the file for an F16/BF16/F32 target, which is above it. The file has no comments on",
            "purpose: llama-quantize reads whitespace-separated pattern=type entries and rejects anything",
            "else.",
            f"lm_head: {LM_HEAD_RULE}.",
            "",
        ]
    )
    return write_zip(
        {
            "tensor-types.txt": types_text,
            "mapping.json": json.dumps(mapping, indent=2, ensure_ascii=False) + "\n",
            "README.txt": readme,
        }
    )


SPEC = FormatSpec("llama.cpp", render_llama_cpp, "application/zip", ".llama-cpp.zip")
