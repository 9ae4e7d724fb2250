"""Lineage on real PostgreSQL: planted base and fine-tune compared, builds on their base, re-runs kept."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from catalog.errors import InvalidInputError
from catalog.repositories import CoordinateRepository, ModelFilter, ModelRepository, record_run
from catalog.seed import load_seed
from contracts.jobs import JobConfig, versioned_run_config
from contracts.lineage import RelationKind
from contracts.versions import RUN_VERSIONS
from indexer.detection.detect import detect
from tests.documents import sample_detection, sample_validation
from tests.tiny import BASE_SUPER_WEIGHTS, FINE_TUNE_SUPER_WEIGHTS, planted_base_and_fine_tune

pytestmark = pytest.mark.services

SHA = "b" * 40
CONFIG = versioned_run_config(JobConfig().as_config(), RUN_VERSIONS)


def test_compare_a_planted_base_and_its_fine_tune(session: Session) -> None:
    base, tuned = planted_base_and_fine_tune()
    record_run(session, None, "org/base", SHA, "main", CONFIG, detect(base).to_dict())
    record_run(
        session, None, "org/tuned", SHA, "main", CONFIG, detect(tuned).to_dict(), base_model="org/base"
    )
    session.commit()
    models, runs = ModelRepository(session), CoordinateRepository(session)
    result = runs.compare(models.get("org/base"), models.get("org/tuned"))
    kept, moved_from = BASE_SUPER_WEIGHTS
    assert result.shared == [kept]
    assert [(m.a, m.b, m.shared) for m in result.moved] == [(moved_from, FINE_TUNE_SUPER_WEIGHTS[1], "row")]
    assert result.vanished == result.appeared == []
    assert result.relation == RelationKind.FINE_TUNE and not result.build
    drift = {d.a: d for d in result.drift}
    assert drift[kept].value_a == pytest.approx(2.0) and drift[kept].value_b == pytest.approx(2.1)
    assert drift[kept].relative == pytest.approx(0.05, rel=1e-3)
    assert result.channels == (10, 10)
    tuned_model = models.get("org/tuned")
    assert (tuned_model.base_model, tuned_model.relation) == ("org/base", "fine-tune")
    assert [m.hub_id for m in models.derived(models.get("org/base"))] == ["org/tuned"]
    assert [s.model.hub_id for s in models.search(ModelFilter(base_model="org/base")).items] == ["org/tuned"]


def test_a_build_s_run_shows_on_its_base_model(session: Session) -> None:
    load_seed(session)
    build = sample_detection([(2, 3968, 7003)])
    build["provenance"]["quantization"] = "Q4_1"
    validation = sample_validation({(2, 3968, 7003): "confirmed"})
    recorded = record_run(
        session,
        None,
        "local/llama-7b.Q4_1.gguf",
        "sha256:" + "c" * 64,
        None,
        CONFIG,
        build,
        validation,
        base_model="huggyllama/llama-7b",
        relation=RelationKind.QUANTIZED_BUILD,
    )
    session.commit()
    models, runs = ModelRepository(session), CoordinateRepository(session)
    base = models.get("huggyllama/llama-7b")
    view = runs.coordinates(base)
    assert view.run is not None and view.run.id == recorded.run_id
    assert view.measured_on is not None and view.measured_on.quantization == "Q4_1"
    (entry,) = view.entries
    assert entry.reproduction == "reproduced" and len(entry.sources) >= 3
    (history,) = runs.history(base)
    assert history.reported and history.latest == "reproduced"
    assert history.verdicts[0].figure == pytest.approx(50.0)  # the zeroing ratio that decided it
    assert [m.relation for m in models.derived(base)] == ["quantized build"]
    with pytest.raises(InvalidInputError):
        models.link_base(base, "huggyllama/llama-7b", RelationKind.MERGE)


def test_a_new_detector_version_is_a_second_run(session: Session) -> None:
    first = record_run(session, None, "org/model", SHA, "main", CONFIG, sample_detection([(1, 2, 3)]))
    newer = {**CONFIG, "versions": {**CONFIG["versions"], "detector": "9.9.9"}}
    second = record_run(session, None, "org/model", SHA, "main", newer, sample_detection([(1, 2, 4)]))
    same = record_run(session, None, "org/model", SHA, "main", newer, sample_detection([(1, 2, 4)]))
    session.commit()
    assert first.created and second.created and first.run_id != second.run_id
    assert not same.created and same.run_id == second.run_id
    runs = CoordinateRepository(session)
    model = ModelRepository(session).get("org/model")
    history = {h.coordinates: [v.reproduction for v in h.verdicts] for h in runs.history(model)}
    assert history == {(1, 2, 3): ["not_found", "reproduced"], (1, 2, 4): ["reproduced", "not_found"]}
