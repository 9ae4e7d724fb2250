"""The tool-format options (`RenderOptions`) and their checks: keep mode, llama.cpp type, scheme, groups."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contracts.errors import BundleFormatError

#: GGML types a super-weight tensor may be kept at (llama.cpp's names): never below any mix's choice
LLAMA_CPP_TYPES = ("f32", "f16", "bf16", "q8_0")
#: why the other types are refused: a `--tensor-type` override could make them lower than the mix's choice
LLAMA_CPP_REFUSED_TYPE_REASON = (
    "llama-quantize applies a --tensor-type override instead of its mix's own choice, and the K-quant mixes "
    "already keep some ffn_down tensors at q6_k (Q4_K_M keeps blk.N.ffn_down at Q6_K by itself), so a type "
    "below q8_0 can lower a super-weight tensor; choose q8_0 (8 bits) or f16, bf16, f32 (the exact value)"
)
DEFAULT_LLAMA_CPP_TYPE = "q8_0"
#: how the tool formats keep a super-weight module: at 8 bits, or at full precision (the exact value)
KEEP_MODES = ("int8", "full")
DEFAULT_KEEP = "int8"
#: the llama.cpp type that stores each source dtype exactly
LLAMA_CPP_EXACT_TYPES = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}
DEFAULT_SCHEME = "W4A16"
#: group sizes tried, largest first, when the options name none: the largest dividing every input width wins
GROUP_SIZES = (128, 64, 32, 16)
_SCHEME_RE = re.compile(r"^W(?P<bits>[2348])A16$")


@dataclass(frozen=True)
class RenderOptions:
    """The tool-format options: how super-weight modules are kept, the llama.cpp type, scheme, group size."""

    keep: str = DEFAULT_KEEP
    tensor_type: str | None = None  # llama.cpp; None: q8_0 for keep=int8, the exact type for keep=full
    scheme: str = DEFAULT_SCHEME
    group_size: int | None = None  # None: the largest of GROUP_SIZES dividing the model's input widths


def check_render_options(options: RenderOptions) -> None:
    """`BundleFormatError` for an unknown keep mode, a refused llama.cpp type, scheme or group size."""
    if options.keep not in KEEP_MODES:
        raise BundleFormatError(f"unknown keep mode {options.keep!r}; choose from {', '.join(KEEP_MODES)}")
    if options.tensor_type is not None:
        llama_cpp_type(options.tensor_type)
    scheme_bits(options.scheme)
    if options.group_size is not None and (
        options.group_size < 1 or options.group_size & (options.group_size - 1)
    ):
        raise BundleFormatError(f"the group size must be a power of two, got {options.group_size}")


def scheme_bits(scheme: str) -> int:
    """The weight bits of a weight-only scheme `W<bits>A16`; `BundleFormatError` for any other."""
    match = _SCHEME_RE.match(scheme.strip().upper())
    if match is None:
        raise BundleFormatError(
            f"unsupported scheme {scheme!r}: the bundle renders weight-only int schemes W2A16, W3A16, W4A16 "
            "and W8A16 as explicit config_groups"
        )
    return int(match.group("bits"))


def input_widths(manifest: Mapping[str, Any]) -> tuple[int, ...]:
    """The input widths of the model's linear layers the manifest's provenance names (empty when unknown)."""
    provenance = manifest.get("provenance") or {}
    widths = {provenance.get(key) for key in ("hidden_size", "intermediate_size")}
    heads, head_dim = provenance.get("num_attention_heads"), provenance.get("head_dim")
    if isinstance(heads, int) and isinstance(head_dim, int):
        widths.add(heads * head_dim)  # o_proj's input
    return tuple(sorted(w for w in widths if isinstance(w, int) and w > 0))


def group_size_for(manifest: Mapping[str, Any], requested: int | None = None) -> int:
    """The group size of a grouped scheme: `requested` if it divides every input width, else the largest fit.

    Tools refuse a group size that does not divide a layer's input width (SmolLM2's 576 columns and 128).
    """
    widths = input_widths(manifest)
    if requested is not None:
        bad = [w for w in widths if w % requested]
        if bad:
            raise BundleFormatError(
                f"group size {requested} does not divide the model's input widths "
                f"{', '.join(map(str, bad))}; "
                f"choose one that divides {', '.join(map(str, widths))}"
            )
        return requested
    for size in GROUP_SIZES:
        if all(w % size == 0 for w in widths):
            return size
    raise BundleFormatError(f"no group size of {GROUP_SIZES} divides the input widths {widths}")


def llama_cpp_type(tensor_type: str) -> str:
    """The normalised llama.cpp type; `BundleFormatError` for a type that could lower a super weight."""
    kept = tensor_type.strip().lower()
    if kept not in LLAMA_CPP_TYPES:
        raise BundleFormatError(
            f"llama.cpp tensor type {tensor_type!r} is refused: {LLAMA_CPP_REFUSED_TYPE_REASON}"
        )
    return kept


def llama_cpp_type_for(manifest: Mapping[str, Any], options: RenderOptions) -> str:
    """The llama.cpp type of super-weight tensors: the option, q8_0, or the type storing them exactly."""
    if options.tensor_type is not None:
        return llama_cpp_type(options.tensor_type)
    if options.keep == "int8":
        return DEFAULT_LLAMA_CPP_TYPE
    dtypes = {w.get("dtype") for w in manifest["super_weights"]}
    if len(dtypes) == 1 and (dtype := dtypes.pop()) in LLAMA_CPP_EXACT_TYPES:
        return LLAMA_CPP_EXACT_TYPES[str(dtype)]
    return "f32"  # unknown or mixed stored dtypes: f32 holds every float16/bfloat16/float32 value
