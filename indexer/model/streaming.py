"""The layer-streamed engine: a model whose decoder layers live in the checkpoint, not in memory.

The model is built as a skeleton (parameters on the meta device, buffers such as rotary frequencies
computed as usual); everything outside the decoder layers (embeddings, final norm, head) is read once
and stays resident. Each decoder layer is read from the checkpoint by a forward pre-hook just before
the model calls it and dropped back to the meta device by a forward hook right after, so the model's
own `forward` runs unchanged: rotary embeddings, per-layer attention masks (Gemma's sliding and global
layers), soft caps and every other family detail are computed by the family's code, never copied here.

Edits (a zeroed super weight) are overrides applied to a layer each time it is read; the checkpoint
is never written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from indexer.errors import InsufficientMemoryError, InvalidInputError, StreamingUnsupportedError
from indexer.model.ablation import Coordinate
from indexer.model.adapters import ArchitectureAdapter, adapter_for
from indexer.model.checkpoint import Checkpoint, GGUFCheckpoint, SafetensorsCheckpoint, write_safetensors
from indexer.model.heap import return_freed_tensors, trim
from indexer.model.hooks import forward_hooks, hidden_states_of
from indexer.model.loading import (
    MEMORY_HEADROOM,
    LoadedModel,
    LoadOptions,
    ModelSource,
    ProgressCallback,
    ResolvedModel,
    available_memory,
    dequantized_cache_folder,
    load_resolved,
    load_tokenizer,
    resolve_model,
    write_model_folder,
)
from indexer.model.skeleton import (
    assign,
    build_skeleton,
    converter,
    finish,
    plan_weights,
    read_into,
    split_path,
    tensor_at,
)

Engine = Literal["auto", "memory", "streamed"]
ENGINES: tuple[Engine, ...] = ("auto", "memory", "streamed")


def parse_engine(text: str) -> Engine:
    """`auto`, `memory` or `streamed`, or a clear error."""
    for engine in ENGINES:
        if text == engine:
            return engine
    raise InvalidInputError(f"unknown engine {text!r}; choose {', '.join(ENGINES)}")


@dataclass
class StreamedModel:
    """A skeleton model whose decoder layers are read from `checkpoint` while the model calls them."""

    loaded: LoadedModel  # `loaded.model` is the skeleton
    checkpoint: Checkpoint
    #: per decoder layer: (name relative to the layer, checkpoint name) of each tensor it holds
    layer_tensors: tuple[tuple[tuple[str, str], ...], ...]
    #: bytes kept in memory for the whole run (everything outside the decoder layers)
    resident_bytes: int
    #: why this engine was chosen (shown to the user), e.g. the memory budget the weights exceed
    reason: str = ""
    _overrides: dict[int, dict[tuple[int, int], float]] = field(default_factory=dict)
    _down_cache: tuple[int, torch.Tensor] | None = None
    #: one set of buffers the layers are read into in turn (decoder layers share their shapes): a layer
    #: costs no allocation, and freed layers leave no fragments for the allocator to keep resident
    _buffers: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def adapter(self) -> ArchitectureAdapter:
        """The family's adapter."""
        return self.loaded.adapter

    @property
    def layers(self) -> nn.ModuleList:
        """The skeleton's decoder layers."""
        return self.adapter.decoder_layers(self.loaded.model)

    @property
    def weight_bytes(self) -> int:
        """Bytes of all weights in the run's dtype."""
        return self.loaded.parameter_count * _element_bytes(self.loaded.dtype)

    @property
    def largest_layer_bytes(self) -> int:
        """Bytes of the largest decoder layer in the run's dtype (what one materialised layer costs)."""
        return max(self._layer_bytes(i) for i in range(len(self.layer_tensors)))

    def _layer_bytes(self, index: int) -> int:
        layer = self.layers[index]
        return sum(
            layer.get_parameter(rel).numel() * _element_bytes(self.loaded.dtype)
            if _is_parameter(layer, rel)
            else 0
            for rel, _ in self.layer_tensors[index]
        )

    def materialise(self, index: int) -> None:
        """Read decoder layer `index` from the checkpoint into the skeleton, with the overrides applied."""
        layer = self.layers[index]
        for rel, name in self.layer_tensors[index]:
            empty = tensor_at(layer, rel)  # on the meta device: its shape and dtype
            buffer = self._buffers.get(rel)
            if buffer is None or buffer.shape != empty.shape or buffer.dtype != empty.dtype:
                buffer = torch.empty(empty.shape, dtype=empty.dtype, device=self.loaded.device)
                self._buffers[rel] = buffer
            self.checkpoint.read_into(name, buffer)
            assign(layer, rel, buffer)
        overrides = self._overrides.get(index)
        if overrides:
            down = self.adapter.down_weight(self.loaded.model, index)
            with torch.no_grad():
                for storage_index, value in overrides.items():
                    down[storage_index] = value

    def release(self, index: int) -> None:
        """Drop decoder layer `index` back to the meta device."""
        layer = self.layers[index]
        for rel, _ in self.layer_tensors[index]:
            current = tensor_at(layer, rel)
            if current.device.type != "meta":
                assign(layer, rel, torch.empty_like(current, device="meta"))

    def free_buffers(self) -> None:
        """Free the buffers layers are read into (after the last layer of a run; the next read makes them
        again). Every layer must be released."""
        self._buffers.clear()

    @contextmanager
    def passing(self) -> Iterator[None]:
        """Stream the decoder layers through the model's own forward for the duration of the block."""
        prefix = self.adapter.layers_path(self.loaded.model)

        def before(index: int) -> Callable[[nn.Module, tuple[Any, ...]], None]:
            def hook(_module: nn.Module, _args: tuple[Any, ...]) -> None:
                self.materialise(index)

            return hook

        def after(index: int) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
            def hook(_module: nn.Module, _args: tuple[Any, ...], _output: Any) -> None:
                self.release(index)

            return hook

        count = len(self.layer_tensors)
        pre = {f"{prefix}.{i}": before(i) for i in range(count)}
        post = {f"{prefix}.{i}": after(i) for i in range(count)}
        try:
            with forward_hooks(self.loaded.model, post, pre):
                yield
        except NotImplementedError as exc:  # a meta tensor reached an operation outside a layer call
            raise StreamingUnsupportedError(
                f"{self.adapter.model_type}: the model uses decoder-layer weights outside the layer calls "
                f"({exc}); use the in-memory engine"
            ) from exc
        finally:
            for index in range(count):
                self.release(index)

    def down_weight(self, layer: int) -> torch.Tensor:
        """Layer `layer`'s down-projection weight as stored, read from the checkpoint with the overrides."""
        if self._down_cache is not None and self._down_cache[0] == layer:
            return self._down_cache[1]
        rel = f"{self.adapter.down_proj}.weight"
        name = dict(self.layer_tensors[layer])[rel]
        weight = self._convert(self.checkpoint.read([name])[name])
        for storage_index, value in self._overrides.get(layer, {}).items():
            weight[storage_index] = value
        self._down_cache = (layer, weight)
        return weight

    @contextmanager
    def zeroed(self, coordinates: Iterable[Coordinate]) -> Iterator[None]:
        """Zero each `(layer, row, col)` whenever its layer is read; nothing is written anywhere."""
        added: list[tuple[int, tuple[int, int]]] = []
        try:
            for layer, row, col in coordinates:
                index = self.adapter.storage_index(row, col)
                self._overrides.setdefault(layer, {})[index] = 0.0
                added.append((layer, index))
            self._down_cache = None
            yield
        finally:
            for layer, index in added:
                self._overrides[layer].pop(index, None)
            self._down_cache = None

    def forget_down_weight(self) -> None:
        """Drop the down-projection weight `down_weight` keeps for its next call."""
        self._down_cache = None

    def _convert(self, tensor: torch.Tensor) -> torch.Tensor:
        return converter(self.loaded.dtype, self.loaded.device)(tensor)


