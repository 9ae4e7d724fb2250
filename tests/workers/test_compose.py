"""docker-compose.yml without a Docker engine: Compose's own parser (`docker-compose config`), a focused
schema of what the deployment needs, and the names it uses checked against the code."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

from workers.settings import WorkerSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
APP_SERVICES = ("migrate", "api", "worker-gpu")
LONG_RUNNING = ("postgres", "redis", "api", "worker-gpu")

_HEALTHCHECK = {
    "type": "object",
    "required": ["test", "interval", "timeout", "retries"],
    "properties": {"test": {"type": "array", "minItems": 2, "items": {"type": "string"}}},
}
_HEALTHY = {
    "type": "object",
    "required": ["condition"],
    "properties": {"condition": {"const": "service_healthy"}},
}
_MIGRATED = {
    "type": "object",
    "required": ["condition"],
    "properties": {"condition": {"const": "service_completed_successfully"}},
}
_COMMAND = {"type": "array", "minItems": 1, "items": {"type": "string"}}
#: the API and the worker start once PostgreSQL and Redis are healthy and the migrations have run
_NEEDS_READY_CATALOG = {
    "type": "object",
    "required": ["postgres", "redis", "migrate"],
    "properties": {"postgres": _HEALTHY, "redis": _HEALTHY, "migrate": _MIGRATED},
}
#: what this deployment must contain (the Compose specification allows much more)
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["services", "volumes"],
    "properties": {
        "services": {
            "type": "object",
            "required": ["postgres", "redis", "migrate", "api", "worker-gpu"],
            "properties": {
                "postgres": {
                    "type": "object",
                    "required": ["image", "healthcheck", "volumes", "environment"],
                    "properties": {"image": {"pattern": "^postgres:"}, "healthcheck": _HEALTHCHECK},
                },
                "redis": {
                    "type": "object",
                    "required": ["image", "healthcheck"],
                    "properties": {"image": {"pattern": "^redis:"}, "healthcheck": _HEALTHCHECK},
                },
                "migrate": {
                    "type": "object",
                    "required": ["build", "command", "depends_on"],
                    "properties": {
                        "command": _COMMAND,
                        "restart": {"const": "no"},
                        "depends_on": {
                            "type": "object",
                            "required": ["postgres"],
                            "properties": {"postgres": _HEALTHY},
                        },
                    },
                },
                "api": {
                    "type": "object",
                    "required": ["build", "command", "ports", "depends_on", "healthcheck", "environment"],
                    "properties": {
                        "command": _COMMAND,
                        "healthcheck": _HEALTHCHECK,
                        "depends_on": _NEEDS_READY_CATALOG,
                    },
                },
                "worker-gpu": {
                    "type": "object",
                    "required": ["build", "command", "depends_on", "healthcheck", "deploy", "environment"],
                    "properties": {
                        "command": _COMMAND,
                        "healthcheck": _HEALTHCHECK,
                        "depends_on": _NEEDS_READY_CATALOG,
                        "deploy": {
                            "type": "object",
                            "required": ["resources"],
                            "properties": {
                                "resources": {
                                    "type": "object",
                                    "required": ["reservations"],
                                    "properties": {
                                        "reservations": {
                                            "type": "object",
                                            "required": ["devices"],
                                            "properties": {
                                                "devices": {
                                                    "type": "array",
                                                    "minItems": 1,
                                                    "contains": {
                                                        "type": "object",
                                                        "required": ["capabilities"],
                                                        "properties": {
                                                            "capabilities": {
                                                                "type": "array",
                                                                "contains": {"const": "gpu"},
                                                            }
                                                        },
                                                    },
                                                }
                                            },
                                        }
                                    },
                                }
                            },
                        },
                    },
                },
            },
        },
        "volumes": {"type": "object"},
    },
}


def _docker_compose() -> str:
    """Debian's docker-compose (it parses a file without an engine); missing it fails, never skips."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is not installed (Debian: apt-get install docker-compose)")
    return binary


def _resolved(env: dict[str, str]) -> dict[str, Any]:
    """The file as `docker-compose config` resolves it (anchors merged, variables interpolated)."""
    binary = _docker_compose()
    result = subprocess.run(
        [binary, "--file", str(COMPOSE_FILE), "config"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=REPO_ROOT,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def _raw() -> dict[str, Any]:
    """The file read by a YAML parser only (anchors merged, no interpolation)."""
    config: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return config


def test_compose_config_parses_and_has_what_the_deployment_needs() -> None:
    config = _resolved({"POSTGRES_PASSWORD": "test-only", "HF_TOKEN": ""})
    jsonschema_rs.validate(SCHEMA, json.loads(json.dumps(config)))
    worker = config["services"]["worker-gpu"]
    assert worker["command"][:2] == ["swi", "worker"] and "cuda" in worker["command"]
    assert config["services"]["api"]["environment"]["SWI_ALLOW_LOCAL_MODELS"] == "false"


def test_compose_refuses_to_start_without_a_database_password() -> None:
    binary = _docker_compose()
    env = {k: v for k, v in os.environ.items() if k != "POSTGRES_PASSWORD"}
    result = subprocess.run(
        [binary, "--file", str(COMPOSE_FILE), "config"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode != 0 and "POSTGRES_PASSWORD" in result.stderr


def test_the_schema_holds_for_the_raw_file_too() -> None:
    """Without docker-compose: the focused schema on the YAML itself (merge keys resolved by the parser)."""
    jsonschema_rs.validate(SCHEMA, json.loads(json.dumps(_raw())))
    broken = _raw()
    del broken["services"]["worker-gpu"]["deploy"]
    assert not jsonschema_rs.validator_for(SCHEMA).is_valid(json.loads(json.dumps(broken)))


def test_names_in_the_compose_file_exist_in_the_code() -> None:
    config = _raw()
    fields = set(WorkerSettings.model_fields)
    for name in APP_SERVICES:
        service = config["services"][name]
        for key in service.get("environment", {}):
            if key.startswith("SWI_"):
                assert key.removeprefix("SWI_").lower() in fields, f"{name}: unknown setting {key}"
    api_command = config["services"]["api"]["command"]
    module, attribute = api_command[api_command.index("--factory") + 1].split(":")
    assert callable(getattr(importlib.import_module(module), attribute))
    assert (REPO_ROOT / config["services"]["api"]["build"]["context"] / "Dockerfile").is_file()
    for name in LONG_RUNNING:
        assert "healthcheck" in config["services"][name], name
