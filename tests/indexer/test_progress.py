"""Progress lines for logs: one per phase and per 10%, with items, elapsed and ETA."""

from __future__ import annotations

from indexer.progress import ProgressLines, format_seconds


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_one_line_per_phase_and_per_ten_percent() -> None:
    lines: list[str] = []
    clock = Clock()
    progress = ProgressLines(lines.append, prefix="job 0b9f7a51", clock=clock)
    progress.update("load", 0.0, message="reading weights")
    for done in range(1, 21):
        clock.now += 1
        progress.update("validate", done / 20, done=done, total=20, message=f"figure {done}")
    assert lines[0] == "[job 0b9f7a51] load           0% elapsed 0s: reading weights"
    # the phase start, then every 10% (two figures each): 1 + 10 lines
    validate = [line for line in lines if " validate " in line]
    assert len(validate) == 11
    assert validate[0].startswith("[job 0b9f7a51] validate       5% (1/20) elapsed 1s eta 19s")
    assert "50% (10/20) elapsed 10s eta 10s: figure 10" in validate[5]
    assert validate[-1].endswith("100% (20/20) elapsed 20s: figure 20")


def test_overall_fraction_gives_the_overall_eta() -> None:
    lines: list[str] = []
    clock = Clock()
    progress = ProgressLines(lines.append, per_phase=False, clock=clock)
    progress.update("load", 0.05)
    clock.now += 30
    progress.update("detect", 0.30)
    clock.now += 30
    progress.update("detect", 0.40)
    assert lines == [
        "load           5% elapsed 0s eta 0s",
        "detect        30% elapsed 30s eta 1m10s",
        "detect        40% elapsed 1m00s eta 1m30s",
    ]


def test_format_seconds() -> None:
    assert [format_seconds(s) for s in (0.4, 59, 61, 3600 + 120)] == ["0s", "59s", "1m01s", "1h02m"]


def test_counted_items_step_a_phase_that_is_a_small_share_of_a_job() -> None:
    lines: list[str] = []
    clock = Clock()
    progress = ProgressLines(lines.append, per_phase=False, clock=clock)
    progress.update("validate", 0.40)
    progress.update("validate", 0.41, done=1, total=1)  # the baseline: another count, same phase
    clock.now += 10
    progress.update("quantization", 0.75)
    for done in range(1, 39):
        clock.now += 10
        progress.update("quantization", 0.75 + 0.2 * done / 38, done=done, total=38)
    quantization = [line for line in lines if line.startswith("quantization")]
    # the phase start, then one line per 10% of its 38 checks although the job's bar moves only 20%
    assert len(quantization) == 11, quantization
    assert quantization[5] == "quantization  85% (19/38) elapsed 3m20s eta 3m10s"
    assert len([line for line in lines if line.startswith("validate")]) == 1
