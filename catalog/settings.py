"""The one settings object of the service (environment variables prefixed `SWI_`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path("~/.local/share/super-weight-index")


class Settings(BaseSettings):
    """Service settings; every field can be set as `SWI_<FIELD>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="SWI_", extra="ignore")

    data_dir: Path = Field(default=DEFAULT_DATA_DIR, description="Folder of the embedded SQLite catalog.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db; default: SQLite in data_dir.",
    )
    broker_url: str | None = Field(
        default=None, description="Celery broker URL; None = embedded mode (in-process)."
    )
    auto_migrate: bool | None = Field(
        default=None, description="Apply migrations and the seed when the API starts; None = only for SQLite."
    )
    rate_limit_submissions: int = Field(
        default=30, ge=1, description="Submissions allowed per API key per window."
    )
    rate_limit_window_s: int = Field(
        default=3600, ge=1, description="Length of the rate-limit window in seconds."
    )
    page_size_default: int = Field(default=50, ge=1, le=500)
    page_size_max: int = Field(default=200, ge=1, le=1000)
    job_max_attempts: int = Field(default=3, ge=1, le=20, description="Attempts before a job ends as failed.")
    response_cache_entries: int = Field(
        default=4096, ge=0, description="Rendered read responses kept in memory per API process (0: none)."
    )
    response_cache_ttl_s: float = Field(
        default=1.0,
        gt=0,
        le=3600,
        description="Longest time another process's catalog write can go unseen by this process's cache.",
    )
    readiness_timeout_s: float = Field(
        default=2.0, gt=0, description="Time allowed to reach the database or broker."
    )
    broker_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="Socket timeout of each broker call (connect, publish): a hung broker fails, not hangs.",
    )
    enqueue_timeout_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="Longest a submission waits for the broker to take its job; then the outbox sends it.",
    )
    max_body_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Largest request body accepted (larger ones are refused with 413 before being read).",
    )
    public_base_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/?#]+(?:/[^\s?#]*)?$",
        description="Absolute URL the API is reached at (for Link headers); None = relative references.",
    )
    job_runner: str | None = Field(
        default="workers.enqueue:job_runner",
        description="`module:function` that builds the served app's job runner from the settings; "
        "None = jobs wait in the outbox.",
    )

    def resolved_database_url(self) -> str:
        """The database URL; for the default SQLite file, its folder is created on first use."""
        if self.database_url:
            return self.database_url
        folder = self.data_dir.expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite+pysqlite:///{folder / 'catalog.db'}"

    @property
    def is_sqlite(self) -> bool:
        """Whether the catalog lives in SQLite (the embedded default)."""
        return self.database_url is None or self.database_url.startswith("sqlite")

    @property
    def should_auto_migrate(self) -> bool:
        """Whether the API prepares the database itself on start."""
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate
