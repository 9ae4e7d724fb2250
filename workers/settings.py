"""Settings of the indexing pipeline: the catalog's `Settings` plus what workers need (same `SWI_` prefix)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from catalog.settings import Settings

#: what a worker's GPU queue and light queue are called (before `queue_prefix`)
GPU_QUEUE = "gpu"
DEFAULT_QUEUE = "default"


class WorkerSettings(Settings):
    """The catalog settings extended with the pipeline's; every field is `SWI_<FIELD>` in the environment."""

    allow_local_models: bool | None = Field(
        default=None,
        description="Let jobs load local folders/.gguf files; None = only when embedded (no broker).",
    )
    hub_cache_dir: str | None = Field(
        default=None, description="Hugging Face cache of hub snapshots; None = the hub library's default."
    )
    device: str = Field(default="auto", description="Device of model work: auto, cpu, cuda, cuda:N.")
    worker_memory_limit_bytes: int | None = Field(
        default=None,
        ge=1,
        description="Memory budget of the weights: above it, jobs with engine auto stream the layers.",
    )
    queue_prefix: str = Field(
        default="",
        max_length=64,
        description="Prefix of the queue names and Redis keys (isolates deployments).",
    )
    job_time_limit_s: int = Field(default=6 * 3600, ge=10, description="Hard time limit of one job.")
    heartbeat_interval_s: float = Field(default=10.0, gt=0, description="How often a running job heartbeats.")
    stale_after_s: float = Field(
        default=120.0, gt=0, description="A running job without a heartbeat for this long is re-queued."
    )
    worker_sweeps: bool = Field(default=True, description="Whether Celery workers sweep the job table.")
    sweep_interval_s: float = Field(
        default=30.0, gt=0, description="How often a worker sweeps the job table."
    )
    enqueue_grace_s: float = Field(
        default=10.0, ge=0, description="A queued job never sent is sent by the sweeper after this long."
    )
    resend_after_s: float = Field(
        default=3600.0, gt=0, description="A queued job sent this long ago without starting is sent again."
    )
    retry_backoff_s: float = Field(default=10.0, ge=0, description="First retry delay (doubles per attempt).")
    retry_backoff_max_s: float = Field(default=600.0, ge=0, description="Longest retry delay.")
    worker_max_tasks_per_child: int = Field(
        default=1, ge=1, description="Jobs a worker process runs before it is replaced (frees model memory)."
    )
    preload_libraries: bool = Field(
        default=True,
        description="Import torch/transformers in the worker parent (never CUDA) so jobs start fast.",
    )
    default_max_tokens_cpu: int = Field(default=4096, ge=2, description="Validation token budget on a CPU.")
    default_max_tokens_gpu: int = Field(default=65536, ge=2, description="Validation token budget on a GPU.")
    # Testing hooks: they make a job slow deterministically (reliability tests, never production).
    testing_delay_phase: str | None = Field(default=None, description="Testing only: a phase to slow down.")
    testing_delay_s: float = Field(
        default=0.0, ge=0, description="Testing only: seconds to wait in that phase."
    )

    @property
    def embedded(self) -> bool:
        """No broker configured: jobs run in-process (the embedded default)."""
        return not self.broker_url

    @property
    def local_models_allowed(self) -> bool:
        """Whether jobs may name local paths (never from the public API, which accepts only hub ids)."""
        return self.embedded if self.allow_local_models is None else self.allow_local_models

    @property
    def visibility_timeout_s(self) -> int:
        """Redis redelivers an unacknowledged message after this; longer than the longest job."""
        return self.job_time_limit_s + 3600

    @property
    def gpu_queue(self) -> str:
        """The queue of model work."""
        return f"{self.queue_prefix}{GPU_QUEUE}"

    @property
    def default_queue(self) -> str:
        """The queue of light tasks (sweeps)."""
        return f"{self.queue_prefix}{DEFAULT_QUEUE}"


@lru_cache(maxsize=1)
def get_settings() -> WorkerSettings:
    """The process-wide settings, read from the environment once."""
    return WorkerSettings()
