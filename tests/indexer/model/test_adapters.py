"""The architecture registry."""

from __future__ import annotations

import pytest

from indexer.errors import UnsupportedArchitectureError
from indexer.model.adapters import adapter_for, supported_model_types

REQUIRED = {
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma",
    "gemma2",
    "gemma3",
    "gemma3_text",
    "phi3",
    "olmo",
    "olmo2",
    "gpt2",
    "gpt_neox",
    "opt",
    "falcon",
    "stablelm",
    "starcoder2",
}


def test_every_required_family_has_an_adapter() -> None:
    assert set(supported_model_types()) >= REQUIRED


def test_unknown_architecture_names_the_supported_ones() -> None:
    with pytest.raises(UnsupportedArchitectureError) as info:
        adapter_for("mamba")
    message = str(info.value)
    assert "'mamba'" in message
    for family in REQUIRED:
        assert family in message


def test_conv1d_layout_reports_linear_coordinates() -> None:
    gpt2, llama = adapter_for("gpt2"), adapter_for("llama")
    assert gpt2.storage_index(row=3, col=7) == (7, 3)
    assert llama.storage_index(row=3, col=7) == (3, 7)
