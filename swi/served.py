"""The app `swi serve` runs: the API with the workers' job runner passed in (`uvicorn --factory`)."""

from __future__ import annotations

from fastapi import FastAPI

from api.serve import create_served_app
from workers.enqueue import job_runner


def served_app() -> FastAPI:
    """The served API; its committed jobs go to Celery with a broker, else to an in-process runner."""
    return create_served_app(job_runner=job_runner)
