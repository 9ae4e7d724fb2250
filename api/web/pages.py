"""What the model page shows, assembled from catalog rows: tables, charts, bundles, provenance."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from markupsafe import Markup

from api.charts import (
    Bar,
    BarGroup,
    Mark,
    Series,
    bar_chart,
    fmt,
    fmt_ratio,
    grouped_bar_chart,
    layer_chart,
    xy_chart,
)
from bundles import FORMATS
from catalog.models import IndexRun, LayerProfile, QualityResult, SuperActivation
from catalog.repositories import CoordinateEntry, CoordinateView
from contracts.validation import FigureKey

#: what each bundle format is for (the formats themselves come from `bundles`)
FORMAT_NOTES = {
    "json": ("JSON manifest", "schema-versioned coordinates, values and evidence, with its sha256"),
    "safetensors": ("safetensors", "coordinates and original values as tensors"),
    "llama.cpp": ("llama.cpp", "--tensor-type overrides for llama-quantize (zip)"),
    "llm-compressor": ("LLM Compressor", "recipe that keeps super-weight modules unquantized (YAML)"),
    "gptqmodel": ("GPTQModel", "dynamic config that skips super-weight modules (JSON)"),
    "autoround": ("AutoRound", "command line with the modules kept at high precision (shell)"),
    "torchao": ("torchao", "quantization filter for the super-weight modules (Python)"),
}
RTN_VARIANTS = {
    "plain": "plain RTN",
    "clipped": "clipped, super weights restored",
    "holdout": "super weights held out",
}
PRUNING_ORDER = {
    "baseline": 0,
    "joint": 1,
    "prune_super_weight": 2,
    "alone": 2,
    "restore_sa": 3,
    "controls": 4,
    "leave_one_out": 5,
}
QUANTIZATION_EXPERIMENTS = ("rtn", "w8a8")
#: measured statuses of weights that pruning showed do not matter (charted like inert ones)
QUIET_STATUSES = ("inert", "redundant")
PROVENANCE_ORDER = (
    "model",
    "source_kind",
    "quantization",
    "model_type",
    "num_layers",
    "hidden_size",
    "intermediate_size",
    "parameter_count",
    "dtype",
    "device",
    "prompt",
    "prompt_tokens",
    "bos_present",
    "forward_passes",
    "detector_version",
    "wall_time_s",
    "resolved_from",
    "revision",
)


@dataclass(frozen=True)
class Bundle:
    """One download button."""

    format: str
    title: str
    note: str
    url: str


@dataclass(frozen=True)
class Measurement:
    """One quality result, ready for a table row."""

    experiment: str
    label: str
    metric: str
    value: float | None
    baseline: float | None
    ratio: float | None
    corpus: str
    coordinates: str


@dataclass
class QualityCharts:
    """The quality-delta charts of a run (each may be absent) and every measurement as a table."""

    pruning: Markup | None = None
    scaling: Markup | None = None
    rtn: list[tuple[str, Markup]] = field(default_factory=list)  # (bits, chart)
    w8a8: Markup | None = None
    baseline: float | None = None
    corpus: str = ""
    measurements: list[Measurement] = field(default_factory=list)


@dataclass(frozen=True)
class ProfileCharts:
    """The per-layer activation profile before and after removal, and the super activation's course."""

    before: Markup | None
    after: Markup | None
    after_caption: str
    activation: Markup | None
    table: list[dict[str, Any]]


def bundles(hub_id: str, revision: str | None) -> list[Bundle]:
    """A download for every bundle format, pinned to the revision the page shows."""
    buttons = []
    for name in FORMATS:
        query = {"format": name} | ({"revision": revision} if revision else {})
        title, note = FORMAT_NOTES.get(name, (name, ""))
        buttons.append(Bundle(name, title, note, f"/v1/models/{hub_id}/bundle?{urlencode(query)}"))
    return buttons


def coordinate_text(coordinates: Sequence[int] | None) -> str:
    """`(11, 507, 1229)`."""
    return "" if not coordinates else "(" + ", ".join(str(c) for c in coordinates) + ")"


def corpus_text(corpus: Mapping[str, Any] | None) -> str:
    """`pydoc_data.topics, 2,048 tokens (window 256)`."""
    if not corpus:
        return ""
    text = str(corpus.get("name", ""))
    tokens, window = corpus.get("tokens"), corpus.get("window")
    if isinstance(tokens, int):
        text += f", {tokens:,} tokens"
    if isinstance(window, int):
        text += f" (window {window})"
    return text


def _ratio_of(result: QualityResult) -> float | None:
    if result.ratio is not None and math.isfinite(result.ratio):
        return result.ratio
    if result.value is not None and result.baseline:
        return result.value / result.baseline
    return None


