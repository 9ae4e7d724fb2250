"""Injected faults: a pipeline whose jobs fail transiently in their first attempts (through the context's
progress listeners, the pipeline's public seam for in-process observers)."""

from __future__ import annotations

from catalog.models import Job
from workers.pipeline import JobProgress, PipelineContext


class TransientTestFaultError(Exception):
    """A transient failure injected by `TransientFailures`."""

    permanent = False


class TransientFailures:
    """A progress listener that fails each job's first `attempts` attempts as it enters the load phase."""

    def __init__(self, context: PipelineContext, attempts: int):
        self.context = context
        self.attempts = attempts

    def __call__(self, event: JobProgress) -> None:
        if event.phase != "load" or self.attempts <= 0:
            return
        with self.context.sessions() as session:
            job = session.get(Job, event.job_id)
            attempt = job.attempts if job is not None else 0
        if attempt <= self.attempts:
            raise TransientTestFaultError(
                f"testing: injected transient failure (attempt {attempt} of the first {self.attempts})"
            )


def with_transient_failures(context: PipelineContext, attempts: int) -> PipelineContext:
    """The context with a `TransientFailures` listener (once: contexts are reused per process)."""
    if not any(isinstance(listener, TransientFailures) for listener in context.listeners):
        context.listeners.append(TransientFailures(context, attempts))
    return context
