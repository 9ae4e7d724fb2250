"""Repositories on real PostgreSQL: seed, record_run idempotency, statuses, jobs, submissions, listing."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from catalog.db import make_session_factory
from catalog.errors import ConflictError, InvalidInputError, NotFoundError, RateLimitedError
from catalog.models import IndexRun, Job, QualityResult, SuperWeight, utcnow
from catalog.published import published_models
from catalog.repositories import (
    ApiKeyRepository,
    CoordinateRepository,
    JobRepository,
    ModelFilter,
    ModelRepository,
    OutboxRepository,
    record_run,
)
from catalog.seed import load_seed
from contracts.identifiers import config_hash
from tests.catalog.old_seed import CITATION
from tests.documents import sample_detection, sample_validation

pytestmark = pytest.mark.services

SHA = "a" * 40
CONFIG = {"max_super_weights": 8, "validate": True}


def _in_threads(count: int, work: Callable[[], Any]) -> list[Any]:
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work()
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_seed_loads_the_published_coordinates_once(session: Session) -> None:
    first = load_seed(session)
    session.commit()
    second = load_seed(session)
    session.commit()
    assert first.models_added == len(published_models()) == 19
    assert first.coordinates_added == sum(len(m.coordinates) for m in published_models()) == 54
    assert first.sources_added == 95
    assert (second.models_added, second.coordinates_added, second.sources_added) == (0, 0, 0)
    llama = ModelRepository(session).get("huggyllama/llama-7b")
    (weight,) = CoordinateRepository(session).reported(llama)
    assert (weight.layer, weight.row, weight.col, weight.status) == (2, 3968, 7003, "reported")
    assert weight.citation == CITATION
    llama3 = ModelRepository(session).get("meta-llama/Meta-Llama-3-8B")
    assert {w.citation_source for w in CoordinateRepository(session).reported(llama3)} == {"reference code"}
    phi = ModelRepository(session).get("microsoft/Phi-3-mini-4k-instruct")
    phi_entries = CoordinateRepository(session).coordinates(phi).entries
    assert [e.weight.coordinates for e in phi_entries if e.citation_source == "paper table"] == sorted(
        [(2, 525, 808), (2, 1693, 808), (2, 1113, 808), (4, 525, 2723), (4, 1113, 2723), (4, 1693, 2723)]
    )
    # a replication's extra seventh coordinate is kept with its own source
    (extra,) = [e for e in phi_entries if e.citation_source == "replication"]
    assert extra.weight.coordinates == (4, 2046, 2723) and extra.sources[0].evidence is not None


def test_reported_entries_carry_every_source_disputes_and_doubts(session: Session) -> None:
    load_seed(session)
    session.commit()
    models, runs = ModelRepository(session), CoordinateRepository(session)
    olmo = {e.weight.coordinates: e for e in runs.coordinates(models.get("allenai/OLMo-1B-0724-hf")).entries}
    code_reading, table_reading = olmo[(2, 1764, 8041)], olmo[(1, 1764, 8041)]
    assert code_reading.disputed and code_reading.readings == [(1, 1764, 8041)]
    assert table_reading.readings == [(2, 1764, 8041)]
    assert [s.locator.split(":")[0] for s in code_reading.sources] == [
        "mengxiayu/LLMSuperWeight",
        "fabianandresgrob/super_weights",
    ]
    code = code_reading.sources[0]
    assert (code.kind, code.source_file, code.commit) == (
        "reference code",
        "outliers/model.py",
        "232e4eeb3039fb95132d93e8beba38bba28dd9a5",
    )
    assert table_reading.sources[0].kind == "paper table" and table_reading.sources[0].commit is None
    assert not olmo[(1, 1764, 1710)].disputed and len(olmo[(1, 1764, 1710)].sources) == 4
    transfer = runs.coordinates(models.get("allenai/OLMo-1B")).entries
    assert all(e.doubtful for e in transfer) and len(transfer) == 2
    assert not olmo[(1, 1764, 1710)].doubtful

    def ids(**filters: Any) -> list[str]:
        return [s.model.hub_id for s in models.search(ModelFilter(**filters), limit=100).items]

    assert ids(disputed=True) == ["allenai/OLMo-1B-0724-hf"]
    assert "allenai/OLMo-1B-0724-hf" not in ids(disputed=False) and len(ids(disputed=False)) == 18
    assert ids(row=2533) == ["meta-llama/Llama-2-7b-hf"]
    assert ids(source_kind="paper table", layer=1) == [
        "allenai/OLMo-1B-0724-hf",
        "allenai/OLMo-7B-0724-hf",
        "meta-llama/Llama-2-7b-hf",
        "mistralai/Mistral-7B-v0.1",
    ]
    assert "HuggingFaceTB/SmolLM2-1.7B" in ids(source_kind="replication")
    assert ids(base_model="HuggingFaceTB/SmolLM2-1.7B") == ["HuggingFaceTB/SmolLM2-1.7B-Instruct"]


def test_record_run_is_idempotent_by_job_and_by_model_sha_config(session: Session) -> None:
    job = JobRepository(session).submit(model="org/model", config=CONFIG, resolved_sha=SHA).job
    assert job is not None
    session.commit()
    detection = sample_detection([(1, 5, 7), (2, 5, 9)])
    validation = sample_validation({(1, 5, 7): "confirmed", (2, 5, 9): "inert"})
    first = record_run(session, job.id, "org/model", SHA, "main", CONFIG, detection, validation)
    session.commit()
    again = record_run(session, job.id, "org/model", SHA, "main", CONFIG, detection, validation)
    without_job = record_run(session, None, "org/model", SHA, "main", CONFIG, detection, validation)
    session.commit()
    assert first.created and not again.created and not without_job.created
    assert first.run_id == again.run_id == without_job.run_id
    assert session.scalar(select(func.count()).select_from(IndexRun)) == 1
    assert session.scalar(select(func.count()).select_from(SuperWeight)) == 2
    assert session.scalar(select(func.count()).select_from(QualityResult)) == 3
    session.refresh(job)
    assert (job.status, job.run_id, job.progress) == ("succeeded", first.run_id, 1.0)

    other_config = record_run(session, None, "org/model", SHA, None, {**CONFIG, "validate": False}, detection)
    assert other_config.created and other_config.run_id != first.run_id


def test_concurrent_record_run_creates_one_run(pg_engine: Engine) -> None:
    sessions = make_session_factory(pg_engine)
    detection = sample_detection([(1, 5, 7)])

    def work() -> int:
        with sessions() as session:
            recorded = record_run(session, None, "org/race", SHA, "main", CONFIG, detection)
            session.commit()
            return recorded.run_id

    results = _in_threads(4, work)
    assert all(isinstance(r, int) for r in results), results
    assert len(set(results)) == 1
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(IndexRun)) == 1


def test_statuses_reproduction_and_decisive_results(session: Session) -> None:
    load_seed(session)
    detection = sample_detection([(2, 3968, 7003), (3, 3968, 100)])
    validation = sample_validation({(2, 3968, 7003): "confirmed"})
    record_run(session, None, "huggyllama/llama-7b", SHA, "main", CONFIG, detection, validation)
    session.commit()
    model = ModelRepository(session).get("huggyllama/llama-7b")
    view = CoordinateRepository(session).coordinates(model)
    by_coordinates = {e.weight.coordinates: e for e in view.entries}
    confirmed = by_coordinates[(2, 3968, 7003)]
    assert confirmed.weight.status == "confirmed"
    assert confirmed.reproduction == "reproduced" and confirmed.citation == CITATION
    assert [r.metric for r in confirmed.decided_by] == ["perplexity"]
    assert by_coordinates[(3, 3968, 100)].weight.status == "candidate"
    assert by_coordinates[(3, 3968, 100)].reproduction is None

    contradicting = sample_detection([(5, 1, 1)])
    record_run(session, None, "meta-llama/Llama-2-7b-hf", SHA, "main", CONFIG, contradicting)
    model = ModelRepository(session).get("meta-llama/Llama-2-7b-hf")
    entries = {e.weight.coordinates: e for e in CoordinateRepository(session).coordinates(model).entries}
    assert entries[(1, 2533, 7890)].source == "reported"
    assert entries[(1, 2533, 7890)].reproduction == "not_found"
    unmeasured = ModelRepository(session).get("mistralai/Mistral-7B-v0.1")
    unmeasured_entries = CoordinateRepository(session).coordinates(unmeasured).entries
    assert {e.reproduction for e in unmeasured_entries} == {"unverified"}


def test_coordinates_at_a_revision(session: Session) -> None:
    old, new = "b" * 40, "c" * 40
    record_run(session, None, "org/model", old, "v1", CONFIG, sample_detection([(1, 1, 1)]))
    record_run(session, None, "org/model", new, "main", CONFIG, sample_detection([(2, 2, 2)]))
    model = ModelRepository(session).get("org/model")
    runs = CoordinateRepository(session)
    assert [e.weight.coordinates for e in runs.coordinates(model).entries] == [(2, 2, 2)]
    assert [e.weight.coordinates for e in runs.coordinates(model, old).entries] == [(1, 1, 1)]
    assert [e.weight.coordinates for e in runs.coordinates(model, "v1").entries] == [(1, 1, 1)]
    with pytest.raises(NotFoundError):
        runs.coordinates(model, "d" * 40)


def test_compare_shared_moved_vanished_appeared(session: Session) -> None:
    record_run(
        session, None, "org/base", SHA, None, CONFIG, sample_detection([(1, 10, 20), (2, 30, 40), (3, 5, 5)])
    )
    record_run(
        session, None, "org/tuned", SHA, None, CONFIG, sample_detection([(1, 10, 20), (4, 30, 41), (6, 6, 6)])
    )
    models = ModelRepository(session)
    result = CoordinateRepository(session).compare(models.get("org/base"), models.get("org/tuned"))
    assert result.shared == [(1, 10, 20)]
    assert [(m.a, m.b, m.shared) for m in result.moved] == [((2, 30, 40), (4, 30, 41), "row")]
    assert result.vanished == [(3, 5, 5)]
    assert result.appeared == [(6, 6, 6)]


def test_record_run_rejects_bad_documents(session: Session) -> None:
    with pytest.raises(InvalidInputError):
        record_run(session, None, "../etc/passwd", SHA, None, CONFIG, sample_detection())
    with pytest.raises(InvalidInputError):
        record_run(session, None, "org/model", "main", None, CONFIG, sample_detection())
    with pytest.raises(InvalidInputError):
        record_run(session, None, "org/model", SHA, None, CONFIG, {"super_weights": [{"layer": "x"}]})
    with pytest.raises(NotFoundError):
        record_run(session, uuid.uuid4(), "org/model", SHA, None, CONFIG, sample_detection())


def test_claim_is_atomic_and_single(pg_engine: Engine) -> None:
    sessions = make_session_factory(pg_engine)
    with sessions() as session:
        job = JobRepository(session).submit(model="org/model", config=CONFIG).job
        assert job is not None
        session.commit()
        job_id = job.id

    def claim() -> bool:
        with sessions() as session:
            claimed = JobRepository(session).claim(str(job_id))
            session.commit()
            return claimed is not None

    assert sorted(_in_threads(6, claim)) == [False] * 5 + [True]
    with sessions() as session:
        stored = JobRepository(session).get(job_id)
        assert (stored.status, stored.attempts, stored.phase) == ("running", 1, "claimed")
        assert stored.started_at is not None and stored.started_at.tzinfo is not None


def test_job_life_cycle_progress_retry_fail_cancel_sweep(session: Session) -> None:
    jobs = JobRepository(session)
    job = jobs.submit(model="org/model", config=CONFIG, max_attempts=2).job
    assert job is not None
    session.commit()
    outbox = OutboxRepository(session)
    assert outbox.reserve_for_enqueue(grace_s=0, resend_after_s=60) == [job.id]
    assert outbox.reserve_for_enqueue(grace_s=0, resend_after_s=60) == []  # reserved: sent once
    outbox.release_enqueue(job.id)
    assert outbox.reserve_for_enqueue(grace_s=0, resend_after_s=60) == [job.id]
    outbox.release_enqueue(job.id)
    outbox.mark_enqueued(job.id)
    assert outbox.reserve_for_enqueue(grace_s=0, resend_after_s=60) == []
    assert jobs.update_progress(job.id, phase="detect", progress=0.5) is False  # not running yet
    assert jobs.claim(job.id) is not None
    assert jobs.update_progress(job.id, phase="detect", progress=0.5) is True
    jobs.set_resolved_sha(job.id, SHA)
    assert jobs.retry_or_fail(job.id, "network blip", delay_s=30) == "retry"
    session.commit()
    session.refresh(job)
    assert job.run_after is not None and job.run_after > utcnow()
    assert outbox.reserve_for_enqueue(grace_s=0, resend_after_s=60) == []  # backing off
    assert jobs.claim(job.id) is not None
    # The worker dies: its heartbeat goes stale and it is out of attempts -> failed.
    session.execute(update(Job).where(Job.id == job.id).values(heartbeat_at=utcnow() - timedelta(hours=1)))
    requeued, failed = jobs.requeue_stale(stale_after_s=60)
    session.commit()
    assert (requeued, failed) == ([], [job.id])
    assert jobs.claim(job.id) is None

    second = jobs.submit(model="org/other", config=CONFIG).job
    assert second is not None
    assert jobs.claim(second.id) is not None
    session.execute(update(Job).where(Job.id == second.id).values(heartbeat_at=utcnow() - timedelta(hours=1)))
    assert jobs.requeue_stale(stale_after_s=60) == ([second.id], [])
    session.commit()
    assert jobs.cancel(second.id).status == "cancelled"
    assert jobs.claim(second.id) is None

    third = jobs.submit(model="org/third", config=CONFIG).job
    assert third is not None
    jobs.fail(third.id, "model not found: org/third")
    session.commit()
    session.refresh(third)
    assert (third.status, third.last_error) == ("failed", "model not found: org/third")
    with pytest.raises(ConflictError, match="already failed"):
        jobs.cancel(third.id)  # a finished job stays as it ended
    assert jobs.cancel(second.id).status == "cancelled"  # twice: nothing changes
    assert jobs.counts_by_status() == {"failed": 2, "cancelled": 1}


def test_submission_dedup_idempotency_and_rate_limit(session: Session) -> None:
    keys = ApiKeyRepository(session)
    key, _ = keys.create("tester", ["submit"])
    jobs = JobRepository(session)
    first = jobs.submit(model="org/model", config=CONFIG, requester_id=key.id, idempotency_key="k1")
    same_key = jobs.submit(model="org/model", config=CONFIG, requester_id=key.id, idempotency_key="k1")
    same_body = jobs.submit(model="org/model", config=CONFIG, requester_id=key.id)
    assert first.created and not same_key.created and not same_body.created
    assert first.job is not None and same_key.job is not None and same_body.job is not None
    assert first.job.id == same_key.job.id == same_body.job.id
    with pytest.raises(ConflictError):
        jobs.submit(model="org/other", config=CONFIG, requester_id=key.id, idempotency_key="k1")

    record_run(session, None, "org/done", SHA, None, CONFIG, sample_detection())
    done = jobs.submit(model="org/done", config=CONFIG, resolved_sha=SHA, requester_id=key.id)
    assert not done.created and done.job is None and done.run_id is not None

    for index in range(2):
        jobs.submit(model=f"org/limited-{index}", config=CONFIG, requester_id=key.id, rate_limit=(3, 60))
    with pytest.raises(RateLimitedError) as raised:
        jobs.submit(model="org/limited-9", config=CONFIG, requester_id=key.id, rate_limit=(3, 60))
    assert 1 <= raised.value.retry_after_s <= 60


def test_concurrent_identical_submissions_give_one_job(pg_engine: Engine) -> None:
    sessions = make_session_factory(pg_engine)

    def submit() -> uuid.UUID:
        with sessions() as session:
            outcome = JobRepository(session).submit(
                model="org/race", config=CONFIG, requested_revision="main"
            )
            session.commit()
            assert outcome.job is not None
            return outcome.job.id

    results = _in_threads(8, submit)
    assert all(isinstance(r, uuid.UUID) for r in results), results
    assert len(set(results)) == 1
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 1


def test_model_listing_filters_sort_and_cursor(session: Session) -> None:
    load_seed(session)
    record_run(
        session, None, "org/measured", SHA, None, CONFIG, sample_detection([(7, 1, 1)], model_type="qwen2")
    )
    record_run(session, None, "org/empty", SHA, None, CONFIG, sample_detection([]))
    session.commit()
    models = ModelRepository(session)
    everything = [s.model.hub_id for s in models.search(ModelFilter(), limit=100).items]
    assert everything == sorted(everything) and len(everything) == 21

    collected: list[str] = []
    cursor = None
    while True:
        page = models.search(ModelFilter(), sort="-updated", cursor=cursor, limit=5)
        collected += [s.model.hub_id for s in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(collected) == sorted(everything) and len(collected) == len(set(collected))
    assert collected[0] in {"org/empty", "org/measured"}

    def ids(**filters: Any) -> set[str]:
        return {s.model.hub_id for s in models.search(ModelFilter(**filters), limit=100).items}

    assert ids(architecture="qwen2") == {"org/measured", "Qwen/Qwen2.5-3B"}
    assert ids(family="olmo") == {"allenai/OLMo-1B", "allenai/OLMo-1B-0724-hf", "allenai/OLMo-7B-0724-hf"}
    assert ids(layer=24) == {"allenai/OLMo-7B-0724-hf"}
    assert ids(status="candidate") == {"org/measured"}
    assert ids(has_super_weights=False) == {"org/empty"}
    assert ids(q="PHI-3") == {"microsoft/Phi-3-mini-4k-instruct"}
    assert ids(q="100%_") == set()
    with pytest.raises(InvalidInputError):
        models.search(ModelFilter(), cursor="not-a-cursor")
    with pytest.raises(InvalidInputError):
        models.search(ModelFilter(), sort="name", cursor=page.next_cursor or "eyJzIjoiLXVwZGF0ZWQifQ")


def test_api_keys_are_hashed_scoped_and_revocable(session: Session) -> None:
    keys = ApiKeyRepository(session)
    key, secret = keys.create("alice", ["submit"])
    session.commit()
    assert secret.startswith("swi_") and secret not in (key.key_hash, key.prefix)
    assert keys.authenticate(secret) is not None
    assert keys.authenticate(secret + "x") is None
    keys.revoke(key.id)
    assert keys.authenticate(secret) is None
    with pytest.raises(InvalidInputError):
        keys.create("bob", ["root"])


def test_config_hash_is_canonical() -> None:
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
