"""Bundle test data: manifests with float32, bfloat16 and float16 originals."""

from __future__ import annotations

from typing import Any

import torch

from contracts.manifest import build_manifest, float32_of

SHA = "8416d3fefb0cb3ff5775a7b13c1692d10ff1aa16"
PLANTED = (1, 10, 20)


def stored(value: float, dtype: torch.dtype) -> float:
    """`value` rounded into `dtype`, as a Python float (exact)."""
    return float(torch.tensor(value, dtype=dtype).item())


def weight(
    layer: int, row: int, col: int, value: float, dtype: str, status: str = "confirmed"
) -> dict[str, Any]:
    """One manifest entry the way the API and the indexer write it."""
    return {
        "layer": layer,
        "row": row,
        "col": col,
        "value": value,
        "value_float32": float32_of(value),
        "dtype": dtype,
        "hf_tensor": f"model.layers.{layer}.mlp.down_proj.weight",
        "gguf_tensor": f"blk.{layer}.ffn_down.weight",
        "gguf_index": [col, row],
        "status": status,
        "decided_by": [],
    }


def sample_manifest(dtype: str = "bfloat16") -> dict[str, Any]:
    """Three super weights in two tensors (layers 1 and 11: a pattern for 1 must not match 11)."""
    torch_dtype = getattr(torch, dtype)
    return build_manifest(
        model="acme/llama-tiny",
        revision=SHA,
        super_weights=[
            weight(1, 2533, 7890, stored(-2.8134765625, torch_dtype), dtype),
            weight(1, 2533, 101, stored(0.3330078125, torch_dtype), dtype, "inert"),
            weight(11, 7, 3, stored(1.0e-3, torch_dtype), dtype, "candidate"),
        ],
        super_activation={
            "channel": 2533,
            "token": 0,
            "magnitude_by_layer": [0.5, 812.25, 790.0],
            "peak_layer": 1,
            "peak_magnitude": 812.25,
            "first_layer": 1,
        },
        provenance={"model": "acme/llama-tiny", "revision": SHA, "num_layers": 12},
    )