def _coordinates_of(result: QualityResult, weights: Mapping[int, tuple[int, int, int]]) -> list[int] | None:
    if result.super_weight_id is not None and result.super_weight_id in weights:
        return list(weights[result.super_weight_id])
    found = result.parameters.get("coordinates")
    if isinstance(found, list) and len(found) == 3 and all(isinstance(c, int) for c in found):
        return found
    return None


def result_label(result: QualityResult, coordinates: Sequence[int] | None = None) -> str:
    """What a measurement changed, in words (the validator's own label when it stored one)."""
    params = result.parameters
    if isinstance(params.get("label"), str) and params["label"]:
        return str(params["label"])
    experiment = result.experiment
    if experiment == "baseline":
        return "baseline (unchanged model)"
    if experiment == "joint":
        return "zero every super weight"
    if experiment in ("alone", "prune_super_weight"):
        return f"zero {coordinate_text(coordinates)} alone" if coordinates else "zero a super weight"
    if experiment == "restore_sa":
        return "zero super weights, restore the super activation (+SA)"
    if experiment == "controls":
        if "seed" in params or result.figure == FigureKey.control("random"):
            return "control: random magnitude-matched weights"
        return "control: largest other weights zeroed"
    if experiment == "scaling":
        return f"super weights × {fmt(_float(params.get('factor')))}"
    if experiment.startswith("rtn"):
        bits, granularity, variant = _rtn_key(result)
        return (
            f"RTN {bits}-bit, {granularity_label(granularity)} blocks, {RTN_VARIANTS.get(variant, variant)}"
        )
    if experiment == "w8a8":
        return f"W8A8, {params.get('variant', '')}".rstrip(", ")
    details = ", ".join(f"{k} {v}" for k, v in params.items() if k not in ("coordinates", "key"))
    return f"{experiment} ({details})" if details else experiment


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _rtn_key(result: QualityResult) -> tuple[str, str, str]:
    params = result.parameters
    bits = str(params.get("bits", "?"))
    granularity = params.get("granularity", params.get("block_size", params.get("block", "tensor")))
    variant = params.get("variant") or result.experiment.removeprefix("rtn").lstrip("_/-") or "plain"
    return bits, str(granularity), str(variant)


def granularity_label(granularity: str) -> str:
    """`1048576` -> `1M`, `16384` -> `16K`; `tensor` and `g128` unchanged."""
    if granularity.isdigit():
        size = int(granularity)
        for unit, suffix in ((1 << 20, "M"), (1 << 10, "K")):
            if size >= unit and size % unit == 0:
                return f"{size // unit}{suffix}"
        return str(size)
    return granularity


def _granularity_order(granularity: str) -> tuple[int, int]:
    if granularity == "tensor":
        return (0, 0)
    if granularity.isdigit():
        return (1, -int(granularity))
    digits = "".join(c for c in granularity if c.isdigit())
    return (2, -int(digits) if digits else 0)


