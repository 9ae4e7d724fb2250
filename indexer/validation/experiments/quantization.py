"""Quantization checks: weight round-to-nearest (`rtn`: plain / clipped + restored / held out + restored,
by bits and block size) and `w8a8` (8-bit weights per channel, activations per tensor: naive / super
activation held out). Every linear layer runs on a quantized copy of its weight, one layer at a time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from contracts.validation import FigureKey
from indexer.validation.experiments.base import (
    ExperimentContext,
    Measures,
    Phase,
    QuantizedActivations,
    Variant,
)
from indexer.validation.quantize import (
    Granularity,
    LinearTarget,
    block_partition,
    parse_granularity,
    rtn_quantize_,
    rtn_weight_quantizer,
)


def granularity_text(granularity: Granularity) -> str:
    """`groups of 128`, `whole tensor`, `blocks of 65,536`."""
    if granularity.group_size is not None:
        return f"groups of {granularity.group_size}"
    if granularity.block_size is None:
        return "whole tensor"
    return f"blocks of {granularity.block_size:,}"


def hold_out_map(context: ExperimentContext) -> dict[str, list[tuple[int, int]]]:
    """Down-projection module name -> the super weights' `(row, col)` in it."""
    held: dict[str, list[tuple[int, int]]] = {}
    for layer, row, col in context.coordinates:
        held.setdefault(context.down_name(layer), []).append((row, col))
    return held


class RoundToNearest(Measures):
    """Weight RTN by bits, granularity and variant; partitions that split every weight alike share a pass."""

    name = "rtn"
    phase: Phase = "quantization"

    def variants(self, context: ExperimentContext) -> Sequence[Variant]:
        """One pass per (bits, partition, variant)."""
        config = context.config
        variants = []
        hold_out = hold_out_map(context)
        clip = config.clip
        # granularities that split every weight the same way give the same weights: measure them once
        first_of_partition: dict[tuple[Any, ...], FigureKey] = {}
        for bits in config.rtn_bits:
            for text in config.rtn_granularities:
                granularity = parse_granularity(text)
                partition = block_partition(granularity, context.targets)
                for variant in config.rtn_variants:
                    key = FigureKey.rtn(bits, granularity.label, variant)
                    first = first_of_partition.setdefault((bits, variant, partition), key)
                    reuse: FigureKey | None = None if first == key else first
                    if variant == "holdout" and not hold_out and "plain" in config.rtn_variants:
                        plain = FigureKey.rtn(bits, granularity.label, "plain")
                        reuse = first_of_partition.get((bits, "plain", partition), plain)
                    # holding out changes only the super weights' down projections: the layers before
                    # the first of them quantize as plain RTN does, so the pass starts from plain RTN's
                    # recorded input of that layer (when plain RTN of this partition is measured first)
                    prefix_of = None
                    if variant == "holdout" and hold_out:
                        prefix_of = first_of_partition.get((bits, "plain", partition))
                    if variant == "plain":
                        quantizer = rtn_weight_quantizer(bits, granularity)
                    elif variant == "clipped":
                        quantizer = rtn_weight_quantizer(
                            bits, granularity, restore=hold_out, clip=clip, clip_cache=context.clip_cache
                        )
                    else:
                        quantizer = rtn_weight_quantizer(bits, granularity, hold_out=hold_out)
                    params: dict[str, Any] = {
                        "bits": bits,
                        "granularity": granularity.label,
                        "variant": variant,
                    }
                    if variant == "clipped":
                        params |= {"clip_method": clip.method, "clip_threshold": clip.threshold}
                    variants.append(
                        Variant(
                            key,
                            self.name,
                            f"RTN {bits}-bit {granularity_text(granularity)}, {variant}",
                            self.phase,
                            first_layer=context.first_layer if prefix_of is not None else 0,
                            quantized_weights=quantizer,
                            reuse=reuse,
                            params=params,
                            prefix_of=prefix_of,
                        )
                    )
        return tuple(variants)


def _per_channel_8bit(target: LinearTarget, weight: torch.Tensor) -> None:
    rtn_quantize_(weight, 8, Granularity(group_size=target.in_features), layout=target.layout)


class W8A8(Measures):
    """8-bit weights per output channel and per-tensor activations, naive and with the super activation
    held out."""

    name = "w8a8"
    phase: Phase = "quantization"
    needs_sites = True

    def variants(self, context: ExperimentContext) -> Sequence[Variant]:
        """One pass per variant (without a super activation the hold-out is the naive pass)."""
        config = context.config
        bits = config.activation_bits
        variants: list[Variant] = []
        naive = FigureKey.w8a8("naive")
        for variant in config.w8a8_variants:
            reuse = naive if variant == "holdout" and context.activation is None else None
            # the hold-out starts at the super activation's layer: before it the pass is the naive one
            prefix_of, first_layer = None, 0
            measured_naive = any(v.key == naive for v in variants)
            if variant == "holdout" and context.activation is not None and measured_naive:
                prefix_of, first_layer = naive, context.activation.first_layer
            variants.append(
                Variant(
                    FigureKey.w8a8(variant),
                    self.name,
                    f"W8A{bits} (weights per channel, activations per tensor), {variant}",
                    self.phase,
                    quantized_weights=_per_channel_8bit,
                    first_layer=first_layer,
                    activation_changes=(QuantizedActivations(bits, variant == "holdout"),),
                    reuse=reuse if "naive" in config.w8a8_variants else None,
                    prefix_of=prefix_of,
                    params={"weight_bits": 8, "activation_bits": bits, "variant": variant},
                )
            )
        return tuple(variants)
