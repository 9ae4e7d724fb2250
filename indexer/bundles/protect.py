"""Protect super weights from a weight quantizer: record them, hold them out, write them back exactly."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from contracts.errors import BundleError
from indexer.bundles.bundle import Bundle, CoordinateSource, ModelLike, ResolvedWeight, _parts, resolve
from indexer.bundles.load import bundle_from_source
from indexer.validation.quantize import ClipSpec, LinearTarget, clip_thresholds, linear_targets

#: the value a held-out super weight takes while the quantizer runs: it cannot widen any block's range
STAND_IN = 0.0


@dataclass(frozen=True)
class ProtectedWeights:
    """What `protect_super_weights` recorded: each located weight and its exact original value."""

    weights: tuple[ResolvedWeight, ...]
    originals: tuple[torch.Tensor, ...]  # 0-d tensors in the stored dtype
    bundle: Bundle | None = None

    @property
    def measured_revision(self) -> str | None:
        """The commit the coordinates were measured on (None: published coordinates, never measured)."""
        return self.bundle.revision if self.bundle is not None else None

    @property
    def values(self) -> tuple[float, ...]:
        """The original values as floats."""
        return tuple(float(v) for v in self.originals)

    @property
    def hold_out(self) -> dict[str, list[tuple[int, int]]]:
        """Module name -> `[out, in]` coordinates: the `hold_out` map of `indexer.validation.quantize`'s
        RTN."""
        held: dict[str, list[tuple[int, int]]] = {}
        for resolved in self.weights:
            held.setdefault(resolved.module, []).append((resolved.weight.row, resolved.weight.col))
        return held


def _stored_weight(model: nn.Module, module_name: str) -> torch.Tensor:
    weight = model.get_submodule(module_name).weight
    if not isinstance(weight, torch.Tensor) or type(weight.data) not in (torch.Tensor, nn.Parameter):
        raise BundleError(
            f"{module_name}.weight is now a {type(weight).__name__}: the quantizer replaced the weight, so "
            "the super weight cannot be written back; fake-quantize in place, or use the tool's ignore list"
        )
    return weight


def clip_outliers_(model: nn.Module, clip: ClipSpec, targets: Sequence[LinearTarget] | None = None) -> int:
    """Clip every linear weight (not embeddings, not the head) to thresholds computed over its tensor."""
    chosen = list(targets) if targets is not None else linear_targets(model)
    with torch.no_grad():
        for target in chosen:
            weight = target.weight
            low, high = clip_thresholds(weight.detach().to(torch.float32), clip)
            weight.clamp_(low, high)
    return len(chosen)


class UnsupportedQuantizerError(BundleError):
    """The quantizer stored scales or replaced tensor types or modules: no exact restore is possible."""


@dataclass
class _Snapshot:
    """All a quantizer can change in a model: to put back exactly (`restore`) or compare (`changes`)."""

    modules: dict[str, tuple[nn.Module, type[nn.Module], dict[str, Any]]]
    tensors: list[tuple[torch.Tensor, torch.Tensor]]  # (the parameter or buffer object, a copy of its data)
    layout: dict[str, tuple[type, torch.dtype, tuple[int, ...]]]  # name -> (tensor type, dtype, shape)

    @classmethod
    def take(cls, model: nn.Module) -> _Snapshot:
        """Record every module (object, class, attributes), every parameter and buffer (object and data)."""
        modules = {}
        for name, module in model.named_modules(remove_duplicate=False):
            # per-module dicts (_parameters, _modules, hooks...) are copied: quantizers mutate them in place
            attributes = {k: dict(v) if isinstance(v, dict) else v for k, v in vars(module).items()}
            modules[name] = (module, type(module), attributes)
        seen: set[int] = set()
        tensors = []
        for tensor in [*model.parameters(), *model.buffers()]:
            if id(tensor) not in seen:
                seen.add(id(tensor))
                tensors.append((tensor, tensor.detach().clone()))
        return cls(modules, tensors, _layout(model))

    def changes(self, model: nn.Module) -> list[str]:
        """What the quantizer changed beyond tensor values: modules, parameter/buffer names, tensor types."""
        found = []
        now = dict(model.named_modules(remove_duplicate=False))
        for name, (module, kind, _) in self.modules.items():
            current = now.get(name)
            if current is not module or type(current) is not kind:
                found.append(
                    f"{name or 'the model'} is now a {type(current).__name__}, was a {kind.__name__}"
                )
        layout = _layout(model)
        added = sorted(set(layout) - set(self.layout))
        removed = sorted(set(self.layout) - set(layout))
        if added:
            found.append(f"new parameters/buffers {', '.join(added[:4])}{' …' if len(added) > 4 else ''}")
        if removed:
            found.append(f"removed parameters/buffers {', '.join(removed[:4])}")
        for name in sorted(set(layout) & set(self.layout)):
            if layout[name] != self.layout[name]:
                kind, dtype, shape = layout[name]
                found.append(f"{name} is now a {kind.__name__} {dtype} {list(shape)}")
        return found

    def restore(self, model: nn.Module) -> None:
        """Put back every module object, its attributes, and every tensor's exact data."""
        for module, _, attributes in self.modules.values():
            vars(module).clear()
            vars(module).update({k: dict(v) if isinstance(v, dict) else v for k, v in attributes.items()})
        with torch.no_grad():
            for tensor, data in self.tensors:
                tensor.data = data.clone()


