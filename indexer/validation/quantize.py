"""Round-to-nearest (RTN) fake quantization of weights and activations, with super-weight hold-out.

Asymmetric min-max RTN: per block, `scale = (max - min) / (2**bits - 1)` and
`w' = min + round((w - min) / scale) * scale` (round half to even); a constant block is left as it is.
Blocks run over the flattened row-major `[out, in]` weight (the paper's block sizes) or, for groups,
along the input dimension of each output row.

Evaluation never holds a second copy of the model: each linear layer runs on a quantized copy of its
weight made just before it runs and dropped just after (`fake_quantized_weights`); the original tensor is
never written, so it comes back bit-exactly, and the extra memory is one tensor (plus a float32 working
copy for weights stored in another dtype) at a time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from indexer.errors import InvalidInputError
from indexer.model.hooks import forward_hooks

ClipMethod = Literal["zscore", "percentile"]
WeightLayout = Literal["out_in", "in_out"]
#: the paper's block sizes (elements of the flattened weight), plus groups of 128 along the input dimension
DEFAULT_GRANULARITIES = ("tensor", "1048576", "262144", "65536", "16384", "g128")
_GROUP = re.compile(r"^g([1-9][0-9]*)$")


@dataclass(frozen=True)
class Granularity:
    """Where min and max are taken: the whole tensor, flat blocks of `block_size`, or input-dim groups."""

    block_size: int | None = None  # elements of the flattened row-major [out, in] weight
    group_size: int | None = None  # consecutive input channels of one output row

    def __post_init__(self) -> None:
        if self.block_size is not None and self.group_size is not None:
            raise InvalidInputError("a granularity has a block size or a group size, not both")
        for size in (self.block_size, self.group_size):
            if size is not None and size < 1:
                raise InvalidInputError(f"block and group sizes must be positive, got {size}")

    @property
    def label(self) -> str:
        """`tensor`, the block size, or `g<group>`: the inverse of `parse_granularity`."""
        if self.group_size is not None:
            return f"g{self.group_size}"
        return "tensor" if self.block_size is None else str(self.block_size)


def parse_granularity(text: str) -> Granularity:
    """`tensor` (whole tensor), a block size in elements such as `65536`, or `g128` (input-dim groups)."""
    value = text.strip().lower()
    if value in ("tensor", "whole"):
        return Granularity()
    if value.isdigit() and int(value) > 0:
        return Granularity(block_size=int(value))
    match = _GROUP.match(value)
    if match:
        return Granularity(group_size=int(match.group(1)))
    raise InvalidInputError(f"unknown granularity {text!r}: use tensor, a block size like 65536, or g128")


@dataclass(frozen=True)
class ClipSpec:
    """Outlier clipping before quantization: thresholds computed over the whole tensor."""

    method: ClipMethod = "percentile"
    #: zscore: clip to mean ± threshold * std; percentile: clip to the [100 - t, t] percentiles
    threshold: float = 99.99

    def __post_init__(self) -> None:
        if self.method not in ("zscore", "percentile"):
            raise InvalidInputError(f"unknown clip method {self.method!r}: use zscore or percentile")
        if self.method == "zscore" and self.threshold <= 0:
            raise InvalidInputError("the z-score clip threshold must be positive")
        if self.method == "percentile" and not 50 < self.threshold <= 100:
            raise InvalidInputError("the percentile clip threshold must be in (50, 100]")


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run the block's tensor ops on one intra-op thread, then restore the thread count.

    Quantization is a chain of short memory-bound element-wise ops on one weight (at most a few MiB): split
    over threads, each op ends at a barrier that costs more than the op itself whenever a core is busy
    (measured on a loaded 2-core machine: 8 ms an op on 2 threads, 0.1 to 0.5 ms on one).
    """
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


#: tensors at least this large are quantized on all intra-op threads: each op then takes milliseconds on
#: one core (2 threads: 190 -> 106 ms for a 45M-element RTN, `benchmarks/quantize_ops.py`)
PARALLEL_MIN_ELEMENTS = 1 << 22


