"""The README's "Use it from Python" example runs as written against a live `swi serve`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.swi.client.conftest import Live

REPO_ROOT = Path(__file__).resolve().parents[3]


def readme_example() -> str:
    """The first Python block of the README's "Use it from Python" section."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Use it from Python", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the section has no Python example"
    return match.group(1)


@pytest.mark.parametrize("live", ["sqlite"], indirect=True)
def test_the_readme_example_runs(live: Live, tmp_path: Path) -> None:
    env = {**os.environ, "SWI_SERVER": live.url, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", readme_example()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "huggyllama/llama-7b 1" in result.stdout
    assert "layer 1 row 2070 col 7310: reported (reported)" in result.stdout
    assert "measured at (published)" in result.stdout
    assert "not indexed: model 'org/unknown' is not in the catalog" in result.stdout
    assert len(list(tmp_path.glob("*.swi.json"))) == 1
