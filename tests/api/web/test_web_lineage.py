"""The catalog's sources, disputes, lineage and comparisons in headless Chromium."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import expect

from catalog.repositories import record_run
from tests.api.web.conftest import PLANTED_BASE, PLANTED_FINE_TUNE, SMOLLM2_BASE, SMOLLM2_ID, BrowserPage
from tests.documents import sample_detection, sample_validation

pytestmark = pytest.mark.services


def catalog_rows(web: BrowserPage) -> list[str]:
    return web.page.locator("#catalog-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.model)")


def test_model_page_shows_every_source_and_the_dispute(web: BrowserPage) -> None:
    page = web.open("/models/allenai/OLMo-1B-0724-hf")
    table = page.locator("#super-weights-table")
    code_reading = table.locator('tr[data-layer="2"][data-row="1764"][data-col="8041"]')
    table_reading = table.locator('tr[data-layer="1"][data-row="1764"][data-col="8041"]')
    expect(code_reading.locator(".badge.st-disputed")).to_have_text("disputed")
    expect(code_reading.locator(".dispute")).to_contain_text("(1, 1764, 8041)")
    expect(table_reading.locator(".dispute")).to_contain_text("(2, 1764, 8041)")
    code_reading.locator("details.sources summary").click()
    sources = code_reading.locator("details.sources li")
    expect(sources).to_have_count(2)
    expect(sources.nth(0)).to_contain_text("reference code")
    expect(sources.nth(0)).to_contain_text("outliers/model.py")
    expect(sources.nth(0)).to_contain_text("232e4eeb30")
    expect(sources.nth(1)).to_contain_text("detection round 2")
    expect(table_reading.locator('details.sources li[data-kind="paper table"]')).to_have_count(1)
    undisputed = table.locator('tr[data-layer="1"][data-row="1764"][data-col="1710"]')
    expect(undisputed.locator(".badge.st-disputed")).to_have_count(0)
    expect(undisputed.locator("details.sources summary")).to_have_text("4 sources")
    web.screenshot("model-sources-dispute")

    page = web.open("/models/allenai/OLMo-1B")
    expect(page.locator("#super-weights-table .badge.st-doubtful").first).to_be_visible()
    web.assert_clean()


def test_a_build_s_run_shows_on_the_base_model_page(web: BrowserPage) -> None:
    page = web.open(f"/models/{SMOLLM2_BASE}")
    expect(page.locator("#measured-on")).to_contain_text("measured on the Q4_1 build")
    expect(page.locator("#measured-on a")).to_have_attribute("href", f"/models/{SMOLLM2_ID}")
    expect(
        page.locator('#super-weights-table tr[data-layer="11"][data-row="507"][data-col="1229"]')
    ).to_have_count(1)
    expect(page.locator("#derived")).to_contain_text("Q4_1 build")
    expect(page.locator("table.runs")).to_contain_text("Q4_1 build")
    web.screenshot("model-measured-on-build")

    page = web.open(f"/models/{SMOLLM2_ID}")
    expect(page.locator("#lineage")).to_contain_text(f"Q4_1 build of {SMOLLM2_BASE}")
    page.locator("#lineage a", has_text="compare").click()
    page.wait_for_url(re.compile(r"/compare\?a="))
    expect(page.locator("#compare-summary")).to_contain_text("quantized build")
    web.assert_clean()


def test_compare_a_planted_base_and_its_fine_tune(web: BrowserPage) -> None:
    page = web.open(f"/compare?a={PLANTED_BASE}&b={PLANTED_FINE_TUNE}")
    table = page.locator("#compare-table")
    expect(table.locator("tr.k-shared")).to_contain_text("(1, 10, 20)")
    moved = table.locator("tr.k-moved")
    expect(moved).to_contain_text("(3, 30, 50)")
    expect(moved).to_contain_text("(3, 30, 51)")
    expect(page.locator("#compare-summary")).to_contain_text("is a fine-tune of the other")
    expect(page.locator("#compare-summary")).to_contain_text("10 and 10 (the same)")
    drift = page.locator("#drift-table tbody tr")
    expect(drift).to_have_count(2)
    expect(drift.first).to_contain_text("5.00%")
    web.screenshot("compare-lineage")

    page = web.open(f"/models/{PLANTED_BASE}")
    expect(page.locator("#derived")).to_contain_text(PLANTED_FINE_TUNE)
    web.assert_clean()


def test_catalog_filters_on_dispute_source_row_and_reproduction(
    web: BrowserPage, session_factory: Callable[[], Any]
) -> None:
    with session_factory() as session:
        # falcon-7b: a run finds one of its two published coordinates; gemma-7b: its one is inert
        record_run(
            session, None, "tiiuae/falcon-7b", "f" * 40, "main", {}, sample_detection([(3, 2002, 10708)])
        )
        validation = sample_validation({(0, 1995, 21041): "inert"})
        record_run(
            session,
            None,
            "google/gemma-7b",
            "f" * 40,
            "main",
            {},
            sample_detection([(0, 1995, 21041)]),
            validation,
        )
        session.commit()
    page = web.open("/")
    page.select_option("select[name=dispute]", "yes")
    page.click("form.filters button[type=submit]")
    page.wait_for_url(re.compile(r"dispute=yes"))
    assert catalog_rows(web) == ["allenai/OLMo-1B-0724-hf"]
    web.open("/?row=2533")
    assert catalog_rows(web) == ["meta-llama/Llama-2-7b-hf"]
    web.open("/?source=paper+table&layer=3")
    assert catalog_rows(web) == ["huggyllama/llama-30b", "meta-llama/Llama-2-13b-hf"]
    web.open("/?reproduction=reproduced")
    assert catalog_rows(web) == ["tiiuae/falcon-7b"]
    web.open("/?reproduction=not_found")
    assert catalog_rows(web) == ["tiiuae/falcon-7b"]
    web.open("/?reproduction=contradicted")
    assert catalog_rows(web) == ["google/gemma-7b"]
    web.open(f"/?base_model={SMOLLM2_BASE}")
    assert catalog_rows(web) == [SMOLLM2_ID]
    page = web.open("/?dispute=maybe", status=400)
    expect(page.locator(".notice.error")).to_contain_text("dispute")
    web.problems.clear()


def test_a_re_run_with_a_new_detector_version_shows_next_to_the_first_with_its_marks(
    web: BrowserPage, session_factory: Callable[[], Any]
) -> None:
    # after the filter test: these runs confirm nothing and the model has no published entry
    model, kept, dropped, added = "org/versioned-reruns", (1, 2, 3), (4, 5, 6), (7, 8, 9)
    newer = sample_detection([kept, dropped, added], prompt_agreement=2 / 3)
    newer["provenance"]["detector_version"] = "1.1.0"
    with session_factory() as session:
        first = record_run(
            session,
            None,
            model,
            "a" * 40,
            "main",
            {"versions": {"detector": "1.0.0", "validator": "1.0.0"}},
            sample_detection([kept, dropped]),
        ).run_id
        second = record_run(
            session,
            None,
            model,
            "a" * 40,
            "main",
            {"versions": {"detector": "1.1.0", "validator": "1.1.0"}},
            newer,
            sample_validation({dropped: "inert"}),
        ).run_id
        session.commit()
    page = web.open(f"/models/{model}")
    runs = page.locator("table.runs tbody tr")
    expect(runs).to_have_count(2)
    expect(runs.nth(0)).to_contain_text(f"#{second}")
    expect(runs.nth(0)).to_contain_text("1.1.0")
    expect(runs.nth(1)).to_contain_text(f"#{first}")
    expect(runs.nth(1)).to_contain_text("1.0.0")
    history = page.locator("#history-table")
    expect(history.locator("thead th")).to_have_text(["Coordinate", "Published", f"#{second}", f"#{first}"])
    marks = {
        kept: ["reproduced", "reproduced"],
        dropped: ["contradicted", "reproduced"],
        added: ["reproduced", "not found"],
    }
    for coordinates, expected in marks.items():
        cells = history.locator(f'tr[data-coordinate="{",".join(map(str, coordinates))}"] td')
        expect(cells.nth(1)).to_have_text("no")
        for cell, mark in zip(range(2, 4), expected, strict=True):
            expect(cells.nth(cell)).to_contain_text(mark)
            expect(cells.nth(cell)).to_have_class(f"r-{mark.replace(' ', '_')}")
    # the newest run's weights, with the agreement its detection recorded
    row = page.locator('#super-weights-table tr[data-layer="4"][data-row="5"][data-col="6"]')
    expect(row).to_have_attribute("data-status", "inert")
    expect(row.locator('[data-field="prompt_agreement"]')).to_have_text("67%")
    web.assert_clean()
