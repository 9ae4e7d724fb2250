"""`swi validate`: detect, then measure what each super weight is worth (pruning and quantization checks)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from swi.console import clear_errors, console
from swi.detect_cmd import ENGINE_HELP, open_with_engine, parse_memory
from swi.progress import phase_status, progress_reporter

if TYPE_CHECKING:
    from indexer.validation.validate import ProgressEvent, ValidationResult

#: default token budget when --max-tokens is not given: CPUs are slow, GPUs are not
CPU_DEFAULT_TOKENS = 4096
GPU_DEFAULT_TOKENS = 65536
VERDICT_STYLE = {
    "confirmed": "bold green",
    "set-confirmed": "green",
    "redundant": "yellow",
    "inert": "bold yellow",
    "not_measured": "dim",
}


def register(app: typer.Typer) -> None:
    """Add the `validate` command."""
    app.command("validate")(validate_command)


def _numbers(text: str | None, kind: type[int] | type[float], option: str) -> tuple[Any, ...] | None:
    if text is None:
        return None
    try:
        return tuple(kind(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise typer.BadParameter(f"{option}: expected comma-separated numbers, got {text!r}") from None


def _names(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(part.strip() for part in text.split(",") if part.strip())


def validate_command(
    model: Annotated[str, typer.Argument(help="Hub id (org/name), a local model folder, or a .gguf file.")],
    revision: Annotated[str | None, typer.Option(help="Hub branch, tag or commit sha.")] = None,
    corpus: Annotated[
        str,
        typer.Option(
            help="auto (WikiText-2 through `datasets` where it loads, else builtin), wikitext2, builtin, "
            "or a text file such as wiki.test.raw."
        ),
    ] = "auto",
    max_tokens: Annotated[
        int | None,
        typer.Option(
            help=f"Token budget (default {CPU_DEFAULT_TOKENS} on a CPU, {GPU_DEFAULT_TOKENS} on a GPU)."
        ),
    ] = None,
    window: Annotated[
        int | None, typer.Option(help="Window length (default: min(2048, model context, --max-tokens)).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Windows per forward pass (default: auto).")] = None,
    experiments: Annotated[
        str,
        typer.Option(
            help="Comma-separated: all, baseline, joint, alone, restore_sa, controls, null, leave_one_out, "
            "stopwords, scaling, rtn, w8a8."
        ),
    ] = "all",
    confirm_factor: Annotated[
        float, typer.Option(help="Joint zeroing must raise perplexity this much.")
    ] = 5.0,
    scale_factors: Annotated[str | None, typer.Option(help="Scaling factors, e.g. 0,0.5,1.5,2,3.")] = None,
    rtn_bits: Annotated[str | None, typer.Option(help="RTN bit widths, e.g. 4,3.")] = None,
    granularities: Annotated[
        str | None,
        typer.Option(help="RTN blocks: tensor, element counts (65536) or gN groups, e.g. tensor,65536,g128."),
    ] = None,
    clip_method: Annotated[
        str, typer.Option(help="Clipped RTN variant: percentile or zscore.")
    ] = "percentile",
    clip_threshold: Annotated[float, typer.Option(help="Upper percentile, or z-score (e.g. 6).")] = 99.99,
    null_sets: Annotated[
        int, typer.Option(help="Random magnitude-matched sets of the null.", min=0, max=1024)
    ] = 32,
    null_column_sets: Annotated[int, typer.Option(help="Same-column sets of the null.", min=0, max=1024)] = 8,
    necessity_share: Annotated[
        float, typer.Option(help="Share of the joint effect a set member must carry to be set-confirmed.")
    ] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of the random control and the null.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N.")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, float32, float16, bfloat16.")] = "auto",
    max_memory: Annotated[
        str | None, typer.Option(help="Memory budget of the weights (e.g. 8GB); above it `auto` streams.")
    ] = None,
    engine: Annotated[
        str, typer.Option(help=ENGINE_HELP + " Streamed, the whole suite reads each layer about once.")
    ] = "auto",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object (detection and validation).")
    ] = False,
) -> None:
    """Detect the super weights of MODEL, then measure them: pruning experiments and quantization checks."""
    from contracts.errors import DomainError
    from indexer.detection.opened import detect_opened
    from indexer.model.loading import LoadOptions
    from indexer.model.streaming import parse_engine
    from indexer.validation.corpus import load_corpus
    from indexer.validation.validate import ValidateConfig, parse_experiments, validate

    with clear_errors(DomainError):
        defaults = ValidateConfig()
        config = ValidateConfig(
            experiments=parse_experiments(experiments),
            window=window,
            max_tokens=max_tokens,
            batch_size=batch_size,
            confirm_factor=confirm_factor,
            scale_factors=_numbers(scale_factors, float, "--scale-factors") or defaults.scale_factors,
            rtn_bits=_numbers(rtn_bits, int, "--rtn-bits") or defaults.rtn_bits,
            rtn_granularities=_names(granularities) or defaults.rtn_granularities,
            clip_method=clip_method,
            clip_threshold=clip_threshold,
            null_sets=null_sets,
            null_column_sets=null_column_sets,
            necessity_share=necessity_share,
            seed=seed,
        )
        config.check()
        chosen = parse_engine(engine)
        options = LoadOptions(dtype=dtype, device=device, memory_limit_bytes=parse_memory(max_memory))
        text = load_corpus(corpus)  # before the (slow) model load: a bad corpus fails at once
        with phase_status("load", f"loading {model}", log_to_stdout=not as_json) as status:
            opened = open_with_engine(model, revision, options, chosen, status)
            status("detecting", phase="detect")
            detection = detect_opened(opened, progress=status)
        if config.max_tokens is None:
            budget = GPU_DEFAULT_TOKENS if opened.loaded.device.type == "cuda" else CPU_DEFAULT_TOKENS
            config = dataclasses.replace(config, max_tokens=budget)
        with _progress_bars(as_json) as on_progress:
            result = validate(opened.model, detection, text, config, progress=on_progress)
    if as_json:
        print(
            json.dumps(
                {"detection": detection.to_dict(), "validation": result.to_dict()}, indent=2, allow_nan=False
            )
        )
        return
    show_validation(result)


@contextmanager
def _progress_bars(as_json: bool) -> Iterator[Any]:
    """One progress bar per phase on a terminal, one line per phase and per 10% in a log (stdout too)."""
    with progress_reporter(log_to_stdout=not as_json) as reporter:

        def on_progress(event: ProgressEvent) -> None:
            reporter.update(
                event.phase,
                event.completed / max(1, event.total),
                done=event.completed,
                total=event.total,
                message=event.label,
            )

        yield on_progress


def _ppl(value: float | None) -> str:
    return "overflow" if value is None else f"{value:,.2f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}x"


def _fine_ratio(value: float | None) -> str:
    return "overflow" if value is None else f"{value:,.4f}x"


def show_validation(result: ValidationResult) -> None:
    """Render a validation result: verdicts first, then the pruning, stopword and quantization tables."""
    c = result.corpus
    where = f"@{result.revision[:12]}" if result.revision else ""
    console.print(f"[bold]{result.model}[/]{where} on {result.device}/{result.dtype}")
    console.print(
        f"corpus [bold]{c.name}[/] (sha256 {c.sha256[:12]}, {c.tokens:,} tokens in "
        f"{c.windows} window(s) of {c.window}); "
        f"baseline perplexity [bold]{result.baseline_perplexity:,.3f}[/]"
    )
    verdict = result.verdict
    style = VERDICT_STYLE[verdict.verdict]
    console.print(f"verdict: [{style}]{verdict.verdict}[/] - {verdict.reason}")
    null = verdict.null
    if null is not None:
        # four decimals: null ratios sit within a fraction of a percent of 1x, where 1.00x hides their spread
        quantiles = ", ".join(f"q{q} {_fine_ratio(r)}" for q, r in null.quantiles.items())
        console.print(
            f"null: {null.sets} sets ({null.random_sets} random, {null.column_sets} same-column, and the "
            f"controls): {quantiles}; empirical p = {null.p_value:.3f}"
        )
    if result.super_weight_verdicts:
        table = Table(title="super weights", title_justify="left")
        for column in ("layer", "row", "col", "value", "alone", "verdict", "why"):
            table.add_column(column, justify="left" if column in ("verdict", "why") else "right")
        values = dict(zip(result.super_weights, result.super_weight_values, strict=True))
        for v in result.super_weight_verdicts:
            table.add_row(
                str(v.layer),
                str(v.row),
                str(v.col),
                f"{values[(v.layer, v.row, v.col)]:.4g}",
                _ratio(v.alone_ratio),
                f"[{VERDICT_STYLE[v.verdict]}]{v.verdict}[/]",
                v.reason,
            )
        console.print(table)
    _show_pruning(result)
    _show_stopwords(result)
    _show_quantization(result)
    t = result.timing
    cache = (
        f"; prefix cache at layer(s) {', '.join(map(str, t.prefix_layers))} "
        f"({t.prefix_cache_bytes / 2**20:.1f} MiB) saved about {t.prefix_saved_s:.1f}s"
        if t.prefix_layers
        else ""
    )
    console.print(
        f"[dim]{t.full_passes} full and {t.cached_passes} cached passes, {t.reused_figures} reused, "
        f"in {t.total_s:.1f}s{cache}[/]"
    )


def _show_pruning(result: ValidationResult) -> None:
    figures = [f for f in result.figures if f.experiment not in ("rtn", "w8a8")]
    if len(figures) <= 1:
        return
    table = Table(title="pruning experiments", title_justify="left")
    for column in ("experiment", "perplexity", "ratio", "95% interval", "note"):
        table.add_column(column, justify="left" if column in ("experiment", "note") else "right")
    for f in figures:
        note = (
            f"same pass as {f.reused_from}"
            if f.reused_from
            else (f"from cached layer {f.prefix_layer}" if f.prefix_layer is not None else "")
        )
        interval = f"{_ratio(f.ratio_low)}-{_ratio(f.ratio_high)}" if f.ratio_low is not None else "-"
        table.add_row(f.label, _ppl(f.perplexity), _ratio(f.ratio), interval, f"[dim]{note}[/]")
    console.print(table)
    if result.super_activation is not None:
        sa = result.super_activation
        console.print(
            f"super activation in the corpus: layer {sa.layer}, channel {sa.channel}: {sa.positions} "
            f"site(s) in {sa.windows_with}/{sa.windows} windows ({sa.at_first_token} at the first "
            f"token), max |value| {sa.max_magnitude:.4g}"
        )


def _show_stopwords(result: ValidationResult) -> None:
    shift = result.stopwords
    if shift is None:
        return
    console.print(
        f"stopword probability mass: {shift.mass_before:.4f} -> {shift.mass_after:.4f} after zeroing "
        f"({len(shift.token_ids)} tokens of {len(shift.stopwords)} stopwords)"
    )
    gains = ", ".join(f"{s.token!r} {s.before:.4f}->{s.after:.4f}" for s in shift.gains[:5])
    losses = ", ".join(f"{s.token!r} {s.before:.4f}->{s.after:.4f}" for s in shift.losses[:5])
    console.print(f"  gain most: {gains}")
    console.print(f"  lose most: {losses}")


def _show_quantization(result: ValidationResult) -> None:
    rtn = [f for f in result.figures if f.experiment == "rtn"]
    if rtn:
        variants = list(dict.fromkeys(str(f.params["variant"]) for f in rtn))
        table = Table(title="weight RTN (perplexity, ratio to baseline)", title_justify="left")
        table.add_column("bits", justify="right")
        table.add_column("blocks", justify="right")
        for variant in variants:
            table.add_column(variant, justify="right")
        rows: dict[tuple[int, str], dict[str, str]] = {}
        # blocks that split every weight as another granularity does give its very weights: say which
        same_as: dict[tuple[int, str], set[str | None]] = {}
        for f in rtn:
            key = (int(f.params["bits"]), str(f.params["granularity"]))
            row = rows.setdefault(key, {})
            row[str(f.params["variant"])] = f"{_ppl(f.perplexity)} ({_ratio(f.ratio)})"
            source = None
            if f.reused_from is not None and f.reused_from.experiment == "rtn":
                source = f.reused_from.granularity
            same_as.setdefault(key, set()).add(source if source != key[1] else None)
        for (bits, granularity), cells in rows.items():
            sources = same_as[(bits, granularity)]
            label = granularity
            if len(sources) == 1 and None not in sources:
                label = f"{granularity} (= {next(iter(sources))})"
            table.add_row(str(bits), label, *(cells.get(v, "-") for v in variants))
        console.print(table)
    w8a8 = [f for f in result.figures if f.experiment == "w8a8"]
    if w8a8:
        console.print(
            "W8A8: "
            + "; ".join(f"{f.params['variant']} {_ppl(f.perplexity)} ({_ratio(f.ratio)})" for f in w8a8)
        )
    q = result.quantization
    if q is not None:
        console.print(
            f"[dim]{q.layers} linear layers, {q.parameters:,} weights quantized one layer at a time; "
            f"peak memory {q.peak_memory_ratio:.3f}x the weights[/]"
        )