def quantization_threads(numel: int) -> AbstractContextManager[None]:
    """One thread for a small tensor's ops (see `single_threaded`), all threads for a large one."""
    return single_threaded() if numel < PARALLEL_MIN_ELEMENTS else nullcontext()


def _row_ranges(rows: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's minimum and RTN step, `(n, 1)` each; a constant row gets step 1 (it comes back as is)."""
    levels = float(2**bits - 1)
    # two reductions, not `aminmax`: along a dimension it ran ~5x slower (`benchmarks/quantize_ops.py`)
    low = rows.amin(dim=1, keepdim=True)  # (n, 1)
    scale = rows.amax(dim=1, keepdim=True).sub_(low).div_(levels)  # (n, 1)
    scale.masked_fill_(~(scale > 0), 1.0)
    # no clamp below: w - low >= 0 exactly and (max - min) / scale is levels to within an ulp, so every
    # rounded code already lies in [0, levels]
    return low, scale


def fake_quantize_rows_(rows: torch.Tensor, bits: int) -> None:
    """Asymmetric min-max RTN of each row of a float 2-D tensor, in place."""
    low, scale = _row_ranges(rows, bits)
    rows.sub_(low).div_(scale).round_().mul_(scale).add_(low)


def fake_quantized_rows(rows: torch.Tensor, bits: int) -> torch.Tensor:
    """`fake_quantize_rows_` into a new tensor (the same arithmetic, so the same bits); `rows` is kept."""
    low, scale = _row_ranges(rows, bits)
    return torch.sub(rows, low).div_(scale).round_().mul_(scale).add_(low)


def _quantize_flat_(flat: torch.Tensor, bits: int, granularity: Granularity, columns: int) -> None:
    """Quantize a contiguous float32 flattened `[out, in]` weight in place."""
    total = flat.numel()
    if granularity.group_size is not None:
        group = granularity.group_size
        matrix = flat.view(-1, columns)  # (out, in)
        full = (columns // group) * group
        if full == columns:
            fake_quantize_rows_(matrix.view(-1, group), bits)
            return
        for part in (matrix[:, :full], matrix[:, full:]):
            if part.shape[1] == 0:
                continue
            width = group if part.shape[1] >= group else part.shape[1]
            work = part.reshape(-1, width)  # a copy: the column slice is not contiguous
            fake_quantize_rows_(work, bits)
            part.copy_(work.view(part.shape))
        return
    block = granularity.block_size or total
    full = (total // block) * block
    if full:
        fake_quantize_rows_(flat[:full].view(-1, block), bits)
    if full < total:
        fake_quantize_rows_(flat[full:].view(1, -1), bits)


def block_partition(granularity: Granularity, targets: Sequence[LinearTarget]) -> tuple[tuple[str, int], ...]:
    """How a granularity splits each target weight: equal partitions quantize to bit-identical weights.

    Flat blocks at least as large as a weight are the whole tensor; groups that divide a row (or span it)
    are flat blocks of the group's size. So on a small model the 1,048,576-element blocks are per tensor.
    """
    partition = []
    for target in targets:
        total = target.weight.numel()
        columns = target.in_features
        if granularity.group_size is not None:
            group = granularity.group_size
            if group < columns and columns % group:
                partition.append(("group", group))
                continue
            block = min(group, columns)
        else:
            block = granularity.block_size or total
        partition.append(("flat", min(block, total)))
    return tuple(partition)


def _block_start(flat_index: int, granularity: Granularity, columns: int, total: int) -> tuple[int, int]:
    """First flat index and length of the block (or group) that holds `flat_index`."""
    if granularity.group_size is not None:
        row, col = divmod(flat_index, columns)
        group = granularity.group_size
        start_col = (col // group) * group
        return row * columns + start_col, min(group, columns - start_col)
    block = granularity.block_size or total
    start = (flat_index // block) * block
    return start, min(block, total - start)


def clip_thresholds(values: torch.Tensor, clip: ClipSpec) -> tuple[float, float]:
    """The (low, high) clip thresholds of a flattened tensor."""
    # one thread always: the z-score's sums then do not depend on the caller's thread count
    with single_threaded():
        return _clip_thresholds(values.reshape(-1), clip)


#: elements per slice of a top-k selection: `topk` sorts (value, index) pairs of its whole input, 16 bytes
#: an element (13 MiB for one 576 x 1536 weight, the streamed suite's largest transient); slices bound it
SELECTION_SLICE = 1 << 16
#: elements per row of a first selection along rows: `topk` along the last dim works on one row at a time in
#: a buffer of 16 bytes an element, 64 KiB here: below glibc's mmap threshold, so carved from the heap and
#: reused, not a fresh mapping per slice whose pages fault in (`indexer.model.heap` pins that threshold)
SELECTION_ROW = 1 << 12


def _kth_from_end(flat: torch.Tensor, k: int, *, largest: bool) -> float:
    """`flat.topk(k, largest=largest).values[-1]` (the k-th largest or smallest value), the same value, in
    bounded memory: the k best of each row (or slice) hold the k best of all."""
    count = flat.numel()
    if 8 * k <= SELECTION_ROW and count >= 2 * SELECTION_ROW:
        # one call over rows: its output (rows, k) is at most an eighth of the input
        full = count - count % SELECTION_ROW
        rows = flat[:full].reshape(-1, SELECTION_ROW)  # (rows, row)
        per_row = rows.topk(k, dim=1, largest=largest).values.reshape(-1)  # (rows * k,)
        flat = torch.cat([per_row, flat[full:]])
    elif k < SELECTION_SLICE < count // 2:
        per_slice = [
            part.topk(min(k, part.numel()), largest=largest).values
            for part in torch.split(flat, SELECTION_SLICE)
        ]
        flat = torch.cat(per_slice)
    return float(flat.topk(k, largest=largest).values[-1])


def _clip_thresholds(flat: torch.Tensor, clip: ClipSpec) -> tuple[float, float]:
    if clip.method == "zscore":
        if flat.numel() < 2:
            return -math.inf, math.inf
        std, mean = torch.std_mean(flat)
        return float(mean) - clip.threshold * float(std), float(mean) + clip.threshold * float(std)
    count = flat.numel()
    low_k = max(1, round(count * (100 - clip.threshold) / 100))  # the low_k-th smallest value
    high_k = min(count, max(1, round(count * clip.threshold / 100)))  # the high_k-th smallest value
    from_top = count - high_k + 1
    if max(low_k, from_top) * 50 < count:  # thin tails: a top-k is far cheaper than a full selection
        return _kth_from_end(flat, low_k, largest=False), _kth_from_end(flat, from_top, largest=True)
    return float(flat.kthvalue(low_k).values), float(flat.kthvalue(high_k).values)


@torch.no_grad()
def rtn_quantize_(
    weight: torch.Tensor,
    bits: int,
    granularity: Granularity | None = None,
    *,
    layout: WeightLayout = "out_in",
    hold_out: Sequence[tuple[int, int]] = (),
    restore: Sequence[tuple[int, int]] = (),
    clip: ClipSpec | None = None,
    clip_range: Callable[[torch.Tensor], tuple[float, float]] | None = None,
) -> torch.Tensor:
    """Fake-quantize a weight in place with asymmetric min-max RTN; returns `weight`.

    Coordinates are `(row, col)` in the `[out, in]` convention, whatever the storage layout.
    `hold_out`: kept out of the min/max and the clip statistics (a value of their own block stands in
    meanwhile), then written back bit-exactly: the super-weight hold-out recipe.
    `restore`: quantized (and clipped) like the rest, then written back bit-exactly.
    `clip`: clip outliers to thresholds computed over the whole tensor before quantizing;
    `clip_range(flat)` computes them instead of `clip_thresholds` (a cache of them, say).
    """
    if not 1 <= bits <= 16:
        raise InvalidInputError(f"RTN bits must be between 1 and 16, got {bits}")
    if weight.dim() != 2:
        raise InvalidInputError(f"RTN expects a 2-D weight, got shape {tuple(weight.shape)}")
    granularity = granularity or Granularity()
    matrix = weight if layout == "out_in" else weight.t()  # (out, in) view
    rows, columns = matrix.shape
    held = [(int(r), int(c)) for r, c in dict.fromkeys(hold_out)]
    kept = [(int(r), int(c)) for r, c in dict.fromkeys([*hold_out, *restore])]
    for r, c in kept:
        if not (0 <= r < rows and 0 <= c < columns):
            raise InvalidInputError(f"coordinate ({r}, {c}) is outside the weight's {rows}x{columns}")
    originals = [matrix[r, c].clone() for r, c in kept]
    in_place = matrix.dtype == torch.float32 and matrix.is_contiguous()
    # the float32 working copy is the weight itself when possible: one tensor's worth of memory saved
    work = matrix if in_place else matrix.to(torch.float32, copy=True).contiguous()
    flat = work.view(-1)
    held_flat = {r * columns + c for r, c in held}
    if held_flat:
        # a held-out value is replaced by another value of its own block: it then cannot move min or max
        for index in held_flat:
            start, length = _block_start(index, granularity, columns, flat.numel())
            stand_in = next((i for i in range(start, start + length) if i not in held_flat), None)
            flat[index] = flat[stand_in] if stand_in is not None else flat[index]
    if clip is not None:
        low, high = clip_range(flat) if clip_range is not None else clip_thresholds(flat, clip)
        flat.clamp_(low, high)
    _quantize_flat_(flat, bits, granularity, columns)
    if not in_place:
        matrix.copy_(work)
    for (r, c), original in zip(kept, originals, strict=True):
        matrix[r, c] = original
    return weight


@dataclass(frozen=True)
class LinearTarget:
    """One quantized linear layer: its module name, weight layout and input width."""

    name: str
    module: nn.Module
    layout: WeightLayout
    in_features: int

    @property
    def weight(self) -> torch.Tensor:
        """The module's weight as stored."""
        weight = self.module.weight
        assert isinstance(weight, torch.Tensor)
        return weight


def linear_targets(model: nn.Module) -> list[LinearTarget]:
    """Every linear layer except the input embeddings and the output head (tied or not), by type."""
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - transformers is a dependency
        conv1d: tuple[type[nn.Module], ...] = ()
    else:
        conv1d = (Conv1D,)
    excluded: set[int] = set()
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        module = getattr(model, getter)() if hasattr(model, getter) else None
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor):
            excluded.add(id(weight))
    targets = []
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor) or id(weight) in excluded:
            continue
        if isinstance(module, nn.Linear):
            targets.append(LinearTarget(name, module, "out_in", int(weight.shape[1])))
        elif conv1d and isinstance(module, conv1d):
            targets.append(LinearTarget(name, module, "in_out", int(weight.shape[0])))
    return targets


@dataclass
class QuantMemory:
    """Extra memory the per-layer quantization held at its peak (bytes), against the weights it touched."""

    weight_bytes: int = 0
    peak_extra_bytes: int = 0
    tensors: int = 0

    @property
    def peak_ratio(self) -> float:
        """(weights + peak extra) / weights."""
        return 1.0 + self.peak_extra_bytes / self.weight_bytes if self.weight_bytes else 1.0


WeightQuantizer = Callable[[LinearTarget, torch.Tensor], None]
#: clip thresholds by (module name, clip spec, held-out coordinates, granularity when some are held out)
ClipCache = dict[tuple[str, ClipSpec, tuple[tuple[int, int], ...], str | None], tuple[float, float]]


#: (dtype, device) -> one flat tensor the quantized copies of a model's weights are made in, one at a time
ScratchBuffers = dict[tuple[torch.dtype, torch.device], torch.Tensor]


def _copy_in(weight: torch.Tensor, scratch: ScratchBuffers | None) -> torch.Tensor:
    """A copy of `weight`: a fresh clone, or a contiguous view at the start of the scratch buffer of its
    dtype and device (grown to the weight's size when smaller)."""
    if scratch is None or not weight.is_contiguous():
        return weight.detach().clone()
    key = (weight.dtype, weight.device)
    buffer = scratch.get(key)
    if buffer is None or buffer.numel() < weight.numel():
        buffer = scratch[key] = torch.empty(weight.numel(), dtype=weight.dtype, device=weight.device)
    copy = buffer[: weight.numel()].view(weight.shape)
    copy.copy_(weight.detach())
    return copy


@contextmanager
def fake_quantized_weights(
    model: nn.Module,
    targets: Sequence[LinearTarget],
    quantize: WeightQuantizer,
    *,
    scratch: ScratchBuffers | None = None,
) -> Iterator[QuantMemory]:
    """While the block runs, each target module runs on a quantized copy of its weight, made right before
    the module runs and dropped right after, so at most one copy exists at a time. `quantize(target,
    weight)` edits the copy in place; the original tensor is never written, so it comes back bit-exactly.

    `scratch`: the copies are made in these buffers, kept by the caller across calls (no allocation per
    weight: what a memory-bounded run wants; the buffer of a dtype ends as large as its largest weight).
    """
    memory = QuantMemory(
        weight_bytes=sum(t.weight.numel() * t.weight.element_size() for t in targets), tensors=len(targets)
    )
    # module name -> the original tensor behind its weight parameter while a quantized copy stands in
    originals: dict[str, torch.Tensor] = {}
    by_name = {t.name: t for t in targets}

    def pre_hook_for(target: LinearTarget) -> Callable[[nn.Module, tuple[Any, ...]], None]:
        def pre_hook(_module: nn.Module, _args: tuple[Any, ...]) -> None:
            weight = target.weight
            if scratch is not None and originals:
                # the copies share one buffer: a target running inside another would overwrite its copy
                raise RuntimeError(f"{target.name} runs inside {next(iter(originals))}: no shared scratch")
            with torch.no_grad(), quantization_threads(weight.numel()):
                copy = _copy_in(weight, scratch)
                quantize(target, copy)
            originals[target.name] = weight.data
            # swapping the parameter's tensor, not writing into it: no copy back, nothing to get wrong
            weight.data = copy
            working = 0 if weight.dtype == torch.float32 else weight.numel() * 4
            extra = (
                sum(b.numel() * b.element_size() for b in scratch.values())
                if scratch is not None
                else sum(by_name[n].weight.numel() * by_name[n].weight.element_size() for n in originals)
            )
            memory.peak_extra_bytes = max(memory.peak_extra_bytes, extra + working)

        return pre_hook

    def hook_for(target: LinearTarget) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
        def hook(_module: nn.Module, _args: tuple[Any, ...], _output: Any) -> None:
            target.weight.data = originals.pop(target.name)

        return hook

    try:
        with forward_hooks(
            model, {t.name: hook_for(t) for t in targets}, {t.name: pre_hook_for(t) for t in targets}
        ):
            yield memory
    finally:
        # a failed forward pass leaves quantized copies in place: put the originals back
        for name, original in originals.items():
            by_name[name].weight.data = original
        originals.clear()


def rtn_weight_quantizer(
    bits: int,
    granularity: Granularity,
    *,
    hold_out: Mapping[str, Sequence[tuple[int, int]]] | None = None,
    restore: Mapping[str, Sequence[tuple[int, int]]] | None = None,
    clip: ClipSpec | None = None,
    clip_cache: ClipCache | None = None,
) -> WeightQuantizer:
    """A `WeightQuantizer` for RTN; `hold_out`/`restore` map module names to `[out, in]` coordinates.

    `clip_cache`: clip thresholds kept across quantizers (they depend on the tensor, not on the bits), valid
    while the weights are the originals (each variant restores them bit-exactly).
    """
    held = dict(hold_out or {})
    restored = dict(restore or {})

    def quantize(target: LinearTarget, weight: torch.Tensor) -> None:
        held_here = tuple((int(r), int(c)) for r, c in held.get(target.name, ()))
        clip_range = None
        if clip is not None and clip_cache is not None:
            # the stand-ins of held-out values come from their block, so the granularity matters then
            key = (target.name, clip, held_here, granularity.label if held_here else None)

            def clip_range(flat: torch.Tensor) -> tuple[float, float]:
                if key not in clip_cache:
                    clip_cache[key] = clip_thresholds(flat, clip)
                return clip_cache[key]

        rtn_quantize_(
            weight,
            bits,
            granularity,
            layout=target.layout,
            hold_out=held_here,
            restore=restored.get(target.name, ()),
            clip=clip,
            clip_range=clip_range,
        )

    return quantize


@torch.no_grad()
def rtn_quantize_model_(
    model: nn.Module,
    bits: int,
    granularity: Granularity | None = None,
    *,
    hold_out: Mapping[str, Sequence[tuple[int, int]]] | None = None,
    restore: Mapping[str, Sequence[tuple[int, int]]] | None = None,
    clip: ClipSpec | None = None,
) -> int:
    """Quantize every linear layer (not embeddings, not the head) in place, permanently; returns the count.

    Gives the same weights the validation's RTN checks evaluate (they quantize and restore per pass).
    """
    quantize = rtn_weight_quantizer(
        bits, granularity or Granularity(), hold_out=hold_out, restore=restore, clip=clip
    )
    targets = linear_targets(model)
    for target in targets:
        with quantization_threads(target.weight.numel()):
            quantize(target, target.weight)
    return len(targets)


# ---- activations (W8A8) ----

#: the positions of one batch to hold out of a linear's input: ((batch, token), ...) and channels
HoldOutPositions = Callable[[LinearTarget], tuple[Sequence[tuple[int, int]], Sequence[int]]]


def fake_quantize_activation(
    x: torch.Tensor, bits: int, positions: Sequence[tuple[int, int]] = (), channels: Sequence[int] = ()
) -> torch.Tensor:
    """Per-tensor asymmetric RTN of an activation `(batch, seq, features)`, returned as a new tensor.

    The entries at `positions` x `channels` are replaced by the median of their token's features before the
    min/max is taken, and their exact original values are put back afterwards (the super-activation recipe).
    """
    if not (positions and channels):
        rows = x.to(torch.float32).reshape(1, -1)  # a view of a float32 input: no copy
        return fake_quantized_rows(rows, bits).view(x.shape).to(x.dtype)
    work = x.to(torch.float32, copy=True)
    held: list[tuple[int, int, int, torch.Tensor]] = []
    for b, t in positions:
        row = work[b, t]  # (features,)
        median = row.median()
        for c in channels:
            held.append((b, t, c, x[b, t, c].clone()))
            row[c] = median
    fake_quantize_rows_(work.view(1, -1), bits)
    out = work.to(x.dtype)
    for b, t, c, original in held:
        out[b, t, c] = original
    return out


@contextmanager
def fake_quantized_activations(
    model: nn.Module, targets: Sequence[LinearTarget], bits: int, hold_out: HoldOutPositions | None = None
) -> Iterator[None]:
    """Quantize the input of every target linear layer per tensor (optionally holding entries out)."""
    # q, k and v (gate and up) are called with the very same input tensor: quantize it once for them all.
    # The last input is held (a strong reference, so identity cannot be a recycled id) with its result.
    last: dict[str, Any] = {}

    def pre_hook_for(target: LinearTarget) -> Callable[[nn.Module, tuple[Any, ...]], tuple[Any, ...]]:
        def pre_hook(_module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
            if not args or not isinstance(args[0], torch.Tensor):
                raise RuntimeError(f"{target.name}: expected the input as the first positional argument")
            positions, channels = hold_out(target) if hold_out is not None else ((), ())
            x = args[0]
            held = (tuple(positions), tuple(channels))
            if last.get("input") is x and last.get("held") == held:
                return (last["output"], *args[1:])
            with quantization_threads(x.numel()):
                quantized = _quantize_input(x, bits, positions, channels)
            last.update(input=x, held=held, output=quantized)
            return (quantized, *args[1:])

        return pre_hook

    try:
        with forward_hooks(model, {}, {t.name: pre_hook_for(t) for t in targets}):
            yield
    finally:
        last.clear()


def _quantize_input(
    x: torch.Tensor, bits: int, positions: Sequence[tuple[int, int]], channels: Sequence[int]
) -> torch.Tensor:
    """Per-tensor fake quantization of a linear layer's input, `(batch, seq, d)` or `(tokens, d)`."""
    if x.dim() == 2:  # (tokens, features): no batch dimension
        return fake_quantize_activation(x.unsqueeze(0), bits, positions, channels).squeeze(0)
    return fake_quantize_activation(x, bits, positions, channels)