def quality_charts(
    results: Sequence[QualityResult], weights: Mapping[int, tuple[int, int, int]]
) -> QualityCharts:
    """Perplexity ratios to the baseline as charts: pruning and controls, scaling, RTN by block size, W8A8."""
    charts = QualityCharts()
    pruning: list[tuple[int, int, Bar]] = []
    scaling: list[tuple[float, float | None]] = []
    rtn: dict[str, dict[str, dict[str, float | None]]] = {}
    w8a8: list[Bar] = []
    for index, result in enumerate(results):
        coordinates = _coordinates_of(result, weights)
        label = result_label(result, coordinates)
        ratio = _ratio_of(result)
        charts.measurements.append(
            Measurement(
                experiment=result.experiment,
                label=label,
                metric=result.metric,
                value=result.value,
                baseline=result.baseline,
                ratio=ratio,
                corpus=corpus_text(result.corpus),
                coordinates=coordinate_text(coordinates),
            )
        )
        if result.metric.lower() != "perplexity":
            continue
        if result.baseline is not None and charts.baseline is None:
            charts.baseline = result.baseline
            charts.corpus = corpus_text(result.corpus)
        note = f"perplexity {fmt(result.value)} vs {fmt(result.baseline)}"
        experiment = result.experiment
        if experiment == "scaling":
            factor = _float(result.parameters.get("factor"))
            if factor is not None:
                scaling.append((factor, ratio))
        elif experiment.startswith("rtn"):
            bits, granularity, variant = _rtn_key(result)
            rtn.setdefault(bits, {}).setdefault(granularity, {})[variant] = ratio
        elif experiment == "w8a8":
            w8a8.append(Bar(label, ratio, "quantized", note))
        else:
            kind = {
                "baseline": "baseline",
                "joint": "pruned",
                "alone": "pruned",
                "prune_super_weight": "pruned",
                "restore_sa": "restored",
                "controls": "control",
            }.get(experiment, "other")
            pruning.append((PRUNING_ORDER.get(experiment, 5), index, Bar(label, ratio, kind, note)))
    if pruning:
        bars = [bar for _, _, bar in sorted(pruning, key=lambda item: (item[0], item[1]))]
        if not any(bar.kind == "baseline" for bar in bars) and charts.baseline is not None:
            bars.insert(
                0, Bar("baseline (unchanged model)", 1.0, "baseline", f"perplexity {fmt(charts.baseline)}")
            )
        charts.pruning = Markup(
            bar_chart(
                "chart-pruning",
                title="Perplexity after pruning, against controls",
                description="Perplexity divided by the baseline's for each pruning experiment: "
                + "; ".join(f"{b.label}: {fmt_ratio(b.value)}" for b in bars),
                bars=bars,
            )
        )
    if scaling:
        points = sorted({*scaling, (1.0, 1.0)}, key=lambda p: p[0]) if charts.baseline else sorted(scaling)
        charts.scaling = Markup(
            xy_chart(
                "chart-scaling",
                title="Scaling the super weights",
                description="Perplexity ratio when the super weights are multiplied by a factor: "
                + "; ".join(f"×{fmt(x)}: {fmt_ratio(y)}" for x, y in points),
                points=points,
                x_label="factor applied to the super weights",
            )
        )
    for bits in sorted(rtn, key=lambda b: -int(b) if b.isdigit() else 0):
        by_granularity = rtn[bits]
        variants = [v for v in RTN_VARIANTS if any(v in g for g in by_granularity.values())]
        variants += sorted({v for g in by_granularity.values() for v in g} - set(variants))
        groups = [
            BarGroup(
                granularity_label(granularity),
                [Bar(RTN_VARIANTS.get(v, v), by_granularity[granularity].get(v), v) for v in variants],
            )
            for granularity in sorted(by_granularity, key=_granularity_order)
        ]
        charts.rtn.append(
            (
                bits,
                Markup(
                    grouped_bar_chart(
                        f"chart-rtn-{bits}bit",
                        title=f"RTN {bits}-bit weight quantization by block size",
                        description=f"Perplexity ratio of {bits}-bit RTN by block size and variant: "
                        + "; ".join(
                            f"{g.label} {b.label} {fmt_ratio(b.value)}" for g in groups for b in g.bars
                        ),
                        groups=groups,
                        legend={v: RTN_VARIANTS.get(v, v) for v in variants},
                    )
                ),
            )
        )
    if w8a8:
        charts.w8a8 = Markup(
            bar_chart(
                "chart-w8a8",
                title="8-bit weights and activations",
                description="Perplexity ratio with W8A8 fake quantization: "
                + "; ".join(f"{b.label}: {fmt_ratio(b.value)}" for b in w8a8),
                bars=w8a8,
            )
        )
    return charts


def _marks(entries: Sequence[CoordinateEntry]) -> list[Mark]:
    marks: dict[int, Mark] = {}
    for entry in entries:
        weight = entry.weight
        where = coordinate_text(weight.coordinates)
        if entry.source == "measured" and weight.status not in QUIET_STATUSES:
            previous = marks.get(weight.layer)
            label = f"super weight {where} ({weight.status})"
            if previous is not None and previous.kind == "sw-layer":
                label = previous.label + "; " + label
            marks[weight.layer] = Mark(weight.layer, "sw-layer", label)
        elif weight.layer not in marks:
            kind = "inert-layer" if weight.status in QUIET_STATUSES else "reported-layer"
            marks[weight.layer] = Mark(weight.layer, kind, f"{weight.status} {where}")
    return sorted(marks.values(), key=lambda m: m.layer)


