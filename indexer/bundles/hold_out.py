"""Hold the super activation out of activation quantization."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from contracts.errors import BundleError
from indexer.bundles.bundle import Bundle, ModelLike, _parts
from indexer.validation.quantize import LinearTarget


class SuperActivationHoldOut:
    """Finds the super activation in every forward pass and names the entries to hold out of quantization.

    A forward pre-hook on the down projection that creates it computes, per position, what the bundle's super
    weights add to the super-activation channel; positions reaching `threshold` x the recorded magnitude are
    the sites. `positions(target)` answers `indexer.validation.quantize.fake_quantized_activations`'s
    `hold_out`: those sites, at the super-activation channel (inputs of hidden width, from the creating layer
    on) and at the super weights' columns (the creating down projection's input).
    """

    def __init__(self, model: ModelLike, bundle: Bundle, threshold: float = 0.1) -> None:
        if bundle.super_activation is None:
            raise BundleError(f"bundle {bundle.model} records no super activation")
        if not 0 < threshold <= 1:
            raise BundleError(f"the threshold must be in (0, 1], got {threshold}")
        self.model, self.adapter, _ = _parts(model)
        self.activation = bundle.super_activation
        self.threshold = threshold
        layer = self.activation.first_layer
        self.creators = [w for w in bundle.weights if w.layer == layer and w.row == self.activation.channel]
        if not self.creators:
            raise BundleError(
                f"bundle {bundle.model}: no super weight in layer {layer} writes channel "
                f"{self.activation.channel}"
            )
        magnitudes = self.activation.magnitude_by_layer
        self.reference = magnitudes[layer] if layer < len(magnitudes) else self.activation.peak_magnitude
        self.down_name = self.adapter.down_proj_name(self.model, layer)
        self.hidden = int(self.adapter.as_out_in(self.adapter.down_weight(self.model, layer)).shape[0])
        self.layer_of: dict[int, int] = {}
        for index, decoder_layer in enumerate(self.adapter.decoder_layers(self.model)):
            for sub in decoder_layer.modules():
                self.layer_of[id(sub)] = index
        self.sites: list[tuple[int, int]] = []  # (batch, token) of the current forward pass

    def _find_sites(self, _module: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0]  # (batch, seq, intermediate) or (seq, intermediate)
        batched = x if x.dim() == 3 else x.unsqueeze(0)
        weight = self.adapter.as_out_in(self.adapter.down_weight(self.model, self.activation.first_layer))
        contribution = torch.zeros(
            batched.shape[:2], dtype=torch.float32, device=batched.device
        )  # (batch, seq)
        for sw in self.creators:
            contribution += batched[..., sw.col].float() * float(weight[sw.row, sw.col])
        found = (contribution.abs() >= self.threshold * self.reference).nonzero().tolist()
        self.sites = [(int(b), int(t)) for b, t in found]

    def positions(self, target: LinearTarget) -> tuple[Sequence[tuple[int, int]], Sequence[int]]:
        """The `(batch, token)` sites and the channels of `target`'s input to hold out now."""
        layer = self.layer_of.get(id(target.module))
        if not self.sites or layer is None or layer < self.activation.first_layer:
            return (), ()
        channels: set[int] = set()
        if target.in_features == self.hidden:
            channels.add(self.activation.channel)
        if target.name == self.down_name:
            channels.update(sw.col for sw in self.creators)
        return list(self.sites), sorted(channels)

    @contextmanager
    def active(self) -> Iterator[SuperActivationHoldOut]:
        """Track the sites while the block runs (the pre-hook runs before any quantizer's, and is removed)."""
        module = self.model.get_submodule(self.down_name)
        handle = module.register_forward_pre_hook(self._find_sites, prepend=True)
        try:
            yield self
        finally:
            handle.remove()
            self.sites = []


@contextmanager
def super_activation_hold_out(
    model: ModelLike, bundle: Bundle, threshold: float = 0.1
) -> Iterator[SuperActivationHoldOut]:
    """Track the super activation while the block runs; `.positions` is an activation quantizer's hold-out."""
    with SuperActivationHoldOut(model, bundle, threshold).active() as hold_out:
        yield hold_out


def quantize_holding_out(
    x: torch.Tensor,
    positions: Sequence[tuple[int, int]],
    channels: Sequence[int],
    quantize: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Apply any activation quantizer to `x` (batch, seq, features) with the given entries held out.

    The held entries are replaced by their token's median before `quantize` runs (so they cannot set its
    range) and their exact original values are put back in its output.
    """
    work = x.clone()
    for b, t in positions:
        median = work[b, t].median()
        for c in channels:
            work[b, t, c] = median
    out = quantize(work)
    for b, t in positions:
        for c in channels:
            out[b, t, c] = x[b, t, c]
    return out
