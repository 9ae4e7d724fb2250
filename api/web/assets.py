"""Templates and static files of the web pages (all served by the app: no CDN, no network)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from api.charts import fmt, fmt_ratio
from contracts.identifiers import short_revision as short

PACKAGE_DIR = Path(__file__).resolve().parents[1]
TEMPLATE_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"
MEDIA_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class StaticFile:
    """A static asset held in memory, with its content hash (the cache-busting version)."""

    body: bytes
    media_type: str
    version: str


def _load_static() -> dict[str, StaticFile]:
    files = {}
    for path in sorted(STATIC_DIR.iterdir()):
        if path.is_file() and path.suffix in MEDIA_TYPES:
            body = path.read_bytes()
            files[path.name] = StaticFile(
                body, MEDIA_TYPES[path.suffix], hashlib.sha256(body).hexdigest()[:12]
            )
    return files


STATIC_FILES = _load_static()


def static_url(name: str) -> str:
    """The versioned URL of a static file (cacheable forever: the version changes with the content)."""
    return f"/static/{name}?v={STATIC_FILES[name].version}"


def human_count(value: int | None) -> str:
    """135M, 6.7B: parameter counts as people say them."""
    if value is None:
        return "—"
    for divisor, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if value >= divisor:
            scaled = value / divisor
            return f"{scaled:.3g}{suffix}" if scaled < 100 else f"{scaled:.0f}{suffix}"
    return str(value)


def when(value: datetime | None) -> str:
    """A UTC timestamp to the minute."""
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


def short_revision(value: str | None) -> str:
    """The first 12 characters of a commit sha, or of a file digest after `sha256:`."""
    return short(value) if value else "—"


def percent(value: float | None) -> str:
    """0.42 -> 42%."""
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value * 100:.0f}%"


def seconds(value: float | None) -> str:
    """Wall time: 0.81 s, 3 min 20 s."""
    if value is None or not math.isfinite(value):
        return "—"
    if value < 60:
        return f"{value:.3g} s"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes} min {rest} s"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        fmt=fmt,
        ratio=fmt_ratio,
        human_count=human_count,
        when=when,
        short=short_revision,
        percent=percent,
        seconds=seconds,
    )
    env.globals["static_url"] = static_url
    return env


TEMPLATES = _environment()


def render(template: str, **context: Any) -> str:
    """Render a page template."""
    return TEMPLATES.get_template(template).render(**context)
