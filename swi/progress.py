"""One progress reporter for all commands: rich bars on a terminal, plain lines elsewhere.

On a terminal each phase gets a live bar; in a log file, `docker logs` or CI the same updates become one
line per phase and per 10% (phase, items done, elapsed, ETA), so long work is never silent.

Where the lines go: a command whose stdout is a log (`swi index MODEL > log.txt`) writes them there, next
to the entry it prints (and bars on stderr when that is a terminal); with `--json`, or when stdout is a
terminal, they go to stderr, and only when stderr is not a terminal.
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
from swi.console import console as out_console
from swi.console import err_console

MESSAGE_WIDTH = 80


def line_console(log_to_stdout: bool = False) -> Console | None:
    """Where progress lines go (None: nowhere, stderr shows bars): see the module docstring."""
    if log_to_stdout and not out_console.is_terminal:
        return out_console
    return None if err_console.is_terminal else err_console


def _lines(log_to_stdout: bool, prefix: str, per_phase: bool) -> ProgressLines | None:
    target = line_console(log_to_stdout)
    if target is None:
        return None

    def emit(line: str) -> None:
        target.print(line, markup=False, highlight=False, soft_wrap=True)

    return ProgressLines(emit, prefix=prefix, per_phase=per_phase)


class ProgressReporter:
    """Takes `update(phase, fraction, done=, total=, message=)` and shows it as bars, lines, or both."""

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
        if self._progress is None:
            return
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
    *, per_phase: bool = True, prefix: str = "", log_to_stdout: bool = False
) -> Iterator[ProgressReporter]:
    """A reporter for the block: bars on a terminal stderr, progress lines where they are a log.

    `per_phase`: each phase's fraction runs 0..1 (a bar per phase); otherwise it is of the whole work.
    `log_to_stdout`: the command prints human output on stdout, so a redirected stdout gets the lines too.
    """
    lines = _lines(log_to_stdout, prefix, per_phase)
    if not err_console.is_terminal:
        yield ProgressReporter(None, lines, per_phase)
        return
    columns = (
        TextColumn("{task.fields[phase]:<13}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("[dim]{task.fields[message]}"),
    )
    with Progress(*columns, console=err_console, transient=False) as progress:
        yield ProgressReporter(progress, lines, per_phase)


class PhaseStatus:
    """A spinner's text on a terminal; where lines are a log, one line each time the phase changes."""

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
def phase_status(phase: str, message: str, *, log_to_stdout: bool = False) -> Iterator[PhaseStatus]:
    """Work without a known fraction (loading, detecting): a spinner on a terminal, phase lines in logs."""
    lines = _lines(log_to_stdout, "", True)
    if not err_console.is_terminal:
        reporter = PhaseStatus(phase, None, lines)
        reporter(message)
        yield reporter
        return
    with err_console.status(message) as status:
        reporter = PhaseStatus(phase, status, lines)
        reporter(message)
        yield reporter
