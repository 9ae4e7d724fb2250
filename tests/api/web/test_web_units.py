"""Fast checks of the SVG charts and of the pages on the embedded default (SQLite), without a browser."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

from fastapi.testclient import TestClient

from api.app import create_app
from api.charts import Bar, BarGroup, LogScale, Mark, Series, bar_chart, fmt, grouped_bar_chart, layer_chart
from catalog.db import make_engine, make_session_factory
from catalog.settings import Settings
from tests.api.web.conftest import SMOLLM2_ID, record_smollm2

SVG = "{http://www.w3.org/2000/svg}"


def test_log_scale_maps_decades_and_has_readable_ticks() -> None:
    scale = LogScale(1.0, 24_000.0, 300.0, 0.0)
    assert scale(1.0) == 300.0 and math.isclose(scale(10**4.5), 0.0, abs_tol=1e-9)  # padded to 10^4.5
    ticks = scale.ticks()
    assert ticks[0] == 1.0 and 10_000.0 in ticks
    assert all(math.log10(t).is_integer() for t in ticks)
    narrow = LogScale(1.0, 1.6, 0.0, 100.0).ticks()
    assert 1.0 in narrow and 1.5 in narrow


def test_fmt_is_compact() -> None:
    assert (fmt(24021.94), fmt(5.875732), fmt(0.000012), fmt(None), fmt(math.nan)) == (
        "24,022",
        "5.876",
        "1.2e-05",
        "—",
        "—",
    )


def test_layer_chart_is_valid_svg_with_marked_layers() -> None:
    svg = layer_chart(
        "c",
        title="t <&>",
        description="d",
        layers=list(range(30)),
        series=[Series("input", "in", [1.0 + i for i in range(30)]), Series("output", "out", [None] * 30)],
        marks=[Mark(11, "sw-layer", "super weight (11, 507, 1229)")],
    )
    root = ET.fromstring(svg)  # well-formed, escaped
    assert root.findtext(f"{SVG}title") == "t <&>"
    bands = [r for r in root.iter(f"{SVG}rect") if "sw-layer" in r.get("class", "")]
    assert [b.get("data-layer") for b in bands] == ["11"]
    points = [c for c in root.iter(f"{SVG}circle") if c.get("data-layer") == "11"]
    assert len(points) == 1 and "sw-point" in points[0].get("class", "")


def test_bar_charts_skip_missing_values() -> None:
    root = ET.fromstring(
        bar_chart("b", title="t", description="d", bars=[Bar("a", 2.0, "pruned"), Bar("b", None, "control")])
    )
    assert len([r for r in root.iter(f"{SVG}rect") if "bar" in r.get("class", "")]) == 1
    grouped = ET.fromstring(
        grouped_bar_chart(
            "g",
            title="t",
            description="d",
            groups=[BarGroup("tensor", [Bar("plain", 3.0, "plain"), Bar("holdout", 1.2, "holdout")])],
            legend={"plain": "plain", "holdout": "held out"},
        )
    )
    assert {r.get("data-kind") for r in grouped.iter(f"{SVG}rect")} == {"plain", "holdout"}


def test_pages_on_the_embedded_default(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with TestClient(create_app(settings)) as client:  # the lifespan migrates and seeds the SQLite file
        engine = make_engine(settings.resolved_database_url())
        with make_session_factory(engine)() as session:
            record_smollm2(session)
            session.commit()
        engine.dispose()
        catalog = client.get("/?status=confirmed")
        assert catalog.status_code == 200 and SMOLLM2_ID in catalog.text
        model = client.get(f"/models/{SMOLLM2_ID}")
        assert model.status_code == 200 and 'data-layer="11"' in model.text
        assert client.get("/compare?a=huggyllama/llama-7b&b=meta-llama/Llama-2-7b-hf").status_code == 200
        assert client.get("/jobs/new").status_code == 200
        assert client.get("/models/huggyllama/llama-7b").status_code == 200
