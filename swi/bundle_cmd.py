"""`swi bundle`: download-ready coordinate bundles, from the catalog or from a fresh detection."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from contracts.identifiers import is_model_id
from swi import remote
from swi.catalog_cmd import catalog_session
from swi.console import clear_errors, err_console, fail
from swi.remote import ServerOption

if TYPE_CHECKING:
    pass

SOURCES = ("auto", "catalog", "detect")


def register(app: typer.Typer) -> None:
    """Add the `bundle` command."""
    app.command("bundle")(bundle_command)


def bundle_command(
    model: Annotated[str, typer.Argument(help="Hub id (org/name), a local model folder, or a .gguf file.")],
    format: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="json, safetensors, llama.cpp, llm-compressor, gptqmodel, autoround or torchao.",
        ),
    ] = "json",
    output: Annotated[
        str | None,
        typer.Option("--output", "-o", help="Output file ('-' for stdout; default: the download filename)."),
    ] = None,
    revision: Annotated[str | None, typer.Option(help="Hub branch, tag or commit sha.")] = None,
    source: Annotated[
        str, typer.Option(help="auto (the catalog when it knows MODEL, else detect), catalog, or detect.")
    ] = "auto",
    keep: Annotated[
        str,
        typer.Option(help="Tool formats: keep super-weight modules at 8 bits (int8) or unquantized (full)."),
    ] = "int8",
    tensor_type: Annotated[
        str | None,
        typer.Option(help="llama.cpp: q8_0, f16, bf16 or f32 (default: q8_0, or the exact type for full)."),
    ] = None,
    scheme: Annotated[
        str, typer.Option(help="Python tool formats: the weight-only scheme W2A16, W3A16, W4A16 or W8A16.")
    ] = "W4A16",
    group_size: Annotated[
        int | None,
        typer.Option(help="Python tool formats: the group size (default: the largest dividing the model)."),
    ] = None,
    validate: Annotated[
        bool, typer.Option(help="detect: also validate by pruning, so statuses are confirmed/inert.")
    ] = False,
    max_tokens: Annotated[
        int, typer.Option(help="--validate: token budget of the perplexity passes.")
    ] = 4096,
    corpus: Annotated[str, typer.Option(help="--validate: wikitext2, builtin, or a text file.")] = "builtin",
    device: Annotated[str, typer.Option(help="detect: auto, cpu, cuda, cuda:N or mps.")] = "auto",
    server: ServerOption = None,
) -> None:
    """Write MODEL's super-weight bundle in a quantization tool's format."""
    if server:
        if source == "detect" or validate:
            fail("--server downloads the service's bundle: --source detect and --validate are local only")
        remote.bundle(server, model, format, output, revision, tensor_type, scheme, keep, group_size)
        return
    from bundles import RenderOptions, check_options, render_bundle
    from contracts.errors import DomainError

    if source not in SOURCES:
        fail(f"unknown --source {source!r}; choose from {', '.join(SOURCES)}")
    with clear_errors(DomainError):
        options = RenderOptions(keep=keep, tensor_type=tensor_type, scheme=scheme, group_size=group_size)
        check_options(format, options)
        manifest = None
        if source in ("auto", "catalog") and is_model_id(model) and not Path(model).exists():
            manifest = _from_catalog(model, revision, required=source == "catalog")
        elif source == "catalog":
            fail(f"{model!r} is not a hub id: the catalog only knows org/name models")
        if manifest is None:
            manifest = _from_detection(model, revision, device, validate, corpus, max_tokens)
        rendered = render_bundle(
            manifest, format, keep=keep, tensor_type=tensor_type, scheme=scheme, group_size=group_size
        )
    if output == "-":
        sys.stdout.buffer.write(rendered.body)
        sys.stdout.flush()
        return
    path = Path(output) if output else Path(rendered.filename)
    path.write_bytes(rendered.body)
    count = len(manifest["super_weights"])
    err_console.print(
        f"wrote {path} ({rendered.content_type}, {len(rendered.body):,} bytes): {count} super weight(s) of "
        f"{manifest['model']} at {manifest['revision'] or 'no pinned revision'}"
    )
    if format not in ("json", "safetensors"):
        err_console.print(
            "[dim]coarse: the whole module of each super weight is kept at higher precision; "
            "docs/bundles.md shows the exact per-weight hold-out[/]"
        )


def _from_catalog(model: str, revision: str | None, *, required: bool) -> dict[str, Any] | None:
    """The catalog entry's manifest (None when the catalog does not know the model and not `required`)."""
    from sqlalchemy.exc import OperationalError

    from catalog.errors import NotFoundError
    from catalog.repositories import ModelRepository
    from swi.catalog_source import catalog_manifest

    try:
        with catalog_session() as session:
            entry = ModelRepository(session).find(model)
            if entry is None:
                if required:
                    raise NotFoundError(f"the catalog has no model {model!r}")
                return None
            return catalog_manifest(session, entry, revision)
    except OperationalError as exc:
        if required:
            fail(f"the catalog database cannot be reached: {exc}")
        err_console.print("[dim]catalog unreachable; detecting instead[/]")
        return None


def _from_detection(
    model: str, revision: str | None, device: str, validate: bool, corpus: str, max_tokens: int
) -> dict[str, Any]:
    """Load MODEL once, detect (and optionally validate), and build the manifest."""
    from indexer.bundles.build import manifest_from_detection
    from indexer.detection.detect import detect
    from indexer.model.loading import LoadOptions, load_model

    with err_console.status(f"loading {model}") as status:
        loaded = load_model(model, revision, LoadOptions(device=device), progress=lambda m: status.update(m))
        status.update("detecting")
        detection = detect(loaded, progress=lambda m: status.update(m))
        validation = None
        if validate and detection.super_weights:
            from indexer.validation.corpus import load_corpus
            from indexer.validation.validate import ValidateConfig
            from indexer.validation.validate import validate as run_validation

            status.update("validating by pruning")
            config = ValidateConfig(
                experiments=("baseline", "joint", "alone", "controls"), max_tokens=max_tokens
            )
            validation = run_validation(loaded, detection, load_corpus(corpus), config)
    return manifest_from_detection(detection, validation)
