"""The `swi` command line: a thin composition root over indexer, catalog, api and workers."""

from __future__ import annotations

import typer

from swi import bundle_cmd, catalog_cmd, check_cmd, detect_cmd, index_cmd, query_cmd, validate_cmd

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
    app()


if __name__ == "__main__":
    main()
