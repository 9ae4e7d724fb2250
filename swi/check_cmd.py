"""`swi check ARTIFACT`: did the super weights survive quantization? Per weight: storage, value, verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from swi.console import clear_errors, console, fail


def register(app: typer.Typer) -> None:
    """Add the `check` command."""
    app.command("check")(check_command)


def check_command(
    artifact: Annotated[
        Path, typer.Argument(help="A .gguf file, a safetensors folder (compressed-tensors, GPTQ) or a .pt.")
    ],
    bundle: Annotated[
        str | None, typer.Option("--bundle", "-b", help="The bundle (.swi.json/.safetensors, file or URL).")
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Or: ORG/NAME, whose bundle the catalog renders.")
    ] = None,
    revision: Annotated[str | None, typer.Option(help="--model: the catalog revision.")] = None,
    tolerance: Annotated[float, typer.Option(help="Largest relative error that passes.")] = 0.02,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Check that each super weight of a bundle survived in a quantized ARTIFACT; exit 1 when one did not."""
    from contracts.errors import DomainError
    from indexer.bundles.artifacts import check_artifact
    from indexer.bundles.bundle import parse_manifest
    from indexer.bundles.load import load_bundle

    if (bundle is None) == (model is None):
        fail("give exactly one of --bundle FILE and --model ORG/NAME")
    with clear_errors(DomainError):
        if bundle is not None:
            loaded = load_bundle(bundle)
        else:
            from swi.bundle_cmd import _from_catalog

            manifest = _from_catalog(str(model), revision, required=True)
            assert manifest is not None  # required=True fails instead of returning None
            loaded = parse_manifest(manifest)
        result = check_artifact(artifact, loaded, tolerance)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        console.print(f"{result.artifact} ({result.kind}), tolerance {result.tolerance:g}:")
        for w in result.weights:
            error = "n/a" if w.relative_error is None else f"{w.relative_error:.2e}"
            verdict = "[green]pass[/]" if w.passed else "[red]FAIL[/]"
            exact = "?" if w.exact is None else f"{w.exact:.9g}"
            console.print(
                f"  ({w.layer}, {w.row}, {w.col}) {w.tensor}: {w.storage} ({w.bits:g} bits) "
                f"{w.dequantized:.9g} vs exact {exact}, error {error}: {verdict}"
            )
    if not result.passed:
        raise typer.Exit(1)
