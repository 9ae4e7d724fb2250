"""Hardening of the API over real HTTP on real PostgreSQL: NUL and surrogates are 422s, the
rate limit holds under concurrency, bodies are capped and authenticated before parsing, a missing schema
is a 503, HEAD and OPTIONS wherever GET, Link headers never echo Host, security headers everywhere,
offline docs, Retry-After on the web form's 503."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from catalog.errors import UnavailableError
from catalog.settings import Settings
from tests.api.test_api_http import assert_problem
from tests.live_server import served
from tests.postgres import POSTGRES_ADMIN_URL, temporary_postgres_database

pytestmark = pytest.mark.services


def test_nul_and_lone_surrogates_are_422_problems_everywhere(
    http: httpx.Client, make_key: Callable[..., str]
) -> None:
    auth = {"Authorization": f"Bearer {make_key('submit')}", "Content-Type": "application/json"}
    for path in (
        "/v1/models?q=%00",
        "/v1/models?architecture=%00",
        "/v1/models?family=a%00b",
        "/v1/models?cursor=%00",
        "/v1/models/huggyllama/llama-7b/super-weights?revision=a%00",
        "/v1/models/huggyllama/llama-7b/bundle?scheme=%00",
        "/?q=%00",
        "/models/huggyllama/llama-7b?revision=a%00",
        "/compare?a=%00&b=x",
        "/jobs/new?model=%00",
    ):
        assert_problem(http.get(path), 422)
        assert http.get("/v1/models").status_code == 200  # the connection stays usable
    for prompt in ("a\u0000b", "a\ud800b", "\udfff"):
        body = json.dumps({"model": "org/nul", "options": {"prompt": prompt}})  # ASCII escapes: \\u0000
        problem = assert_problem(http.post("/v1/submissions", content=body, headers=auth), 422)
        assert problem["errors"][0]["loc"] == ["body", "options", "prompt"]
    form = b"model=org%2Fform&prompt=a%00b&api_key=x"
    page = http.post("/jobs/new", content=form, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert page.status_code == 422 and "cannot be stored" in page.text


def test_the_rate_limit_holds_under_100_concurrent_submissions(
    live_url: str, settings: Settings, make_key: Callable[..., str]
) -> None:
    headers = {"Authorization": f"Bearer {make_key('submit')}"}
    barrier = threading.Barrier(100)
    statuses: list[int] = []
    lock = threading.Lock()

    def submit(index: int) -> None:
        with httpx.Client(base_url=live_url, timeout=120) as client:
            barrier.wait()
            status = client.post(
                "/v1/submissions", json={"model": f"org/m{index}"}, headers=headers
            ).status_code
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses.count(202) == settings.rate_limit_submissions
    assert statuses.count(429) == 100 - settings.rate_limit_submissions


def _raw_post(url: str, head: bytes, body: bytes = b"") -> bytes:
    """Send a raw HTTP/1.1 request (a body may be announced larger than sent) and read the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(head + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def test_bodies_are_capped_and_authenticated_before_parsing(
    live_url: str, http: httpx.Client, settings: Settings, make_key: Callable[..., str]
) -> None:
    # 50 MB announced: refused before a byte of it is read
    head = (
        b"POST /v1/submissions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 52428800\r\n\r\n"
    )
    answer = _raw_post(live_url, head)
    assert answer.startswith(b"HTTP/1.1 413") and b"application/problem+json" in answer
    # streamed without a length: cut off at the cap
    chunked = http.post(
        "/v1/submissions",
        content=iter([b"{" + b" " * settings.max_body_bytes, b"}"]),
        headers={"Authorization": f"Bearer {make_key('submit')}", "Content-Type": "application/json"},
    )
    assert_problem(chunked, 413)
    # under the cap but unauthenticated: 401, the (invalid) body is never parsed
    assert_problem(http.post("/v1/submissions", content=b"{not json"), 401)
    assert_problem(
        http.post("/v1/submissions", content=b"{not json", headers={"Authorization": "Bearer swi_x"}), 401
    )


def test_an_unmigrated_database_is_a_503_saying_how_to_fix_it() -> None:
    with temporary_postgres_database(POSTGRES_ADMIN_URL, prefix="swi_empty") as url:
        app = create_app(Settings(database_url=url, auto_migrate=False))
        with served(app) as base, httpx.Client(base_url=base) as client:
            for path in (
                "/v1/models",
                "/v1/models/org/name",
                "/v1/jobs/0b9f7a51-3a83-4b8e-9c6e-2a4c1c0f5d11",
                "/",
            ):
                body = assert_problem(client.get(path), 503)
                assert "swi catalog migrate" in body["detail"]
            ready = assert_problem(client.get("/readyz"), 503)
            assert "database" in ready["detail"]


def test_head_and_options_wherever_get(http: httpx.Client, app: FastAPI) -> None:
    for path in (
        "/v1/models",
        "/v1/models/huggyllama/llama-7b",
        "/healthz",
        "/",
        "/compare",
        "/static/site.css",
    ):
        get, head = http.get(path), http.head(path)
        assert head.status_code == get.status_code == 200, path
        assert head.content == b"" and head.headers["content-type"] == get.headers["content-type"]
        assert head.headers.get("etag") == get.headers.get("etag")
        options = http.options(path)
        assert options.status_code == 204
        assert {"GET", "HEAD", "OPTIONS"} <= set(options.headers["allow"].split(", "))
    assert set(http.options("/v1/submissions").headers["allow"].split(", ")) == {"POST", "OPTIONS"}
    assert http.head("/v1/models/org/missing").status_code == 404
    assert http.options("/no/such/route").status_code == 404


def _page_with_next(client: httpx.Client, **headers: str) -> str:
    response = client.get("/v1/models", params={"limit": 1}, headers=headers)
    assert response.status_code == 200
    link: str = response.headers["link"]
    return link


def test_the_link_header_never_echoes_the_host(http: httpx.Client, settings: Settings) -> None:
    link = _page_with_next(http, Host="evil.example")
    assert link.startswith("</v1/models?") and "evil" not in link and link.endswith('>; rel="next"')
    public = create_app(settings.model_copy(update={"public_base_url": "https://swi.example.org/"}))
    with served(public) as base, httpx.Client(base_url=base) as client:
        assert _page_with_next(client, Host="evil.example").startswith("<https://swi.example.org/v1/models?")


def test_security_headers_on_every_response_and_docs_from_the_package(http: httpx.Client) -> None:
    responses = {
        "json": http.get("/v1/models"),
        "problem": http.get("/v1/models/org/missing"),
        "validation": http.get("/v1/models?limit=0"),
        "page": http.get("/"),
        "page error": http.get("/models/org/missing"),
        "unmatched": http.get("/no/such/route"),
        "metrics": http.get("/metrics"),
    }
    for kind, response in responses.items():
        assert response.headers["x-content-type-options"] == "nosniff", kind
        assert "default-src 'none'" in response.headers["content-security-policy"], kind
    docs = http.get("/docs")
    assert docs.status_code == 200 and docs.headers["x-content-type-options"] == "nosniff"
    assert "cdn." not in docs.text and "https://" not in docs.text.replace("https://swagger.io", "")
    for asset in ("/static-offline-docs/swagger-ui-bundle.js", "/static-offline-docs/swagger-ui.css"):
        assert asset in docs.text and http.get(asset).status_code == 200
    assert "cdn." not in http.get("/redoc").text


def test_the_web_form_says_when_to_retry_a_503(settings: Settings, make_key: Callable[..., str]) -> None:
    def hub_down(model: str, revision: str | None) -> str | None:
        raise UnavailableError("the hub cannot be reached")

    app = create_app(settings, resolver=hub_down)
    with served(app) as base, httpx.Client(base_url=base) as client:
        form = {"model": "org/form", "api_key": make_key("submit")}
        page = client.post("/jobs/new", data=form)
        assert page.status_code == 503 and int(page.headers["retry-after"]) >= 1
        assert "content-security-policy" in page.headers
        api = client.post(
            "/v1/submissions",
            json={"model": "org/api"},
            headers={"Authorization": f"Bearer {form['api_key']}"},
        )
        assert_problem(api, 503)
        assert int(api.headers["retry-after"]) >= 1


def test_the_submission_schema_is_documented_though_parsed_after_authentication(http: httpx.Client) -> None:
    schema: dict[str, Any] = http.get("/openapi.json").json()
    body = schema["paths"]["/v1/submissions"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/SubmissionIn"}
    assert "model" in schema["components"]["schemas"]["SubmissionIn"]["properties"]
    assert "413" in schema["paths"]["/v1/submissions"]["post"]["responses"]
