"""`swi get` and `swi compare`: read the catalog (local, or a service with `--server`), same output.

Both sides produce the API's documents (`SuperWeightsOut`, `CompareOut`): locally from the repositories
through the same views the API renders, remotely from `swi.client`; one renderer prints them.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from swi.console import console
from swi.remote import ServerOption, remote

if TYPE_CHECKING:
    from api.schemas import CompareOut, Coordinate, SuperWeightsOut


def register(app: typer.Typer) -> None:
    """Add the `get` and `compare` commands."""
    app.command("get")(get_command)
    app.command("compare")(compare_command)


def get_command(
    model: Annotated[str, typer.Argument(help="Model id (org/name).")],
    revision: Annotated[
        str | None, typer.Option(help="Commit sha (or the branch/tag it was resolved from).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON document.")] = False,
    server: ServerOption = None,
) -> None:
    """Print MODEL's super weights with their status and evidence (local catalog, or --server)."""
    if server:
        with remote(server) as client:
            view = client.super_weights(model, revision)
    else:
        view = _local_super_weights(model, revision)
    show_super_weights(view, as_json)


def compare_command(
    a: Annotated[str, typer.Argument(help="Model id (org/name), e.g. a base model.")],
    b: Annotated[str, typer.Argument(help="Model id (org/name), e.g. its fine-tune.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON document.")] = False,
    server: ServerOption = None,
) -> None:
    """Which super-weight coordinates A and B share, which moved, vanished or appeared."""
    if server:
        with remote(server) as client:
            view = client.compare(a, b)
    else:
        view = _local_comparison(a, b)
    show_comparison(view, as_json)


def _local_super_weights(model: str, revision: str | None) -> SuperWeightsOut:
    from api import views
    from catalog.repositories import CoordinateRepository, ModelRepository
    from contracts.identifiers import validate_model_id
    from swi.catalog_cmd import _errors, catalog_session

    with _errors(), catalog_session() as session:
        entry = ModelRepository(session).get(validate_model_id(model))
        return views.super_weights(CoordinateRepository(session).coordinates(entry, revision))


def _local_comparison(a: str, b: str) -> CompareOut:
    from api import views
    from catalog.repositories import CoordinateRepository, ModelRepository
    from contracts.identifiers import validate_model_id
    from swi.catalog_cmd import _errors, catalog_session

    with _errors(), catalog_session() as session:
        models = ModelRepository(session)
        model_a, model_b = models.get(validate_model_id(a)), models.get(validate_model_id(b))
        return views.comparison(CoordinateRepository(session).compare(model_a, model_b))


def show_super_weights(view: SuperWeightsOut, as_json: bool) -> None:
    """Render a model's super weights: where they were measured, then one row per weight."""
    if as_json:
        print(json.dumps(view.model_dump(mode="json"), indent=2))
        return
    where = (
        f"measured at {view.revision.sha} (run {view.run_id})"
        if view.revision is not None
        else "published coordinates only (not measured here)"
    )
    console.print(f"[bold]{view.model}[/]: {where}")
    table = Table(
        title="super weights (model.layers[L].mlp.down_proj.weight\\[row, col])", title_justify="left"
    )
    for column in ("layer", "row", "col", "value", "status", "source", "why"):
        table.add_column(column, justify="right" if column in ("layer", "row", "col", "value") else "left")
    for w in view.super_weights:
        value = "-" if w.value is None else f"{w.value:.4g}"
        why = w.verdict_reason or w.citation or ""
        table.add_row(str(w.layer), str(w.row), str(w.col), value, w.status, w.source, why)
    console.print(table)
    sa = view.super_activation
    if sa is not None:
        console.print(
            f"super activation: channel {sa.channel} at token {sa.token}, from layer {sa.first_layer}, "
            f"peak {sa.peak_magnitude if sa.peak_magnitude is not None else '-'} at layer {sa.peak_layer}"
        )


def _coordinates(items: list[Coordinate]) -> str:
    return ", ".join(f"({c.layer}, {c.row}, {c.col})" for c in items) or "-"


def show_comparison(view: CompareOut, as_json: bool) -> None:
    """Render a comparison: what each side is based on, then shared, moved, vanished and appeared."""
    if as_json:
        print(json.dumps(view.model_dump(mode="json"), indent=2))
        return
    for side in (view.a, view.b):
        basis = f"run {side.run_id} at {side.revision}" if side.basis == "run" else side.basis
        console.print(f"[bold]{side.model}[/]: {basis}")
    console.print(f"shared:   {_coordinates(view.shared)}")
    moved = ", ".join(
        f"({m.a.layer}, {m.a.row}, {m.a.col}) -> ({m.b.layer}, {m.b.row}, {m.b.col}) same {m.shared}"
        for m in view.moved
    )
    console.print(f"moved:    {moved or '-'}")
    console.print(f"vanished: {_coordinates(view.vanished)} (only in {view.a.model})")
    console.print(f"appeared: {_coordinates(view.appeared)} (only in {view.b.model})")
