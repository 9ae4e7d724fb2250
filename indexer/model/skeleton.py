"""A model built without its weights (the meta device), and those weights read into it from a checkpoint.

Shared by the two engines: the in-memory loader maps (or reads) every tensor into the skeleton (no random
initialisation first, no second copy), the streamed engine what lies outside the decoder layers, leaving
each layer to be read when the model calls it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from indexer.model.checkpoint import Checkpoint


def build_skeleton(config: Any, dtype: torch.dtype) -> nn.Module:
    """`config`'s causal-LM model with every parameter on the meta device; buffers (rotary) computed."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    # no initialisation: on the meta device it computes nothing, yet costs a second for SmolLM2
    with init_empty_weights(include_buffers=False), no_init_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=False)  # type: ignore[no-untyped-call]
    assert isinstance(model, nn.Module)
    model.eval()
    model.requires_grad_(False)
    return model


def split_path(path: str) -> tuple[str, str]:
    """(`owner.module.path`, `leaf`) of a dotted tensor path."""
    owner, _, leaf = path.rpartition(".")
    return owner, leaf


def tensor_at(module: nn.Module, path: str) -> torch.Tensor:
    """The parameter or buffer at dotted `path` under `module`."""
    owner, leaf = split_path(path)
    found = getattr(module.get_submodule(owner), leaf)
    assert isinstance(found, torch.Tensor)
    return found


def assign(module: nn.Module, path: str, tensor: torch.Tensor) -> None:
    """Put `tensor` at dotted `path` under `module` (a frozen parameter, or a buffer), without a copy."""
    owner_path, leaf = split_path(path)
    owner = module.get_submodule(owner_path)
    if leaf in owner._parameters:
        owner._parameters[leaf] = nn.Parameter(tensor, requires_grad=False)
    else:
        owner._buffers[leaf] = tensor


def checkpoint_names(skeleton: nn.Module, names: frozenset[str]) -> dict[str, str]:
    """The checkpoint name of each of the model's state-dict keys to read (tied copies left out).

    Keys are renamed by transformers' own loading rules (e.g. GPT-NeoX's `embed_out` is `lm_head`,
    checkpoints of the base model lack its prefix); a tensor transformers would merge or split on load
    (fused experts) has no one-to-one name and is left out. A tied key (the head tied to the embedding) is
    not read: it is tied to its source once that is read; when the checkpoint kept only the tied copy (a
    safetensors save keeps the head and drops the embedding), the source is read from it.
    """
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key

    transforms = get_model_conversion_mapping(skeleton)  # type: ignore[arg-type]
    renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
    converters = [t for t in transforms if isinstance(t, WeightConverter)]
    state = skeleton.state_dict(keep_vars=True)
    prefix = str(getattr(skeleton, "base_model_prefix", "")) or None
    found: dict[str, str] = {}
    for name in sorted(names):
        key, converted = rename_source_key(name, renamings, converters, prefix, state)
        if converted is None and key in state:
            found[key] = name
    for target, source in tied_keys(skeleton).items():
        if source not in found and target in found:
            found[source] = found[target]
        found.pop(target, None)
    return found


def tied_keys(skeleton: nn.Module) -> dict[str, str]:
    """Tied state-dict keys of the model, target -> source (e.g. `lm_head.weight` -> the embedding)."""
    return dict(getattr(skeleton, "all_tied_weights_keys", None) or {})


@dataclass(frozen=True)
class WeightPlan:
    """Which checkpoint tensor goes where: outside the decoder layers, and per decoder layer."""

    resident: tuple[tuple[str, str], ...]  # (state-dict key, checkpoint name)
    per_layer: tuple[tuple[tuple[str, str], ...], ...]  # (key relative to the layer, checkpoint name)
    missing_in_layers: tuple[str, ...]  # state-dict keys of decoder layers the checkpoint lacks


def plan_weights(
    skeleton: nn.Module, checkpoint: Checkpoint, layers_prefix: str, layer_count: int
) -> WeightPlan:
    """Sort the model's state-dict keys into resident and per-layer ones, each with its checkpoint name."""
    names = checkpoint_names(skeleton, checkpoint.names)
    per_layer: list[list[tuple[str, str]]] = [[] for _ in range(layer_count)]
    resident: list[tuple[str, str]] = []
    missing: list[str] = []
    for key in skeleton.state_dict(keep_vars=True):
        name = names.get(key)
        if layers_prefix and key.startswith(f"{layers_prefix}."):
            index_text, _, rel = key[len(layers_prefix) + 1 :].partition(".")
            if name is None:
                missing.append(key)
            else:
                per_layer[int(index_text)].append((rel, name))
        elif name is not None:
            resident.append((key, name))
    return WeightPlan(tuple(resident), tuple(tuple(entries) for entries in per_layer), tuple(missing))


def read_into(
    module: nn.Module,
    checkpoint: Checkpoint,
    entries: tuple[tuple[str, str], ...],
    dtype: torch.dtype,
    device: torch.device,
) -> None:
    """Each `(path, name)` of `entries` from the checkpoint into `module`, one tensor at a time: on the CPU,
    mapped from the file where stored as `dtype` (copy-on-write; its pages are read from the page cache
    when first touched, never copied), else read and converted to `dtype` on `device`."""
    convert = converter(dtype, device)
    for path, name in entries:
        tensor = checkpoint.mapped(name, dtype) if device.type == "cpu" else None
        assign(module, path, tensor if tensor is not None else convert(checkpoint.read([name])[name]))


def finish(skeleton: nn.Module, device: torch.device, streamed_keys: set[str]) -> list[str]:
    """Tie the tied weights, move the computed buffers to `device`; the keys still empty (none: complete)."""
    tie = getattr(skeleton, "tie_weights", None)
    if callable(tie):
        tie()
    for module in skeleton.modules():  # buffers computed at build time (rotary frequencies) follow the run
        for buffer_name, buffer in list(module._buffers.items()):
            if buffer is not None and buffer.device.type != "meta":
                module._buffers[buffer_name] = buffer.to(device)
    return [
        key
        for key, value in skeleton.state_dict(keep_vars=True).items()
        if value.device.type == "meta" and key not in streamed_keys
    ]


def converter(dtype: torch.dtype, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """Floating tensors to `dtype`, every tensor to `device` (no copy when they already match)."""

    def convert(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(device=device, dtype=dtype if tensor.is_floating_point() else tensor.dtype)

    return convert
