"""In-place weight edits with bit-exact restore: never a copy of the model."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from indexer.model.adapters import ArchitectureAdapter

Coordinate = tuple[int, int, int]  # (layer, row, col)


@contextmanager
def scaled_weights(
    model: nn.Module, adapter: ArchitectureAdapter, coordinates: Iterable[Coordinate], factor: float
) -> Iterator[list[float]]:
    """Multiply each down-projection weight `(layer, row, col)` by `factor`; restore the exact originals.

    Yields the original values (as floats) in the order given.
    """
    saved: list[tuple[torch.Tensor, tuple[int, int], torch.Tensor]] = []
    try:
        with torch.no_grad():
            for layer, row, col in coordinates:
                weight = adapter.down_weight(model, layer)
                index = adapter.storage_index(row, col)
                original = weight[index].clone()
                saved.append((weight, index, original))
                weight[index] = original * factor if factor != 0 else torch.zeros_like(original)
        yield [float(original.item()) for _, _, original in saved]
    finally:
        with torch.no_grad():
            for weight, index, original in reversed(saved):
                weight[index] = original


@contextmanager
def zeroed_weights(
    model: nn.Module, adapter: ArchitectureAdapter, coordinates: Iterable[Coordinate]
) -> Iterator[list[float]]:
    """Zero each down-projection weight `(layer, row, col)`; restore the exact originals."""
    with scaled_weights(model, adapter, coordinates, 0.0) as originals:
        yield originals
