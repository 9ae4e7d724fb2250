"""Shared fixtures: the real SmolLM2 model (loaded once) and the WikiText-2 test split."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from indexer.model.demo_model import fetch_demo_model
from indexer.model.loading import LoadedModel, LoadOptions, load_model

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def demo_model_file() -> Path:
    """The SmolLM2 GGUF file (fetched into the model cache when missing)."""
    return fetch_demo_model(quiet=True)


@pytest.fixture(scope="session")
def smollm2(demo_model_file: Path) -> LoadedModel:
    """SmolLM2-135M-Instruct, dequantized to float32 on the CPU, loaded once per session."""
    return load_model(str(demo_model_file), options=LoadOptions(device="cpu", dtype="float32"))


@pytest.fixture(scope="session")
def wikitext_path() -> Path:
    """The WikiText-2 raw test split from the shared data folder (`SWI_WIKITEXT` overrides)."""
    configured = os.environ.get("SWI_WIKITEXT")
    path = Path(configured) if configured else REPO_ROOT.parent / "shared/data/wikitext-2-raw/wiki.test.raw"
    if not path.is_file():
        raise FileNotFoundError(f"WikiText-2 test split not found at {path}; set SWI_WIKITEXT")
    return path
