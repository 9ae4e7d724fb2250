"""Fixtures of the browser tests: a seeded PostgreSQL catalog with one measured SmolLM2 run, the real app
served by uvicorn on a loopback port, and Debian's Chromium driven by Playwright (no browser download)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, Request, sync_playwright
from sqlalchemy.orm import Session

from api.app import create_app
from catalog.db import make_engine, make_session_factory
from catalog.repositories import ApiKeyRepository, record_run
from catalog.seed import load_seed
from catalog.settings import Settings
from contracts.lineage import RelationKind
from contracts.status import SuperWeightStatus
from contracts.validation import CorpusIdentity, FigureKey, Measurement, ValidationDocument, Verdict
from tests.live_server import served
from tests.postgres import migrated_database

CHROMIUM = os.environ.get("SWI_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO_ROOT = Path(__file__).resolve().parents[3]
SCREENSHOTS = REPO_ROOT / "screenshots"
DATA = Path(__file__).parent / "data"

#: the demo model as `swi index` stores it: a local GGUF file, named by its file, pinned by its sha256
SMOLLM2_ID = "local/SmolLM2-135M-Instruct.Q4_1.gguf"
#: the hub model the GGUF file is a build of (`swi index FILE --build-of`)
SMOLLM2_BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_REVISION = "sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SMOLLM2_SUPER_WEIGHT = (11, 507, 1229)
SMOLLM2_CONFIG = {
    "prompt": None,
    "max_super_weights": 8,
    "z_threshold": 3.0,
    "dtype": "float32",
    "validate": True,
    "quantization_checks": True,
}


def smollm2_detection() -> dict[str, Any]:
    """A real `detect()` of SmolLM2-135M-Instruct (Q4_1 GGUF, float32, CPU), recorded as JSON.

    Regenerate with `DetectionResult.to_dict()` of `indexer.detection.detect.detect(smollm2)` when the
    detector's output changes; loading the model costs a minute, so the browser tests read the recording.
    """
    return json.loads((DATA / "smollm2_detection.json").read_text(encoding="utf-8"))


def smollm2_validation() -> dict[str, Any]:
    """A `ValidationDocument` (the contract `indexer.validation.document.validation_document` writes) of
    SmolLM2.

    Its figures, keys, parameters and verdict are the validator's; the perplexities are illustrative (a
    full validation of SmolLM2 takes most of an hour on two cores, the planted model's real recording is
    `tests/data/planted_joint.json`).
    """
    corpus = CorpusIdentity(name="builtin:pydoc_data.topics", sha256="5" * 64, tokens=2048, window=256)
    baseline = 18.7
    coordinates = list(SMOLLM2_SUPER_WEIGHT)
    results: list[Measurement] = []

    def add(experiment: str, key: str, ratio: float, *, at: list[int] | None = None, **params: Any) -> None:
        results.append(
            Measurement(
                experiment=experiment,
                key=FigureKey.parse(key),
                parameters={"key": key, **params},
                metric="perplexity",
                value=round(baseline * ratio, 3),
                baseline=baseline,
                ratio=ratio,
                corpus=corpus,
                coordinates=tuple(at) if at else None,
            )
        )

    add("baseline", "baseline", 1.0)
    add("joint", "zero/joint", 131.2, coordinates=[coordinates])
    add("alone", "zero/alone/11-507-1229", 131.2, at=coordinates, coordinates=[coordinates])
    add("restore_sa", "zero/joint+sa", 1.35)
    add("controls", "control/largest", 1.004, coordinates=[[3, 120, 881]])
    add("controls", "control/random", 1.001, coordinates=[[11, 14, 902]], seed=0)
    for factor, ratio in ((0.0, 131.2), (0.5, 1.17), (1.5, 1.05), (2.0, 1.29), (3.0, 3.26)):
        add("scaling", f"scale/{factor:g}", ratio, factor=factor)
    rtn = {
        4: {
            "tensor": (2.91, 1.92, 1.61),
            "1048576": (2.12, 1.51, 1.33),
            "262144": (1.71, 1.36, 1.21),
            "65536": (1.42, 1.21, 1.12),
            "16384": (1.26, 1.15, 1.08),
            "g128": (1.06, 1.06, 1.05),
        },
        3: {
            "tensor": (38.5, 9.8, 7.9),
            "1048576": (21.3, 6.1, 5.2),
            "262144": (11.9, 4.4, 3.6),
            "65536": (6.3, 3.1, 2.6),
            "16384": (3.9, 2.4, 2.1),
            "g128": (1.48, 1.46, 1.41),
        },
    }
    for bits, by_granularity in rtn.items():
        for granularity, ratios in by_granularity.items():
            for variant, ratio in zip(("plain", "clipped", "holdout"), ratios, strict=True):
                add(
                    "rtn",
                    f"rtn/{bits}bit/{granularity}/{variant}",
                    ratio,
                    bits=bits,
                    granularity=granularity,
                    variant=variant,
                )
    add("w8a8", "w8a8/naive", 1.93, weight_bits=8, activation_bits=8, variant="naive")
    add("w8a8", "w8a8/holdout", 1.02, weight_bits=8, activation_bits=8, variant="holdout")
    results.append(  # not a perplexity: listed with the measurements, never plotted as one
        Measurement(
            experiment="stopwords",
            key=FigureKey(experiment="stopwords"),
            parameters={"after": "zero/joint", "stopwords": 52},
            metric="stopword_mass",
            value=0.412,
            baseline=0.187,
            ratio=2.2,
            corpus=corpus,
        )
    )
    verdict = Verdict(
        layer=coordinates[0],
        row=coordinates[1],
        col=coordinates[2],
        verdict=SuperWeightStatus.CONFIRMED,
        reason="zeroing it alone raises perplexity 131.20x",
        member_of_confirmed_set=True,
        alone_ratio=131.2,
    )
    document = ValidationDocument(model_verdict="confirmed", verdicts=(verdict,), results=tuple(results))
    return document.model_dump(mode="json")


@dataclass
class Enqueued:
    """The app's enqueuer in these tests: records the job ids it was handed (nothing runs them)."""

    ids: list[uuid.UUID] = field(default_factory=list)

    def __call__(self, job_id: uuid.UUID) -> None:
        self.ids.append(job_id)