def _element_bytes(dtype: torch.dtype) -> int:
    return torch.finfo(dtype).bits // 8


def _is_parameter(module: nn.Module, path: str) -> bool:
    owner, leaf = split_path(path)
    return leaf in module.get_submodule(owner)._parameters


def _gguf_checkpoint(
    resolved: ResolvedModel, skeleton: nn.Module, tokenizer: Any, options: LoadOptions, say: ProgressCallback
) -> tuple[Checkpoint, Path | None]:
    """The GGUF file itself, or (with the cache on) its dequantized copy, written one tensor at a time."""
    gguf_path = resolved.gguf_file
    assert gguf_path is not None
    checkpoint = GGUFCheckpoint(gguf_path, skeleton)
    if not options.gguf_cache:
        return checkpoint, None
    folder = dequantized_cache_folder(gguf_path)
    say("caching the dequantized weights as safetensors, one tensor at a time")
    write_model_folder(
        folder,
        resolved.config,
        tokenizer,
        lambda path: write_safetensors(path, checkpoint, sorted(checkpoint.names), torch.float32),
    )
    return SafetensorsCheckpoint(folder), folder


def open_streamed(
    resolved: ResolvedModel,
    options: LoadOptions | None = None,
    progress: ProgressCallback | None = None,
    reason: str = "",
    started: float | None = None,
) -> StreamedModel:
    """A streamed model of `resolved`: the skeleton with its non-layer weights read, no layer resident."""
    options = options or LoadOptions()
    say = progress or (lambda _msg: None)
    started = time.perf_counter() if started is None else started
    # a streamed run is one whose memory is bounded: its freed working tensors must not stay resident
    return_freed_tensors()
    config = resolved.config
    adapter = adapter_for(config.model_type)
    skeleton = build_skeleton(config, resolved.dtype)
    try:
        prefix = adapter.layers_path(skeleton)
    except Exception as exc:
        raise StreamingUnsupportedError(str(exc)) from exc
    tokenizer = load_tokenizer(resolved)
    if resolved.gguf_file is not None:
        checkpoint, _ = _gguf_checkpoint(resolved, skeleton, tokenizer, options, say)
    else:
        checkpoint = SafetensorsCheckpoint(resolved.folder)

    plan = plan_weights(skeleton, checkpoint, prefix, len(adapter.decoder_layers(skeleton)))
    resident, per_layer = plan.resident, plan.per_layer
    missing_in_layers = plan.missing_in_layers
    if missing_in_layers:
        raise StreamingUnsupportedError(
            f"{resolved.source.display_name}: the checkpoint lacks decoder-layer tensors the model has "
            f"({', '.join(missing_in_layers[:3])}{'...' if len(missing_in_layers) > 3 else ''})"
        )

    resident_bytes = sum(checkpoint.nbytes(name) for _, name in resident)
    if resident_bytes:
        # the resident part must fit: a model whose embeddings alone exceed the budget cannot run at all
        budget = _budget(resolved.device, options)
        layer_budget = int((resident_bytes + max(_layer_sizes(checkpoint, per_layer))) * MEMORY_HEADROOM)
        if layer_budget > budget:
            raise InsufficientMemoryError(
                f"even streamed, {resolved.source.display_name} needs about {layer_budget / 2**30:.2f} GiB "
                f"(embeddings, head and one layer) but only {budget / 2**30:.2f} GiB is available"
            )
    say(f"reading the {resident_bytes / 2**20:.0f} MiB outside the decoder layers")
    # mapped on the CPU: between the embedding lookup and the head (the layer calls, where a streamed run
    # peaks) only the rows looked up are resident
    read_into(skeleton, checkpoint, resident, resolved.dtype, resolved.device)
    layer_keys = {f"{prefix}.{i}.{rel}" for i, entries in enumerate(per_layer) for rel, _ in entries}
    still_empty = finish(skeleton, resolved.device, layer_keys)
    if still_empty:
        raise StreamingUnsupportedError(
            f"{resolved.source.display_name}: the checkpoint lacks {', '.join(still_empty[:3])}"
        )
    loaded = LoadedModel(
        model=skeleton,
        tokenizer=tokenizer,
        adapter=adapter,
        source=resolved.source,
        revision_sha=resolved.revision_sha,
        quantization=resolved.quantization,
        dtype=resolved.dtype,
        device=resolved.device,
        parameter_count=resolved.parameter_count,
        load_time_s=time.perf_counter() - started,
        config=config,
    )
    streamed = StreamedModel(
        loaded=loaded,
        checkpoint=checkpoint,
        layer_tensors=per_layer,
        resident_bytes=resident_bytes,
        reason=reason,
    )
    # a family whose forward does not call its layers one after the other cannot be streamed: find out
    # now (stubs stand in for the layers, nothing is read) rather than in the middle of a pass
    capture_layer_calls(streamed, torch.tensor([[0, 1]]))
    # parsing the tokenizer leaves ~30 MiB of freed small objects in the heap (SmolLM2's): give them back
    trim()
    return streamed


