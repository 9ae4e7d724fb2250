"""`swi detect`: find the super weights of one model and show them."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from swi.console import clear_errors, console, err_console

if TYPE_CHECKING:
    from indexer.model.streaming import OpenedModel

BAR_WIDTH = 24
ENGINE_HELP = (
    "memory (load every weight), streamed (read one decoder layer at a time from the checkpoint), or "
    "auto: memory when the weights fit --max-memory (or the device), streamed when they do not."
)


def register(app: typer.Typer) -> None:
    """Add the `detect` and `fetch-model` commands."""
    app.command("detect")(detect_command)
    app.command("fetch-model")(fetch_model_command)


def parse_memory(text: str | None) -> int | None:
    """Parse `8GB`, `512MiB`, `2e9` into bytes."""
    if text is None:
        return None
    units = {
        "": 1,
        "b": 1,
        "kb": 10**3,
        "mb": 10**6,
        "gb": 10**9,
        "tb": 10**12,
        "kib": 2**10,
        "mib": 2**20,
        "gib": 2**30,
        "tib": 2**40,
    }
    cleaned = text.strip().lower().replace(" ", "")
    number = cleaned.rstrip("kmgtib")
    unit = cleaned[len(number) :]
    try:
        value = float(number) * units[unit]
    except (ValueError, KeyError):
        raise typer.BadParameter(f"cannot read {text!r} as a memory size (e.g. 8GB, 512MiB)") from None
    if value <= 0:
        raise typer.BadParameter("the memory limit must be positive")
    return int(value)


def detect_command(
    model: Annotated[str, typer.Argument(help="Hub id (org/name), a local model folder, or a .gguf file.")],
    revision: Annotated[str | None, typer.Option(help="Hub branch, tag or commit sha.")] = None,
    prompt: Annotated[str | None, typer.Option(help="Prompt of the detection pass.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N.")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, float32, float16, bfloat16.")] = "auto",
    max_super_weights: Annotated[int, typer.Option(help="Stop after this many.")] = 8,
    max_memory: Annotated[
        str | None, typer.Option(help="Memory budget of the weights (e.g. 8GB); above it `auto` streams.")
    ] = None,
    engine: Annotated[str, typer.Option(help=ENGINE_HELP)] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Find the super weights of MODEL in a few forward passes of one prompt."""
    from contracts.errors import DomainError
    from indexer.detection.detect import DEFAULT_PROMPT, DetectConfig
    from indexer.detection.opened import detect_opened
    from indexer.model.loading import LoadOptions
    from indexer.model.streaming import parse_engine

    with clear_errors(DomainError):
        chosen = parse_engine(engine)
        options = LoadOptions(dtype=dtype, device=device, memory_limit_bytes=parse_memory(max_memory))
        config = DetectConfig(prompt=prompt or DEFAULT_PROMPT, max_super_weights=max_super_weights)
        config.validate()
        with err_console.status(f"loading {model}") as status:
            opened = open_with_engine(model, revision, options, chosen, lambda m: status.update(m))
            status.update("detecting")
            result = detect_opened(opened, config, progress=lambda m: status.update(m))
    if as_json:
        print(result.to_json())
        return
    show_result(result)


def open_with_engine(
    model: str, revision: str | None, options: object, engine: str, progress: Callable[[str], None]
) -> OpenedModel:
    """Open MODEL with ENGINE and print, on stderr, which engine runs it and why."""
    from indexer.model.loading import LoadOptions
    from indexer.model.streaming import open_model, parse_engine

    assert isinstance(options, LoadOptions)
    opened = open_model(model, revision, options, parse_engine(engine), progress)
    loaded = opened.loaded
    err_console.print(
        f"[dim]loaded {loaded.model_id} in {loaded.load_time_s:.1f}s ({opened.engine} engine)[/]"
    )
    if opened.note:
        err_console.print(f"[yellow]{opened.note}[/]")
    return opened


def fetch_model_command() -> None:
    """Fetch the demo model (SmolLM2-135M-Instruct GGUF) into the model cache and print its path."""
    from indexer.model.demo_model import fetch_demo_model

    print(fetch_demo_model(quiet=True))


def show_result(result: object) -> None:
    """Render a detection result: provenance line, super-weight table, per-layer chart."""
    from contracts.results import DetectionResult

    assert isinstance(result, DetectionResult)
    p = result.provenance
    where = f"@{p.revision[:12]}" if p.revision else ""
    quant = f", {p.quantization}" if p.quantization else ""
    console.print(
        f"[bold]{p.model}[/]{where} ({p.model_type}, {p.num_layers} layers{quant}) - "
        f"{p.forward_passes} forward passes in {p.wall_time_s:.2f}s on {p.device}/{p.dtype}"
    )
    if not result.super_weights:
        console.print("[yellow]no super weights found[/]")
    else:
        table = Table(title="super weights", title_justify="left")
        for column in ("layer", "row", "col", "value", "rank", "input act", "output act", "token", "pass"):
            table.add_column(column, justify="right")
        for sw in result.super_weights:
            table.add_row(
                str(sw.layer),
                str(sw.row),
                str(sw.col),
                f"{sw.value:.4g}",
                str(sw.magnitude_rank),
                f"{sw.input_activation:.4g}",
                f"{sw.output_activation:.4g}",
                str(sw.token),
                str(sw.iteration + 1),
            )
        console.print(table)
    if result.super_activation is not None:
        sa = result.super_activation
        console.print(
            f"super activation: channel {sa.channel}, token {sa.token}, peak {sa.peak_magnitude:.4g} "
            f"after layer {sa.peak_layer}"
        )
    show_profile_chart(result)


def show_profile_chart(result: object) -> None:
    """Per-layer max |down_proj input| and |output|, log-scaled bars, before and after removal."""
    from contracts.results import DetectionResult

    assert isinstance(result, DetectionResult)
    before = result.layer_profile[0].layers
    after = result.layer_profile[-1].layers
    marked = {sw.layer for sw in result.super_weights}
    values = [s.output_max for s in before] + [s.input_max for s in before]
    top = math.log10(max(max(values), 1e-6))
    bottom = math.log10(max(min(values), 1e-6))
    span = max(top - bottom, 1e-6)

    def bar(value: float) -> str:
        filled = round((math.log10(max(value, 1e-6)) - bottom) / span * BAR_WIDTH)
        return "█" * max(filled, 0)

    table = Table(
        title="max |activation| per layer (log scale; * = super-weight layer)", title_justify="left"
    )
    table.add_column("layer", justify="right")
    table.add_column("max |in|", justify="right")
    table.add_column("max |out|", justify="right")
    table.add_column("out (bar)")
    table.add_column("out after removal", justify="right")
    for stat, stat_after in zip(before, after, strict=True):
        label = f"{stat.layer}{'*' if stat.layer in marked else ' '}"
        style = "bold red" if stat.layer in marked else "cyan"
        table.add_row(
            label,
            f"{stat.input_max:.3g}",
            f"{stat.output_max:.3g}",
            f"[{style}]{bar(stat.output_max)}[/]",
            f"{stat_after.output_max:.3g}",
        )
    console.print(table)
