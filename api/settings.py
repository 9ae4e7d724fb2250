"""The API's settings: the catalog's `Settings` plus what only the served API uses (same `SWI_` prefix)."""

from __future__ import annotations

from pydantic import Field

from catalog.settings import Settings


class ApiSettings(Settings):
    """The catalog settings extended with the API's; every field is `SWI_<FIELD>` in the environment."""

    rate_limit_submissions: int = Field(
        default=30, ge=1, description="Submissions allowed per API key per window."
    )
    rate_limit_window_s: int = Field(
        default=3600, ge=1, description="Length of the rate-limit window in seconds."
    )
    page_size_default: int = Field(default=50, ge=1, le=500)
    page_size_max: int = Field(default=200, ge=1, le=1000)
    response_cache_entries: int = Field(
        default=4096, ge=0, description="Rendered read responses kept in memory per API process (0: none)."
    )
    response_cache_ttl_s: float = Field(
        default=1.0,
        gt=0,
        le=3600,
        description="Longest time another process's catalog write can go unseen by this process's cache.",
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
        default=None,
        description="`module:function` that builds the served app's job runner from the settings, in place "
        "of the one its composition root passes; empty = jobs wait in the outbox.",
    )

    @classmethod
    def of(cls, settings: Settings | None = None) -> ApiSettings:
        """These catalog settings with the API's own read from the environment (default: all from it)."""
        if settings is None:
            return cls()
        if isinstance(settings, ApiSettings):
            return settings
        return cls(**settings.model_dump(exclude_unset=True))
