"""Shared console helpers: one clear error line, no traceback, for domain errors."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `error: message` on stderr and exit non-zero."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def clear_errors(*error_types: type[BaseException]) -> Iterator[None]:
    """Turn the listed exception types (domain errors) into one error line and exit code 2."""
    try:
        yield
    except error_types as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


def status_printer() -> Callable[[str], None]:
    """A progress callback that prints dim status lines on stderr."""
    return lambda message: err_console.print(f"[dim]{message}[/]", highlight=False)


def weight_row(weight: Any) -> dict[str, Any]:
    """A super weight's row in `swi index`'s table and JSON (a catalog row or the API's document alike)."""
    return {
        "layer": weight.layer,
        "row": weight.row,
        "col": weight.col,
        "value": weight.value,
        "status": weight.status,
        "reason": weight.verdict_reason,
    }
