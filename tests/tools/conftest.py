"""The `tools` tier runs only when asked (`pytest -m tools tests/tools`, or `make test-tools`)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the tools tier unless `-m tools` selects it: it builds a venv and llama-quantize first."""
    if "tools" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="the tools tier runs with -m tools (make test-tools)")
    for item in items:
        if "tools" in item.keywords:
            item.add_marker(skip)
