"""The CLI on the real SmolLM2 when its output is a log, not a terminal: phase lines with percentages, and a
token budget smaller than the default window needs no `--window`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from swi.cli import app

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[2]
#: a progress line: phase, percent, optional (done/total), elapsed
LINE = re.compile(r"^(\[job [0-9a-f]{8}\] )?(?P<phase>[a-z]+) +(?P<percent>\d+)% (\(\d+/\d+\) )?elapsed ")


def test_swi_index_into_a_log_file_leaves_phase_lines(demo_model_file: Path, tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    env = {**os.environ, "SWI_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(REPO_ROOT)}
    env.pop("SWI_DATABASE_URL", None)
    env.pop("SWI_BROKER_URL", None)
    command = [sys.executable, "-m", "swi", "index", str(demo_model_file), "--max-tokens", "512"]
    # two validation figures keep it cheap; the phases are those of the full run up to the checks
    command += ["--experiments", "baseline,joint"]
    with log.open("w") as stdout:
        done = subprocess.run(
            command, stdout=stdout, stderr=subprocess.PIPE, env=env, text=True, timeout=1800, check=False
        )
    assert done.returncode == 0, done.stderr
    lines = log.read_text().splitlines()
    progress = [m for line in lines if (m := LINE.match(line))]
    phases = [m["phase"] for m in progress]
    assert {"resolve", "load", "detect", "validate", "store"} <= set(phases), lines
    assert any(m["phase"] == "validate" and int(m["percent"]) > 40 for m in progress), lines
    assert any("(1/1)" in line or "(2/2)" in line for line in lines), lines
    assert any("11" in line and "507" in line and "1229" in line for line in lines), "the entry follows"


def test_swi_validate_with_a_small_budget_needs_no_window(demo_model_file: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "validate",
            str(demo_model_file),
            "--max-tokens",
            "1024",
            "--experiments",
            "baseline",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "1,024 tokens in 1 window(s) of 1024" in " ".join(result.output.split())  # however it wraps
    assert any(LINE.match(line) for line in result.output.splitlines())  # load, detect, baseline phases