def record_smollm2(session: Session, **kwargs: Any) -> int:
    """Record the SmolLM2 run the page tests show (real detection, sample validation); returns its id."""
    recorded = record_run(
        session,
        None,
        SMOLLM2_ID,
        SMOLLM2_REVISION,
        None,
        SMOLLM2_CONFIG,
        smollm2_detection(),
        smollm2_validation(),
        **kwargs,
    )
    return recorded.run_id


#: the planted tiny base model and its fine-tune (tests/tiny.py) the compare page shows
PLANTED_BASE, PLANTED_FINE_TUNE = "planted/tiny-base", "planted/tiny-fine-tune"


def record_planted_lineage(session: Session) -> None:
    """Detect the planted base and fine-tune (the real detector, in a second) and record both runs."""
    from indexer.detection.detect import detect
    from tests.tiny import planted_base_and_fine_tune

    base, tuned = planted_base_and_fine_tune()
    for model_id, loaded, parent in ((PLANTED_BASE, base, None), (PLANTED_FINE_TUNE, tuned, PLANTED_BASE)):
        record_run(
            session,
            None,
            model_id,
            "e" * 40,
            "main",
            SMOLLM2_CONFIG,
            detect(loaded).to_dict(),
            base_model=parent,
        )


@dataclass(frozen=True)
class WebCatalog:
    """The seeded catalog the browser tests read."""

    url: str
    api_key: str
    run_id: int


@pytest.fixture(scope="session")
def web_catalog() -> Iterator[WebCatalog]:
    """A fresh PostgreSQL catalog: migrations, the published seed, one SmolLM2 run, a submit key."""
    with migrated_database("swi_web") as url:
        engine = make_engine(url)
        try:
            with make_session_factory(engine)() as session:
                load_seed(session)
                run_id = record_smollm2(
                    session,
                    family="SmolLM2",
                    timings={"load": 15.9, "detect": 0.81, "validate": 1510.0},
                    base_model=SMOLLM2_BASE,
                    relation=RelationKind.QUANTIZED_BUILD,
                )
                record_planted_lineage(session)
                _, secret = ApiKeyRepository(session).create("web-tests", ["submit"])
                session.commit()
        finally:
            engine.dispose()
        yield WebCatalog(url=url, api_key=secret, run_id=run_id)


