"""The catalog's settings, shared by every deployable (environment variables prefixed `SWI_`).

The API (`api.settings.ApiSettings`) and the workers (`workers.settings.WorkerSettings`) extend them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path("~/.local/share/super-weight-index")


class Settings(BaseSettings):
    """Catalog settings; every field can be set as `SWI_<FIELD>` in the environment."""

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
    job_max_attempts: int = Field(default=3, ge=1, le=20, description="Attempts before a job ends as failed.")
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
