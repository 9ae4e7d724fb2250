"""Perplexity over non-overlapping windows, batched, with a prefix cache for variants that start late.

A variant that changes nothing before decoder layer L (a pruned super weight in layer L, a hook on layer L's
down projection) computes exactly the same hidden states up to layer L's input as the baseline. The
evaluator records those hidden states during the baseline pass and, for such a variant, replaces the
decoder layers before L by stubs that hand the recorded state on. The embeddings, position encodings and
masks are still computed by the model itself (they are cheap), so no `forward` method is copied.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from indexer.corpus import TokenWindows
from indexer.errors import InvalidInputError
from indexer.hooks import forward_hooks, hidden_states_of
from indexer.loading import LoadedModel

DEFAULT_WINDOW = 2048
#: memory allowed for one batch's logits and their float32 log-softmax
DEFAULT_LOGITS_MEMORY = 1 << 30
DEFAULT_PREFIX_CACHE_MEMORY = 1 << 30
#: a target no token has: the cross-entropy skips it
IGNORED = -100

#: called once per batch with (batch index, logits (batch, seq - 1, vocab), targets (batch, seq - 1))
BatchObserver = Callable[[int, torch.Tensor, torch.Tensor], None]


@dataclass(frozen=True)
class PassResult:
    """One perplexity pass over every window."""

    perplexity: float
    mean_nll: float  # nats per predicted token
    predicted_tokens: int  # windows * (window - 1)
    seconds: float
    prefix_layer: int | None  # the decoder layer whose recorded input this pass started from


def model_context(model: nn.Module) -> int | None:
    """The model's context length from its config, when it states one."""
    config = getattr(model, "config", None)
    text_config = getattr(config, "text_config", None) or config
    for attribute in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(text_config, attribute, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def default_window(model: nn.Module) -> int:
    """2048 tokens, or the model's context when it is shorter."""
    context = model_context(model)
    return min(DEFAULT_WINDOW, context) if context else DEFAULT_WINDOW


def vocab_size(model: nn.Module) -> int:
    """Rows of the output head (the logits' last dimension)."""
    getter = getattr(model, "get_output_embeddings", None)
    head = getter() if callable(getter) else None
    weight = getattr(head, "weight", None)
    if isinstance(weight, torch.Tensor):
        return int(weight.shape[0])
    config = getattr(model, "config", None)
    return int(getattr(getattr(config, "text_config", None) or config, "vocab_size", 0) or 0)


def auto_batch_size(windows: int, window: int, vocab: int, memory: int = DEFAULT_LOGITS_MEMORY) -> int:
    """Windows per batch so that a batch's logits, their float copy and log-softmax fit in `memory`."""
    per_window = max(1, window * max(vocab, 1) * 4 * 3)
    return max(1, min(windows, memory // per_window))


class PerplexityEvaluator:
    """Evaluates perplexity of one loaded model on fixed windows, any number of times, cheaply."""

    def __init__(
        self,
        loaded: LoadedModel,
        windows: TokenWindows,
        batch_size: int | None = None,
        *,
        prefix_cache: bool = True,
        prefix_cache_memory: int = DEFAULT_PREFIX_CACHE_MEMORY,
    ) -> None:
        if batch_size is not None and batch_size < 1:
            raise InvalidInputError(f"batch size must be at least 1, got {batch_size}")
        self.model = loaded.model
        self.adapter = loaded.adapter
        self.device = loaded.device
        self.windows = windows
        count, window = windows.input_ids.shape
        self.batch_size = batch_size or auto_batch_size(int(count), int(window), vocab_size(self.model))
        self.batches = list(torch.split(windows.input_ids, self.batch_size))  # each (batch, window)
        self.layers_path = self.adapter.layers_path(self.model)
        self.num_layers = len(self.adapter.decoder_layers(self.model))
        #: index of the batch being evaluated; hooks of a variant read it to find their recorded values
        self.current_batch = 0
        self.prefix_cache_enabled = prefix_cache
        self.prefix_cache_memory = prefix_cache_memory
        self._cache: dict[int, list[torch.Tensor]] = {}  # layer -> per batch (batch, window, hidden)
        self._wanted: set[int] = set()
        self._output_tail: tuple[Any, ...] | None = None  # what decoder layers return after the hidden state
        self.full_passes = 0
        self.cached_passes = 0

    @property
    def cached_layers(self) -> tuple[int, ...]:
        """Decoder layers whose input hidden states are recorded."""
        return tuple(sorted(self._cache))

    @property
    def cache_bytes(self) -> int:
        """Memory held by the prefix cache."""
        return sum(t.numel() * t.element_size() for tensors in self._cache.values() for t in tensors)

    def want_prefix(self, layers: Iterable[int]) -> None:
        """Ask the next full pass to record the inputs of these decoder layers (layer 0 is never worth it)."""
        if self.prefix_cache_enabled:
            self._wanted.update(layer for layer in layers if 0 < layer < self.num_layers)

    def run(self, start_layer: int = 0, observer: BatchObserver | None = None) -> PassResult:
        """One pass over every window; `start_layer`: the first decoder layer the current variant changes."""
        started = time.perf_counter()
        prefix = self._usable_prefix(start_layer)
        capture = sorted(self._wanted - set(self._cache)) if prefix is None else []
        nll = torch.zeros((), dtype=torch.float64)
        predicted = 0
        with ExitStack() as stack, torch.inference_mode():
            if prefix is not None:
                stack.enter_context(self._skipping_layers_before(prefix))
            recorded: dict[int, list[torch.Tensor]] = {}
            if capture:
                recorded = stack.enter_context(self._recording(capture))
            for index, batch in enumerate(self.batches):
                self.current_batch = index
                ids = batch.to(self.device)  # (batch, window)
                logits = self.model(input_ids=ids, use_cache=False).logits  # (batch, window, vocab)
                # the last position predicts nothing: it is ignored, not sliced off, since slicing a batch
                # of logits copies them all (hundreds of MB)
                shifted = torch.full_like(ids, IGNORED)  # (batch, window)
                shifted[:, :-1] = ids[:, 1:]
                nll += (
                    F.cross_entropy(
                        logits.reshape(-1, logits.shape[-1]).float(),
                        shifted.reshape(-1),
                        ignore_index=IGNORED,
                        reduction="sum",
                    )
                    .double()
                    .cpu()
                )
                targets = ids[:, 1:]  # (batch, window-1)
                predicted += targets.numel()
                if observer is not None:
                    observer(index, logits[:, :-1], targets)
        if capture:
            self._keep(recorded)
        if prefix is None:
            self.full_passes += 1
        else:
            self.cached_passes += 1
        mean = float(nll) / predicted
        return PassResult(
            perplexity=math.exp(mean) if mean < 700 else math.inf,
            mean_nll=mean,
            predicted_tokens=predicted,
            seconds=time.perf_counter() - started,
            prefix_layer=prefix,
        )

    def _usable_prefix(self, start_layer: int) -> int | None:
        usable = [layer for layer in self._cache if layer <= start_layer]
        return max(usable) if usable else None

    def _layer_name(self, layer: int) -> str:
        return f"{self.layers_path}.{layer}"

    @contextmanager
    def _recording(self, layers: list[int]) -> Iterator[dict[int, list[torch.Tensor]]]:
        """Record each listed layer's input: the output of the layer before it."""
        recorded: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}

        def hook_for(layer: int) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
            def hook(_module: nn.Module, _args: tuple[Any, ...], output: Any) -> None:
                self._note_output_structure(output)
                recorded[layer].append(hidden_states_of(output).clone())  # (batch, window, hidden)

            return hook

        with forward_hooks(self.model, {self._layer_name(layer - 1): hook_for(layer) for layer in layers}):
            yield recorded

    def _note_output_structure(self, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            self._output_tail = ()
        elif isinstance(output, tuple) and all(item is None for item in output[1:]):
            self._output_tail = tuple(output[1:])
        else:
            self._output_tail = None  # something we could not hand on faithfully: no cache

    def _keep(self, recorded: dict[int, list[torch.Tensor]]) -> None:
        self._wanted.difference_update(recorded)
        if self._output_tail is None:
            return
        budget = self.prefix_cache_memory - self.cache_bytes
        for layer, tensors in sorted(recorded.items()):
            size = sum(t.numel() * t.element_size() for t in tensors)
            if len(tensors) == len(self.batches) and size <= budget:
                self._cache[layer] = tensors
                budget -= size

    @contextmanager
    def _skipping_layers_before(self, layer: int) -> Iterator[None]:
        """Replace decoder layers `0..layer-1` by stubs returning layer `layer`'s recorded input."""
        layers = self.adapter.decoder_layers(self.model)
        cached = self._cache[layer]
        tail = self._output_tail or ()
        missing = object()
        saved: list[tuple[nn.Module, Any]] = []

        def stub(*_args: Any, **_kwargs: Any) -> Any:
            hidden = cached[self.current_batch]
            return (hidden, *tail) if tail else hidden

        try:
            for index in range(layer):
                module = layers[index]
                saved.append((module, module.__dict__.get("forward", missing)))
                # an instance attribute shadows the class's forward; nn.Module.__call__ looks it up
                module.forward = stub
            yield
        finally:
            for module, previous in saved:
                if previous is missing:
                    del module.forward
                else:
                    module.forward = previous
