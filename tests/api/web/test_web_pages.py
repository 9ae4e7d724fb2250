"""The web pages end to end in headless Chromium: catalog, model, compare, job and the submission form."""

from __future__ import annotations

import io
import json
import re
import struct
import uuid
import zipfile
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from playwright.sync_api import expect

from bundles import FORMATS
from catalog.repositories import JobRepository, record_run
from tests.api.web.conftest import (
    SMOLLM2_CONFIG,
    SMOLLM2_ID,
    SMOLLM2_REVISION,
    BrowserPage,
    Enqueued,
    WebCatalog,
    smollm2_detection,
)

pytestmark = pytest.mark.services

SMOLLM2_PAGE = f"/models/{SMOLLM2_ID}"
#: what each bundle download must be: media type and file name ending
BUNDLE_TYPES = {
    "json": ("application/json", ".swi.json"),
    "safetensors": ("application/octet-stream", ".swi.safetensors"),
    "llama.cpp": ("application/zip", ".llama-cpp.zip"),
    "llm-compressor": ("application/yaml", ".llm-compressor.yaml"),
    "gptqmodel": ("application/json", ".gptqmodel.json"),
    "autoround": ("text/x-shellscript", ".autoround.sh"),
    "torchao": ("text/x-python", ".torchao.py"),
}


def catalog_rows(web: BrowserPage) -> list[str]:
    return web.page.locator("#catalog-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.model)")


def test_catalog_lists_filters_and_pages(web: BrowserPage) -> None:
    page = web.open("/")
    expect(page).to_have_title(re.compile("Super-weight catalog"))
    models = catalog_rows(web)
    assert SMOLLM2_ID in models and "huggyllama/llama-7b" in models and len(models) >= 11
    smollm2 = page.locator(f'tr[data-model="{SMOLLM2_ID}"]')
    expect(smollm2.locator("td.layers")).to_have_text("11")
    expect(smollm2.locator(".badge.st-confirmed")).to_have_text("1 confirmed")
    expect(page.locator('tr[data-model="huggyllama/llama-30b"] td.layers')).to_have_text("3, 10")
    web.screenshot("catalog")

    page.select_option("select[name=architecture]", "olmo")
    page.click("form.filters button[type=submit]")
    page.wait_for_url(re.compile(r"architecture=olmo"))
    assert catalog_rows(web) == ["allenai/OLMo-1B", "allenai/OLMo-1B-0724-hf", "allenai/OLMo-7B-0724-hf"]

    web.open("/?status=confirmed")
    assert catalog_rows(web) == [SMOLLM2_ID]
    web.open("/?family=llama+2")
    assert catalog_rows(web) == ["meta-llama/Llama-2-13b-hf", "meta-llama/Llama-2-7b-hf"]
    page.fill("input[name=q]", "mistral")
    page.select_option("select[name=family]", "")
    page.click("form.filters button[type=submit]")
    page.wait_for_url(re.compile(r"q=mistral"))
    assert catalog_rows(web) == ["mistralai/Mistral-7B-v0.1"]

    # Cursor pagination: every model exactly once, in name order, then no next page.
    web.open("/?limit=4")
    seen = catalog_rows(web)
    while page.locator("a[rel=next]").count():
        page.click("a[rel=next]")
        page.wait_for_load_state("load")
        expect(page.locator("a[rel=first]")).to_be_visible()
        seen += catalog_rows(web)
    assert seen == sorted(models)
    web.assert_clean()


def test_catalog_rejects_bad_filters_readably(web: BrowserPage) -> None:
    page = web.open("/?status=bogus&cursor=not-a-cursor", status=400)
    expect(page.locator(".notice.error").first).to_be_visible()
    web.problems.clear()  # the 400 itself is logged by Chromium as a failed resource


