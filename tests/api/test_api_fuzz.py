"""Property-based fuzz of every route's parameters (NUL, control characters and lone surrogates included)
over real HTTP on real PostgreSQL: no input gives a 5xx, every error of the REST API is problem+json.

Bounded: a few dozen examples per route family (well under a minute in all); hypothesis keeps the
failing examples in its database so a regression replays first.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.services

FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
#: what a URL can carry: any character but a lone surrogate (not encodable), NUL and controls likely
url_text = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=40),
    st.text(st.sampled_from("\x00\x01\x7f/.%-_ aZ9\u00e9\u2028\U0001f600"), max_size=12),
    st.sampled_from(
        ["", "main", "a\x00", "\x00", "../etc", "huggyllama", "-1", "9" * 30, "sha256:" + "a" * 64]
    ),
)
#: what a JSON body can carry: lone surrogates too (sent as \\udXXX escapes)
json_text = st.one_of(
    st.text(st.characters(exclude_categories=[]), max_size=40),
    st.sampled_from(["a\x00b", "\ud800", "\udfff", "org/model", "org/a..b", "x" * 3000]),
)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | json_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(json_text, inner, max_size=3),
    max_leaves=6,
)
segment = url_text.map(lambda text: quote(text, safe="") or "x")
MODEL_QUERY = (
    "architecture",
    "family",
    "status",
    "layer",
    "has_super_weights",
    "q",
    "sort",
    "cursor",
    "limit",
)
BUNDLE_QUERY = ("format", "tensor_type", "scheme", "revision")
CATALOG_PAGE_QUERY = ("q", "architecture", "family", "status", "has", "sort", "cursor", "limit")


def query(names: tuple[str, ...]) -> st.SearchStrategy[dict[str, str]]:
    """Some of `names`, each with a fuzzed value."""
    return st.dictionaries(st.sampled_from(names), url_text, min_size=1, max_size=len(names))


def check_api(response: httpx.Response) -> None:
    """No 5xx; an error of the REST API is an RFC 9457 problem document."""
    assert response.status_code < 500, (response.request.url, response.text[:300])
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json"), response.request.url
        body = response.json()
        assert body["status"] == response.status_code and body["title"] and body["type"]


def check_page(response: httpx.Response) -> None:
    """No 5xx; a page's error is its HTML error page, or problem+json for a parameter it cannot accept."""
    assert response.status_code < 500, (response.request.url, response.text[:300])
    if response.status_code >= 400:
        kind = response.headers["content-type"]
        assert kind.startswith(("text/html", "application/problem+json")), (response.request.url, kind)


def get(http: httpx.Client, path: str, params: dict[str, str]) -> httpx.Response:
    """GET with the parameters encoded by hand (httpx would refuse none of them, but be explicit)."""
    return http.get(f"{path}?{urlencode(params)}" if params else path)


@FUZZ
@given(params=query(MODEL_QUERY))
@example(params={"q": "\x00"})
@example(params={"architecture": "a\x00", "family": "\x00b"})
@example(params={"cursor": "\x00"})
def test_fuzz_model_list(http: httpx.Client, params: dict[str, str]) -> None:
    check_api(get(http, "/v1/models", params))


@FUZZ
@given(
    org=st.one_of(st.just("huggyllama"), segment),
    name=st.one_of(st.just("llama-7b"), segment),
    tail=st.sampled_from(["", "/super-weights", "/bundle"]),
    params=query(BUNDLE_QUERY),
    etag=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
)
@example(org="huggyllama", name="llama-7b", tail="/super-weights", params={"revision": "a\x00"}, etag="")
def test_fuzz_model_routes(
    http: httpx.Client, org: str, name: str, tail: str, params: dict[str, str], etag: str
) -> None:
    response = http.get(
        f"/v1/models/{org}/{name}{tail}?{urlencode(params)}",
        headers={"If-None-Match": etag.strip()} if etag.strip() else {},
    )
    check_api(response)


@FUZZ
@given(a=url_text, b=url_text, run=segment, job=segment)
def test_fuzz_compare_runs_and_jobs(http: httpx.Client, a: str, b: str, run: str, job: str) -> None:
    check_api(get(http, "/v1/compare", {"a": a, "b": b}))
    check_api(http.get(f"/v1/runs/{run}"))
    check_api(http.get(f"/v1/jobs/{job}"))


@FUZZ
@given(
    body=st.one_of(
        json_value,
        st.fixed_dictionaries(
            {"model": json_text},
            optional={
                "revision": json_value,
                "options": st.dictionaries(
                    st.sampled_from(
                        [
                            "prompt",
                            "max_super_weights",
                            "z_threshold",
                            "dtype",
                            "validate",
                            "quantization_checks",
                            "other",
                        ]
                    ),
                    json_value,
                    max_size=4,
                ),
            },
        ),
    ),
    key=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20),
)
@example(body={"model": "org/nul", "options": {"prompt": "a\x00b"}}, key="")
@example(body={"model": "org/surrogate", "options": {"prompt": "\ud800"}}, key="")
def test_fuzz_submissions(http: httpx.Client, submit_key: str, body: Any, key: str) -> None:
    headers = {"Authorization": f"Bearer {submit_key}", "Content-Type": "application/json"}
    if key:
        headers["Idempotency-Key"] = key
    # ASCII JSON: lone surrogates travel as \\udXXX escapes, as a hostile client would send them
    check_api(http.post("/v1/submissions", content=json.dumps(body), headers=headers))


@FUZZ
@given(job=segment, raw=st.binary(max_size=200))
def test_fuzz_cancel_and_raw_bodies(http: httpx.Client, submit_key: str, job: str, raw: bytes) -> None:
    auth = {"Authorization": f"Bearer {submit_key}"}
    check_api(http.post(f"/v1/jobs/{job}/cancel", headers=auth))
    check_api(http.post("/v1/submissions", content=raw, headers={**auth, "Content-Type": "application/json"}))


@FUZZ
@given(
    params=query(CATALOG_PAGE_QUERY),
    org=segment,
    name=segment,
    page_params=query(("revision", "run")),
    compare=query(("a", "b")),
    static=segment,
)
def test_fuzz_pages(
    http: httpx.Client,
    params: dict[str, str],
    org: str,
    name: str,
    page_params: dict[str, str],
    compare: dict[str, str],
    static: str,
) -> None:
    check_page(get(http, "/", params))
    check_page(get(http, f"/models/{org}/{name}", page_params))
    check_page(get(http, "/models/huggyllama/llama-7b", page_params))
    check_page(get(http, "/compare", compare))
    check_page(get(http, "/jobs/new", {"model": compare.get("a", ""), "revision": compare.get("b", "")}))
    check_page(http.get(f"/jobs/{name}"))
    check_page(http.get(f"/static/{static}"))


@FUZZ
@given(
    form=st.dictionaries(
        st.sampled_from(
            [
                "model",
                "revision",
                "prompt",
                "max_super_weights",
                "dtype",
                "validate",
                "api_key",
                "idempotency_key",
            ]
        ),
        url_text,
        max_size=8,
    )
)
def test_fuzz_the_web_form(http: httpx.Client, submit_key: str, form: dict[str, str]) -> None:
    check_page(
        http.post(
            "/jobs/new",
            content=urlencode(form),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    )
    form = {**form, "api_key": submit_key}
    check_page(
        http.post(
            "/jobs/new",
            content=urlencode(form),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    )


@pytest.fixture
def submit_key(make_key: Callable[..., str]) -> str:
    """A key with the submit scope (one per test; hypothesis reuses it for every example)."""
    return make_key("submit")
