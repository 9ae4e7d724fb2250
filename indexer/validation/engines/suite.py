"""The whole-model engine: plans every selected experiment's variants and measures them, one pass each.

Each variant's declared changes become context managers around its pass: weight edits in place (restored
bit-exactly), quantized weight copies one layer at a time, activation hooks. A variant that changes
nothing before its first layer starts from the baseline's recorded input of that layer (the prefix cache);
a variant identical to an earlier one reuses its pass.

`SuiteBase` is what both engines share (planning, figures, summaries), over the evaluator each runs its
passes on; the layer-major engine is `indexer.validation.engines.layered.LayeredSuite`.
"""

from __future__ import annotations

import math
import statistics
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any, Generic, TypeVar

import torch
from torch import nn

from contracts.results import DetectionResult
from contracts.validation import FigureKey
from indexer.model.adapters import ArchitectureAdapter
from indexer.model.hooks import ForwardHook, forward_hooks, hidden_states_of
from indexer.model.loading import LoadedModel
from indexer.validation.config import ValidateConfig
from indexer.validation.corpus import TokenWindows
from indexer.validation.experiments import REGISTRY, with_requirements
from indexer.validation.experiments.base import (
    ExperimentContext,
    Observation,
    QuantizedActivations,
    RestoredActivation,
    Variant,
    WeightEdit,
)
from indexer.validation.perplexity import (
    BatchObserver,
    PassResult,
    PerplexityEvaluator,
    WindowLoss,
    bootstrap_resamples,
    paired_ratio_interval,
)
from indexer.validation.quantize import (
    LinearTarget,
    QuantMemory,
    fake_quantized_activations,
    fake_quantized_weights,
    linear_targets,
)
from indexer.validation.results import (
    Figure,
    Phase,
    ProgressCallback,
    ProgressEvent,
    QuantizationSummary,
    SuperActivationSites,
    ValidationTiming,
    WeightSet,
)

#: the evaluator an engine's passes run on
EvaluatorT = TypeVar("EvaluatorT", bound=WindowLoss)
Sites = list[list[tuple[int, int]]]  # per batch, the (window, token) positions of a super activation


@contextmanager
def edited_weights(
    model: nn.Module, adapter: ArchitectureAdapter, edits: Sequence[WeightEdit]
) -> Iterator[None]:
    """Apply each down-projection edit in place; restore the exact originals."""
    saved: list[tuple[torch.Tensor, tuple[int, int], torch.Tensor]] = []
    try:
        with torch.no_grad():
            for edit in edits:
                weight = adapter.down_weight(model, edit.layer)
                index = adapter.storage_index(edit.row, edit.col)
                original = weight[index].clone()
                saved.append((weight, index, original))
                if edit.op == "zero":
                    weight[index] = torch.zeros_like(original)
                elif edit.op == "scale":
                    weight[index] = original * edit.amount
                else:
                    weight[index] = original + edit.amount
        yield
    finally:
        with torch.no_grad():
            for weight, index, original in reversed(saved):
                weight[index] = original


