"""Detection's prompt agreement and first-token flags reach the catalog, and a migrated catalog derives them.

The planted tiny llamas are detected by the real detector on its default batch of three prompts: one
super weight aimed at the BOS token (every prompt has it: agreement 1.0, on the first token, a BOS), one
aimed at a later token of the deciding prompt only (the other prompts' spikes point elsewhere).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from catalog import migrate
from catalog.db import make_engine, make_session_factory
from catalog.repositories import CoordinateRepository, ModelRepository, record_run
from contracts.jobs import JobConfig, versioned_run_config
from contracts.results import DetectionResult
from contracts.versions import RUN_VERSIONS
from indexer.detection.detect import DetectConfig, detect
from tests.documents import sample_detection
from tests.postgres import temporary_postgres_database
from tests.tiny import plant_super_weight, tiny_model

SHA = "e" * 40
CONFIG = versioned_run_config(JobConfig().as_config(), RUN_VERSIONS)


@pytest.fixture(scope="module")
def detections() -> dict[str, DetectionResult]:
    """The detections, by the catalog model id each is recorded under."""
    on_bos = tiny_model("llama", num_layers=6)
    plant_super_weight(on_bos, layer=1, row=10, col=20)
    later = tiny_model("llama", num_layers=6)
    plant_super_weight(later, layer=1, row=10, col=20, token=3)
    return {
        "org/on-bos": detect(on_bos),
        "org/later-token": detect(later),
        "org/one-prompt": detect(later, DetectConfig(extra_prompts=())),
        # two of three prompts agree (the tiny planted models agree on every prompt)
        "org/two-thirds": _batch_of_three(sample_detection([(1, 2, 3)], prompt_agreement=2 / 3)),
    }


def _batch_of_three(document: dict[str, Any]) -> DetectionResult:
    """The document with the batch of prompts its provenance records, as the detector writes it."""
    document["provenance"]["extra"] = {"prompts": list(DetectConfig().prompts)}
    return DetectionResult.from_dict(document)


def _record_all(session: Session, detections: dict[str, DetectionResult]) -> None:
    for model, detection in detections.items():
        record_run(session, None, model, SHA, "main", CONFIG, detection.to_dict())
    session.commit()


def _stored(session: Session, model: str) -> tuple[float | None, bool | None, bool | None]:
    """The stored (prompt agreement, on first token, on BOS) of the model's one super weight and run."""
    runs = CoordinateRepository(session)
    view = runs.coordinates(ModelRepository(session).get(model))
    (entry,) = view.entries
    activation = view.super_activation
    assert activation is not None
    return entry.weight.prompt_agreement, activation.on_first_token, activation.on_bos


@pytest.mark.services
def test_the_detector_s_agreement_and_flags_are_stored(
    session: Session, detections: dict[str, DetectionResult]
) -> None:
    later = detections["org/later-token"].super_weights[0].prompt_agreement
    assert 0 < later <= 1
    _record_all(session, detections)
    assert _stored(session, "org/on-bos") == (1.0, True, True)
    assert _stored(session, "org/later-token") == (later, False, False)
    assert _stored(session, "org/one-prompt") == (1.0, False, False)
    assert _stored(session, "org/two-thirds") == (pytest.approx(2 / 3), True, True)
    runs = CoordinateRepository(session)
    (history,) = runs.history(ModelRepository(session).get("org/two-thirds"))
    assert [v.prompt_agreement for v in history.verdicts] == [pytest.approx(2 / 3)]


def _downgrade_and_upgrade(url: str) -> None:
    """Take a catalog with runs back to the revision before the columns, and forward again."""
    migrate.downgrade(url, "0004")
    migrate.upgrade(url)


def _check_derived(url: str) -> None:
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            # the flags follow from the activation's token and the provenance's bos_present
            assert _stored(session, "org/on-bos")[1:] == (True, True)
            assert _stored(session, "org/later-token") == (None, False, False)  # a batch: not recorded
            assert _stored(session, "org/one-prompt") == (1.0, False, False)  # one prompt: 1.0 by definition
            # a batch run whose weight sits on every prompt's BOS lost its figure too
            assert _stored(session, "org/on-bos")[0] is None
            assert _stored(session, "org/two-thirds") == (None, True, True)
    finally:
        engine.dispose()


def _migrated_catalog_with_runs(url: str, detections: dict[str, DetectionResult]) -> None:
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            _record_all(session, detections)
    finally:
        engine.dispose()


def test_sqlite_migration_derives_the_flags_of_stored_runs(
    tmp_path: Path, detections: dict[str, DetectionResult]
) -> None:
    url = f"sqlite+pysqlite:///{tmp_path / 'catalog.db'}"
    _migrated_catalog_with_runs(url, detections)
    _downgrade_and_upgrade(url)
    _check_derived(url)


@pytest.mark.services
def test_postgres_migration_derives_the_flags_of_stored_runs(
    pg_admin_url: str, detections: dict[str, DetectionResult]
) -> None:
    with temporary_postgres_database(pg_admin_url, prefix="swi_flags") as url:
        _migrated_catalog_with_runs(url, detections)
        _downgrade_and_upgrade(url)
        _check_derived(url)
