"""The experiment registry: every validation experiment, by name, in the order they are planned.

Adding an experiment: one module implementing `indexer.validation.experiments.base.Experiment`, one entry
below, one test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from indexer.errors import InvalidInputError
from indexer.validation.experiments.activation import RestoreSuperActivation
from indexer.validation.experiments.base import Experiment, ExperimentContext, Measures, Phase, Variant
from indexer.validation.experiments.controls import Controls
from indexer.validation.experiments.necessity import LeaveOneOut
from indexer.validation.experiments.null import Null
from indexer.validation.experiments.pruning import Alone, Joint, Scaling
from indexer.validation.experiments.quantization import W8A8, RoundToNearest
from indexer.validation.experiments.stopwords import Stopwords


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
#: every experiment name, in the canonical order
EXPERIMENTS: tuple[str, ...] = tuple(REGISTRY)


def parse_experiments(text: str) -> tuple[str, ...]:
    """Comma-separated experiment names (or `all`), in the canonical order; unknown names are refused."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    if not names:
        raise InvalidInputError(f"no experiment named; choose from: all, {', '.join(EXPERIMENTS)}")
    if "all" in names:
        return EXPERIMENTS
    unknown = [name for name in names if name not in EXPERIMENTS]
    if unknown:
        raise InvalidInputError(
            f"unknown experiment {', '.join(map(repr, unknown))}; choose from: all, {', '.join(EXPERIMENTS)}"
        )
    return tuple(name for name in EXPERIMENTS if name in names)


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