def test_model_page_shows_weights_charts_and_provenance(web: BrowserPage, web_catalog: WebCatalog) -> None:
    page = web.open(SMOLLM2_PAGE)
    expect(page).to_have_title(re.compile(re.escape(SMOLLM2_ID)))
    row = page.locator('#super-weights-table tr[data-layer="11"][data-row="507"][data-col="1229"]')
    expect(row).to_have_attribute("data-status", "confirmed")
    expect(row).to_contain_text("×131.2")  # the measurement that confirmed it
    expect(row).to_contain_text("blk.11.ffn_down.weight[1229, 507]")
    # the detector's agreement across its batch of prompts, and where the super activation sits
    detected = smollm2_detection()
    agreement = detected["super_weights"][0]["prompt_agreement"]
    expect(row.locator('[data-field="prompt_agreement"]')).to_have_text(f"{round(agreement * 100)}%")
    flags = detected["super_activation"]
    sits = page.locator("#super-activation")
    expect(sits).to_have_attribute("data-on-first-token", str(flags["on_first_token"]).lower())
    expect(sits).to_have_attribute("data-on-bos", str(flags["on_bos"]).lower())
    expect(sits).to_contain_text("hidden channel 507 at token 0")

    # The per-layer profile, before and after removal: 30 layers, layer 11 marked as the super-weight layer.
    detection = smollm2_detection()
    before_stats = {s["layer"]: s for s in detection["layer_profile"][0]["layers"]}
    after_stats = {s["layer"]: s for s in detection["layer_profile"][-1]["layers"]}
    for chart, stats in (("#chart-profile-before", before_stats), ("#chart-profile-after", after_stats)):
        svg = page.locator(chart)
        expect(svg).to_be_visible()
        expect(svg.locator('rect.sw-layer[data-layer="11"]')).to_have_count(1)
        expect(svg.locator("rect.sw-layer")).to_have_count(1)
        for series, key in (("input", "input_max"), ("output", "output_max")):
            points = svg.locator(f'g[data-series="{series}"] circle.point')
            expect(points).to_have_count(30)
            point = svg.locator(f'g[data-series="{series}"] circle.point[data-layer="11"]')
            value = float(point.get_attribute("data-value") or 0)
            assert value == pytest.approx(stats[11][key], rel=1e-4)
    spike = float(
        page.locator('#chart-profile-before g[data-series="output"] circle[data-layer="11"]').get_attribute(
            "data-value"
        )
        or 0
    )
    removed = float(
        page.locator('#chart-profile-after g[data-series="output"] circle[data-layer="11"]').get_attribute(
            "data-value"
        )
        or 0
    )
    assert spike > 3 * removed  # zeroing the super weight removes most of the spike
    expect(page.locator('#chart-profile-before circle.sw-point[data-layer="11"]')).to_have_count(2)

    activation = page.locator("#chart-super-activation")
    expect(activation.locator("circle.point")).to_have_count(30)
    expect(activation.locator('rect.sw-layer[data-layer="11"]')).to_have_count(1)
    expect(activation).to_contain_text("channel 507")

    # Quality deltas: pruning vs controls, scaling, RTN per block size (both bit widths), W8A8.
    pruning = page.locator("#chart-pruning")
    expect(pruning.locator("rect.bar")).to_have_count(6)
    expect(pruning.locator("rect.bar.b-pruned")).to_have_count(2)
    expect(pruning.locator("rect.bar.b-control")).to_have_count(2)
    expect(pruning.locator("rect.bar.b-restored")).to_have_count(1)
    expect(page.locator("#chart-scaling circle.point")).to_have_count(6)
    for bits in (4, 3):
        rtn = page.locator(f"#chart-rtn-{bits}bit")
        expect(rtn.locator("g.bar-group")).to_have_count(6)
        expect(rtn.locator("rect.bar")).to_have_count(18)
        expect(rtn.locator('g[data-group="1M"] rect.b-holdout')).to_have_count(1)
    expect(page.locator("#chart-w8a8 rect.bar")).to_have_count(2)
    expect(page.locator("#measurements-table tbody tr")).to_have_count(50)
    expect(page.locator("#measurements-table")).to_contain_text("stopword_mass")

    # Bundles and provenance.
    buttons = page.locator("#bundles a.button")
    expect(buttons).to_have_count(len(FORMATS))
    assert buttons.evaluate_all("links => links.map(a => a.dataset.format)") == list(FORMATS)
    provenance = page.locator("#provenance")
    version = detected["provenance"]["detector_version"]  # the recording's detector
    for text in ("Q4_1", "gguf", version, SMOLLM2_REVISION, "torch 2.13.0", "Apple Inc."):
        expect(provenance).to_contain_text(text)
    expect(page.locator("#runs")).to_contain_text(f"#{web_catalog.run_id}")
    web.screenshot("model")
    web.assert_clean()


