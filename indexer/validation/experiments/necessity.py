"""`leave_one_out`: which members of the super-weight set are necessary.

For each member, every other super weight is zeroed and the member kept: the share of the joint zeroing's
log perplexity ratio this removes is the member's necessity (one pass per member, from the prefix cache).
"""

from __future__ import annotations

from collections.abc import Sequence

from contracts.validation import FigureKey
from indexer.validation.experiments.base import ExperimentContext, Measures, Phase, Variant, zeroing
from indexer.validation.experiments.pruning import coordinate_text


class LeaveOneOut(Measures):
    """Every super weight zeroed but one, for each member (nothing to do for a single super weight)."""

    name = "leave_one_out"
    phase: Phase = "pruning"
    requires = ("joint",)

    def variants(self, context: ExperimentContext) -> Sequence[Variant]:
        """One pass per member, from the earliest layer of the others."""
        coordinates = context.coordinates
        if len(coordinates) < 2:
            return ()
        variants = []
        for kept in coordinates:
            others = [c for c in coordinates if c != kept]
            variants.append(
                Variant(
                    FigureKey.without(kept),
                    self.name,
                    f"zero every super weight but {coordinate_text(kept)}",
                    self.phase,
                    min(c[0] for c in others),
                    weight_edits=zeroing(others),
                    params={"coordinates": [list(c) for c in others], "kept": list(kept)},
                )
            )
        return tuple(variants)