@pytest.fixture(scope="session")
def enqueued() -> Enqueued:
    """Job ids the app handed to its runner."""
    return Enqueued()


@pytest.fixture(scope="session")
def session_factory(web_catalog: WebCatalog) -> Iterator[Callable[[], Any]]:
    """Sessions on the test catalog (to check and drive job rows as a worker would)."""
    engine = make_engine(web_catalog.url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture(scope="session")
def base_url(web_catalog: WebCatalog, enqueued: Enqueued) -> Iterator[str]:
    """The real app served by uvicorn in a thread on a free loopback port."""
    settings = Settings(database_url=web_catalog.url, auto_migrate=False)
    with served(create_app(settings, enqueuer=enqueued), start_timeout_s=20) as url:
        yield url


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    """Playwright's driver (its own browsers are never downloaded: Debian's Chromium is used)."""
    if not Path(CHROMIUM).is_file():
        raise RuntimeError(
            f"Chromium not found at {CHROMIUM}: install Debian's package "
            "(apt-get update && apt-get install -y chromium) or set SWI_CHROMIUM"
        )
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Headless Chromium, offline: nothing but the app on loopback is reached."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    yield browser
    browser.close()


@dataclass
class Problems:
    """What went wrong in a page: console errors, uncaught exceptions, failed or refused requests."""

    console: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def clear(self) -> None:
        """Forget what was seen so far (e.g. after a page that fails on purpose)."""
        self.console.clear()
        self.exceptions.clear()
        self.requests.clear()

    def all(self) -> list[str]:
        """Every problem seen."""
        return self.console + self.exceptions + self.requests


@dataclass
class BrowserPage:
    """A Playwright page that records every problem, plus the base URL of the app."""

    page: Page
    base_url: str
    problems: Problems

    def open(self, path: str, status: int = 200) -> Page:
        """Navigate to `path`, check the HTTP status, and return the page."""
        response = self.page.goto(self.base_url + path, wait_until="load")
        assert response is not None, path
        assert response.status == status, (path, response.status)
        return self.page

    def assert_clean(self) -> None:
        """No console error, no exception, no failed request so far."""
        assert not self.problems.all(), self.problems.all()

    def screenshot(self, name: str, *, full_page: bool = True) -> Path:
        """Save a screenshot into the git-ignored `screenshots/` folder for people to look at."""
        SCREENSHOTS.mkdir(exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path


def _watch(page: Page, problems: Problems) -> None:
    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.console.append(f"{message.text} ({message.location.get('url', '')})")

    def on_failed(request: Request) -> None:
        problems.requests.append(f"{request.method} {request.url}: {request.failure}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.exceptions.append(str(error)))
    page.on("requestfailed", on_failed)


def _new_page(browser: Browser, base_url: str, **context_options: Any) -> Iterator[BrowserPage]:
    context = browser.new_context(**context_options)
    page = context.new_page()
    problems = Problems()
    _watch(page, problems)
    try:
        yield BrowserPage(page, base_url, problems)
    finally:
        context.close()


@pytest.fixture
def web(browser: Browser, base_url: str) -> Iterator[BrowserPage]:
    """A desktop-sized page."""
    yield from _new_page(browser, base_url, viewport={"width": 1280, "height": 900})


@pytest.fixture
def phone(browser: Browser, base_url: str) -> Iterator[BrowserPage]:
    """A narrow, phone-sized page."""
    yield from _new_page(
        browser, base_url, viewport={"width": 375, "height": 740}, device_scale_factor=2, is_mobile=True
    )


@pytest.fixture
def no_js(browser: Browser, base_url: str) -> Iterator[BrowserPage]:
    """A page with JavaScript disabled."""
    yield from _new_page(
        browser, base_url, viewport={"width": 1024, "height": 800}, java_script_enabled=False
    )