def test_model_page_of_published_coordinates(web: BrowserPage) -> None:
    page = web.open("/models/huggyllama/llama-30b")
    rows = page.locator("#super-weights-table tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_have_attribute("data-status", "reported")
    expect(rows.first).to_contain_text("arXiv:2411.07191")
    expect(page.locator(".notice")).to_contain_text("Not measured yet")
    expect(page.locator("svg.chart")).to_have_count(0)  # nothing measured, nothing plotted
    expect(page.locator("#bundles a.button")).to_have_count(len(FORMATS))
    web.screenshot("model-reported")
    web.assert_clean()


def test_unknown_model_is_a_readable_404(web: BrowserPage) -> None:
    page = web.open("/models/nobody/nothing", status=404)
    expect(page.locator(".notice.error")).to_contain_text("not in the catalog")
    web.problems.clear()


def _served_formats(base_url: str) -> set[str]:
    """The formats the bundle endpoint accepts, from the app's own OpenAPI schema."""
    schema = httpx.get(base_url + "/openapi.json", timeout=30).json()
    operation = schema["paths"]["/v1/models/{org}/{name}/bundle"]["get"]
    parameter = next(p for p in operation["parameters"] if p["name"] == "format")
    found = parameter["schema"]
    return set(found.get("enum") or [found.get("const")])


def _check_bundle(name: str, body: bytes) -> None:
    marker = b"model.layers.11.mlp.down_proj"
    if name in ("json",):
        manifest = json.loads(body)
        assert [(w["layer"], w["row"], w["col"]) for w in manifest["super_weights"]] == [(11, 507, 1229)]
        assert manifest["revision"] == SMOLLM2_REVISION
    elif name == "safetensors":
        (length,) = struct.unpack("<Q", body[:8])
        header = json.loads(body[8 : 8 + length])
        assert "__metadata__" in header and len(header) > 1
    elif name == "llama.cpp":
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            text = b"".join(archive.read(n) for n in archive.namelist())
        assert b"blk.11.ffn_down" in text
    else:  # tool configs name the module, some as an escaped regular expression
        unescaped = body.replace(b"\\\\", b"").replace(b"\\", b"")
        assert marker in unescaped, (name, body[:300])


def test_bundle_buttons_download_every_format(web: BrowserPage, base_url: str) -> None:
    page = web.open(SMOLLM2_PAGE)
    # A real click on the JSON button downloads the manifest.
    with page.expect_download() as download_info:
        page.click('#bundles a[data-format="json"]')
    download = download_info.value
    assert download.suggested_filename.endswith(".swi.json")
    _check_bundle("json", download.path().read_bytes())

    served = _served_formats(base_url)
    for link in page.locator("#bundles a.button").all():
        name = link.get_attribute("data-format") or ""
        href = link.get_attribute("href") or ""
        assert parse_qs(urlparse(href).query)["revision"] == [SMOLLM2_REVISION]
        assert name in served, f"the bundle endpoint does not serve {name}"
        response = page.request.get(base_url + href)
        assert response.status == 200, (name, response.status, response.text()[:300])
        media_type, suffix = BUNDLE_TYPES[name]
        assert response.headers["content-type"].split(";")[0] == media_type, name
        disposition = response.headers["content-disposition"]
        assert disposition.startswith("attachment;") and disposition.rstrip('"').endswith(suffix), disposition
        _check_bundle(name, response.body())
    web.assert_clean()


def test_compare_page(web: BrowserPage) -> None:
    page = web.open("/compare")
    expect(page).to_have_title(re.compile("Compare"))
    page.fill("input[name=a]", "huggyllama/llama-7b")
    page.fill("input[name=b]", "meta-llama/Llama-2-7b-hf")
    page.click("form.compare-form button[type=submit]")
    page.wait_for_url(re.compile(r"/compare\?a=huggyllama"))
    expect(page).to_have_title(re.compile("Compare huggyllama/llama-7b and meta-llama/Llama-2-7b-hf"))
    table = page.locator("#compare-table")
    expect(table.locator("tr.k-vanished")).to_contain_text("(2, 3968, 7003)")
    # the published Llama-2-7B entries include a replication's (1, 1415, 7890) and late-layer finds
    expect(table.locator("tr.k-appeared").filter(has_text="(1, 2533, 7890)")).to_have_count(1)
    strip = page.locator("#chart-compare")
    expect(strip.locator('circle.k-vanished[data-layer="2"]')).to_have_count(1)
    expect(strip.locator('circle.k-appeared[data-layer="1"]')).to_have_count(2)
    web.screenshot("compare")

    web.open(f"/compare?a={SMOLLM2_ID}&b={SMOLLM2_ID}")
    expect(page.locator("#compare-table tr.k-shared")).to_contain_text("(11, 507, 1229)")
    web.assert_clean()

    page = web.open("/compare?a=huggyllama/llama-7b&b=nobody/nothing", status=404)
    expect(page.locator(".notice.error")).to_contain_text("not in the catalog")
    web.problems.clear()


def test_submission_form_creates_a_job_with_live_status(
    web: BrowserPage,
    web_catalog: WebCatalog,
    enqueued: Enqueued,
    session_factory: Callable[[], Any],
) -> None:
    page = web.open("/jobs/new")
    expect(page).to_have_title(re.compile("Submit a model"))
    page.fill("input[name=model]", "HuggingFaceTB/SmolLM2-135M-Instruct")
    page.fill("input[name=revision]", "main")
    page.fill("input[name=api_key]", web_catalog.api_key)
    web.screenshot("job-form")
    page.click("form.submit-form button[type=submit]")
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]{36}$"))
    job_id = uuid.UUID(page.url.rsplit("/", 1)[-1])
    expect(page).to_have_title(re.compile("HuggingFaceTB/SmolLM2-135M-Instruct"))
    expect(page.locator('[data-field="status"]')).to_have_text("queued")

    # The job row exists, owned by the key, and was handed to the runner after commit.
    with session_factory() as session:
        job = JobRepository(session).get(job_id)
        assert (job.model, job.requested_revision, job.status) == (
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            "main",
            "queued",
        )
        assert job.requester_id is not None and job.config["validate"] is True
    assert job_id in enqueued.ids

    # A worker claims it and reports progress: the open page follows without reloading.
    page.evaluate("window.__same_document = true")
    with session_factory() as session:
        jobs = JobRepository(session)
        assert jobs.claim(job_id) is not None
        jobs.update_progress(job_id, phase="detect", progress=0.4)
        session.commit()
    expect(page.locator('[data-field="phase"]')).to_have_text("detect", timeout=10_000)
    expect(page.locator('[data-field="status"]')).to_have_text("running")
    expect(page.locator('[data-field="progress"]')).to_have_text("40%")
    assert page.evaluate("window.__same_document") is True
    web.screenshot("job-running")

    # It finishes: the page reloads itself and links to the catalog entry.
    with session_factory() as session:
        record_run(
            session,
            job_id,
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            "a" * 40,
            "main",
            SMOLLM2_CONFIG,
            smollm2_detection(),
        )
        session.commit()
    done = page.locator(".notice.ok a")
    expect(done).to_be_visible(timeout=10_000)
    expect(page.locator('[data-field="status"]')).to_have_text("succeeded")
    web.screenshot("job-done")
    done.click()
    page.wait_for_url(re.compile(r"/models/HuggingFaceTB/SmolLM2-135M-Instruct\?run=\d+"))
    expect(page.locator('#chart-profile-before rect.sw-layer[data-layer="11"]')).to_have_count(1)
    web.assert_clean()


