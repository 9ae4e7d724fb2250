"""`restore_sa`: the super weights zeroed, the super activation written back at its baseline sites."""

from __future__ import annotations

from collections.abc import Sequence

from contracts.validation import FigureKey
from indexer.validation.experiments.base import (
    ExperimentContext,
    Measures,
    Phase,
    RestoredActivation,
    Variant,
    zeroing,
)


class RestoreSuperActivation(Measures):
    """The paper's "+SA" row: does putting the super activation back repair the zeroed model?"""

    name = "restore_sa"
    phase: Phase = "pruning"
    needs_sites = True

    def variants(self, context: ExperimentContext) -> Sequence[Variant]:
        """One pass from the earliest super weight's layer."""
        if not context.super_weights:
            return ()
        rows = sorted({(sw.layer, sw.row) for sw in context.super_weights})
        return (
            Variant(
                FigureKey.restored(),
                self.name,
                "zero all super weights, restore the super activation",
                self.phase,
                context.first_layer,
                weight_edits=zeroing(context.coordinates),
                activation_changes=tuple(RestoredActivation(layer, row) for layer, row in rows),
            ),
        )