def _layout(model: nn.Module) -> dict[str, tuple[type, torch.dtype, tuple[int, ...]]]:
    named = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    # a tensor subclass (torchao) shows in the type of `.data`; a replaced Parameter in the type itself
    return {name: (type(t.data), t.dtype, tuple(t.shape)) for name, t in named}


@contextmanager
def protect_super_weights(
    model: ModelLike,
    bundle: Bundle | str,
    *,
    client: CoordinateSource | None = None,
    hold_out: bool = True,
    clip: ClipSpec | None = None,
    revision: str | None = None,
    check_revision: bool = True,
    check_values: bool = True,
) -> Iterator[ProtectedWeights]:
    """Record the super weights, let the block quantize the model, then write the exact originals back.

    `hold_out`: while the block runs, each super weight is `STAND_IN` (0), so it cannot stretch the min/max
    (or absmax) of its block; with `indexer.validation.quantize`'s RTN this gives exactly its super-weight
    hold-out.
    `clip`: first clip the other outliers of every linear weight (the paper's recipe; thresholds are taken
    without the held-out super weights).
    `bundle` may be a model id (`org/name`): `client` (a server's `swi.client.Client`, or the local
    catalog's `swi.catalog_source.LocalCatalog`) gives its coordinates, checked like any bundle; the
    revision they were measured on is logged and kept as `ProtectedWeights.measured_revision`.

    Transactional: if the block raises, or the quantizer turned out to store scales or replace tensor types
    or modules (`UnsupportedQuantizerError`: a restored value would be clamped to or lost in its stored
    range; use the tool's bundle format instead), the model is put back exactly as it was before the block.
    """
    if isinstance(bundle, str):
        if client is None:
            raise BundleError(
                f"protect_super_weights(model, {bundle!r}) needs client=: a swi.client.Client of a server, "
                "or swi.catalog_source.LocalCatalog()"
            )
        bundle = bundle_from_source(bundle, client, revision)
    module, _, _ = _parts(model)
    resolved = resolve(
        bundle, model, revision=revision, check_revision=check_revision, check_values=check_values
    )
    snapshot = _Snapshot.take(module)
    originals = tuple(_stored_weight(module, r.module)[r.index].detach().clone() for r in resolved)
    try:
        with torch.no_grad():
            if hold_out:
                for r in resolved:
                    _stored_weight(module, r.module)[r.index] = STAND_IN
            if clip is not None:
                clip_outliers_(module, clip)
        yield ProtectedWeights(tuple(resolved), originals, bundle)
        changes = snapshot.changes(module)
        if changes:
            raise UnsupportedQuantizerError(
                "the quantizer stored scales or replaced tensor types or modules ("
                + "; ".join(changes[:3])
                + (" …" if len(changes) > 3 else "")
                + "), so a restored super weight would be clamped to its stored range or lost; the model "
                "is back as it was. Use the tool's bundle format instead (swi bundle -f llm-compressor, "
                "torchao, gptqmodel, autoround or llama.cpp; docs/bundles.md)"
            )
        with torch.no_grad():
            for r, original in zip(resolved, originals, strict=True):
                weight = _stored_weight(module, r.module)
                weight[r.index] = original.to(device=weight.device, dtype=weight.dtype)
    except BaseException:
        snapshot.restore(module)
        raise