def test_submission_form_errors_keep_the_input(web: BrowserPage, session_factory: Callable[[], Any]) -> None:
    page = web.open("/jobs/new?model=org/some-model")
    expect(page.locator("input[name=model]")).to_have_value("org/some-model")
    page.fill("input[name=api_key]", "swi_not_a_real_key")
    with page.expect_navigation():
        page.click("form.submit-form button[type=submit]")
    expect(page.locator(".field-error")).to_contain_text("unknown or revoked")
    expect(page.locator("input[name=model]")).to_have_value("org/some-model")
    expect(page.locator("input[name=api_key]")).to_have_value("")  # a secret is never sent back
    page.fill("input[name=model]", "not a model id")
    page.fill("input[name=api_key]", "whatever")
    with page.expect_navigation():
        page.click("form.submit-form button[type=submit]")
    expect(page.locator("input[name=model][aria-invalid=true]")).to_have_count(1)
    with session_factory() as session:
        models = {job.model for job in JobRepository(session).recent(limit=100)}
    assert "org/some-model" not in models and "not a model id" not in models
    web.problems.clear()  # 401 and 422 answers are logged by Chromium as failed resources


def test_pages_read_without_javascript(no_js: BrowserPage, web_catalog: WebCatalog) -> None:
    page = no_js.open(SMOLLM2_PAGE)
    expect(page.locator('#chart-profile-before rect.sw-layer[data-layer="11"]')).to_have_count(1)
    expect(page.locator("#super-weights-table tbody tr")).to_have_count(1)
    page = no_js.open("/jobs/new")
    page.fill("input[name=model]", "HuggingFaceTB/SmolLM2-360M")
    page.fill("input[name=api_key]", web_catalog.api_key)
    page.click("form.submit-form button[type=submit]")
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]{36}$"))
    # Without scripts the job page refreshes itself.
    assert 'http-equiv="refresh"' in page.content()
    no_js.assert_clean()


