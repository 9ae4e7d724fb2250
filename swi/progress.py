"""One progress reporter for all commands: rich bars on a terminal, plain lines elsewhere.

On a terminal each phase gets a live bar; in a log file, `docker logs` or CI the same updates become one
line per phase and per 10% (phase, items done, elapsed, ETA), so long work is never silent.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.status import Status

from indexer.progress import ProgressLines
from swi.console import err_console

MESSAGE_WIDTH = 80


class ProgressReporter:
    """Takes `update(phase, fraction, done=, total=, message=)` and shows it as bars or as lines."""

    def __init__(self, progress: Progress | None, lines: ProgressLines | None, per_phase: bool) -> None:
        self._progress = progress
        self._lines = lines
        self._per_phase = per_phase
        self._tasks: dict[str, TaskID] = {}

    def update(
        self,
        phase: str,
        fraction: float | None,
        *,
        done: int | None = None,
        total: int | None = None,
        message: str | None = None,
    ) -> None:
        """Progress of `phase`: `fraction` 0..1 (None: not known yet), optionally `done` of `total` items."""
        if self._lines is not None:
            self._lines.update(phase, fraction or 0.0, done=done, total=total, message=message)
            return
        assert self._progress is not None
        key = phase if self._per_phase else "all"
        fields: dict[str, Any] = {"phase": phase}
        if message is not None:
            fields["message"] = message[:MESSAGE_WIDTH]
        if key not in self._tasks:
            self._tasks[key] = self._progress.add_task(key, total=None, phase=phase, message="")
        task = self._tasks[key]
        if fraction is None:
            self._progress.update(task, **fields)
        elif done is not None and total is not None and self._per_phase:
            self._progress.update(task, completed=done, total=max(total, 1), **fields)
        else:
            self._progress.update(task, completed=round(100.0 * fraction, 1), total=100.0, **fields)


@contextmanager
def progress_reporter(
    *, per_phase: bool = True, prefix: str = "", console: Console | None = None
) -> Iterator[ProgressReporter]:
    """A reporter for the block: bars when `console` (stderr) is a terminal, else progress lines on it.

    `per_phase`: each phase's fraction runs 0..1 (a bar per phase); otherwise it is of the whole work.
    """
    console = console or err_console
    if not console.is_terminal:

        def emit(line: str) -> None:
            console.print(line, markup=False, highlight=False, soft_wrap=True)

        yield ProgressReporter(None, ProgressLines(emit, prefix=prefix, per_phase=per_phase), per_phase)
        return
    columns = (
        TextColumn("{task.fields[phase]:<13}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("[dim]{task.fields[message]}"),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        yield ProgressReporter(progress, None, per_phase)


class PhaseStatus:
    """A spinner's text on a terminal; elsewhere one line each time the phase changes."""

    def __init__(self, phase: str, status: Status | None, lines: ProgressLines | None) -> None:
        self.phase = phase
        self._status = status
        self._lines = lines

    def __call__(self, message: str, phase: str | None = None) -> None:
        """Show `message` (of `phase`, default: the current one)."""
        self.phase = phase or self.phase
        if self._status is not None:
            self._status.update(message)
        if self._lines is not None:
            self._lines.update(self.phase, 0.0, message=message)


@contextmanager
def phase_status(phase: str, message: str, console: Console | None = None) -> Iterator[PhaseStatus]:
    """Work without a known fraction (loading, detecting): a spinner on a terminal, phase lines elsewhere."""
    console = console or err_console
    if not console.is_terminal:

        def emit(line: str) -> None:
            console.print(line, markup=False, highlight=False, soft_wrap=True)

        reporter = PhaseStatus(phase, None, ProgressLines(emit))
        reporter(message)
        yield reporter
        return
    with console.status(message) as status:
        yield PhaseStatus(phase, status, None)
