"""The remote CLI (`--server` / `SWI_SERVER`, `SWI_API_KEY`) against a live `swi serve`: the same output as
the local commands reading the same catalog."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from swi.cli import app
from tests.swi.client.conftest import TINY_REPO, TINY_SHA, Live

MISTRAL = "mistralai/Mistral-7B-v0.1"
runner = CliRunner()


def _both(live: Live, *args: str) -> tuple[str, str]:
    """The output of `swi ARGS` on the local catalog (the server's database) and with --server."""
    local = runner.invoke(app, list(args))
    served = runner.invoke(app, [*args, "--server", live.url])
    assert local.exit_code == 0, local.output
    assert served.exit_code == 0, served.output
    return local.stdout, served.stdout


def test_get_and_compare_print_the_same_either_way(live: Live) -> None:
    local, remote = _both(live, "get", MISTRAL)
    assert local == remote and "2070" in remote and "published coordinates only" in remote
    local, remote = _both(live, "get", MISTRAL, "--json")
    assert local == remote
    assert json.loads(remote)["super_weights"][0]["col"] == 7310
    local, remote = _both(live, "compare", "huggyllama/llama-7b", "huggyllama/llama-13b")
    assert local == remote and "vanished: (2, 3968, 7003)" in remote

    missing = runner.invoke(app, ["get", "org/unknown", "--server", live.url])
    assert missing.exit_code == 2 and "is not in the catalog" in missing.output
    down = runner.invoke(app, ["get", MISTRAL, "--server", "http://127.0.0.1:9"])
    assert down.exit_code == 2 and "error:" in down.output


def test_bundle_downloads_and_revalidates(
    live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWI_SERVER", live.url)  # the environment variable works like --server
    target = tmp_path / "mistral.json"
    first = runner.invoke(app, ["bundle", MISTRAL, "-o", str(target)])
    assert first.exit_code == 0, first.output
    assert "super weight(s) of mistralai/Mistral-7B-v0.1" in first.output
    again = runner.invoke(app, ["bundle", MISTRAL, "-o", str(target)])
    assert again.exit_code == 0 and "revalidated by its ETag" in again.output, again.output
    stdout = runner.invoke(app, ["bundle", MISTRAL, "-o", "-"])
    assert json.loads(stdout.stdout)["sha256"] == json.loads(target.read_text())["sha256"]
    refused = runner.invoke(app, ["bundle", MISTRAL, "--source", "detect"])
    assert refused.exit_code == 2 and "local only" in refused.output


def test_index_submits_follows_and_prints_the_entry(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["index", TINY_REPO, "--skip-validation", "--server", live.url]
    no_key = runner.invoke(app, args)
    assert no_key.exit_code == 2 and "SWI_API_KEY" in no_key.output
    monkeypatch.setenv("SWI_API_KEY", live.key)
    refused = runner.invoke(app, [*args, "--max-tokens", "512"])
    assert refused.exit_code == 2 and "--max-tokens" in refused.output

    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    entry = json.loads(result.stdout)
    assert entry["model"] == TINY_REPO and entry["revision"] == TINY_SHA
    assert [1, 10, 20] in [[w["layer"], w["row"], w["col"]] for w in entry["super_weights"]]
    assert "submitted" in result.stderr and "100%" in result.stderr  # progress lines off a terminal

    local, remote = _both(live, "index", TINY_REPO, "--revision", TINY_SHA, "--skip-validation")
    assert local == remote and "candidate" in remote

    job_id = result.stderr.split("job ")[1].split()[0]
    local, remote = _both(live, "jobs", job_id, "--json")
    assert json.loads(local) == json.loads(remote)
    assert json.loads(remote)[0]["status"] == "succeeded"
    cancel = runner.invoke(app, ["jobs", job_id, "--cancel", "--server", live.url])
    assert cancel.exit_code == 2 and "nothing to cancel" in cancel.output
    listing = runner.invoke(app, ["jobs", "--server", live.url])
    assert listing.exit_code == 2 and "give the id" in listing.output
