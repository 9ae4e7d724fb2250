"""The REST API over real HTTP (uvicorn on loopback) against real PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from catalog.db import make_engine, make_session_factory
from catalog.repositories import JobRepository, record_run
from catalog.settings import Settings
from contracts.lineage import RelationKind
from tests.documents import sample_detection, sample_validation

pytestmark = pytest.mark.services

SHA = "f" * 40
PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["type"]
    return body


def _record(settings: Settings, model: str, coordinates: list[tuple[int, int, int]], **kwargs: Any) -> int:
    engine = make_engine(settings.resolved_database_url())
    try:
        with make_session_factory(engine)() as session:
            config = kwargs.pop("config", {"validate": True})
            detection = kwargs.pop("detection", None) or sample_detection(coordinates)
            recorded = record_run(session, None, model, SHA, "main", config, detection, **kwargs)
            session.commit()
            return recorded.run_id
    finally:
        engine.dispose()


def test_health_ready_and_metrics(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["database"]["ok"] is True
    http.get("/v1/models")
    metrics = http.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'swi_http_requests_total{method="GET",route="/v1/models",status="200"} 1' in metrics.text
    assert "swi_catalog_models 19.0" in metrics.text
    assert "# TYPE swi_http_request_duration_seconds histogram" in metrics.text


def test_readyz_reports_an_unreachable_broker(settings: Settings) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app

    broken = settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0", "readiness_timeout_s": 0.5})
    with TestClient(create_app(broken)) as client:
        body = assert_problem(client.get("/readyz"), 503)
        assert "broker" in body["detail"]


def test_auth_matrix(http: httpx.Client, make_key: Callable[..., str], enqueued: Any) -> None:
    body = {"model": "org/auth-model"}
    missing = assert_problem(http.post("/v1/submissions", json=body), 401)
    assert "Bearer" in missing["detail"]
    unknown = http.post("/v1/submissions", json=body, headers={"Authorization": "Bearer swi_nope"})
    assert_problem(unknown, 401)
    assert unknown.headers["www-authenticate"].startswith("Bearer")
    assert_problem(http.post("/v1/submissions", json=body, headers={"Authorization": "Basic abc"}), 401)
    admin_only = make_key("admin")
    submit_key = make_key("submit")
    accepted = http.post("/v1/submissions", json=body, headers={"Authorization": f"Bearer {submit_key}"})
    assert accepted.status_code == 202, accepted.text
    job = accepted.json()["job"]
    assert accepted.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and accepted.json()["created"] is True
    assert [str(i) for i in enqueued.ids] == [job["id"]]
    # admin implies submit; the same body returns the same job
    again = http.post("/v1/submissions", json=body, headers={"Authorization": f"Bearer {admin_only}"})
    assert again.status_code == 202 and again.json()["job"]["id"] == job["id"] and not again.json()["created"]


def test_wrong_scope_is_403(http: httpx.Client, settings: Settings) -> None:
    from catalog.models import ApiKey
    from catalog.repositories.keys import hash_key

    engine = make_engine(settings.resolved_database_url())
    with make_session_factory(engine)() as session:
        # a key whose only scope is not `submit` (e.g. a future read-only scope)
        session.add(ApiKey(prefix="readonly", key_hash=hash_key("swi_readonly"), owner="r", scopes=["read"]))
        session.commit()
    engine.dispose()
    response = http.post(
        "/v1/submissions", json={"model": "org/x"}, headers={"Authorization": "Bearer swi_readonly"}
    )
    assert "submit" in assert_problem(response, 403)["detail"]


def test_submission_validation_idempotency_conflict_and_rate_limit(
    http: httpx.Client, make_key: Callable[..., str]
) -> None:
    headers = {"Authorization": f"Bearer {make_key('submit')}"}
    for bad in (
        {"model": "../../etc/passwd"},
        {"model": "/abs/path"},
        {"model": "org/a..b"},
        {"model": "x"},
        {"model": "org/m", "revision": "../main"},
        {"model": "org/m", "options": {"unknown": 1}},
        {"model": "org/m", "options": {"max_super_weights": 0}},
    ):
        assert_problem(http.post("/v1/submissions", json=bad, headers=headers), 422)
    assert_problem(http.post("/v1/submissions", content=b"{not json", headers=headers), 422)

    keyed = {**headers, "Idempotency-Key": "request-1"}
    first = http.post("/v1/submissions", json={"model": "org/one"}, headers=keyed)
    replay = http.post("/v1/submissions", json={"model": "org/one"}, headers=keyed)
    assert first.status_code == replay.status_code == 202
    assert first.json()["job"]["id"] == replay.json()["job"]["id"]
    assert_problem(http.post("/v1/submissions", json={"model": "org/two"}, headers=keyed), 409)

    statuses = [
        http.post("/v1/submissions", json={"model": f"org/r{i}"}, headers=headers).status_code
        for i in range(6)
    ]
    assert statuses[:4] == [202] * 4  # the limit is 5 per window; org/one used one
    limited = http.post("/v1/submissions", json={"model": "org/r9"}, headers=headers)
    body = assert_problem(limited, 429)
    assert int(limited.headers["retry-after"]) >= 1 and body["retry_after"] >= 1
    # A replay never counts against the limit.
    assert http.post("/v1/submissions", json={"model": "org/one"}, headers=keyed).status_code == 202


def test_enqueue_failure_still_answers_202(
    http: httpx.Client, make_key: Callable[..., str], enqueued: Any
) -> None:
    enqueued.broken = True
    response = http.post(
        "/v1/submissions",
        json={"model": "org/offline"},
        headers={"Authorization": f"Bearer {make_key('submit')}"},
    )
    assert response.status_code == 202
    job = http.get(response.headers["location"]).json()
    assert job["status"] == "queued"


def test_cancel_a_job(http: httpx.Client, settings: Settings, make_key: Callable[..., str]) -> None:
    owner = {"Authorization": f"Bearer {make_key('submit')}"}
    other = {"Authorization": f"Bearer {make_key('submit', owner='someone-else')}"}
    admin = {"Authorization": f"Bearer {make_key('admin', owner='ops')}"}
    job_id = http.post("/v1/submissions", json={"model": "org/to-cancel"}, headers=owner).json()["job"]["id"]
    url = f"/v1/jobs/{job_id}/cancel"
    assert_problem(http.post(url), 401)
    assert_problem(http.post(url, headers=other), 403)
    assert_problem(http.post(f"/v1/jobs/{uuid.uuid4()}/cancel", headers=owner), 404)
    assert_problem(http.post("/v1/jobs/not-a-job/cancel", headers=owner), 422)
    cancelled = http.post(url, headers=owner)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["finished_at"] is not None
    assert http.post(url, headers=owner).json()["status"] == "cancelled"  # twice: nothing changes
    assert http.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"

    # a cancelled job no longer stands for its submission: the same one makes a new job
    again = http.post("/v1/submissions", json={"model": "org/to-cancel"}, headers=owner)
    assert again.status_code == 202 and again.json()["job"]["id"] != job_id
    # an admin key may cancel anyone's job; a finished job cannot be cancelled
    assert http.post(f"/v1/jobs/{again.json()['job']['id']}/cancel", headers=admin).status_code == 200
    third = http.post("/v1/submissions", json={"model": "org/to-cancel"}, headers=owner).json()["job"]["id"]
    engine = make_engine(settings.resolved_database_url())
    try:
        with make_session_factory(engine)() as session:
            JobRepository(session).fail(third, "it broke")
            session.commit()
    finally:
        engine.dispose()
    body = assert_problem(http.post(f"/v1/jobs/{third}/cancel", headers=owner), 409)
    assert "already failed" in body["detail"]


def test_concurrent_identical_submissions_give_one_job(
    http: httpx.Client, live_url: str, make_key: Callable[..., str]
) -> None:
    headers = {"Authorization": f"Bearer {make_key('submit')}"}
    barrier = threading.Barrier(8)
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def submit() -> None:
        with httpx.Client(base_url=live_url, timeout=30) as client:
            barrier.wait()
            response = client.post(
                "/v1/submissions", json={"model": "org/race", "revision": SHA}, headers=headers
            )
        with lock:
            results.append(response)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [r.status_code for r in results] == [202] * 8
    assert len({r.json()["job"]["id"] for r in results}) == 1
    assert sum(r.json()["created"] for r in results) == 1
    job = results[0].json()["job"]
    assert job["resolved_sha"] == SHA


def test_submission_of_an_indexed_model_returns_the_run(
    http: httpx.Client, settings: Settings, make_key: Callable[..., str]
) -> None:
    from contracts.jobs import SubmissionOptions, versioned_run_config
    from contracts.versions import RUN_VERSIONS

    # what a worker stores for the default options: the settings and the code versions
    config = versioned_run_config(SubmissionOptions.model_validate({}).as_config(), RUN_VERSIONS)
    run_id = _record(settings, "org/indexed", [(1, 2, 3)], config=config)
    response = http.post(
        "/v1/submissions",
        json={"model": "org/indexed", "revision": SHA},
        headers={"Authorization": f"Bearer {make_key('submit')}"},
    )
    assert response.status_code == 200
    assert response.json()["run_id"] == run_id and response.headers["location"] == f"/v1/runs/{run_id}"


def test_models_listing_pagination_filters_and_etag(http: httpx.Client) -> None:
    first = http.get("/v1/models", params={"limit": 4})
    assert first.status_code == 200
    link = first.headers["link"]
    assert link.endswith('rel="next"')
    next_url = link[1 : link.index(">")]
    seen = [m["id"] for m in first.json()["items"]]
    while next_url:
        page = http.get(next_url)
        seen += [m["id"] for m in page.json()["items"]]
        next_url = page.headers["link"][1 : page.headers["link"].index(">")] if "link" in page.headers else ""
        assert (page.json()["next_cursor"] is None) == (next_url == "")
    assert len(seen) == len(set(seen)) == 19
    assert {m["id"] for m in http.get("/v1/models", params={"family": "Llama 2"}).json()["items"]} == {
        "meta-llama/Llama-2-7b-hf",
        "meta-llama/Llama-2-13b-hf",
    }
    assert [m["id"] for m in http.get("/v1/models", params={"layer": 10}).json()["items"]] == [
        "huggyllama/llama-30b"
    ]
    assert http.get("/v1/models", params={"status": "confirmed"}).json()["items"] == []

    def ids(**params: Any) -> list[str]:
        return [m["id"] for m in http.get("/v1/models", params=params).json()["items"]]

    assert ids(row=2533) == ["meta-llama/Llama-2-7b-hf"]
    assert ids(disputed="true") == ["allenai/OLMo-1B-0724-hf"]
    assert ids(base_model="HuggingFaceTB/SmolLM2-1.7B") == ["HuggingFaceTB/SmolLM2-1.7B-Instruct"]
    replicated = ids(source_kind="replication")
    assert len(replicated) == 13 and "google/gemma-7b" not in replicated
    paged = http.get("/v1/models", params={"source_kind": "replication", "limit": 5})
    assert "source_kind=replication" in paged.headers["link"] and len(paged.json()["items"]) == 5
    again = http.get(
        "/v1/models",
        params={"source_kind": "replication", "limit": 5},
        headers={"If-None-Match": paged.headers["etag"]},
    )
    assert again.status_code == 304
    assert_problem(http.get("/v1/models", params={"source_kind": "blog"}), 422)
    assert_problem(http.get("/v1/models", params={"base_model": "../etc"}), 422)
    assert_problem(http.get("/v1/models", params={"cursor": "garbage"}), 400)
    assert_problem(http.get("/v1/models", params={"sort": "size"}), 422)
    assert_problem(http.get("/v1/models", params={"limit": 100000}), 422)

    etag = first.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    cached = http.get("/v1/models", params={"limit": 4}, headers={"If-None-Match": etag})
    assert cached.status_code == 304 and cached.content == b"" and cached.headers["etag"] == etag
    assert (
        http.get("/v1/models", params={"limit": 4}, headers={"If-None-Match": '"other"'}).status_code == 200
    )
    assert (
        http.get("/v1/models", params={"limit": 4}, headers={"If-None-Match": f"W/{etag}"}).status_code == 304
    )


def test_model_super_weights_run_report_bundle(http: httpx.Client, settings: Settings) -> None:
    run_id = _record(
        settings,
        "huggyllama/llama-7b",
        [(2, 3968, 7003), (3, 1, 1)],
        validation=sample_validation({(2, 3968, 7003): "confirmed", (3, 1, 1): "inert"}),
    )
    model = http.get("/v1/models/huggyllama/llama-7b").json()
    assert model["latest_revision"]["sha"] == SHA and [r["id"] for r in model["runs"]] == [run_id]
    weights = http.get("/v1/models/huggyllama/llama-7b/super-weights")
    body = weights.json()
    assert body["run_id"] == run_id and body["super_activation"]["channel"] == 3968
    confirmed = body["super_weights"][0]
    assert (confirmed["layer"], confirmed["row"], confirmed["col"], confirmed["status"]) == (
        2,
        3968,
        7003,
        "confirmed",
    )
    assert confirmed["reproduction"] == "reproduced" and confirmed["decided_by"][0]["ratio"] == 50.0
    assert (
        http.get(
            "/v1/models/huggyllama/llama-7b/super-weights", headers={"If-None-Match": weights.headers["etag"]}
        ).status_code
        == 304
    )
    assert http.get("/v1/models/huggyllama/llama-7b/super-weights", params={"revision": SHA}).json() == body
    assert_problem(
        http.get("/v1/models/huggyllama/llama-7b/super-weights", params={"revision": "0" * 40}), 404
    )
    assert_problem(
        http.get("/v1/models/huggyllama/llama-7b/super-weights", params={"revision": "../main"}), 422
    )

    report = http.get(f"/v1/runs/{run_id}").json()
    assert report["model"] == "huggyllama/llama-7b" and len(report["quality_results"]) == 3
    assert [it["iteration"] for it in report["layer_profile"]] == [0, 1]
    assert report["layer_profile"][1]["removed"] == [[2, 3968, 7003], [3, 1, 1]]
    assert report["provenance"]["detector_version"] == "1.0.0"
    assert_problem(http.get("/v1/runs/999999"), 404)
    assert_problem(http.get("/v1/runs/abc"), 422)

    bundle = http.get("/v1/models/huggyllama/llama-7b/bundle", params={"format": "json"})
    assert bundle.status_code == 200 and "attachment" in bundle.headers["content-disposition"]
    manifest = bundle.json()
    assert manifest["revision"] == SHA and len(manifest["sha256"]) == 64
    assert manifest["super_weights"][0]["value_float32"] == -1.5
    assert http.get(bundle.url, headers={"If-None-Match": bundle.headers["etag"]}).status_code == 304
    assert_problem(http.get("/v1/models/huggyllama/llama-7b/bundle", params={"format": "gguf"}), 422)


def test_compare_and_not_found(http: httpx.Client, settings: Settings) -> None:
    _record(settings, "meta-llama/Llama-2-7b-chat-hf", [(1, 2533, 7890), (2, 2533, 100)])
    result = http.get(
        "/v1/compare", params={"a": "meta-llama/Llama-2-7b-hf", "b": "meta-llama/Llama-2-7b-chat-hf"}
    )
    body = result.json()
    assert body["a"]["basis"] == "reported" and body["b"]["basis"] == "run"
    assert body["shared"] == [{"layer": 1, "row": 2533, "col": 7890}]
    # the published entries include replications' late-layer finds: (29, 2533, 5162) shares the row
    assert body["moved"] == [
        {
            "a": {"layer": 29, "row": 2533, "col": 5162},
            "b": {"layer": 2, "row": 2533, "col": 100},
            "shared": "row",
        }
    ]
    assert body["appeared"] == [] and len(body["vanished"]) == 4
    assert [d["a"] for d in body["drift"]] == [{"layer": 1, "row": 2533, "col": 7890}, body["moved"][0]["a"]]
    assert body["relation"] is None and body["dequantization_error"] is False
    assert_problem(http.get("/v1/compare", params={"a": "org/none", "b": "meta-llama/Llama-2-7b-hf"}), 404)
    assert_problem(http.get("/v1/compare", params={"a": "../x"}), 422)
    assert_problem(http.get("/v1/models/org/unknown"), 404)
    assert_problem(http.get("/v1/models/org/unknown/super-weights"), 404)
    assert_problem(http.get("/v1/jobs/00000000-0000-0000-0000-000000000000"), 404)
    assert_problem(http.get("/v1/jobs/not-a-uuid"), 422)
    assert_problem(http.get("/v1/nothing-here"), 404)
    assert_problem(http.delete("/v1/models"), 405)


def test_openapi_is_complete(http: httpx.Client) -> None:
    schema = http.get("/openapi.json").json()
    paths = schema["paths"]
    for path in (
        "/v1/models",
        "/v1/models/{org}/{name}",
        "/v1/models/{org}/{name}/super-weights",
        "/v1/runs/{run_id}",
        "/v1/compare",
        "/v1/submissions",
        "/v1/jobs/{job_id}",
        "/v1/models/{org}/{name}/bundle",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths, path
    submissions = paths["/v1/submissions"]["post"]
    assert {"202", "401", "403", "409", "422", "429"} <= set(submissions["responses"])
    assert PROBLEM in submissions["responses"]["404"]["content"]
    assert "examples" in schema["components"]["schemas"]["SubmissionIn"]
    assert "bearer" in str(schema["components"]["securitySchemes"]).lower()


def test_cached_pages_follow_new_runs(http: httpx.Client, settings: Settings) -> None:
    path = "/v1/models/mistralai/Mistral-7B-v0.1/super-weights"
    before = http.get(path)
    assert before.json()["run_id"] is None and http.get(path).content == before.content
    run_id = _record(settings, "mistralai/Mistral-7B-v0.1", [(1, 2070, 7310)])
    after = http.get(path, headers={"If-None-Match": before.headers["etag"]})
    assert after.status_code == 200 and after.json()["run_id"] == run_id
    assert http.get("/v1/models/mistralai/Mistral-7B-v0.1").json()["runs"][0]["id"] == run_id


def test_a_re_run_with_a_new_detector_version_is_kept_and_both_runs_show(
    http: httpx.Client, settings: Settings
) -> None:
    old = {"validate": True, "versions": {"detector": "1.0.0", "validator": "1.0.0"}}
    new = {"validate": True, "versions": {"detector": "1.1.0", "validator": "1.0.0"}}
    first = _record(settings, "org/rerun", [(1, 2, 3)], config=old)
    second = _record(settings, "org/rerun", [(1, 2, 3), (4, 5, 6)], config=new)
    assert first != second
    body = http.get("/v1/models/org/rerun").json()
    assert [r["id"] for r in body["runs"]] == [second, first]
    assert {r["validator_version"] for r in body["runs"]} == {"1.0.0"}
    history = {(h["layer"], h["row"], h["col"]): h for h in body["history"]}
    assert [v["reproduction"] for v in history[(1, 2, 3)]["runs"]] == ["reproduced", "reproduced"]
    assert [v["reproduction"] for v in history[(4, 5, 6)]["runs"]] == ["reproduced", "not_found"]
    assert history[(4, 5, 6)]["reported"] is False


def test_each_coordinate_is_marked_across_versioned_runs_with_its_prompt_agreement(
    http: httpx.Client, settings: Settings
) -> None:
    old = {"validate": True, "versions": {"detector": "1.0.0", "validator": "1.0.0"}}
    new = {"validate": True, "versions": {"detector": "1.1.0", "validator": "1.1.0"}}
    kept, dropped, added = (1, 2, 3), (4, 5, 6), (7, 8, 9)
    first = _record(
        settings,
        "org/versions",
        [kept, dropped],
        config=old,
        validation=sample_validation({kept: "confirmed", dropped: "confirmed"}),
    )
    detection = sample_detection([kept, dropped, added], prompt_agreement=2 / 3)
    detection["provenance"]["detector_version"] = "1.1.0"
    second = _record(
        settings,
        "org/versions",
        [],
        config=new,
        detection=detection,
        validation=sample_validation({kept: "confirmed", dropped: "inert", added: "confirmed"}),
    )
    assert first != second
    body = http.get("/v1/models/org/versions").json()
    assert [(r["id"], r["detector_version"], r["validator_version"]) for r in body["runs"]] == [
        (second, "1.1.0", "1.1.0"),
        (first, "1.0.0", "1.0.0"),
    ]
    history = {(h["layer"], h["row"], h["col"]): h["runs"] for h in body["history"]}
    marks = {c: [(v["run_id"], v["reproduction"], v["status"]) for v in runs] for c, runs in history.items()}
    assert marks == {
        kept: [(second, "reproduced", "confirmed"), (first, "reproduced", "confirmed")],
        dropped: [(second, "contradicted", "inert"), (first, "reproduced", "confirmed")],
        added: [(second, "reproduced", "confirmed"), (first, "not_found", None)],
    }
    assert [v["prompt_agreement"] for v in history[kept]] == [pytest.approx(2 / 3), 1.0]
    assert [v["prompt_agreement"] for v in history[added]] == [pytest.approx(2 / 3), None]
    weights = http.get("/v1/models/org/versions/super-weights").json()
    assert weights["run_id"] == second
    assert [w["prompt_agreement"] for w in weights["super_weights"]] == [pytest.approx(2 / 3)] * 3
    activation = weights["super_activation"]
    assert (activation["token"], activation["on_first_token"], activation["on_bos"]) == (0, True, True)
    assert http.get(f"/v1/runs/{second}").json()["super_activation"]["on_bos"] is True
    properties = http.get("/openapi.json").json()["components"]["schemas"]
    assert "prompt_agreement" in properties["SuperWeightOut"]["required"]
    assert {"on_first_token", "on_bos"} <= set(properties["SuperActivationOut"]["properties"])
    assert "prompt_agreement" in properties["RunVerdictOut"]["properties"]


def test_a_build_s_run_shows_on_the_base_model(http: httpx.Client, settings: Settings) -> None:
    detection = sample_detection([(2, 3968, 7003)])
    detection["provenance"]["quantization"] = "Q4_1"
    engine = make_engine(settings.resolved_database_url())
    try:
        with make_session_factory(engine)() as session:
            run_id = record_run(
                session,
                None,
                "local/llama-7b.Q4_1.gguf",
                "sha256:" + "d" * 64,
                None,
                {"validate": True},
                detection,
                base_model="huggyllama/llama-7b",
                relation=RelationKind.QUANTIZED_BUILD,
            ).run_id
            session.commit()
    finally:
        engine.dispose()
    base = http.get("/v1/models/huggyllama/llama-7b").json()
    assert base["derived"] == [
        {
            "id": "local/llama-7b.Q4_1.gguf",
            "url": "/v1/models/local/llama-7b.Q4_1.gguf",
            "relation": "quantized build",
            "quantization": "Q4_1",
        }
    ]
    assert base["runs"][0]["id"] == run_id and base["runs"][0]["quantization"] == "Q4_1"
    weights = http.get("/v1/models/huggyllama/llama-7b/super-weights").json()
    assert weights["run_id"] == run_id
    assert weights["measured_on"] == {
        "model": "local/llama-7b.Q4_1.gguf",
        "relation": "quantized build",
        "quantization": "Q4_1",
    }
    assert weights["super_weights"][0]["reproduction"] == "reproduced"
    build = http.get("/v1/models/local/llama-7b.Q4_1.gguf").json()
    assert (build["base_model"], build["relation"]) == ("huggyllama/llama-7b", "quantized build")
    compare = http.get(
        "/v1/compare", params={"a": "huggyllama/llama-7b", "b": "local/llama-7b.Q4_1.gguf"}
    ).json()
    assert compare["relation"] == "quantized build" and compare["dequantization_error"] is True
