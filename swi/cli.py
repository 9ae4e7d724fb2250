"""The `swi` command line: a thin composition root over indexer, catalog, api and workers.

It needs the server extra (`pip install 'super-weight-index[server]'`); without it, `swi` says so in one
line and exits with status 2 (the client, `swi.client`, needs only the base install).
"""

from __future__ import annotations

import sys
from typing import NoReturn

#: the import names of the server extra's packages (pyproject's `server` extra)
SERVER_EXTRA = frozenset(
    {
        "torch",
        "transformers",
        "safetensors",
        "huggingface_hub",
        "gguf",
        "numpy",
        "typer",
        "click",
        "rich",
        "pydantic_settings",
        "psutil",
        "accelerate",
        "sqlalchemy",
        "alembic",
        "fastapi",
        "starlette",
        "uvicorn",
        "celery",
        "kombu",
        "redis",
        "psycopg",
        "jinja2",
        "multipart",
        "python_multipart",
        "prometheus_client",
        "fastapi_offline",
    }
)
SERVER_EXTRA_HINT = "swi needs the server extra: pip install 'super-weight-index[server]'"


def _without_server_extra(exc: ModuleNotFoundError) -> NoReturn:
    """Exit 2 with one line when `exc` is a package of the server extra missing; else re-raise it."""
    if (exc.name or "").partition(".")[0] not in SERVER_EXTRA:
        raise exc
    print(SERVER_EXTRA_HINT, file=sys.stderr)
    raise SystemExit(2) from None


try:
    import typer

    from swi import bundle_cmd, catalog_cmd, check_cmd, detect_cmd, index_cmd, query_cmd, validate_cmd
except ModuleNotFoundError as missing:
    _without_server_extra(missing)

app = typer.Typer(
    name="swi",
    help="Super-weight index: find, verify and serve the super weights of LLMs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

for module in (detect_cmd, catalog_cmd, validate_cmd, bundle_cmd, check_cmd, index_cmd, query_cmd):
    module.register(app)


def main() -> None:
    """Entry point of the `swi` script."""
    try:
        app()
    except ModuleNotFoundError as exc:
        _without_server_extra(exc)


if __name__ == "__main__":
    main()