def profile_charts(
    run: IndexRun, rows: Sequence[LayerProfile], activation: SuperActivation | None, view: CoordinateView
) -> ProfileCharts:
    """Max |input| and |output| of every down projection per layer, before and after removal (log scale)."""
    marks = _marks(view.entries)
    by_iteration: dict[int, list[LayerProfile]] = {}
    for row in rows:
        by_iteration.setdefault(row.iteration, []).append(row)
    before_chart = after_chart = activation_chart = None
    after_caption = ""
    table: list[dict[str, Any]] = []
    if by_iteration:
        first, last = min(by_iteration), max(by_iteration)
        before_rows = sorted(by_iteration[first], key=lambda r: r.layer)
        after_rows = sorted(by_iteration[last], key=lambda r: r.layer) if last != first else []
        every = [v for r in before_rows + after_rows for v in (r.input_max, r.output_max) if v > 0]
        y_range = (min(every), max(every)) if every else None
        layers = [r.layer for r in before_rows]
        removed = run.profile_removed[last] if last < len(run.profile_removed or []) else []
        sw_layers = ", ".join(str(m.layer) for m in marks if m.kind == "sw-layer")
        removed_text = ", ".join(coordinate_text(c) for c in removed) or "the super weights"
        before_chart = Markup(
            layer_chart(
                "chart-profile-before",
                title="Down-projection activations per layer, before removal",
                description="Max |input| and max |output| of mlp.down_proj in each layer on the detection "
                f"prompt; super-weight layers: {sw_layers or 'none'}.",
                layers=layers,
                series=[
                    Series("input", "max |input|", [r.input_max for r in before_rows]),
                    Series("output", "max |output|", [r.output_max for r in before_rows]),
                ],
                marks=marks,
                y_range=y_range,
                css="layer-chart profile-chart",
            )
        )
        if after_rows:
            after_caption = f"after removing {removed_text}"
            after_chart = Markup(
                layer_chart(
                    "chart-profile-after",
                    title=f"Down-projection activations per layer, {after_caption}",
                    description="The same maxima on the same prompt, with the super weights zeroed.",
                    layers=[r.layer for r in after_rows],
                    series=[
                        Series("input", "max |input|", [r.input_max for r in after_rows], dashed=True),
                        Series("output", "max |output|", [r.output_max for r in after_rows], dashed=True),
                    ],
                    marks=marks,
                    y_range=y_range,
                    css="layer-chart profile-chart",
                )
            )
        after_by_layer = {r.layer: r for r in after_rows}
        for row in before_rows:
            after = after_by_layer.get(row.layer)
            table.append(
                {
                    "layer": row.layer,
                    "input_max": row.input_max,
                    "input_channel": row.input_channel,
                    "output_max": row.output_max,
                    "output_channel": row.output_channel,
                    "after_input_max": after.input_max if after else None,
                    "after_output_max": after.output_max if after else None,
                    "marked": any(m.layer == row.layer and m.kind == "sw-layer" for m in marks),
                }
            )
    if activation is not None and activation.magnitude_by_layer:
        magnitudes = [float(v) for v in activation.magnitude_by_layer]
        activation_marks = list(marks)
        if all(m.layer != activation.first_layer for m in marks):
            activation_marks.append(
                Mark(
                    activation.first_layer,
                    "sa-first-layer",
                    f"the super activation appears at layer {activation.first_layer}",
                )
            )
        activation_chart = Markup(
            layer_chart(
                "chart-super-activation",
                title=f"Super activation: |hidden state| at channel {activation.channel}, "
                f"token {activation.token}",
                description=f"Magnitude of the residual stream at channel {activation.channel} after each "
                "layer; "
                f"it appears at layer {activation.first_layer} and peaks at {fmt(activation.peak_magnitude)} "
                f"(layer {activation.peak_layer}).",
                layers=list(range(len(magnitudes))),
                series=[
                    Series("activation", f"|hidden[{activation.token}, {activation.channel}]|", magnitudes)
                ],
                marks=activation_marks,
                y_label="|activation| (log scale)",
                height=260,
                css="layer-chart activation-chart",
            )
        )
    return ProfileCharts(before_chart, after_chart, after_caption, activation_chart, table)


def provenance_items(provenance: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The run's provenance as (name, text) pairs: the well-known keys first, then the rest."""
    items: list[tuple[str, str]] = []
    keys = [k for k in PROVENANCE_ORDER if k in provenance] + sorted(set(provenance) - set(PROVENANCE_ORDER))
    for key in keys:
        value = provenance[key]
        if value is None or value == {} or value == []:
            continue
        if key == "library_versions" and isinstance(value, Mapping):
            text = ", ".join(f"{name} {version}" for name, version in value.items())
        elif key == "parameter_count" and isinstance(value, int):
            text = f"{value:,}"
        elif key == "wall_time_s" and isinstance(value, int | float):
            text = f"{value:.3g} s"
        elif isinstance(value, Mapping | list):
            text = json.dumps(value, sort_keys=True)
        else:
            text = str(value)
        items.append((key.replace("_", " "), text))
    return items


def weight_evidence(entry: CoordinateEntry) -> list[str]:
    """The measurements that decided a super weight's status, in words."""
    lines = []
    for result in entry.decided_by:
        ratio = _ratio_of(result)
        line = f"{result.metric} {fmt_ratio(ratio)} ({fmt(result.baseline)} → {fmt(result.value)})"
        corpus = corpus_text(result.corpus)
        lines.append(
            f"{result_label(result, entry.weight.coordinates)}: {line}" + (f" on {corpus}" if corpus else "")
        )
    return lines
