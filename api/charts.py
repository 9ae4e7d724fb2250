"""Server-side charts as inline SVG (no JavaScript, no external assets): per-layer lines and bar charts.

Every chart is a self-contained `<svg>` with a `<title>` and `<desc>`, a `viewBox` (it scales with its
container) and CSS classes for colours (`api/static/site.css`), so pages stay readable without JS. Marks that
tests and users look for carry data attributes: `data-layer` on layer bands and points, `data-series`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape

WIDTH = 640
FONT = 12
MARGIN_LEFT = 64
MARGIN_RIGHT = 16
MARGIN_TOP = 36
MARGIN_BOTTOM = 44


@dataclass(frozen=True)
class Series:
    """One line of a per-layer chart: `values[i]` belongs to layer `layers[i]` (None: not measured)."""

    key: str  # css class suffix and data-series value, e.g. "input"
    label: str
    values: Sequence[float | None]
    dashed: bool = False


@dataclass(frozen=True)
class Mark:
    """A highlighted layer (a band behind the lines): `kind` is its css class, e.g. "sw-layer"."""

    layer: int
    kind: str
    label: str


@dataclass(frozen=True)
class Bar:
    """One bar of a bar chart."""

    label: str
    value: float | None
    kind: str  # css class suffix: baseline, pruned, restored, control, quantized, ...
    note: str = ""  # shown in the tooltip after the value


@dataclass(frozen=True)
class BarGroup:
    """Bars that share one category on the x axis (e.g. one RTN block size)."""

    label: str
    bars: Sequence[Bar] = field(default_factory=tuple)


def fmt(value: float | None) -> str:
    """A compact, human number: 24,022 / 5.876 / 1.2e-05; an em dash for None or non-finite."""
    if value is None or not math.isfinite(value):
        return "—"
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value:.3g}"
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 0.01 or magnitude == 0:
        return f"{value:.4g}"
    return f"{value:.2g}"


def fmt_ratio(value: float | None) -> str:
    """A ratio to a baseline, e.g. ×1.04 or ×1,872."""
    return "—" if value is None or not math.isfinite(value) else f"×{fmt(value)}"


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


class LogScale:
    """Maps positive values to a pixel range on a base-10 log scale with readable ticks."""

    def __init__(self, low: float, high: float, start: float, end: float):
        low = max(low, 1e-30)
        high = max(high, low * 1.0001)
        self.lo = math.floor(math.log10(low) * 4) / 4  # pad to a quarter decade
        self.hi = math.ceil(math.log10(high) * 4) / 4
        if self.hi - self.lo < 0.5:
            middle = (self.hi + self.lo) / 2
            self.lo, self.hi = middle - 0.25, middle + 0.25
        self.start, self.end = start, end

    def __call__(self, value: float) -> float:
        clamped = min(max(math.log10(max(value, 1e-30)), self.lo), self.hi)
        return self.start + (clamped - self.lo) / (self.hi - self.lo) * (self.end - self.start)

    def ticks(self) -> list[float]:
        """Powers of ten, with 2 and 5 (or finer) steps when the range is short."""
        span = self.hi - self.lo
        steps: tuple[float, ...] = (1.0,)
        if span <= 1.5:
            steps = (1.0, 1.2, 1.5, 2.0, 3.0, 5.0, 7.0)
        elif span <= 3.5:
            steps = (1.0, 2.0, 5.0)
        every = max(1, math.ceil(span / 8)) if steps == (1.0,) else 1
        ticks = []
        for exponent in range(math.floor(self.lo), math.ceil(self.hi) + 1):
            if steps == (1.0,) and exponent % every:
                continue
            for step in steps:
                value = step * 10.0**exponent
                if self.lo - 1e-9 <= math.log10(value) <= self.hi + 1e-9:
                    ticks.append(value)
        return ticks


def _line(css: str, x1: float, y1: float, x2: float, y2: float) -> str:
    return f'<line class="{css}" x1="{_num(x1)}" y1="{_num(y1)}" x2="{_num(x2)}" y2="{_num(y2)}"/>'


def _positive(values: Sequence[float | None]) -> list[float]:
    return [abs(v) for v in values if v is not None and math.isfinite(v) and v != 0]


def _svg_open(chart_id: str, css: str, height: int, title: str, description: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {escape(css)}" id="{escape(chart_id)}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-desc">{escape(description)}</desc>',
    ]


def _legend(entries: Sequence[tuple[str, str, bool]], y: float) -> list[str]:
    """Legend swatches along the top: (css class, label, dashed)."""
    out = ['<g class="legend">']
    x = float(MARGIN_LEFT)
    for css, label, dashed in entries:
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        out.append(
            f'<line class="{escape(css)}" x1="{_num(x)}" y1="{_num(y)}" x2="{_num(x + 18)}" y2="{_num(y)}"'
            f' stroke-width="2.5"{dash}/>'
        )
        out.append(f'<text x="{_num(x + 23)}" y="{_num(y + 4)}">{escape(label)}</text>')
        x += 34 + 7 * len(label)
    out.append("</g>")
    return out


def _y_axis(scale: LogScale, left: float, right: float, label: str) -> list[str]:
    out = ['<g class="axis y-axis">']
    for tick in scale.ticks():
        y = scale(tick)
        out.append(f'<line class="grid" x1="{_num(left)}" y1="{_num(y)}" x2="{_num(right)}" y2="{_num(y)}"/>')
        out.append(
            f'<text x="{_num(left - 6)}" y="{_num(y + 4)}" text-anchor="end">{escape(fmt(tick))}</text>'
        )
    middle = (scale.start + scale.end) / 2
    out.append(
        f'<text class="axis-label" transform="translate(14 {_num(middle)}) rotate(-90)" '
        f'text-anchor="middle">{escape(label)}</text>'
    )
    out.append("</g>")
    return out


def layer_chart(
    chart_id: str,
    *,
    title: str,
    description: str,
    layers: Sequence[int],
    series: Sequence[Series],
    marks: Sequence[Mark] = (),
    y_label: str = "max |activation| (log scale)",
    y_range: tuple[float, float] | None = None,
    height: int = 300,
    css: str = "layer-chart",
) -> str:
    """Lines over layers on a log y axis, with marked layers as labelled bands (`data-layer` on each)."""
    plot_left, plot_right = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
    plot_top, plot_bottom = MARGIN_TOP, height - MARGIN_BOTTOM
    values = [v for s in series for v in _positive(s.values)]
    low, high = y_range if y_range else ((min(values), max(values)) if values else (1.0, 10.0))
    y = LogScale(low, high, plot_bottom, plot_top)
    count = max(len(layers), 1)
    step = (plot_right - plot_left) / count

    def x_of(index: int) -> float:
        return plot_left + step * (index + 0.5)

    position = {layer: index for index, layer in enumerate(layers)}
    out = _svg_open(chart_id, css, height, title, description)
    out += _legend([(f"s-{s.key}", s.label, s.dashed) for s in series], 16)
    for mark in marks:
        if mark.layer not in position:
            continue
        x = x_of(position[mark.layer])
        out.append(
            f'<g class="mark {escape(mark.kind)}" data-layer="{mark.layer}">'
            f"<title>{escape(mark.label)}</title>"
            f'<rect class="{escape(mark.kind)} band" data-layer="{mark.layer}" x="{_num(x - step / 2)}" '
            f'y="{plot_top}" width="{_num(step)}" height="{plot_bottom - plot_top}"/>'
            f'<text class="mark-label" x="{_num(x)}" y="{plot_top - 4}" text-anchor="middle">'
            f"L{mark.layer}</text></g>"
        )
    out += _y_axis(y, plot_left, plot_right, y_label)
    out.append('<g class="axis x-axis">')
    out.append(_line("baseline-axis", plot_left, plot_bottom, plot_right, plot_bottom))
    every = max(1, math.ceil(count / 16))
    for index, layer in enumerate(layers):
        if index % every == 0 or layer in {m.layer for m in marks}:
            out.append(
                f'<text x="{_num(x_of(index))}" y="{plot_bottom + 16}" text-anchor="middle">{layer}</text>'
            )
    out.append(
        f'<text class="axis-label" x="{_num((plot_left + plot_right) / 2)}" y="{height - 6}" '
        'text-anchor="middle">layer</text>'
    )
    out.append("</g>")
    marked = {m.layer for m in marks}
    for line in series:
        points = [
            (index, layers[index], value)
            for index, value in enumerate(line.values[: len(layers)])
            if value is not None and math.isfinite(value) and value != 0
        ]
        dash = ' stroke-dasharray="5 3"' if line.dashed else ""
        path = " ".join(
            f"{'M' if n == 0 else 'L'}{_num(x_of(i))} {_num(y(abs(v)))}" for n, (i, _, v) in enumerate(points)
        )
        out.append(f'<g class="series s-{escape(line.key)}" data-series="{escape(line.key)}">')
        if path:
            out.append(f'<path class="line s-{escape(line.key)}" d="{path}" fill="none"{dash}/>')
        for index, layer, value in points:
            css_class = "point sw-point" if layer in marked else "point"
            out.append(
                f'<circle class="{css_class}" data-layer="{layer}" data-value="{value:.6g}" '
                f'cx="{_num(x_of(index))}" cy="{_num(y(abs(value)))}" r="{3.5 if layer in marked else 2.5}">'
                f"<title>{escape(line.label)}, layer {layer}: {escape(fmt(value))}</title></circle>"
            )
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def bar_chart(
    chart_id: str,
    *,
    title: str,
    description: str,
    bars: Sequence[Bar],
    value_label: str = "perplexity ÷ baseline (log scale)",
    reference: float | None = 1.0,
    css: str = "bar-chart",
) -> str:
    """Horizontal bars on a log axis, each with its label above it (readable on narrow screens)."""
    row = 40
    plot_left, plot_right = 12, WIDTH - 96
    height = MARGIN_TOP + row * len(bars) + MARGIN_BOTTOM - 8
    values = _positive([b.value for b in bars]) + ([reference] if reference else [])
    low = min(values) if values else 1.0
    high = max(values) if values else 10.0
    x = LogScale(min(low, 1.0) if reference else low, high, plot_left, plot_right)
    plot_top, plot_bottom = MARGIN_TOP - 8, MARGIN_TOP - 8 + row * len(bars)
    out = _svg_open(chart_id, css, height, title, description)
    out.append('<g class="axis x-axis">')
    for tick in x.ticks():
        px = x(tick)
        out.append(f'<line class="grid" x1="{_num(px)}" y1="{plot_top}" x2="{_num(px)}" y2="{plot_bottom}"/>')
        out.append(
            f'<text x="{_num(px)}" y="{plot_bottom + 14}" text-anchor="middle">{escape(fmt(tick))}</text>'
        )
    out.append(
        f'<text class="axis-label" x="{_num((plot_left + plot_right) / 2)}" y="{height - 6}" '
        f'text-anchor="middle">{escape(value_label)}</text>'
    )
    out.append("</g>")
    origin = x(min(low, 1.0)) if reference else plot_left
    for index, bar in enumerate(bars):
        top = plot_top + row * index
        out.append(f'<g class="bar-row" data-kind="{escape(bar.kind)}">')
        out.append(f'<text class="bar-label" x="{plot_left}" y="{top + 13}">{escape(bar.label)}</text>')
        if bar.value is not None and math.isfinite(bar.value) and bar.value > 0:
            end = x(bar.value)
            note = f" ({bar.note})" if bar.note else ""
            out.append(
                f'<rect class="bar b-{escape(bar.kind)}" x="{_num(min(origin, end))}" y="{top + 18}" '
                f'width="{_num(max(abs(end - origin), 1.5))}" height="14" data-value="{bar.value:.6g}">'
                f"<title>{escape(bar.label)}: {escape(fmt_ratio(bar.value))}{escape(note)}</title></rect>"
            )
            out.append(
                f'<text class="bar-value" x="{_num(max(origin, end) + 4)}" y="{top + 30}">'
                f"{escape(fmt_ratio(bar.value))}</text>"
            )
        else:
            out.append(f'<text class="bar-value" x="{plot_left}" y="{top + 30}">not measured</text>')
        out.append("</g>")
    if reference:
        px = x(reference)
        out.append(_line("reference", px, plot_top - 4, px, plot_bottom))
    out.append("</svg>")
    return "".join(out)


def grouped_bar_chart(
    chart_id: str,
    *,
    title: str,
    description: str,
    groups: Sequence[BarGroup],
    legend: Mapping[str, str],
    value_label: str = "perplexity ÷ baseline (log scale)",
    reference: float | None = 1.0,
    height: int = 300,
    css: str = "grouped-chart",
) -> str:
    """Vertical bars grouped by category (e.g. RTN variants per block size) on a log y axis."""
    plot_left, plot_right = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
    plot_top, plot_bottom = MARGIN_TOP, height - MARGIN_BOTTOM
    values = _positive([b.value for g in groups for b in g.bars]) + ([reference] if reference else [])
    low = min(values) if values else 1.0
    high = max(values) if values else 10.0
    y = LogScale(min(low, 1.0) if reference else low, high, plot_bottom, plot_top)
    out = _svg_open(chart_id, css, height, title, description)
    out += _legend([(f"b-{kind}", label, False) for kind, label in legend.items()], 16)
    out += _y_axis(y, plot_left, plot_right, value_label)
    slot = (plot_right - plot_left) / max(len(groups), 1)
    origin = y(min(low, 1.0)) if reference else plot_bottom
    for index, group in enumerate(groups):
        left = plot_left + slot * index
        width = slot * 0.8 / max(len(group.bars), 1)
        out.append(f'<g class="bar-group" data-group="{escape(group.label)}">')
        for position, bar in enumerate(group.bars):
            if bar.value is None or not math.isfinite(bar.value) or bar.value <= 0:
                continue
            top = y(bar.value)
            bar_x = left + slot * 0.1 + width * position
            note = f" ({bar.note})" if bar.note else ""
            out.append(
                f'<rect class="bar b-{escape(bar.kind)}" data-kind="{escape(bar.kind)}" '
                f'data-value="{bar.value:.6g}" x="{_num(bar_x)}" y="{_num(min(top, origin))}" '
                f'width="{_num(max(width - 1, 1))}" height="{_num(max(abs(origin - top), 1.5))}">'
                f"<title>{escape(group.label)}, {escape(bar.label)}: {escape(fmt_ratio(bar.value))}"
                f"{escape(note)}</title></rect>"
            )
        out.append(
            f'<text x="{_num(left + slot / 2)}" y="{plot_bottom + 16}" text-anchor="middle">'
            f"{escape(group.label)}</text>"
        )
        out.append("</g>")
    if reference:
        py = y(reference)
        out.append(
            f'<line class="reference" x1="{plot_left}" y1="{_num(py)}" x2="{plot_right}" y2="{_num(py)}"/>'
        )
    out.append(_line("baseline-axis", plot_left, plot_bottom, plot_right, plot_bottom))
    out.append("</svg>")
    return "".join(out)


def xy_chart(
    chart_id: str,
    *,
    title: str,
    description: str,
    points: Sequence[tuple[float, float | None]],
    x_label: str,
    value_label: str = "perplexity ÷ baseline (log scale)",
    reference: float | None = 1.0,
    height: int = 260,
    css: str = "xy-chart",
) -> str:
    """One line over a numeric x axis (linear) with a log y axis, e.g. perplexity vs scaling factor."""
    plot_left, plot_right = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
    plot_top, plot_bottom = MARGIN_TOP, height - MARGIN_BOTTOM
    finite = sorted((px, py) for px, py in points if py is not None and math.isfinite(py) and py > 0)
    values = [py for _, py in finite] + ([reference] if reference else [])
    y = LogScale(min(values) if values else 1.0, max(values) if values else 10.0, plot_bottom, plot_top)
    xs = [px for px, _ in finite] or [0.0, 1.0]
    x_lo, x_hi = min(xs), max(xs)
    if x_hi - x_lo < 1e-9:
        x_lo, x_hi = x_lo - 1, x_hi + 1

    def x_of(value: float) -> float:
        return plot_left + 12 + (value - x_lo) / (x_hi - x_lo) * (plot_right - plot_left - 24)

    out = _svg_open(chart_id, css, height, title, description)
    out += _y_axis(y, plot_left, plot_right, value_label)
    out.append('<g class="axis x-axis">')
    out.append(_line("baseline-axis", plot_left, plot_bottom, plot_right, plot_bottom))
    for px, _ in finite:
        out.append(f'<text x="{_num(x_of(px))}" y="{plot_bottom + 16}" text-anchor="middle">{fmt(px)}</text>')
    out.append(
        f'<text class="axis-label" x="{_num((plot_left + plot_right) / 2)}" y="{height - 6}" '
        f'text-anchor="middle">{escape(x_label)}</text>'
    )
    out.append("</g>")
    if reference:
        py = y(reference)
        out.append(
            f'<line class="reference" x1="{plot_left}" y1="{_num(py)}" x2="{plot_right}" y2="{_num(py)}"/>'
        )
    path = " ".join(
        f"{'M' if n == 0 else 'L'}{_num(x_of(px))} {_num(y(py))}" for n, (px, py) in enumerate(finite)
    )
    out.append('<g class="series s-scaling" data-series="scaling">')
    if path:
        out.append(f'<path class="line s-scaling" d="{path}" fill="none"/>')
    for px, py in finite:
        out.append(
            f'<circle class="point" data-x="{px:g}" data-value="{py:.6g}" cx="{_num(x_of(px))}" '
            f'cy="{_num(y(py))}" r="3.5"><title>×{fmt(px)}: {escape(fmt_ratio(py))}</title></circle>'
        )
    out.append("</g></svg>")
    return "".join(out)


def coordinate_strip(
    chart_id: str,
    *,
    title: str,
    description: str,
    num_layers: int,
    rows: Sequence[tuple[str, Sequence[tuple[int, str, str]]]],
) -> str:
    """Where super weights sit in depth: one lane per model, a dot per coordinate (layer, kind, tooltip)."""
    lane = 34
    plot_left, plot_right = 150, WIDTH - MARGIN_RIGHT
    height = MARGIN_TOP + lane * len(rows) + 30
    count = max(num_layers, 1)
    step = (plot_right - plot_left) / count

    def x_of(layer: int) -> float:
        return plot_left + step * (min(layer, count - 1) + 0.5)

    out = _svg_open(chart_id, "coordinate-strip", height, title, description)
    for index, (name, dots) in enumerate(rows):
        y = MARGIN_TOP + lane * index + lane / 2
        out.append(f'<g class="lane" data-lane="{index}">')
        out.append(
            f'<text class="lane-label" x="{plot_left - 8}" y="{_num(y + 4)}" text-anchor="end">'
            f"{escape(name)}</text>"
        )
        out.append(f'<line class="grid" x1="{plot_left}" y1="{_num(y)}" x2="{plot_right}" y2="{_num(y)}"/>')
        for offset, (layer, kind, tooltip) in enumerate(dots):
            jitter = (offset % 3 - 1) * 6
            out.append(
                f'<circle class="dot k-{escape(kind)}" data-layer="{layer}" data-kind="{escape(kind)}" '
                f'cx="{_num(x_of(layer))}" cy="{_num(y + jitter)}" r="5">'
                f"<title>{escape(tooltip)}</title></circle>"
            )
        out.append("</g>")
    axis_y = MARGIN_TOP + lane * len(rows) + 4
    every = max(1, math.ceil(count / 16))
    out.append('<g class="axis x-axis">')
    for layer in range(0, count, every):
        out.append(f'<text x="{_num(x_of(layer))}" y="{axis_y + 12}" text-anchor="middle">{layer}</text>')
    out.append(
        f'<text class="axis-label" x="{plot_left - 8}" y="{axis_y + 12}" text-anchor="end">layer</text>'
    )
    out.append("</g></svg>")
    return "".join(out)
