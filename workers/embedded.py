"""The embedded default: the same pipeline, run in this process, retrying transient failures in place."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from workers.pipeline import Outcome, PipelineContext, run_job


def run_to_completion(
    job_id: uuid.UUID | str, context: PipelineContext, sleep: Callable[[float], None] = time.sleep
) -> Outcome:
    """Run a job until it ends: a transient failure waits its backoff and runs the next attempt."""
    while True:
        outcome = run_job(job_id, context)
        if outcome.status != "retry":
            return outcome
        sleep(outcome.retry_in_s or 0.0)
