"""Prepare a catalog database: migrations, and the seed on a fresh database (the embedded default)."""

from __future__ import annotations

from catalog import migrate
from catalog.db import make_engine, make_session_factory
from catalog.seed import SeedReport, load_seed
from catalog.settings import Settings


def prepare_database(settings: Settings, *, seed: bool | None = None) -> SeedReport | None:
    """Upgrade to head; load the seed when asked, or (seed=None) when the database was empty."""
    url = settings.resolved_database_url()
    fresh = migrate.current_revision(url) is None
    migrate.upgrade(url)
    if not (seed if seed is not None else fresh):
        return None
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            report = load_seed(session)
            session.commit()
            return report
    finally:
        engine.dispose()