@pytest.mark.parametrize(
    "path",
    ["/", SMOLLM2_PAGE, "/compare?a=huggyllama/llama-7b&b=meta-llama/Llama-2-7b-hf", "/jobs/new"],
    ids=["catalog", "model", "compare", "job-form"],
)
def test_narrow_screen_has_no_sideways_scrolling(phone: BrowserPage, path: str) -> None:
    page = phone.open(path)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    expect(page.locator("h1")).to_be_visible()
    name = {"/": "catalog", "/jobs/new": "job-form"}.get(path, "model" if "models" in path else "compare")
    phone.screenshot(f"{name}-narrow")
    phone.assert_clean()


def test_pages_are_self_contained_and_cacheable(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        page = client.get(SMOLLM2_PAGE)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert not re.search(r'(src|href)="(https?:)?//(?!huggingface\.co)', page.text), (
            "no third-party asset"
        )
        again = client.get(SMOLLM2_PAGE, headers={"If-None-Match": page.headers["etag"]})
        assert again.status_code == 304
        css = re.search(r'href="(/static/site\.css\?v=[0-9a-f]+)"', page.text)
        assert css is not None
        asset = client.get(css.group(1))
        assert asset.status_code == 200 and "immutable" in asset.headers["cache-control"]
        assert client.get("/static/../app.py").status_code == 404
        assert client.get("/models").status_code == 308
