"""What the local and the remote commands print alike: a catalog entry, and job rows.

`swi index`/`swi jobs` print them from the catalog, `swi.remote` from a server's documents.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rich.table import Table

from swi.console import console, err_console

if TYPE_CHECKING:
    from catalog.models import Job
    from contracts.documents import JobOut


def show_entry(entry: dict[str, Any], as_json: bool) -> None:
    """Print a catalog entry (local or from a server): model, revision, verdict, super weights."""
    if as_json:
        print(json.dumps(entry, indent=2))
        return
    rows = entry["super_weights"]
    console.print(
        f"[bold]{entry['model']}[/]@{entry['revision'][:19]} run {entry['run_id']}: "
        f"verdict [bold]{entry['model_verdict'] or 'not measured'}[/]"
    )
    table = Table(
        title="super weights (model.layers[L].mlp.down_proj.weight\\[row, col])", title_justify="left"
    )
    for column in ("layer", "row", "col", "value", "status", "why"):
        table.add_column(column, justify="right" if column in ("layer", "row", "col", "value") else "left")
    for w in rows:
        value = "-" if w["value"] is None else f"{w['value']:.4g}"
        table.add_row(str(w["layer"]), str(w["row"]), str(w["col"]), value, w["status"], w["reason"] or "")
    console.print(table)
    console.print(f"[dim]in the catalog: `swi serve`, then GET {entry['url']}[/]")


def show_jobs(rows: list[dict[str, Any]], status: str | None, as_json: bool) -> None:
    """Print job rows (local or from a server) as a table or JSON."""
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        err_console.print("no jobs" + (f" with status {status}" if status else ""))
        return
    table = Table(title_justify="left")
    for column in ("job", "model", "status", "phase", "progress", "attempts", "run", "updated", "last error"):
        table.add_column(column, overflow="fold" if column == "last error" else "ellipsis")
    for row in rows:
        table.add_row(
            row["id"][:8],
            row["model"],
            row["status"],
            row["phase"] or "",
            f"{100 * row['progress']:.0f}%",
            f"{row['attempts']}/{row['max_attempts']}",
            str(row["run_id"] or ""),
            row["updated_at"][:19],
            (row["last_error"] or "")[:200],
        )
    console.print(table)


def job_row(job: Job | JobOut) -> dict[str, Any]:
    """The row `swi jobs` prints, of a catalog job or of a server's job document (same fields)."""
    return {
        "id": str(job.id),
        "model": job.model,
        "requested_revision": job.requested_revision,
        "resolved_sha": job.resolved_sha,
        "status": job.status,
        "phase": job.phase,
        "progress": job.progress,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "run_id": job.run_id,
        "last_error": job.last_error,
        "created_at": job.created_at.isoformat(),
        "updated_at": job.updated_at.isoformat(),
    }
