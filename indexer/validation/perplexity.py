"""Perplexity over non-overlapping windows, batched, with a prefix cache for variants that start late.

A variant that changes nothing before decoder layer L (a pruned super weight in layer L, a hook on layer L's
down projection) computes exactly the same hidden states up to layer L's input as the baseline. The
evaluator records those hidden states during the baseline pass and, for such a variant, replaces the
decoder layers before L by stubs that hand the recorded state on. The embeddings, position encodings and
masks are still computed by the model itself (they are cheap), so no `forward` method is copied.

The logits of a batch are never held whole: the output head records its input and returns nothing, and the
loss is computed from that input a chunk of positions at a time (the head as the model calls it, then any
final soft cap). At construction this is checked against the model's own logits on a few tokens; a model
that does more to its logits keeps the plain path. So batches are sized by tokens, not by vocabulary.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from indexer.errors import InvalidInputError
from indexer.model.hooks import forward_hooks, hidden_states_of
from indexer.model.loading import LoadedModel
from indexer.validation.corpus import TokenWindows

DEFAULT_WINDOW = 2048
#: memory allowed for one batch's logits and their float32 log-softmax
DEFAULT_LOGITS_MEMORY = 1 << 30
DEFAULT_PREFIX_CACHE_MEMORY = 1 << 30
#: bytes a logit costs during the loss: float32 logits, their float copy and their log-softmax
LOGIT_BYTES = 4 * 3
#: most positions of one logits chunk: enough rows that the head's matmul stays compute-bound (it reads the
#: whole head once a chunk), few enough that a chunk's logits are a heap block the allocator reuses, not a
#: fresh mapping whose pages fault in every pass (SmolLM2, 1,024 tokens a pass: `benchmarks/validate.py`'s
#: forward floor 135.7 s against 162.9 s with one chunk a batch; `benchmarks/RESULTS-validate.md`)
HEAD_CHUNK_TOKENS = 128
#: a target no token has: the cross-entropy skips it
IGNORED = -100
#: tokens per forward pass (whole windows) when the logits are computed in chunks
DEFAULT_BATCH_TOKENS = 8192
#: tokens of the head's check against the model's own logits
HEAD_CHECK_TOKENS = 16

#: called with (batch index, logits (n, positions, vocab), targets (n, positions)) for every predicted
#: position of every batch, once or in several chunks
BatchObserver = Callable[[int, torch.Tensor, torch.Tensor], None]


@runtime_checkable
class SliceObserver(Protocol):
    """A batch observer that needs only the predicted positions' next-token probabilities, summed over
    positions: it can also be shown them a slice of the vocabulary at a time (`SlicedHead`), never a
    position's whole row of logits."""

    def __call__(self, index: int, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a batch's (or chunk's) logits `(batch, positions, vocab)` at its predicted positions."""

    def observe_positions(self, count: int) -> None:
        """Count `count` predicted positions whose probabilities are shown by slice."""

    def observe_slice(self, probs: torch.Tensor, start: int) -> None:
        """Add probabilities `(positions, slice)` of the vocabulary ids `start`, `start + 1`, ..."""


@dataclass(frozen=True)
class PassResult:
    """One perplexity pass over every window."""

    perplexity: float
    mean_nll: float  # nats per predicted token
    predicted_tokens: int  # windows * (window - 1)
    seconds: float
    prefix_layer: int | None  # the decoder layer whose recorded input this pass started from
    #: mean next-token loss of each window (nats per predicted token), in corpus order: what the
    #: bootstrap intervals resample
    window_nll: tuple[float, ...] = ()


def model_context(model: nn.Module) -> int | None:
    """The model's context length from its config, when it states one."""
    config = getattr(model, "config", None)
    text_config = getattr(config, "text_config", None) or config
    for attribute in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(text_config, attribute, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def default_window(model: nn.Module, max_tokens: int | None = None) -> int:
    """2048 tokens, or the model's context or the token budget when either is shorter."""
    context = model_context(model)
    limits = [DEFAULT_WINDOW, *(n for n in (context, max_tokens) if n)]
    return min(limits)


def vocab_size(model: nn.Module) -> int:
    """Rows of the output head (the logits' last dimension)."""
    getter = getattr(model, "get_output_embeddings", None)
    head = getter() if callable(getter) else None
    weight = getattr(head, "weight", None)
    if isinstance(weight, torch.Tensor):
        return int(weight.shape[0])
    config = getattr(model, "config", None)
    return int(getattr(getattr(config, "text_config", None) or config, "vocab_size", 0) or 0)


def next_token_targets(ids: torch.Tensor) -> torch.Tensor:
    """Each position's next token, `IGNORED` at the last one: ignored rather than sliced off, since slicing
    a batch of logits to match would copy them all (hundreds of MB)."""
    targets = torch.full_like(ids, IGNORED)  # (batch, window)
    targets[:, :-1] = ids[:, 1:]
    return targets


def final_logit_softcap(model: nn.Module) -> float | None:
    """The soft cap the model puts on its logits after the head (Gemma 2 and 3), if any."""
    config = getattr(model, "config", None)
    value = getattr(getattr(config, "text_config", None) or config, "final_logit_softcapping", None)
    return float(value) if isinstance(value, int | float) and value > 0 else None


def auto_batch_size(windows: int, window: int, vocab: int, memory: int = DEFAULT_LOGITS_MEMORY) -> int:
    """Windows per batch so that a batch's logits, their float copy and log-softmax fit in `memory`."""
    per_window = max(1, window * max(vocab, 1) * LOGIT_BYTES)
    return max(1, min(windows, memory // per_window))


def _observe_predicted(
    observer: BatchObserver, index: int, logits: torch.Tensor, targets: torch.Tensor
) -> None:
    """Show `observer` a chunk's logits `(chunk, vocab)` at its predicted positions only."""
    predicted = targets != IGNORED
    count = int(predicted.sum())
    # the predicted rows are usually a prefix (a window's last position ends the chunk): a view, no copy
    seen = logits[:count] if bool(predicted[:count].all()) else logits[predicted]
    observer(index, seen.unsqueeze(0), targets[predicted].unsqueeze(0))


class WindowLoss:
    """The next-token loss of one loaded model on fixed windows: the batches, and each batch's loss through
    the head (from the head's input in chunks of positions, or from the model's whole logits).

    What every engine shares; the whole-model pass is `PerplexityEvaluator`'s.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        windows: TokenWindows,
        batch_size: int | None = None,
        *,
        chunked_logits: bool = True,
        logits_memory: int = DEFAULT_LOGITS_MEMORY,
    ) -> None:
        if batch_size is not None and batch_size < 1:
            raise InvalidInputError(f"batch size must be at least 1, got {batch_size}")
        self.model = loaded.model
        self.adapter = loaded.adapter
        self.device = loaded.device
        self.windows = windows
        count, window = (int(n) for n in windows.input_ids.shape)
        vocab = vocab_size(self.model)
        getter = getattr(self.model, "get_output_embeddings", None)
        head = getter() if callable(getter) else None
        self._head: nn.Module | None = head if isinstance(head, nn.Module) else None
        # the head as the model calls it (a bound method, or a device-placement wrapper around it)
        self._head_forward: Callable[..., Any] | None = self._head.forward if self._head is not None else None
        self._softcap = final_logit_softcap(self.model)
        #: positions whose logits (with their float copy and log-softmax) fit the logits memory at once, at
        #: most `HEAD_CHUNK_TOKENS`
        self.chunk_tokens = max(1, min(HEAD_CHUNK_TOKENS, logits_memory // max(1, vocab * LOGIT_BYTES)))
        #: whether the loss is computed from the head's input in chunks, never holding a batch's logits
        self.chunked_logits = chunked_logits and self._head is not None and self._head_reproduces_logits()
        if batch_size is None:
            batch_size = (
                max(1, min(count, DEFAULT_BATCH_TOKENS // window))
                if self.chunked_logits
                else auto_batch_size(count, window, vocab, logits_memory)
            )
        self.batch_size = batch_size
        self.batches = list(torch.split(windows.input_ids, self.batch_size))  # each (batch, window)
        #: index of the batch being evaluated; hooks of a variant read it to find their recorded values
        self.current_batch = 0

    def _head_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The model's logits for hidden states at the head's input: the head, then any soft cap."""
        assert self._head_forward is not None
        logits: torch.Tensor = self._head_forward(hidden)
        if self._softcap is not None:
            logits = torch.tanh(logits / self._softcap) * self._softcap
        return logits

    @contextmanager
    def _capturing_head_input(self) -> Iterator[list[torch.Tensor]]:
        """While the block runs, the head records its input and returns no logits (an empty last dim)."""
        assert self._head is not None
        head = self._head
        captured: list[torch.Tensor] = []
        missing = object()
        previous = head.__dict__.get("forward", missing)

        def stub(hidden: torch.Tensor, *_args: Any, **_kwargs: Any) -> torch.Tensor:
            captured.append(hidden)  # (batch, window, hidden)
            return hidden.new_empty((*hidden.shape[:-1], 0))

        # an instance attribute shadows the class's forward; nn.Module.__call__ looks it up
        head.forward = stub
        try:
            yield captured
        finally:
            if previous is missing:
                del head.forward
            else:
                head.forward = previous

    def _logits_nll(
        self, index: int, logits: torch.Tensor, ids: torch.Tensor, observer: BatchObserver | None
    ) -> torch.Tensor:
        """Each window's summed next-token loss `(batch,)` from a batch's whole logits."""
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(),
            next_token_targets(ids).reshape(-1),
            ignore_index=IGNORED,
            reduction="none",
        )  # (batch * window,), 0 at the ignored last positions
        if observer is not None:
            observer(index, logits[:, :-1], ids[:, 1:])
        return loss.view(ids.shape).double().sum(dim=1).cpu()

    def _chunked_nll(
        self, index: int, hidden: torch.Tensor, ids: torch.Tensor, observer: BatchObserver | None
    ) -> torch.Tensor:
        """Each window's summed next-token loss `(batch,)` from the head's input, `chunk_tokens` positions
        at a time."""
        rows = hidden.reshape(-1, hidden.shape[-1])  # (batch * window, hidden)
        targets = next_token_targets(ids).reshape(-1)  # (batch * window,)
        losses = torch.zeros(rows.shape[0], dtype=torch.float64)  # (batch * window,)
        for start in range(0, rows.shape[0], self.chunk_tokens):
            logits = self._head_logits(rows[start : start + self.chunk_tokens]).float()  # (chunk, vocab)
            chunk_targets = targets[start : start + self.chunk_tokens]
            if observer is not None:
                _observe_predicted(observer, index, logits, chunk_targets)
            # the cross-entropy's own two steps, its log-softmax written over the logits (nothing reads them
            # after): one vocab-sized tensor a chunk instead of two, and the same loss bit for bit
            log_probs = torch.log_softmax(logits, dim=-1, out=logits)
            loss = F.nll_loss(log_probs, chunk_targets, ignore_index=IGNORED, reduction="none")
            losses[start : start + loss.numel()] = loss.double().cpu()
            del logits, log_probs  # freed before the next chunk's logits exist, not after them
        return losses.view(ids.shape).sum(dim=1)

    def _head_reproduces_logits(self) -> bool:
        """Whether the head's input, through the head (and soft cap), gives the model's own logits.

        Checked on a few tokens, once: a model that does more to its logits than we know of keeps the
        plain path (whole logits per batch) rather than giving wrong figures.
        """
        ids = self.windows.input_ids[:1, :HEAD_CHECK_TOKENS].to(self.device)  # (1, tokens)
        with torch.inference_mode():
            expected = self.model(input_ids=ids, use_cache=False).logits.float()  # (1, tokens, vocab)
            with self._capturing_head_input() as captured:
                self.model(input_ids=ids, use_cache=False)
            if len(captured) != 1:
                return False
            got = self._head_logits(captured[0]).float()
        return logits_match(got, expected)


class PerplexityEvaluator(WindowLoss):
    """Evaluates perplexity of one loaded model on fixed windows, any number of times, cheaply."""

    def __init__(
        self,
        loaded: LoadedModel,
        windows: TokenWindows,
        batch_size: int | None = None,
        *,
        prefix_cache: bool = True,
        prefix_cache_memory: int = DEFAULT_PREFIX_CACHE_MEMORY,
        chunked_logits: bool = True,
        logits_memory: int = DEFAULT_LOGITS_MEMORY,
    ) -> None:
        super().__init__(
            loaded, windows, batch_size, chunked_logits=chunked_logits, logits_memory=logits_memory
        )
        self.layers_path = self.adapter.layers_path(self.model)
        self.num_layers = len(self.adapter.decoder_layers(self.model))
        self.prefix_cache_enabled = prefix_cache
        self.prefix_cache_memory = prefix_cache_memory
        #: (source, layer) -> per batch (batch, window, hidden): layer `layer`'s input in the pass of
        #: `source` (None: the baseline, kept for every later pass; any other only until its last use)
        self._cache: dict[tuple[Hashable | None, int], list[torch.Tensor]] = {}
        self._wanted: set[tuple[Hashable | None, int]] = set()
        #: non-baseline recordings -> the later passes still to start from them
        self._uses: dict[tuple[Hashable | None, int], int] = {}
        self._output_tail: tuple[Any, ...] | None = None  # what decoder layers return after the hidden state
        self.full_passes = 0
        self.cached_passes = 0

    @property
    def cached_layers(self) -> tuple[int, ...]:
        """Decoder layers whose baseline input hidden states are recorded."""
        return tuple(sorted(layer for source, layer in self._cache if source is None))

    @property
    def cache_bytes(self) -> int:
        """Memory held by the prefix cache."""
        return sum(t.numel() * t.element_size() for tensors in self._cache.values() for t in tensors)

    def want_prefix(self, layers: Iterable[int], source: Hashable | None = None) -> None:
        """Ask the full pass of `source` (None: the next full pass, the baseline's) to record the inputs of
        these decoder layers (layer 0 is never worth it); each non-baseline layer once per later use."""
        if not self.prefix_cache_enabled:
            return
        for layer in layers:
            if 0 < layer < self.num_layers:
                self._wanted.add((source, layer))
                if source is not None:
                    self._uses[(source, layer)] = self._uses.get((source, layer), 0) + 1

    def run(
        self,
        start_layer: int = 0,
        observer: BatchObserver | None = None,
        *,
        source: Hashable | None = None,
        key: Hashable | None = None,
    ) -> PassResult:
        """One pass over every window; `start_layer`: the first decoder layer the current variant changes.

        `source`: the pass whose layers before `start_layer` this one computes alike (None: the
        baseline); `key`: this pass's own name, under which it records the layer inputs asked of it.
        """
        started = time.perf_counter()
        prefix = self._usable_prefix(source, start_layer)
        wanted = self._wanted - set(self._cache)
        capture = sorted(layer for s, layer in wanted if s == key) if prefix is None else []
        window = int(self.windows.input_ids.shape[1])
        per_window: list[torch.Tensor] = []
        with ExitStack() as stack, torch.inference_mode():
            if prefix is not None:
                stack.enter_context(self._skipping_layers_before(prefix, self._cache[(source, prefix)]))
            recorded: dict[int, list[torch.Tensor]] = {}
            if capture:
                recorded = stack.enter_context(self._recording(capture))
            for index, batch in enumerate(self.batches):
                self.current_batch = index
                ids = batch.to(self.device)  # (batch, window)
                if self.chunked_logits:
                    with self._capturing_head_input() as captured:
                        self.model(input_ids=ids, use_cache=False)
                    per_window.append(self._chunked_nll(index, captured[-1], ids, observer))
                else:
                    per_window.append(self._whole_logits_nll(index, ids, observer))
        if capture:
            self._keep(key, recorded)
        if source is not None and start_layer > 0:
            self._used(source, start_layer)
        if prefix is None:
            self.full_passes += 1
        else:
            self.cached_passes += 1
        sums = torch.cat(per_window)  # (windows,) summed loss of each window, float64
        predicted = sums.numel() * (window - 1)
        mean = float(sums.sum()) / predicted
        return PassResult(
            perplexity=math.exp(mean) if mean < 700 else math.inf,
            mean_nll=mean,
            predicted_tokens=predicted,
            seconds=time.perf_counter() - started,
            prefix_layer=prefix,
            window_nll=tuple(float(v) / (window - 1) for v in sums),
        )

    def _whole_logits_nll(
        self, index: int, ids: torch.Tensor, observer: BatchObserver | None
    ) -> torch.Tensor:
        """Each window's summed next-token loss `(batch,)` from the model's own logits, all at once."""
        logits = self.model(input_ids=ids, use_cache=False).logits  # (batch, window, vocab)
        return self._logits_nll(index, logits, ids, observer)

    def _usable_prefix(self, source: Hashable | None, start_layer: int) -> int | None:
        usable = [layer for s, layer in self._cache if s == source and layer <= start_layer]
        return max(usable) if usable else None

    def _used(self, source: Hashable, layer: int) -> None:
        """One use of a non-baseline recording is done; the last one frees it."""
        entry = (source, layer)
        self._uses[entry] = self._uses.get(entry, 1) - 1
        if self._uses[entry] <= 0:
            del self._uses[entry]
            self._cache.pop(entry, None)
            self._wanted.discard(entry)

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

    def _keep(self, key: Hashable | None, recorded: dict[int, list[torch.Tensor]]) -> None:
        self._wanted.difference_update((key, layer) for layer in recorded)
        if self._output_tail is None:
            return
        budget = self.prefix_cache_memory - self.cache_bytes
        for layer, tensors in sorted(recorded.items()):
            size = sum(t.numel() * t.element_size() for t in tensors)
            if len(tensors) == len(self.batches) and size <= budget:
                self._cache[(key, layer)] = tensors
                budget -= size

    @contextmanager
    def _skipping_layers_before(self, layer: int, cached: list[torch.Tensor]) -> Iterator[None]:
        """Replace decoder layers `0..layer-1` by stubs returning layer `layer`'s recorded input."""
        layers = self.adapter.decoder_layers(self.model)
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


def logits_match(got: torch.Tensor, expected: torch.Tensor) -> bool:
    """Whether the chunked head's logits are the model's own (same shape, within 1% of their largest)."""
    if got.shape != expected.shape:
        return False
    scale = float(expected.abs().max()) or 1.0
    return float((got - expected).abs().max()) <= 1e-2 * scale


def bootstrap_resamples(windows: int, samples: int, seed: int) -> torch.Tensor:
    """`(samples, windows)` window indices drawn with replacement (one draw shared by every figure)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(windows, (samples, windows), generator=generator)


def paired_ratio_interval(
    window_nll: Sequence[float], base_nll: Sequence[float], resamples: torch.Tensor, level: float
) -> tuple[float | None, float | None]:
    """The bootstrap interval of a perplexity ratio: windows resampled, each paired with the base's same
    window (None where an end overflows)."""
    difference = torch.tensor(window_nll, dtype=torch.float64) - torch.tensor(base_nll, dtype=torch.float64)
    means = difference[resamples].mean(dim=1)  # (samples,) mean log ratio of each resample
    tail = (1 - level) / 2
    low, high = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return _exp(low), _exp(high)


def _exp(value: float) -> float | None:
    """exp, None where it overflows or is not a number."""
    if math.isnan(value):
        return None
    return math.exp(value) if value < 700 else None
