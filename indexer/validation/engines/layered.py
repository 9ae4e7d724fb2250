"""The layer-major engine: every variant of the suite advances through the decoder layers together.

Decoder layer L is read from the checkpoint once; the hidden states of every variant (one tensor per batch
of windows) pass through it with that variant's change to layer L applied (its weight edits, a quantized
copy of each linear weight, made right before that linear runs in one buffer the whole suite reuses, the
baseline's super activation written back, fake-quantized linear inputs), and the layer is dropped before
the next one is read. So the weights are read about once per suite, whatever the number of variants.

Variants that change layers 0..L identically share one hidden state up to L: the variants form a tree
whose nodes are grouped, layer after layer, by what each variant does to that layer (the whole-model
engine's prefix cache is the special case of one branch point). The baseline is the tree's spine: its
super-activation recordings are taken at a layer before any other variant runs that layer, so the
restoring and hold-out variants read them exactly as they do in the whole-model engine.

Each layer is called exactly as the model calls it (`indexer.model.streaming.capture_layer_calls`: the
arguments are captured from the model's own forward, per batch); after the last layer, each final state's
head input comes from the model's own forward with its layers stubbed (its final norm), and a plain linear
head is read a slice of its vocabulary at a time for all of them at once
(`indexer.validation.engines.sliced_head`; any other head runs per state, in chunks of positions, as the model
calls it). The figures, their bootstrap intervals, observers and summaries are the whole-model suite's
(`indexer.validation.engines.suite.Suite`), whose planning this engine reuses unchanged.

Hidden states are kept in memory up to a budget and written to a temporary file beyond it, so a suite
whose variants' states do not fit still reads the weights once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from contracts.results import DetectionResult
from contracts.validation import FigureKey
from indexer.errors import StreamingUnsupportedError
from indexer.model.heap import reused_heap, trim
from indexer.model.hidden_store import HiddenStore
from indexer.model.hooks import ForwardHook, forward_hooks, hidden_states_of
from indexer.model.loading import available_memory
from indexer.model.streaming import (
    CapturedCalls,
    LayerCall,
    StreamedModel,
    call_layer,
)
from indexer.validation.config import ValidateConfig
from indexer.validation.corpus import TokenWindows
from indexer.validation.engines.streamed import StreamedEvaluator
from indexer.validation.engines.suite import SuiteBase, _combined, combined_observer, edited_weights
from indexer.validation.experiments.base import QuantizedActivations, RestoredActivation, Variant, WeightEdit
from indexer.validation.perplexity import (
    BatchObserver,
    PassResult,
    SliceObserver,
)
from indexer.validation.quantize import (
    LinearTarget,
    QuantMemory,
    ScratchBuffers,
    WeightQuantizer,
    fake_quantized_activations,
    fake_quantized_weights,
)
from indexer.validation.results import Phase, ProgressCallback, ValidationTiming

#: share of the free memory the variants' hidden states may hold before they go to a temporary file
HIDDEN_MEMORY_SHARE = 0.5

#: what a variant does to one decoder layer; variants with equal signatures on layers 0..L share a state
Signature = tuple[
    tuple[WeightEdit, ...],
    WeightQuantizer | None,
    tuple[RestoredActivation, ...],
    tuple[QuantizedActivations, ...],
]
EMPTY: Signature = ((), None, (), ())


def signature(variant: Variant, layer: int) -> Signature:
    """What `variant` changes in decoder layer `layer` (`EMPTY`: nothing, the baseline's layer)."""
    edits = tuple(e for e in variant.weight_edits if e.layer == layer)
    restores = tuple(
        c for c in variant.activation_changes if isinstance(c, RestoredActivation) and c.layer == layer
    )
    inputs = tuple(c for c in variant.activation_changes if isinstance(c, QuantizedActivations))
    return edits, variant.quantized_weights, restores, inputs


@dataclass
class _Node:
    """Variants that have computed the same hidden states so far, and those states (one per batch)."""

    variants: list[Variant]
    handles: list[int] = field(default_factory=list)
    #: the layer whose change first set these variants apart from the baseline (None: the baseline's)
    diverged: int | None = None


class LayeredSuite(SuiteBase[StreamedEvaluator]):
    """The suite's experiments on a streamed model, layer-major: each decoder layer read once per suite."""

    def __init__(
        self,
        streamed: StreamedModel,
        detection: DetectionResult,
        windows: TokenWindows,
        config: ValidateConfig,
        progress: ProgressCallback | None,
        *,
        hidden_memory: int | None = None,
    ) -> None:
        self.streamed = streamed
        self._planning: dict[int, torch.Tensor] = {}  # down projections kept while the variants are planned
        self._planning_layers = {sw.layer for sw in detection.super_weights}
        super().__init__(
            streamed.loaded,
            detection,
            windows,
            config,
            progress,
            evaluator=StreamedEvaluator(streamed, windows, config.batch_size),
            read_down_weight=self._planned_down_weight,
        )
        device = streamed.loaded.device
        self.hidden_memory = (
            hidden_memory
            if hidden_memory is not None
            else int(available_memory(device) * HIDDEN_MEMORY_SHARE)
        )
        self.store = HiddenStore(self.hidden_memory)
        layers = len(streamed.layers)
        self.layer_targets: list[list[LinearTarget]] = [[] for _ in range(layers)]
        self.outside_targets: list[LinearTarget] = []
        for target in self.context.targets:
            layer = self.layer_of_module.get(id(target.module))
            if layer is None:
                self.outside_targets.append(target)
            else:
                self.layer_targets[layer].append(target)
        #: per measured variant key: seconds of the layer calls it shared (each node's time split evenly)
        self._spent: dict[FigureKey, float] = {}
        self._baseline_layer_s: list[float] = [0.0] * layers
        self._final_nodes: list[_Node] = []
        self._by_key: dict[FigureKey, Variant] = {}  # the measured variants (and the baseline) by key
        self._quantized_buffers: ScratchBuffers = {}
        self.bytes_read = 0  # read from the checkpoint by the suite (planning and layers)

    def _planned_down_weight(self, layer: int) -> torch.Tensor:
        """A down projection read for planning; the super weights' layers are read several times, so kept."""
        if layer in self._planning:
            return self._planning[layer]
        weight = self.streamed.down_weight(layer)
        if layer in self._planning_layers:
            self._planning[layer] = weight
        return weight

    # -- running --

    def run(self) -> None:
        """Plan, advance every variant through the layers together, then the head and loss per variant."""
        started_bytes = self.streamed.checkpoint.bytes_read
        variants = self.plan()
        self._planning.clear()
        self.streamed.forget_down_weight()
        trim()  # what planning freed (every down projection was read) is not held through the layers
        if self.outside_targets and any(
            v.quantized_weights is not None
            or any(isinstance(c, QuantizedActivations) for c in v.activation_changes)
            for v in variants
        ):
            names = ", ".join(t.name for t in self.outside_targets[:3])
            raise StreamingUnsupportedError(
                f"{self.adapter.model_type}: linear layers outside the decoder layers ({names}) are "
                "quantized too; the layer-major suite cannot reach them: use the in-memory engine"
            )
        by_phase: dict[Phase, list[Variant]] = {}
        for variant in variants:
            by_phase.setdefault(variant.phase, []).append(variant)
        ordered = [v for phase_variants in by_phase.values() for v in phase_variants]
        measured: list[Variant] = []
        known = {FigureKey.baseline()}
        for variant in ordered:
            if variant.reuse is None or variant.reuse not in known:
                measured.append(variant)
            known.add(variant.key)
        baseline = Variant(FigureKey.baseline(), "baseline", "baseline", "baseline")
        try:
            with torch.inference_mode():
                results = self._advance(baseline, measured)
        finally:
            self.store.close()
            self._quantized_buffers.clear()
            self.bytes_read = self.streamed.checkpoint.bytes_read - started_bytes
        self.baseline = results[baseline.key]
        self.passes[baseline.key] = self.baseline
        self.figures[baseline.key] = self._figure(baseline, self.baseline)
        self.phase_seconds["baseline"] = self.baseline.seconds
        for phase, phase_variants in by_phase.items():
            for variant in phase_variants:
                if variant.reuse is not None and variant.reuse in self.passes:
                    result = self.passes[variant.reuse]
                    self.passes[variant.key] = result
                    self.figures[variant.key] = self._figure(variant, result, reused_from=variant.reuse)
                    continue
                result = results[variant.key]
                self.passes[variant.key] = result
                self.figures[variant.key] = self._figure(variant, result)
                self.phase_seconds[phase] = self.phase_seconds.get(phase, 0.0) + result.seconds

    def _advance(self, baseline: Variant, measured: list[Variant]) -> dict[FigureKey, PassResult]:
        store, evaluator, streamed = self.store, self.evaluator, self.streamed
        self._report("baseline", 0, 1, "capturing the layer calls")
        captured = evaluator.capture()
        every = [baseline, *measured]
        self._by_key = {v.key: v for v in every}
        self._spent = {v.key: 0.0 for v in every}
        nodes = [_Node(every, [store.put(c.hidden) for c in captured])]
        pairs = sorted({(sw.layer, sw.row) for sw in self.super_weights})
        self.sa_recordings = {pair: [] for pair in pairs}
        count = len(streamed.layers)
        for layer in range(count):
            # the layer's calls reuse the heap rather than fault in fresh pages for each variant's working
            # tensors (with the embeddings and head mapped, not read, there is room for one layer's working
            # set); trimmed after each layer, so the long-lived hidden states leave no growing holes
            with reused_heap():
                streamed.materialise(layer)
                try:
                    children: list[_Node] = []
                    for node in nodes:  # the baseline's node first: its recordings are read by the others
                        children.extend(self._through_layer(layer, node, baseline, captured))
                        for handle in node.handles:
                            store.drop(handle)
                        node.handles = []
                finally:
                    streamed.release(layer)
            nodes = children
            self._report(
                "pruning", layer + 1, count, f"layer {layer + 1}/{count}: {len(nodes)} variant state(s)"
            )
        # the heads and losses read no layer: their logits chunks take the layer's and its copies' place
        streamed.free_buffers()
        self._quantized_buffers.clear()
        self._final_nodes = nodes
        return self._losses(nodes)

    def _signature(self, variant: Variant, layer: int) -> Signature:
        """What `variant` does to layer `layer`: before its first layer, what its `prefix_of` does (RTN
        with the super weights held out runs the layers before theirs as plain RTN: one state for both)."""
        source = self._by_key.get(variant.prefix_of) if variant.prefix_of is not None else None
        if source is not None and layer < variant.first_layer:
            return self._signature(source, layer)
        return signature(variant, layer)

    def _through_layer(
        self, layer: int, node: _Node, baseline: Variant, captured: list[CapturedCalls]
    ) -> list[_Node]:
        """The node's variants through decoder layer `layer`, one child node per distinct change."""
        groups: dict[Signature, list[Variant]] = {}
        for variant in node.variants:
            groups.setdefault(self._signature(variant, layer), []).append(variant)
        children = []
        for change, variants in groups.items():
            on_spine = any(v is baseline for v in variants)
            diverged = None if on_spine else (node.diverged if node.diverged is not None else layer)
            child = _Node(variants, diverged=diverged)
            started = time.perf_counter()
            with self._layer_changes(layer, change, record=on_spine):
                for index, handle in enumerate(node.handles):
                    self.evaluator.current_batch = index
                    hidden = self.store.get(handle)  # (batch, window, hidden)
                    call: LayerCall = captured[index].calls[layer]
                    child.handles.append(self.store.put(call_layer(self.streamed, layer, hidden, call)))
            seconds = time.perf_counter() - started
            for variant in variants:
                self._spent[variant.key] += seconds / len(variants)
            if on_spine:
                self._baseline_layer_s[layer] = seconds
                for pair in self.sa_recordings:
                    if pair[0] == layer:
                        self._find_sites_of(pair)
            children.append(child)
        return children

    @contextmanager
    def _layer_changes(self, layer: int, change: Signature, *, record: bool) -> Iterator[None]:
        """One variant's change to the materialised layer `layer` (and the baseline's recordings)."""
        edits, quantizer, restores, inputs = change
        with ExitStack() as stack:
            if edits:
                stack.enter_context(edited_weights(self.model, self.adapter, edits))
            hooks: dict[str, ForwardHook] = {}
            down = self.context.down_name(layer)
            for restore in restores:
                hooks[down] = _combined(hooks.get(down), self._restore_hook(restore))
            if record:
                for pair in self.sa_recordings:
                    if pair[0] == layer:
                        hooks[down] = _combined(hooks.get(down), self._recorder(pair))
            if hooks:
                stack.enter_context(forward_hooks(self.model, hooks))
            memory = None
            if quantizer is not None:
                # each weight's copy is made right before it runs, in one buffer for the whole suite
                memory = stack.enter_context(
                    fake_quantized_weights(
                        self.model, self.layer_targets[layer], quantizer, scratch=self._quantized_buffers
                    )
                )
            for quantized in inputs:
                positions = self._activation_hold_out if quantized.hold_out else None
                stack.enter_context(
                    fake_quantized_activations(
                        self.model, self.layer_targets[layer], quantized.bits, positions
                    )
                )
            yield
            if memory is not None:
                self._note_layer_memory(memory.peak_extra_bytes)

    def _recorder(self, pair: tuple[int, int]) -> ForwardHook:
        recorded = self.sa_recordings[pair]

        def hook(_module: nn.Module, _args: tuple[Any, ...], output: Any) -> None:
            recorded.append(hidden_states_of(output)[..., pair[1]].clone())  # (batch, window)

        return hook

    def _note_layer_memory(self, extra: int) -> None:
        if self.quant_memory is None:
            weights = sum(t.weight.numel() * t.weight.element_size() for t in self.context.targets)
            self.quant_memory = QuantMemory(weight_bytes=weights, tensors=len(self.context.targets))
        self.quant_memory.peak_extra_bytes = max(self.quant_memory.peak_extra_bytes, extra)

    def _losses(self, nodes: list[_Node]) -> dict[FigureKey, PassResult]:
        """The head and loss of every final state, once per state, with every observer its variants have."""
        results: dict[FigureKey, PassResult] = {}
        evaluator = self.evaluator
        found = {id(node): self._observers_of(node) for node in nodes}
        # the head read by slice for every state at once, unless an observer needs whole rows of logits:
        # those states go through the whole head after, when the others' are freed
        sliced = [
            node
            for node in nodes
            if evaluator.sliced_head is not None
            and all(isinstance(observer, SliceObserver) for observer in found[id(node)])
        ]
        for group in self._in_memory_groups(sliced):
            started = time.perf_counter()
            with reused_heap():  # the slices' logits reuse the heap (the layers' buffers left room)
                sums = self._sliced_sums(group, len(sliced), found)
            share = (time.perf_counter() - started) / len(group)
            for node, node_sums in zip(group, sums, strict=True):
                self._result(results, node, node_sums, share)
        taken = {id(node) for node in sliced}
        rest = [node for node in nodes if id(node) not in taken]
        for done, node in enumerate(rest, start=len(sliced) + 1):
            started = time.perf_counter()
            # a head's logits chunks reuse the heap, not fresh pages per chunk; trimmed after each head,
            # so what outlives it leaves no growing holes
            with reused_heap():
                node_sums = torch.cat(
                    [
                        evaluator.final_nll(index, self.store.get(handle), combined_observer(found[id(node)]))
                        for index, handle in enumerate(node.handles)
                    ]
                )  # (windows,) summed loss of each window, float64
            self._result(results, node, node_sums, time.perf_counter() - started)
            self._report(self._phase_of(node), done, len(nodes), f"loss {done}/{len(nodes)}")
        self.streamed.checkpoint.drop_mapped_pages()  # a mapped head's pages are not needed after
        return results

    def _in_memory_groups(self, nodes: list[_Node]) -> Iterator[list[_Node]]:
        """`nodes` in runs whose states together fit the store's memory budget (one run when they are all
        in memory): each run's states are held at once while the head is read by slice."""
        group: list[_Node] = []
        held = 0
        for node in nodes:
            size = sum(self.store.nbytes(handle) for handle in node.handles)
            if group and held + size > self.store.budget:
                yield group
                group, held = [], 0
            group.append(node)
            held += size
        if group:
            yield group

    def _sliced_sums(
        self, nodes: list[_Node], total: int, found: dict[int, list[BatchObserver]]
    ) -> list[torch.Tensor]:
        """Each node's summed loss of each window `(windows,)`, float64, through the sliced head: every
        state's head input first (it takes the state's place in the store), then one read of the head."""
        store, evaluator = self.store, self.evaluator
        phase = self._phase_of(nodes[-1])
        self._report(phase, 0, total, f"loss of {len(nodes)} state(s), the head read by slice")
        for node in nodes:
            node.handles = [
                self._replaced(handle, evaluator.head_input(index, store.get(handle)))
                for index, handle in enumerate(node.handles)
            ]
        flat = [(node, index, handle) for node in nodes for index, handle in enumerate(node.handles)]
        sums = evaluator.sliced_losses(
            [store.get(handle) for _, _, handle in flat],
            [index for _, index, _ in flat],
            [[o for o in found[id(node)] if isinstance(o, SliceObserver)] for node, _, _ in flat],
        )
        out, taken = [], 0
        for node in nodes:
            out.append(torch.cat(sums[taken : taken + len(node.handles)]))  # (windows,)
            taken += len(node.handles)
        self._report(phase, len(nodes), total, f"loss of {len(nodes)} state(s) done")
        return out

    def _replaced(self, handle: int, tensor: torch.Tensor) -> int:
        """Put `tensor` in the store in place of the state behind `handle`; its handle."""
        self.store.drop(handle)
        return self.store.put(tensor)

    def _result(
        self, results: dict[FigureKey, PassResult], node: _Node, sums: torch.Tensor, head_s: float
    ) -> None:
        """Each of the node's variants' figure from its windows' summed losses `(windows,)`."""
        for handle in node.handles:
            self.store.drop(handle)
        node.handles = []
        window = int(self.windows.input_ids.shape[1])
        predicted = sums.numel() * (window - 1)
        mean = float(sums.sum()) / predicted
        for variant in node.variants:
            results[variant.key] = PassResult(
                perplexity=math.exp(mean) if mean < 700 else math.inf,
                mean_nll=mean,
                predicted_tokens=predicted,
                seconds=self._spent[variant.key] + head_s / len(node.variants),
                prefix_layer=node.diverged or None,
                window_nll=tuple(float(v) / (window - 1) for v in sums),
            )

    @staticmethod
    def _phase_of(node: _Node) -> Phase:
        return "quantization" if node.variants[0].phase == "quantization" else "pruning"

    def _observers_of(self, node: _Node) -> list[BatchObserver]:
        return [observer for v in node.variants for observer in self._observer_list(v.key)]

    def timing(self, total: float) -> ValidationTiming:
        """Totals; a state shared by variants is computed once (the prefix cache, generalised to a tree)."""
        measured = self._final_nodes
        starts = [node.diverged for node in measured if node.diverged]
        saved = sum(sum(self._baseline_layer_s[:start]) for start in starts)
        return ValidationTiming(
            total_s=total,
            phases=dict(self.phase_seconds),
            full_passes=sum(1 for node in measured if not node.diverged),
            cached_passes=len(starts),
            reused_figures=sum(1 for f in self.figures.values() if f.reused_from is not None),
            prefix_layers=tuple(sorted(set(starts))),
            prefix_cache_bytes=self.store.peak_bytes,
            prefix_saved_s=saved,
        )


__all__ = ["LayeredSuite", "signature"]
