"""Forward hooks resolved by module name: all checked to exist, always removed."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

ForwardHook = Callable[[nn.Module, tuple[Any, ...], Any], Any]
ForwardPreHook = Callable[[nn.Module, tuple[Any, ...]], Any]


def resolve_modules(model: nn.Module, names: list[str]) -> dict[str, nn.Module]:
    """Look up every name; raise one error listing all that are missing."""
    found: dict[str, nn.Module] = {}
    missing: list[str] = []
    for name in names:
        try:
            found[name] = model.get_submodule(name)
        except AttributeError:
            missing.append(name)
    if missing:
        raise LookupError(f"modules not found in {type(model).__name__}: {', '.join(missing)}")
    return found


@contextmanager
def forward_hooks(
    model: nn.Module,
    hooks: Mapping[str, ForwardHook],
    pre_hooks: Mapping[str, ForwardPreHook] | None = None,
) -> Iterator[None]:
    """Register forward (and pre-forward) hooks by module name for the duration of the block."""
    pre_hooks = pre_hooks or {}
    modules = resolve_modules(model, sorted(set(hooks) | set(pre_hooks)))
    handles: list[torch.utils.hooks.RemovableHandle] = []
    try:
        for name, pre_hook in pre_hooks.items():
            handles.append(modules[name].register_forward_pre_hook(pre_hook))
        for name, hook in hooks.items():
            handles.append(modules[name].register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def hidden_states_of(output: Any) -> torch.Tensor:
    """The hidden-state tensor of a module output (decoder layers may return a tuple)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"cannot read hidden states from a {type(output).__name__}")


@contextmanager
def without_logits(model: nn.Module) -> Iterator[None]:
    """While the block runs, the model's output head returns no logits (an empty last dimension).

    For passes that read only hidden states (detection): the logits of a batch of prompts cost
    tokens x vocabulary floats (SmolLM2: 49,152 a token) that nothing reads.
    """
    getter = getattr(model, "get_output_embeddings", None)
    head = getter() if callable(getter) else None
    if not isinstance(head, nn.Module):
        yield
        return
    missing = object()
    previous = head.__dict__.get("forward", missing)

    def stub(hidden: torch.Tensor, *_args: Any, **_kwargs: Any) -> torch.Tensor:
        return hidden.new_empty((*hidden.shape[:-1], 0))

    head.forward = stub  # an instance attribute shadows the class's forward; nn.Module.__call__ reads it
    try:
        yield
    finally:
        if previous is missing:
            del head.forward
        else:
            head.forward = previous