def _layer_sizes(checkpoint: Checkpoint, per_layer: Sequence[Sequence[tuple[str, str]]]) -> list[int]:
    return [sum(checkpoint.nbytes(name) for _, name in entries) for entries in per_layer] or [0]


def _budget(device: torch.device, options: LoadOptions) -> int:
    have = available_memory(device)
    return min(have, options.memory_limit_bytes) if options.memory_limit_bytes is not None else have


@dataclass(frozen=True)
class OpenedModel:
    """A model opened by one engine, and why that engine when it is not the one asked for."""

    model: LoadedModel | StreamedModel
    #: the reason for the engine, to show the user ("" when it is simply the one asked for)
    note: str = ""

    @property
    def engine(self) -> Literal["memory", "streamed"]:
        """The engine that runs the model."""
        return "streamed" if isinstance(self.model, StreamedModel) else "memory"

    @property
    def loaded(self) -> LoadedModel:
        """The loaded model (the skeleton, for the streamed engine)."""
        return self.model.loaded if isinstance(self.model, StreamedModel) else self.model


def open_model(
    spec: str | ModelSource,
    revision: str | None = None,
    options: LoadOptions | None = None,
    engine: Engine = "auto",
    progress: ProgressCallback | None = None,
) -> OpenedModel:
    """Open `spec` with `engine`: `auto` loads it into memory when it fits and streams it when it does not.

    `streamed` on a model that cannot be streamed falls back to the in-memory engine (and says why);
    `auto` on a model that neither fits nor streams raises the memory error.
    """
    options = options or LoadOptions()
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    resolved = resolve_model(spec, revision, options, progress)
    if engine == "memory":
        return OpenedModel(load_resolved(resolved, options, say, started))
    if engine == "auto":
        try:
            return OpenedModel(load_resolved(resolved, options, say, started))
        except InsufficientMemoryError as refusal:
            note = f"{refusal}: streaming the decoder layers one at a time instead"
            say(note)
            try:
                return OpenedModel(open_streamed(resolved, options, progress, note, started), note)
            except (StreamingUnsupportedError, InsufficientMemoryError) as exc:
                raise InsufficientMemoryError(f"{refusal}; streaming does not help: {exc}") from exc
    try:
        return OpenedModel(open_streamed(resolved, options, progress, "asked for", started))
    except StreamingUnsupportedError as exc:
        note = f"{exc}: falling back to the in-memory engine"
        say(note)
        return OpenedModel(load_resolved(resolved, options, say, started), note)


