"""Plain-text progress for logs: one line when a phase starts and one each time it passes another 10%.

Where no terminal shows a live bar (a log file, `docker logs`, CI, a worker's log), long work would otherwise
be silent between its first and last line. `ProgressLines` turns the same updates a progress bar gets into
lines like

    [job 0b9f7a51] validate  40% (4/10) elapsed 12s eta 18s: alone (2, 3968, 7003)

The CLI uses it when stderr is not a terminal; workers log the same lines with the job id as the prefix.
Standard library only, so every layer can use it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

#: a line each time the fraction passes another multiple of this
STEP = 0.1


def format_seconds(seconds: float) -> str:
    """`42s`, `3m05s`, `1h02m`: short durations for progress lines."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class ProgressLines:
    """Emits one line per phase start and per `step` of progress: phase, percent, items, elapsed, ETA.

    `per_phase`: each phase's fraction runs from 0 to 1 (validation phases), so the ETA is the phase's;
    otherwise the fraction is of the whole work (a job's progress). Where `done` of `total` items are
    given, the steps and the ETA follow the items: a phase that is a small share of a job's bar (the
    quantization checks) still gets a line per 10% of its items.
    """

    def __init__(
        self,
        emit: Callable[[str], None],
        *,
        prefix: str = "",
        step: float = STEP,
        per_phase: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.emit = emit
        self.prefix = f"[{prefix}] " if prefix else ""
        self.step = step
        self.per_phase = per_phase
        self.clock = clock
        self.started = clock()
        self.phase: str | None = None
        self._stage: tuple[str, int | None] | None = None
        self.phase_started = self.started
        self._last_bucket = -1
        self._last_update = self.started

    def update(
        self,
        phase: str,
        fraction: float,
        *,
        done: int | None = None,
        total: int | None = None,
        message: str | None = None,
    ) -> None:
        """Record `fraction` (0..1) of `phase`; emit a line when the phase or the 10% step changes."""
        fraction = min(1.0, max(0.0, fraction))
        now = self.clock()
        local = _share(done, total)
        bucket = math.floor((fraction if local is None else local) / self.step + 1e-9)
        last_update, self._last_update = self._last_update, now
        stage = (phase, total if local is not None else None)
        if stage != self._stage:
            # the phase began when the previous one last reported, not at its own first update
            self._stage, self.phase_started, self._last_bucket = stage, last_update, bucket
            if phase != self.phase:
                self.phase = phase
            else:
                return  # the same phase counting other items (validation's sub-phases): no extra line
        elif bucket > self._last_bucket:
            self._last_bucket = bucket
        else:
            return
        self.emit(self.line(phase, fraction, now, done=done, total=total, message=message))

    def line(
        self,
        phase: str,
        fraction: float,
        now: float,
        *,
        done: int | None = None,
        total: int | None = None,
        message: str | None = None,
    ) -> str:
        """The text of one progress line."""
        elapsed = now - self.started
        parts = [f"{self.prefix}{phase:<12} {100 * fraction:3.0f}%"]
        if done is not None and total is not None:
            parts.append(f"({done}/{total})")
        parts.append(f"elapsed {format_seconds(elapsed)}")
        local = _share(done, total)
        if local is not None and 0 < local < 1:
            spent = now - self.phase_started
            parts.append(f"eta {format_seconds(spent * (1 - local) / local)}")
        elif local is None and 0 < fraction < 1:
            spent = now - self.phase_started if self.per_phase else elapsed
            parts.append(f"eta {format_seconds(spent * (1 - fraction) / fraction)}")
        text = " ".join(parts)
        return f"{text}: {message}" if message else text


def _share(done: int | None, total: int | None) -> float | None:
    """`done / total` when both are known (None otherwise)."""
    if done is None or total is None or total <= 0:
        return None
    return min(1.0, max(0.0, done / total))
