"""`controls`: as many other down-projection weights changed, to show that the super weights are special.

- `control/largest`: the largest-magnitude down-projection weights outside the super activation's row
  (and the super weights' rows), zeroed;
- `control/random`: each super weight's value subtracted at a seeded random coordinate of its own down
  projection, outside those rows (a magnitude-matched null).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from contracts.validation import FigureKey
from indexer.errors import InvalidInputError
from indexer.model.ablation import Coordinate
from indexer.validation.experiments.base import ExperimentContext, Measures, Phase, Variant, shifting, zeroing
from indexer.validation.results import WeightSet


def excluded_rows(context: ExperimentContext) -> set[int]:
    """Rows no control may touch: the super weights' rows and the super activation's channel."""
    rows = {sw.row for sw in context.super_weights}
    if context.activation is not None:
        rows.add(context.activation.channel)
    return rows


def largest_weights(context: ExperimentContext, count: int) -> list[Coordinate]:
    """The `count` largest-magnitude down_proj weights outside the excluded rows."""
    return [coordinate for coordinate, _ in largest_weights_with_values(context, count)]


def largest_weights_with_values(context: ExperimentContext, count: int) -> list[tuple[Coordinate, float]]:
    """The `count` largest-magnitude down_proj weights outside the excluded rows, with their stored values
    (taken while each down projection is at hand: a streamed model reads each one once)."""
    excluded = sorted(excluded_rows(context))
    adapter, model = context.adapter, context.model
    candidates: list[tuple[float, Coordinate, float]] = []
    for layer in range(len(adapter.decoder_layers(model))):
        weight = adapter.as_out_in(context.down_weight(layer)).detach()  # (out, in) view
        magnitude = weight.abs().float()
        magnitude[excluded, :] = -1.0  # a copy: never the weight itself
        top = magnitude.reshape(-1).topk(count)
        columns = magnitude.shape[1]
        for value, flat in zip(top.values.tolist(), top.indices.tolist(), strict=True):
            row, col = flat // columns, flat % columns
            candidates.append((value, (layer, row, col), float(weight[row, col].item())))
    candidates.sort(key=lambda item: (-item[0], item[1]))
    return [(coordinate, stored) for _, coordinate, stored in candidates[:count]]


def random_coordinates(context: ExperimentContext, generator: torch.Generator) -> list[Coordinate]:
    """Per super weight, a random coordinate of the same down_proj outside the excluded rows."""
    excluded = excluded_rows(context)
    adapter, model = context.adapter, context.model
    chosen: list[Coordinate] = []
    for sw in context.super_weights:
        rows, columns = adapter.as_out_in(adapter.down_weight(model, sw.layer)).shape
        if rows <= len(excluded):
            raise InvalidInputError(f"layer {sw.layer}'s down projection has no row for a random control")
        while True:
            row = int(torch.randint(int(rows), (1,), generator=generator))
            col = int(torch.randint(int(columns), (1,), generator=generator))
            coordinate = (sw.layer, row, col)
            if row not in excluded and coordinate not in chosen:
                chosen.append(coordinate)
                break
    return chosen


class Controls(Measures):
    """The largest other weights, and a random magnitude-matched set, against the joint zeroing."""

    name = "controls"
    phase: Phase = "pruning"
    requires = ("joint",)

    def variants(self, context: ExperimentContext) -> Sequence[Variant]:
        """Two passes, each from its set's earliest layer."""
        if not context.super_weights:
            return ()
        found = largest_weights_with_values(context, len(context.super_weights))
        largest = [coordinate for coordinate, _ in found]
        largest_values = tuple(stored for _, stored in found)
        random_set = random_coordinates(context, torch.Generator().manual_seed(context.config.seed))
        deltas = [-sw.value for sw in context.super_weights]
        seed = context.config.seed
        return (
            Variant(
                FigureKey.control("largest"),
                self.name,
                f"zero the {len(largest)} largest other down_proj weight(s)",
                self.phase,
                min(c[0] for c in largest),
                weight_edits=zeroing(largest),
                params={"coordinates": [list(c) for c in largest]},
                weight_set=WeightSet(
                    kind="largest",
                    coordinates=tuple(largest),
                    values=largest_values,
                    deltas=tuple(-v for v in largest_values),
                    figure_key=FigureKey.control("largest"),
                ),
            ),
            Variant(
                FigureKey.control("random"),
                self.name,
                "subtract each super weight at a random coordinate of its down_proj",
                self.phase,
                min(c[0] for c in random_set),
                weight_edits=shifting(random_set, deltas),
                params={"coordinates": [list(c) for c in random_set], "seed": seed},
                weight_set=WeightSet(
                    kind="random_matched",
                    coordinates=tuple(random_set),
                    values=tuple(context.value(c) for c in random_set),
                    deltas=tuple(deltas),
                    figure_key=FigureKey.control("random"),
                    seed=seed,
                ),
            ),
        )