@dataclass(frozen=True)
class LayerCall:
    """How the model calls one decoder layer, less the hidden states: captured from its own forward."""

    args: tuple[Any, ...]  # positional arguments after the hidden states
    kwargs: dict[str, Any]  # rotary embeddings, this layer's attention mask, positions, ...


@dataclass(frozen=True)
class CapturedCalls:
    """The first decoder layer's input and every layer's call arguments for one batch of token ids."""

    hidden: torch.Tensor  # (batch, seq, hidden): the embeddings as the model computes them
    calls: tuple[LayerCall, ...]
    #: the model reads a layer's output as `output[0]` (older families, e.g. Falcon), not as the tensor
    tuple_outputs: bool = False


class _Captured(Exception):  # noqa: N818 (a control-flow signal, not an error)
    """Raised by the last stub: nothing after the decoder layers needs to run."""


class _OutputKindMismatchError(Exception):
    """A stub received hidden states of another shape: the model unpacks layer outputs as tuples."""


class _LayerStub(nn.Module):
    """Stands in for decoder layer `index`: records how it is called, passes the hidden states through."""

    def __init__(
        self,
        index: int,
        sink: dict[int | str, Any],
        last: int,
        tuple_outputs: bool,
        final: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.index, self.sink, self.last, self.final = index, sink, last, final
        self.tuple_outputs = tuple_outputs

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        named = "hidden_states" in kwargs
        hidden = kwargs.pop("hidden_states") if named else args[0]
        rest = args if named else args[1:]
        if self.index == 0:
            self.sink["hidden"] = hidden
        elif not isinstance(hidden, torch.Tensor) or hidden.shape != self.sink["hidden"].shape:
            raise _OutputKindMismatchError
        if self.final is None:
            self.sink[self.index] = LayerCall(tuple(rest), dict(kwargs))
            if self.index == self.last:
                raise _Captured
        output = self.final if self.final is not None and self.index == self.last else hidden
        return (output,) if self.tuple_outputs else output


@contextmanager
def _stubbed_layers(layers: nn.ModuleList, make: Callable[[int], nn.Module]) -> Iterator[None]:
    originals = list(layers)
    try:
        for index in range(len(originals)):
            layers[index] = make(index)
        yield
    finally:
        for index, original in enumerate(originals):
            layers[index] = original


def capture_layer_calls(streamed: StreamedModel, input_ids: torch.Tensor) -> CapturedCalls:
    """Run the model's own forward with every decoder layer replaced by a recording stub (no layer is read).

    The embeddings, rotary embeddings, masks (per layer type) and everything else the model computes before
    its layers are the family's code; what the stubs record lets `run_layer` call each layer exactly as the
    model would.
    """
    layers = streamed.layers
    last = len(layers) - 1
    for tuple_outputs in (False, True):  # which of the two conventions the family's forward unpacks
        sink: dict[int | str, Any] = {}

        def make(index: int, sink: dict[int | str, Any] = sink, wrap: bool = tuple_outputs) -> nn.Module:
            return _LayerStub(index, sink, last, wrap)

        with _stubbed_layers(layers, make), torch.inference_mode():
            try:
                streamed.loaded.model(input_ids=input_ids.to(streamed.loaded.device), use_cache=False)
            except _Captured:
                return CapturedCalls(
                    sink["hidden"], tuple(sink[i] for i in range(len(layers))), tuple_outputs
                )
            except (_OutputKindMismatchError, IndexError, TypeError):
                continue
    raise StreamingUnsupportedError(
        f"{streamed.adapter.model_type}: the forward does not call its decoder layers one after the other "
        "on the hidden states; use the in-memory engine"
    )


def run_layer(streamed: StreamedModel, index: int, hidden: torch.Tensor, call: LayerCall) -> torch.Tensor:
    """Read layer `index`, call it on `hidden` (batch, seq, hidden) as the model does, drop it."""
    streamed.materialise(index)
    try:
        return call_layer(streamed, index, hidden, call)
    finally:
        streamed.release(index)


def call_layer(streamed: StreamedModel, index: int, hidden: torch.Tensor, call: LayerCall) -> torch.Tensor:
    """Call the materialised layer `index` on `hidden` (batch, seq, hidden) as the model does."""
    with torch.inference_mode():
        output = streamed.layers[index](hidden, *call.args, **call.kwargs)
    return hidden_states_of(output)


def forward_from_final(
    streamed: StreamedModel, captured: CapturedCalls, input_ids: torch.Tensor, final: torch.Tensor
) -> Any:
    """The model's own forward with `final` (batch, seq, hidden) as the last decoder layer's output (the
    layers are stubs: nothing is read): its final norm, head and soft cap run as the family wrote them."""
    layers = streamed.layers
    last = len(layers) - 1
    sink: dict[int | str, Any] = {}

    def make(index: int) -> nn.Module:
        return _LayerStub(index, sink, last, captured.tuple_outputs, final)

    with _stubbed_layers(layers, make), torch.inference_mode():
        return streamed.loaded.model(input_ids=input_ids.to(streamed.loaded.device), use_cache=False)


def head_logits(
    streamed: StreamedModel, captured: CapturedCalls, input_ids: torch.Tensor, final: torch.Tensor
) -> torch.Tensor:
    """The logits the model's own forward computes from `final`, the last decoder layer's output."""
    output = forward_from_final(streamed, captured, input_ids, final)
    logits = output.logits
    assert isinstance(logits, torch.Tensor)
    return logits
