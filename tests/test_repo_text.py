"""Tracked text states what the product does and what it measures: no tracker numbers, work periods or
other work-process narrative, which belong to the version history.

DEVELOPERS.md is exempt (it describes how work on the project is organised), and so is this file, which
has to spell the patterns out. Binary files are skipped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve().relative_to(ROOT).as_posix()
EXEMPT = {THIS, "DEVELOPERS.md"}

NARRATIVE = re.compile(
    r"\bissues? #?\d+"  # a tracker item: "issue 13", "issue #4"
    r"|\bsessions? \d+"  # a numbered work period: "session 7", "sessions 9 and 10"
    r"|\bwork periods?\b"
    r"|\btracker\b"
    r"|\bstop \d+\b"
    r"|\bmilestones?\b"
    r"|\bcolleague'?s?\b",
    re.IGNORECASE,
)


def tracked_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("git or the repository's .git is unavailable")
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False, timeout=60
    )
    if listing.returncode != 0:
        pytest.skip("git ls-files failed: " + listing.stderr.decode(errors="replace").strip())
    return [name for name in listing.stdout.decode().split("\0") if name]


def text_of(path: Path) -> str | None:
    """The file's text, or None for a binary file (a NUL byte, or not UTF-8) or one that is not there."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None  # deleted in the work tree but still tracked, or a submodule
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def test_the_patterns_catch_narrative_and_spare_product_text() -> None:
    for narrative in (
        "Hardening (issue 13)",
        "see issue #4",
        "Session 7 (2026-12-02)",
        "sessions 9 and 10",
        "in this work period",
        "what the tracker asked",
        "stop 3 of the plan",
        "the contracts milestone",
        "the colleague's run",
    ):
        assert NARRATIVE.search(narrative), narrative
    for product in (
        "an issue thread is not a file of a commit",
        "the session database, emptied before the test",
        "database sessions, the submission service",
        "stop working on it",
        "Stop the worker after 3 tasks",
        "sessionmaker(bind=engine)",
    ):
        assert not NARRATIVE.search(product), product


def test_tracked_text_has_no_work_process_narrative() -> None:
    hits = []
    for name in tracked_files():
        if name in EXEMPT:
            continue
        text = text_of(ROOT / name)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            for match in NARRATIVE.finditer(line):
                hits.append(f"{name}:{number}: {match.group(0)!r} in {line.strip()[:120]!r}")
    assert not hits, "work-process narrative in tracked files:\n" + "\n".join(hits)
