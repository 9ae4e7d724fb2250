"""Pruning experiments: every super weight zeroed together (`joint`), each alone (`alone`), and the super
weights multiplied by each factor (`scaling`)."""

from __future__ import annotations

from collections.abc import Sequence

from contracts.validation import FigureKey
from indexer.model.ablation import Coordinate
from indexer.validation.experiments.base import ExperimentContext, Measures, Phase, Variant, scaling, zeroing


def coordinate_text(coordinate: Coordinate) -> str:
    """`(layer, row, col)` as people write it."""
    return "({}, {}, {})".format(*coordinate)


class Joint(Measures):
    """Every super weight zeroed together."""

    name = "joint"
    phase: Phase = "pruning"

    def variants(self, context: ExperimentContext) -> Sequence[Variant]:
        """One pass, from the earliest super weight's layer."""
        if not context.super_weights:
            return ()
        coordinates = context.coordinates
        label = ", ".join(coordinate_text(c) for c in coordinates)
        return (
            Variant(
                FigureKey.joint(),
                self.name,
                f"zero all super weights {label}",
                self.phase,
                context.first_layer,
                weight_edits=zeroing(coordinates),
                params={"coordinates": [list(c) for c in coordinates]},
            ),
        )


class Alone(Measures):
    """Each super weight zeroed alone (one super weight: the joint pass itself)."""

    name = "alone"
    phase: Phase = "pruning"

    def variants(self, context: ExperimentContext) -> Sequence[Variant]:
        """One pass per super weight, from its layer."""
        coordinates = context.coordinates
        reuse = FigureKey.joint() if len(coordinates) == 1 and "joint" in context.experiments else None
        return tuple(
            Variant(
                FigureKey.alone(coordinate),
                self.name,
                f"zero {coordinate_text(coordinate)} alone",
                self.phase,
                coordinate[0],
                weight_edits=zeroing([coordinate]),
                reuse=reuse,
                params={"coordinates": [list(coordinate)]},
            )
            for coordinate in coordinates
        )


class Scaling(Measures):
    """The super weights multiplied by each configured factor (x1 is the baseline, x0 the joint zeroing)."""

    name = "scaling"
    phase: Phase = "pruning"

    def variants(self, context: ExperimentContext) -> Sequence[Variant]:
        """One pass per distinct factor."""
        if not context.super_weights:
            return ()
        variants = []
        for factor in dict.fromkeys(context.config.scale_factors):
            reuse = FigureKey.baseline() if factor == 1 else None
            if factor == 0 and "joint" in context.experiments:
                reuse = FigureKey.joint()
            variants.append(
                Variant(
                    FigureKey.scaled(factor),
                    self.name,
                    f"super weights x {factor:g}",
                    self.phase,
                    context.first_layer,
                    weight_edits=scaling(context.coordinates, factor),
                    reuse=reuse,
                    params={"factor": factor},
                )
            )
        return tuple(variants)
