"""`null`: the calibrated null distribution the joint zeroing is judged against.

Every null set has the super weights' size and lies in their tensors, outside the rows of the super weights
and the super activation, and is zeroed like the super weights are:

- K random magnitude-matched sets: per super weight, a random one of the `MATCHED_POOL` largest-magnitude
  weights of its down projection (the super weight is usually the largest by far: these are the closest
  magnitudes the tensor has);
- same-column sets: per super weight, a random other row of its column. The input spike survives zeroing,
  so a column neighbour, which multiplies the same huge input, is the hard control;
- the largest-N set is `controls`' `control/largest`.

Subtracting the super weight's value elsewhere in its column would plant a second super weight, not
remove an ordinary one, so the null zeroes. Every set starts at its earliest layer, from the prefix cache.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from contracts.validation import FigureKey
from indexer.errors import InvalidInputError
from indexer.model.ablation import Coordinate
from indexer.validation.experiments.base import ExperimentContext, Measures, Phase, Variant, zeroing
from indexer.validation.experiments.controls import excluded_rows

#: the largest-magnitude weights of a down projection a magnitude-matched null member is drawn from
MATCHED_POOL = 64


def matched_pools(context: ExperimentContext) -> dict[int, list[Coordinate]]:
    """Per super-weight layer, its down projection's `MATCHED_POOL` largest weights outside the excluded
    rows (and not a super weight)."""
    excluded = sorted(excluded_rows(context))
    adapter = context.adapter
    pools: dict[int, list[Coordinate]] = {}
    for layer in sorted({sw.layer for sw in context.super_weights}):
        magnitude = adapter.as_out_in(context.down_weight(layer)).detach().abs().float()
        magnitude[excluded, :] = -1.0  # a copy: never the weight itself
        columns = magnitude.shape[1]
        top = magnitude.reshape(-1).topk(min(MATCHED_POOL, magnitude.numel())).indices.tolist()
        pools[layer] = [(layer, flat // columns, flat % columns) for flat in top]
    return pools


def matched_coordinates(
    context: ExperimentContext, pools: dict[int, list[Coordinate]], generator: torch.Generator
) -> list[Coordinate]:
    """Per super weight, a random member of its layer's pool (distinct within the set)."""
    chosen: list[Coordinate] = []
    for sw in context.super_weights:
        pool = [c for c in pools[sw.layer] if c not in chosen]
        if not pool:
            raise InvalidInputError(f"layer {sw.layer}'s down projection has too few weights for the null")
        chosen.append(pool[int(torch.randint(len(pool), (1,), generator=generator))])
    return chosen


def column_coordinates(context: ExperimentContext, generator: torch.Generator) -> list[Coordinate]:
    """Per super weight, a random other row of the same column of its down_proj, outside the excluded rows."""
    excluded = excluded_rows(context)
    adapter, model = context.adapter, context.model
    chosen: list[Coordinate] = []
    for sw in context.super_weights:
        rows = int(adapter.as_out_in(adapter.down_weight(model, sw.layer)).shape[0])
        if rows <= len(excluded):
            raise InvalidInputError(f"layer {sw.layer}'s down projection has no row for a column control")
        while True:
            row = int(torch.randint(rows, (1,), generator=generator))
            coordinate = (sw.layer, row, sw.col)
            if row not in excluded and coordinate not in chosen:
                chosen.append(coordinate)
                break
    return chosen


class Null(Measures):
    """Random magnitude-matched and same-column sets of the super weights' size, seeded, zeroed."""

    name = "null"
    phase: Phase = "pruning"
    requires = ("joint", "controls")

    def variants(self, context: ExperimentContext) -> Sequence[Variant]:
        """`null_sets` random sets, then `null_column_sets` same-column sets."""
        if not context.super_weights:
            return ()
        config = context.config
        pools = matched_pools(context)
        # a stream of its own: the null never changes `control/random`'s draw
        generator = torch.Generator().manual_seed(config.seed + 1)
        variants = []
        for kind, count in (("random", config.null_sets), ("column", config.null_column_sets)):
            for index in range(count):
                if kind == "random":
                    draw = matched_coordinates(context, pools, generator)
                else:
                    draw = column_coordinates(context, generator)
                variants.append(
                    Variant(
                        FigureKey.null(kind, index),
                        self.name,
                        f"null set {index + 1}/{count} ({kind})",
                        self.phase,
                        min(c[0] for c in draw),
                        weight_edits=zeroing(draw),
                        params={
                            "coordinates": [list(c) for c in draw],
                            "kind": kind,
                            "seed": config.seed + 1,
                        },
                    )
                )
        return tuple(variants)
