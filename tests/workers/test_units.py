"""Pipeline pieces that need no service: configuration, identities, failure classes, Celery settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from catalog.errors import InvalidInputError
from contracts.identifiers import config_hash, local_model_id
from contracts.jobs import JobConfig, SubmissionOptions, run_config_of
from indexer import errors as indexer_errors
from tests.workers.faults import TransientTestFaultError
from workers.app import INDEX_TASK, SWEEP_TASK, celery_config
from workers.pipeline import PipelineError, backoff_delay, classify
from workers.settings import WorkerSettings
from workers.sources import content_digest, local_path_of

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_default_options_hash_like_the_api_s() -> None:
    """A CLI job and an API job with the same settings share the request key."""
    api = SubmissionOptions.model_validate({}).as_config()
    assert JobConfig().as_config() == api
    assert config_hash(JobConfig.model_validate(api).as_config()) == config_hash(api)
    skip = JobConfig.model_validate({"validate": False, "max_tokens": 512}).as_config()
    assert skip["validate"] is False and skip["max_tokens"] == 512 and "window" not in skip


def test_the_local_path_is_not_part_of_the_run_key(tmp_path: Path) -> None:
    config = JobConfig(source_path=str(tmp_path)).as_config()
    assert config["source_path"] == str(tmp_path)
    assert run_config_of(config) == JobConfig().as_config()


def test_the_run_key_holds_what_the_worker_resolved(tmp_path: Path) -> None:
    """Budget, window and corpus are resolved into the run key; an explicit value equal to the default is
    the same run, another worker default is another run; detection alone keys no validation setting."""
    from indexer.model.loading import LoadOptions, load_model
    from indexer.model.streaming import OpenedModel
    from tests.indexer.model.test_loading import save_tiny
    from workers.pipeline import plan_run

    opened = OpenedModel(load_model(str(save_tiny(tmp_path / "tiny")), options=LoadOptions(device="cpu")))
    worker = WorkerSettings(device="cpu", default_max_tokens_cpu=64)
    asked = JobConfig(corpus="builtin")
    plan = plan_run(opened, asked, worker)
    assert plan.validate is not None and (plan.validate.max_tokens, plan.validate.window) == (64, 64)
    assert plan.settings.validation == plan.validate.result_settings()
    assert plan.settings.corpus is not None and plan.corpus is not None
    assert plan.settings.corpus.sha256 == plan.corpus.sha256
    key = plan.settings.key()
    assert plan_run(opened, JobConfig(corpus="builtin", max_tokens=64), worker).settings.key() == key
    other_worker = worker.model_copy(update={"default_max_tokens_cpu": 128})
    assert plan_run(opened, asked, other_worker).settings.key() != key
    assert plan_run(opened, JobConfig(corpus="builtin", z_threshold=4.0), worker).settings.key() != key
    detect_only = plan_run(opened, JobConfig(validate=False, quantization_checks=False), worker)
    assert detect_only.validate is None and detect_only.settings.validation is None
    assert detect_only.settings.corpus is None
    assert plan_run(
        opened, JobConfig(validate=False, quantization_checks=False), other_worker
    ).settings.key() == (detect_only.settings.key())


def test_bad_job_configurations_are_refused() -> None:
    with pytest.raises(ValidationError):
        JobConfig.model_validate({"max_super_weights": 0})
    with pytest.raises(ValidationError):
        JobConfig.model_validate({"dtype": "int4"})


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("SmolLM2-135M-Instruct.Q4_1.gguf", "local/SmolLM2-135M-Instruct.Q4_1.gguf"),
        ("my model (v2)", "local/my-model-v2"),
        ("..hidden--name..", "local/hidden-name"),
        ("€€€", "local/model"),
        ("x" * 200, "local/" + "x" * 96),
    ],
)
def test_local_model_ids_are_valid_catalog_ids(tmp_path: Path, name: str, expected: str) -> None:
    assert local_model_id(tmp_path / name) == expected


def test_content_digest_follows_the_content(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    first = content_digest(folder)
    assert first.startswith("sha256:") and len(first) == 71
    (folder / ".hidden").write_text("ignored")
    assert content_digest(folder) == first
    (folder / "config.json").write_text('{"a": 1}')
    assert content_digest(folder) != first
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert content_digest(gguf) == "sha256:" + __import__("hashlib").sha256(b"GGUF").hexdigest()


def test_model_specs_are_told_apart_without_the_indexer(tmp_path: Path) -> None:
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    (tmp_path / "notes.txt").write_text("x")
    assert local_path_of(str(tmp_path)) == tmp_path.resolve()
    assert local_path_of(str(tmp_path / "m.gguf")) == (tmp_path / "m.gguf").resolve()
    assert local_path_of("org/name") is None
    for bad in (str(tmp_path / "notes.txt"), str(tmp_path / "missing.gguf"), "./nope", "a/b/c", "bad id/x"):
        with pytest.raises(InvalidInputError):
            local_path_of(bad)


def test_failures_are_classified() -> None:
    assert classify(indexer_errors.ModelNotFoundError("gone")) == (True, "gone")
    assert classify(indexer_errors.GatedModelError("gated")) == (True, "gated")
    assert classify(indexer_errors.InsufficientMemoryError("too big"))[0] is True
    assert classify(indexer_errors.HubUnavailableError("hub down")) == (False, "hub down")
    assert classify(PipelineError("local paths refused"))[0] is True
    assert classify(TransientTestFaultError("flaky"))[0] is False
    assert classify(OperationalError("SELECT 1", {}, Exception("connection refused")))[0] is False
    assert classify(InvalidInputError("bad document"))[0] is True
    assert classify(RuntimeError("a bug")) == (False, "RuntimeError: a bug")
    try:
        JobConfig.model_validate({"max_super_weights": 0})
    except ValidationError as exc:
        permanent, message = classify(exc)
        assert permanent and message.startswith("invalid job configuration")


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    settings = WorkerSettings(retry_backoff_s=10, retry_backoff_max_s=60)
    for attempt, base in ((1, 10), (2, 20), (3, 40), (4, 60), (9, 60)):
        delays = {backoff_delay(settings, attempt) for _ in range(20)}
        assert all(0.5 * base <= d <= 1.5 * base for d in delays)
        assert len(delays) > 1  # jitter: retries of many jobs do not stampede together


def test_celery_configuration() -> None:
    settings = WorkerSettings(broker_url="redis://127.0.0.1:6379/0", queue_prefix="p-", job_time_limit_s=3600)
    config = celery_config(settings)
    assert config["task_serializer"] == "json" and config["accept_content"] == ["json"]
    assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
    assert config["worker_prefetch_multiplier"] == 1
    assert config["worker_max_tasks_per_child"] == 1
    assert config["result_backend"] is None and config["task_ignore_result"]
    assert config["task_time_limit"] == 3600 and config["task_soft_time_limit"] < 3600
    assert config["broker_transport_options"]["visibility_timeout"] > config["task_time_limit"]
    assert config["broker_transport_options"]["global_keyprefix"] == "p-"
    queues = {q.name: q for q in config["task_queues"]}
    assert set(queues) == {"p-gpu", "p-default"}
    assert {q.routing_key for q in queues.values()} == {"p-gpu", "p-default"}  # no queue gets the other's
    assert config["task_routes"][INDEX_TASK]["queue"] == "p-gpu"
    assert config["task_routes"][SWEEP_TASK]["queue"] == "p-default"


def test_local_models_are_allowed_only_when_embedded_unless_said() -> None:
    assert WorkerSettings(broker_url=None).local_models_allowed
    assert not WorkerSettings(broker_url="redis://x:6379/0").local_models_allowed
    assert WorkerSettings(broker_url="redis://x:6379/0", allow_local_models=True).local_models_allowed


def test_the_worker_app_imports_no_torch() -> None:
    """CUDA cannot be touched before the fork if torch is not even imported by the app and its tasks."""
    code = (
        "import sys, workers.app, workers.broker, workers.enqueue, swi.index_cmd; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'transformers' not in sys.modules, 'transformers imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_job_s_null_sizes_reach_the_validator_and_the_run_key_only_when_set() -> None:
    from indexer.validation.validate import ValidateConfig
    from workers.pipeline import validate_config_of

    defaults = ValidateConfig()
    plain = validate_config_of(JobConfig(), 2048)
    assert (plain.null_sets, plain.null_column_sets) == (defaults.null_sets, defaults.null_column_sets)
    assert "null_sets" not in JobConfig().as_config()
    small = JobConfig.model_validate({"null_sets": 16, "null_column_sets": 4})
    assert small.as_config()["null_sets"] == 16 and small.as_config()["null_column_sets"] == 4
    config = validate_config_of(small, 2048)
    assert (config.null_sets, config.null_column_sets, config.max_tokens) == (16, 4, 2048)
    with pytest.raises(ValidationError):
        JobConfig.model_validate({"null_sets": -1})
