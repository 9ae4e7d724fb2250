"""The one registry of architecture differences, keyed by `config.model_type`.

Everything the detector and the validators need to know about a family lives in its entry:
where the decoder layers are, which module is the MLP down projection (and which modules feed
it), how its weight is stored, and where the residual stream is read. Adding a family is one
`register(...)` call plus one test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from indexer.errors import UnsupportedArchitectureError

WeightLayout = Literal["out_in", "in_out"]


@dataclass(frozen=True)
class ArchitectureAdapter:
    """How one model family is laid out."""

    model_type: str
    #: dotted paths (from the loaded model) of the decoder-layer `ModuleList`, first match wins
    layers: tuple[str, ...]
    #: path of the MLP down projection, relative to a decoder layer
    down_proj: str
    #: paths of the projections that produce the down projection's input, relative to a decoder layer
    mlp_inputs: tuple[str, ...]
    #: `out_in` for `nn.Linear` (`[hidden, intermediate]`), `in_out` for GPT-2's `Conv1D`
    layout: WeightLayout = "out_in"
    #: path (relative to a decoder layer) whose output is the residual stream; "" = the layer itself
    residual: str = ""

    def layers_path(self, model: nn.Module) -> str:
        """The dotted path of the decoder-layer `ModuleList` in `model` (the first candidate that exists)."""
        for path in self.layers:
            try:
                found = model.get_submodule(path)
            except AttributeError:
                continue
            if isinstance(found, nn.ModuleList):
                return path
        raise UnsupportedArchitectureError(
            f"{self.model_type}: none of the layer paths {list(self.layers)} exists in {type(model).__name__}"
        )

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        """The decoder layers of `model`, resolved by name."""
        layers = model.get_submodule(self.layers_path(model))
        assert isinstance(layers, nn.ModuleList)
        return layers

    def down_proj_name(self, model: nn.Module, layer: int) -> str:
        """Qualified module name of layer `layer`'s down projection."""
        return f"{self.layers_path(model)}.{layer}.{self.down_proj}"

    def down_proj_names(self, model: nn.Module) -> list[str]:
        """Qualified names of every down projection, in layer order."""
        prefix = self.layers_path(model)
        count = len(self.decoder_layers(model))
        return [f"{prefix}.{i}.{self.down_proj}" for i in range(count)]

    def residual_names(self, model: nn.Module) -> list[str]:
        """Qualified names of the modules whose outputs are the residual stream after each layer."""
        prefix = self.layers_path(model)
        count = len(self.decoder_layers(model))
        suffix = f".{self.residual}" if self.residual else ""
        return [f"{prefix}.{i}{suffix}" for i in range(count)]

    def down_weight(self, model: nn.Module, layer: int) -> torch.Tensor:
        """Layer `layer`'s down-projection weight as stored (not transposed)."""
        module = model.get_submodule(self.down_proj_name(model, layer))
        weight = module.weight
        assert isinstance(weight, torch.Tensor)
        return weight

    def storage_index(self, row: int, col: int) -> tuple[int, int]:
        """Index into the stored weight for coordinate `(row=hidden, col=intermediate)`."""
        return (row, col) if self.layout == "out_in" else (col, row)

    def as_out_in(self, weight: torch.Tensor) -> torch.Tensor:
        """A `[hidden, intermediate]` view of a stored down-projection weight (no copy)."""
        return weight if self.layout == "out_in" else weight.t()


REGISTRY: dict[str, ArchitectureAdapter] = {}


def register(adapter: ArchitectureAdapter, *aliases: str) -> ArchitectureAdapter:
    """Add an adapter under its model type (and any aliases)."""
    for key in (adapter.model_type, *aliases):
        REGISTRY[key] = adapter
    return adapter


def supported_model_types() -> list[str]:
    """Sorted list of model types with an adapter."""
    return sorted(REGISTRY)


def adapter_for(model_type: str) -> ArchitectureAdapter:
    """The adapter for a `config.model_type`, or a clear error naming the supported ones."""
    try:
        return REGISTRY[model_type]
    except KeyError:
        raise UnsupportedArchitectureError(
            f"unsupported architecture {model_type!r}; supported: {', '.join(supported_model_types())}"
        ) from None


_DECODER = ("model.layers",)
_GATED = ("mlp.gate_proj", "mlp.up_proj")

for _type in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "olmo", "olmo2", "stablelm"):
    register(ArchitectureAdapter(_type, _DECODER, "mlp.down_proj", _GATED))
register(
    ArchitectureAdapter(
        "gemma3_text",
        ("model.layers", "model.language_model.layers", "language_model.model.layers"),
        "mlp.down_proj",
        _GATED,
    )
)
register(
    ArchitectureAdapter(
        "gemma3",
        ("model.language_model.layers", "language_model.model.layers", "model.layers"),
        "mlp.down_proj",
        _GATED,
    )
)
register(ArchitectureAdapter("phi3", _DECODER, "mlp.down_proj", ("mlp.gate_up_proj",)))
register(ArchitectureAdapter("phi", _DECODER, "mlp.fc2", ("mlp.fc1",)))
register(ArchitectureAdapter("starcoder2", _DECODER, "mlp.c_proj", ("mlp.c_fc",)))
register(ArchitectureAdapter("gpt2", ("transformer.h",), "mlp.c_proj", ("mlp.c_fc",), layout="in_out"))
register(ArchitectureAdapter("gpt_neox", ("gpt_neox.layers",), "mlp.dense_4h_to_h", ("mlp.dense_h_to_4h",)))
register(ArchitectureAdapter("falcon", ("transformer.h",), "mlp.dense_4h_to_h", ("mlp.dense_h_to_4h",)))
register(ArchitectureAdapter("opt", ("model.decoder.layers",), "fc2", ("fc1",)))
