"""`swi catalog seed|migrate`, `swi keys create|list|revoke`, `swi serve`: the catalog and the API."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from swi.console import clear_errors, console, err_console, fail

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from catalog.settings import Settings


def register(app: typer.Typer) -> None:
    """Add the catalog, keys and serve commands to the `swi` app."""
    catalog_app = typer.Typer(help="Manage the catalog database.", no_args_is_help=True)
    keys_app = typer.Typer(help="Manage API keys (shown once, stored hashed).", no_args_is_help=True)

    @catalog_app.command("migrate")
    def migrate_command() -> None:
        """Apply the database migrations (Alembic) up to the newest schema."""
        from catalog import migrate
        from catalog.settings import Settings

        url = _database_url(Settings())
        with _errors():
            migrate.upgrade(url)
            console.print(f"catalog schema at {migrate.current_revision(url)} ({_redacted(url)})")

    @catalog_app.command("seed")
    def seed_command() -> None:
        """Load the published super-weight coordinates with all their sources (idempotent; migrates first)."""
        from catalog.bootstrap import prepare_database
        from catalog.settings import Settings

        settings = Settings()
        with _errors():
            report = prepare_database(settings, seed=True)
        assert report is not None
        console.print(
            f"seed loaded: {report.models_added} models and {report.coordinates_added} coordinates added, "
            f"{report.sources_added} sources, {report.labels_fixed} labels corrected "
            f"({_redacted(_database_url(settings))})"
        )

    @keys_app.command("create")
    def create_key(
        owner: Annotated[str, typer.Option("--owner", help="Who the key is for (a name or an email).")],
        scope: Annotated[
            list[str] | None, typer.Option("--scope", help="submit (default) or admin; repeat for several.")
        ] = None,
    ) -> None:
        """Create an API key and print it once (only its hash is stored)."""
        from catalog.repositories import ApiKeyRepository

        with _errors(), catalog_session() as session:
            key, secret = ApiKeyRepository(session).create(owner, scope or ["submit"])
            session.commit()
            err_console.print(f"key {key.id} for {key.owner} with scopes {', '.join(key.scopes)}")
            err_console.print("[bold]store it now: it is not shown again[/]")
        print(secret)

    @keys_app.command("list")
    def list_keys() -> None:
        """List API keys (ids, owners, scopes; never the secrets)."""
        from catalog.repositories import ApiKeyRepository

        with _errors(), catalog_session() as session:
            for key in ApiKeyRepository(session).all():
                state = "revoked" if key.revoked_at else "active"
                used = key.last_used_at.isoformat(timespec="seconds") if key.last_used_at else "never"
                console.print(
                    f"{key.id}\t{key.prefix}…\t{key.owner}\t{','.join(key.scopes)}\t{state}\tlast used {used}"
                )

    @keys_app.command("revoke")
    def revoke_key(key_id: Annotated[int, typer.Argument(help="The key id (see `swi keys list`).")]) -> None:
        """Revoke an API key."""
        from catalog.repositories import ApiKeyRepository

        with _errors(), catalog_session() as session:
            key = ApiKeyRepository(session).revoke(key_id)
            session.commit()
            console.print(f"key {key.id} of {key.owner} revoked")

    @app.command("serve")
    def serve(
        host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8000,
        workers: Annotated[int, typer.Option(help="Worker processes (PostgreSQL only).", min=1)] = 1,
    ) -> None:
        """Start the REST API (embedded default: SQLite, migrated and seeded on first start)."""
        import uvicorn

        from catalog.bootstrap import prepare_database
        from catalog.settings import Settings

        settings = Settings()
        if workers > 1 and settings.is_sqlite:
            fail("several workers need PostgreSQL (set SWI_DATABASE_URL); SQLite serves one process")
        with _errors():
            if settings.should_auto_migrate:
                prepare_database(settings)
        err_console.print(f"catalog: {_redacted(_database_url(settings))}; API on http://{host}:{port}/docs")
        with _metrics_folder(workers):
            uvicorn.run(
                "swi.served:served_app",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                log_level="info",
            )

    app.add_typer(catalog_app, name="catalog")
    app.add_typer(keys_app, name="keys")


@contextmanager
def _metrics_folder(workers: int) -> Iterator[None]:
    """With several processes, a fresh folder for prometheus_client's multiprocess mode (else none).

    Set before any server process imports prometheus_client; a folder named by PROMETHEUS_MULTIPROC_DIR
    is used (emptied first: samples of an earlier run must not add up), else a temporary one is made.
    """
    from api.metrics import MULTIPROC_ENV

    if workers == 1:
        yield
        return
    given = os.environ.get(MULTIPROC_ENV)
    with tempfile.TemporaryDirectory(prefix="swi-metrics-") as scratch:
        folder = Path(given) if given else Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink()
        os.environ[MULTIPROC_ENV] = str(folder)
        yield


def _database_url(settings: Settings) -> str:
    return settings.resolved_database_url()


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _errors() -> AbstractContextManager[None]:
    from sqlalchemy.exc import OperationalError

    from contracts.errors import DomainError

    return clear_errors(DomainError, OperationalError)


@contextmanager
def catalog_session() -> Iterator[Session]:
    """A session on the configured catalog (the embedded default is migrated and seeded first)."""
    from catalog.bootstrap import prepare_database
    from catalog.db import make_engine, make_session_factory
    from catalog.settings import Settings

    settings = Settings()
    if settings.should_auto_migrate:
        prepare_database(settings)
    engine = make_engine(settings.resolved_database_url())
    try:
        with make_session_factory(engine)() as session:
            yield session
    finally:
        engine.dispose()