def _combined(first: ForwardHook | None, second: ForwardHook) -> ForwardHook:
    if first is None:
        return second

    def both(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        first(module, args, output)
        return second(module, args, output)

    return both


def combined_observer(observers: list[BatchObserver]) -> BatchObserver | None:
    """One observer showing each call to all of `observers` (None when there are none)."""
    if len(observers) <= 1:
        return observers[0] if observers else None

    def every(index: int, logits: torch.Tensor, targets: torch.Tensor) -> None:
        for observer in observers:
            observer(index, logits, targets)

    return every


class SuiteBase(ABC, Generic[EvaluatorT]):
    """Plans the experiments on one model and turns their passes into figures, whatever the engine: the
    whole-model `Suite` or the layer-major `indexer.validation.engines.layered.LayeredSuite`."""

    def __init__(
        self,
        loaded: LoadedModel,
        detection: DetectionResult,
        windows: TokenWindows,
        config: ValidateConfig,
        progress: ProgressCallback | None,
        *,
        evaluator: EvaluatorT,
        read_down_weight: Callable[[int], torch.Tensor] | None = None,
    ) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.adapter = loaded.adapter
        self.config = config
        self.progress = progress
        self.windows = windows
        self.super_weights = detection.super_weights
        self.coordinates = tuple(sw.coordinates for sw in self.super_weights)
        self.activation = detection.super_activation
        self.context = ExperimentContext(
            loaded=loaded,
            config=config,
            super_weights=self.super_weights,
            activation=self.activation,
            experiments=with_requirements(config.experiments),
            targets=tuple(linear_targets(self.model)),
            clip_cache={},
            read_down_weight=read_down_weight,
        )
        self.evaluator: EvaluatorT = evaluator
        self.figures: dict[FigureKey, Figure] = {}
        self.passes: dict[FigureKey, PassResult] = {}
        self.weight_sets: list[WeightSet] = []
        self.phase_seconds: dict[str, float] = {}
        self.baseline: PassResult | None = None
        self.quant_memory: QuantMemory | None = None
        self.observations: dict[str, Observation] = {}
        self.layer_of_module = self._layer_index()
        self.hidden_size = int(self.adapter.as_out_in(self.adapter.down_weight(self.model, 0)).shape[0])
        # super-activation recordings: (layer, row) -> per batch (batch, window) down_proj output at row
        self.sa_recordings: dict[tuple[int, int], list[torch.Tensor]] = {}
        self.sa_sites: dict[tuple[int, int], Sites] = {}
        self._resamples: torch.Tensor | None = None  # (samples, windows) window indices of the bootstrap

    def _layer_index(self) -> dict[int, int]:
        """id(module) -> decoder layer index, by walking each layer (never by matching names)."""
        index: dict[int, int] = {}
        for i, layer in enumerate(self.adapter.decoder_layers(self.model)):
            for module in layer.modules():
                index[id(module)] = i
        return index

    def plan(self) -> list[Variant]:
        """Every selected experiment's variants, in registry order (later ones may reuse earlier passes)."""
        variants: list[Variant] = []
        for name, experiment in REGISTRY.items():
            if name not in self.context.experiments:
                continue
            variants.extend(experiment.variants(self.context))
            observation = experiment.observe(self.context)
            if observation is not None:
                self.observations[name] = observation
        if self.super_weights:
            self.weight_sets.append(
                WeightSet(
                    kind="super_weights",
                    coordinates=self.coordinates,
                    values=tuple(sw.value for sw in self.super_weights),
                    deltas=tuple(-sw.value for sw in self.super_weights),
                    figure_key=FigureKey.joint(),
                )
            )
        self.weight_sets.extend(v.weight_set for v in variants if v.weight_set is not None)
        return variants

    def _observer_list(self, key: FigureKey) -> list[BatchObserver]:
        return [o.observers[key] for o in self.observations.values() if key in o.observers]

    def _observer(self, key: FigureKey) -> BatchObserver | None:
        return combined_observer(self._observer_list(key))

    # -- running --

    @abstractmethod
    def run(self) -> None:
        """Measure the baseline and every planned figure (filling `baseline`, `passes` and `figures`)."""

    @abstractmethod
    def timing(self, total: float) -> ValidationTiming:
        """The run's totals, and what its reuse of hidden states saved."""

    def _report(self, phase: Phase, done: int, total: int, label: str) -> None:
        if self.progress is not None:
            self.progress(ProgressEvent(phase, done, total, label))

    def _find_sites(self) -> None:
        for pair in self.sa_recordings:
            self._find_sites_of(pair)

    def _find_sites_of(self, pair: tuple[int, int]) -> None:
        """Where the recorded baseline output of `(layer, row)` reaches the super-activation threshold."""
        spikes = [abs(sw.output_activation) for sw in self.super_weights if (sw.layer, sw.row) == pair]
        threshold = self.config.sa_threshold * max(spikes)
        self.sa_sites[pair] = [
            [(int(b), int(t)) for b, t in (values.abs().float() >= threshold).nonzero().tolist()]
            for values in self.sa_recordings[pair]
        ]

    def _restore_hook(self, change: RestoredActivation) -> ForwardHook:
        """A forward hook that writes the recorded output values back at the super activation's sites."""
        recorded = self.sa_recordings[(change.layer, change.row)]
        sites = self.sa_sites[(change.layer, change.row)]
        row = change.row

        def hook(_module: nn.Module, _args: tuple[Any, ...], output: Any) -> Any:
            batch = self.evaluator.current_batch
            hidden = hidden_states_of(output)  # (batch, window, hidden)
            values = recorded[batch]  # (batch, window)
            for b, t in sites[batch]:
                hidden[b, t, row] = values[b, t]
            return output

        return hook

    def _activation_hold_out(self, target: LinearTarget) -> tuple[Sequence[tuple[int, int]], Sequence[int]]:
        """The super activation's sites in this batch, at its channel (and the super weights' columns)."""
        if self.activation is None:
            return (), ()
        sites = self.sa_sites.get((self.activation.first_layer, self.activation.channel))
        layer = self.layer_of_module.get(id(target.module))
        if not sites or layer is None or layer < self.activation.first_layer:
            return (), ()
        channels: list[int] = []
        if target.in_features == self.hidden_size:
            channels.append(self.activation.channel)
        if target.module is self.model.get_submodule(self.context.down_name(layer)):
            channels.extend(sw.col for sw in self.super_weights if sw.layer == layer)
        return sites[self.evaluator.current_batch], sorted(set(channels))

    def _figure(self, variant: Variant, result: PassResult, reused_from: FigureKey | None = None) -> Figure:
        assert self.baseline is not None
        perplexity = result.perplexity if math.isfinite(result.perplexity) else None
        base = self.baseline.perplexity
        ratio = perplexity / base if perplexity is not None and math.isfinite(base) else None
        low, high = self._interval(result)
        return Figure(
            key=variant.key,
            experiment=variant.experiment,
            label=variant.label,
            perplexity=perplexity,
            ratio=ratio,
            mean_nll=result.mean_nll,
            seconds=0.0 if reused_from else result.seconds,
            prefix_layer=result.prefix_layer,
            reused_from=reused_from,
            params=dict(variant.params),
            ratio_low=low,
            ratio_high=high,
            window_nll=result.window_nll,
        )

    def _interval(self, result: PassResult) -> tuple[float | None, float | None]:
        """The ratio's bootstrap interval: windows resampled, each paired with the baseline's same window."""
        assert self.baseline is not None
        base = self.baseline.window_nll
        if not base or len(result.window_nll) != len(base):
            return None, None
        if self._resamples is None:
            self._resamples = bootstrap_resamples(len(base), self.config.bootstrap_samples, self.config.seed)
        return paired_ratio_interval(result.window_nll, base, self._resamples, self.config.interval_level)

    # -- summaries --

    def summary(self, experiment: str) -> Any:
        """What an observing experiment made of the passes it observed (None when it did not run)."""
        observation = self.observations.get(experiment)
        return observation.summary() if observation is not None else None

    def activation_sites(self) -> SuperActivationSites | None:
        """Where the super activation showed in the corpus."""
        if self.activation is None:
            return None
        pair = (self.activation.first_layer, self.activation.channel)
        if pair not in self.sa_recordings:
            return None
        recordings, sites = self.sa_recordings[pair], self.sa_sites[pair]
        magnitudes = [
            abs(float(recordings[batch][b, t])) for batch, found in enumerate(sites) for b, t in found
        ]
        windows_with = sum(len({b for b, _ in found}) for found in sites)
        first_token = sum(len({b for b, t in found if t == 0}) for found in sites)
        spikes = [abs(sw.output_activation) for sw in self.super_weights if (sw.layer, sw.row) == pair]
        every = torch.cat([r.reshape(-1) for r in recordings]).abs().float()
        return SuperActivationSites(
            layer=pair[0],
            channel=pair[1],
            threshold=self.config.sa_threshold * max(spikes),
            positions=len(magnitudes),
            windows_with=windows_with,
            windows=self.windows.identity.windows,
            at_first_token=first_token,
            max_magnitude=float(every.max()) if every.numel() else 0.0,
            median_magnitude=statistics.median(magnitudes) if magnitudes else 0.0,
        )

    def quantization_summary(self) -> QuantizationSummary | None:
        """The memory the quantization checks held, when any ran."""
        memory = self.quant_memory
        if memory is None:
            return None
        parameters = sum(t.weight.numel() for t in self.context.targets)
        return QuantizationSummary(
            layers=len(self.context.targets),
            parameters=parameters,
            weight_bytes=memory.weight_bytes,
            peak_extra_bytes=memory.peak_extra_bytes,
            peak_memory_ratio=memory.peak_ratio,
            clip_method=self.config.clip_method,
            clip_threshold=self.config.clip_threshold,
        )


class Suite(SuiteBase[PerplexityEvaluator]):
    """Plans and runs the experiments on one model; every change is undone before the next figure."""

    def __init__(
        self,
        loaded: LoadedModel,
        detection: DetectionResult,
        windows: TokenWindows,
        config: ValidateConfig,
        progress: ProgressCallback | None,
        *,
        evaluator: PerplexityEvaluator | None = None,
        read_down_weight: Callable[[int], torch.Tensor] | None = None,
    ) -> None:
        super().__init__(
            loaded,
            detection,
            windows,
            config,
            progress,
            evaluator=evaluator
            or PerplexityEvaluator(loaded, windows, config.batch_size, prefix_cache=config.prefix_cache),
            read_down_weight=read_down_weight,
        )

    def run(self) -> None:
        """The baseline (recording what later variants reuse), then every planned figure."""
        variants = self.plan()
        for variant in variants:
            if variant.first_layer > 0 and variant.reuse is None:
                self.evaluator.want_prefix([variant.first_layer], variant.prefix_of)
        self._run_baseline()
        by_phase: dict[Phase, list[Variant]] = {}
        for variant in variants:
            by_phase.setdefault(variant.phase, []).append(variant)
        for phase, phase_variants in by_phase.items():
            started = time.perf_counter()
            for done, variant in enumerate(phase_variants, start=1):
                self._measure(variant)
                self._report(phase, done, len(phase_variants), variant.label)
            self.phase_seconds[phase] = time.perf_counter() - started

    def _run_baseline(self) -> None:
        started = time.perf_counter()
        self._report("baseline", 0, 1, "baseline")
        pairs = sorted({(sw.layer, sw.row) for sw in self.super_weights})
        recordings: dict[tuple[int, int], list[torch.Tensor]] = {pair: [] for pair in pairs}

        def record_for(pair: tuple[int, int]) -> ForwardHook:
            def hook(_module: nn.Module, _args: tuple[Any, ...], output: Any) -> None:
                recordings[pair].append(hidden_states_of(output)[..., pair[1]].clone())  # (batch, window)

            return hook

        hooks: dict[str, ForwardHook] = {}
        for pair in pairs:
            name = self.context.down_name(pair[0])
            hooks[name] = _combined(hooks.get(name), record_for(pair))
        with forward_hooks(self.model, hooks):
            self.baseline = self.evaluator.run(0, self._observer(FigureKey.baseline()))
        key = FigureKey.baseline()
        self.passes[key] = self.baseline
        self.figures[key] = self._figure(Variant(key, "baseline", "baseline", "baseline"), self.baseline)
        self.sa_recordings = recordings
        self._find_sites()
        self.phase_seconds["baseline"] = time.perf_counter() - started
        self._report("baseline", 1, 1, "baseline")

    def _measure(self, variant: Variant) -> None:
        if variant.reuse is not None and variant.reuse in self.passes:
            result = self.passes[variant.reuse]
            self.passes[variant.key] = result
            self.figures[variant.key] = self._figure(variant, result, reused_from=variant.reuse)
            return
        with self.applied(variant):
            result = self.evaluator.run(
                variant.first_layer, self._observer(variant.key), source=variant.prefix_of, key=variant.key
            )
        self.passes[variant.key] = result
        self.figures[variant.key] = self._figure(variant, result)

    @contextmanager
    def applied(self, variant: Variant) -> Iterator[None]:
        """The variant's changes to the whole model, for the duration of the block."""
        with ExitStack() as stack:
            if variant.weight_edits:
                stack.enter_context(edited_weights(self.model, self.adapter, variant.weight_edits))
            restore_hooks: dict[str, ForwardHook] = {}
            for change in variant.activation_changes:
                if isinstance(change, RestoredActivation):
                    name = self.context.down_name(change.layer)
                    restore_hooks[name] = _combined(restore_hooks.get(name), self._restore_hook(change))
            if restore_hooks:
                stack.enter_context(forward_hooks(self.model, restore_hooks))
            memory = None
            if variant.quantized_weights is not None:
                targets = self.context.targets
                memory = stack.enter_context(
                    fake_quantized_weights(self.model, targets, variant.quantized_weights)
                )
            for change in variant.activation_changes:
                if isinstance(change, QuantizedActivations):
                    positions = self._activation_hold_out if change.hold_out else None
                    stack.enter_context(
                        fake_quantized_activations(self.model, self.context.targets, change.bits, positions)
                    )
            yield
        if memory is not None:
            self._note_memory(memory)

    def _note_memory(self, memory: QuantMemory) -> None:
        if self.quant_memory is None or memory.peak_extra_bytes > self.quant_memory.peak_extra_bytes:
            self.quant_memory = memory

    def timing(self, total: float) -> ValidationTiming:
        """Totals, and an estimate of the time the prefix cache saved."""
        assert self.baseline is not None
        saved = sum(
            max(0.0, self.baseline.seconds - f.seconds)
            for f in self.figures.values()
            if f.prefix_layer is not None and f.reused_from is None
        )
        return ValidationTiming(
            total_s=total,
            phases=dict(self.phase_seconds),
            full_passes=self.evaluator.full_passes,
            cached_passes=self.evaluator.cached_passes,
            reused_figures=sum(1 for f in self.figures.values() if f.reused_from is not None),
            prefix_layers=self.evaluator.cached_layers,
            prefix_cache_bytes=self.evaluator.cache_bytes,
            prefix_saved_s=saved,
        )
