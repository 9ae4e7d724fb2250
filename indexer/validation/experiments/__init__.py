"""The experiment registry: every validation experiment, by name, in the order they are planned.

Adding an experiment: one module implementing `indexer.validation.experiments.base.Experiment`, one entry
below, its name in `indexer.validation.names.EXPERIMENTS` (the same order), one test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from indexer.validation.experiments.activation import RestoreSuperActivation
from indexer.validation.experiments.base import Experiment, ExperimentContext, Measures, Phase, Variant
from indexer.validation.experiments.controls import Controls
from indexer.validation.experiments.necessity import LeaveOneOut
from indexer.validation.experiments.null import Null
from indexer.validation.experiments.pruning import Alone, Joint, Scaling
from indexer.validation.experiments.quantization import W8A8, RoundToNearest
from indexer.validation.experiments.stopwords import Stopwords
from indexer.validation.names import EXPERIMENTS, parse_experiments


class Baseline(Measures):
    """The unchanged model: every ratio's denominator (always measured, first)."""

    name = "baseline"
    phase: Phase = "baseline"

    def variants(self, context: ExperimentContext) -> Sequence[Variant]:
        """None: the engine measures the baseline itself, recording what later variants reuse."""
        return ()


def _registry(*experiments: Any) -> dict[str, Experiment]:
    return {experiment.name: experiment for experiment in experiments}


REGISTRY: Mapping[str, Experiment] = _registry(
    Baseline(),
    Joint(),
    Alone(),
    RestoreSuperActivation(),
    Controls(),
    Null(),
    LeaveOneOut(),
    Stopwords(),
    Scaling(),
    RoundToNearest(),
    W8A8(),
)
if tuple(REGISTRY) != EXPERIMENTS:  # one list of names, in one order, for the registry and the configuration
    raise RuntimeError(f"the registry {tuple(REGISTRY)} and indexer.validation.names {EXPERIMENTS} differ")


def with_requirements(names: Sequence[str]) -> frozenset[str]:
    """The selected experiments, the baseline, and every experiment they read (transitively)."""
    selected = {"baseline", *names}
    pending = list(selected)
    while pending:
        for required in REGISTRY[pending.pop()].requires:
            if required not in selected:
                selected.add(required)
                pending.append(required)
    return frozenset(selected)


__all__ = ["EXPERIMENTS", "REGISTRY", "Experiment", "parse_experiments", "with_requirements"]
