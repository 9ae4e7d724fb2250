"""`python -m tests.workers.flaky_worker worker ...`: `swi`, whose Celery jobs fail transiently in their first
`SWI_TEST_TRANSIENT_FAILURES` attempts (the reliability tests' flaky worker)."""

from __future__ import annotations

import os

from swi.cli import main
from tests.workers.faults import with_transient_failures
from workers import app as worker_app

#: the environment variable that says how many first attempts of each job fail
TRANSIENT_FAILURES_ENV = "SWI_TEST_TRANSIENT_FAILURES"

if __name__ == "__main__":
    failures = int(os.environ.get(TRANSIENT_FAILURES_ENV, "1"))
    contexts = worker_app.pipeline_context
    # the tasks look their context up at call time: every job's context gets the failing listener
    worker_app.pipeline_context = lambda settings=None: with_transient_failures(contexts(settings), failures)
    main()
