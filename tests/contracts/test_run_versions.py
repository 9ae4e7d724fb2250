"""Runs are never lost: a default that changes results changes the request key only through a version.

The run key hashes every setting a worker resolved, defaults included, so a changed default makes a new
run there. But the submission service answers a request by its request key, which hashes only the job's
settings and `contracts.versions.RUN_VERSIONS`: a request that leaves a setting unset would be answered by a
run made with the old default. So the defaults of detection and validation (and the worker's default
validation budgets) are pinned here per version: changing one fails this test until the part's version is
bumped in `contracts/versions.py` and the new fingerprint recorded below, which makes a re-run a new request.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from contracts.identifiers import canonical_sha256
from contracts.jobs import JobConfig, versioned_run_config
from contracts.versions import DETECTOR_VERSION, RUN_VERSIONS, VALIDATOR_VERSION
from indexer.detection.detect import DetectConfig
from indexer.validation.experiments.null import MATCHED_POOL
from indexer.validation.experiments.stopwords import STOPWORDS
from indexer.validation.validate import ValidateConfig
from workers.settings import WorkerSettings

#: fingerprint of the result-changing defaults, per (part, version)
RECORDED = {
    ("detector", "1.1.0"): "cf7069c1d7be44855c9ac5f7913400370a8b8f904180b25a652bbe2001ae7c59",
    ("validator", "1.1.0"): "72bc094b37cbcb99c8af85bf972337854bacc629e94072e10dafa1d18dd349f4",
}


def detector_defaults() -> dict[str, Any]:
    """Every default of detection."""
    return asdict(DetectConfig())


def validator_defaults() -> dict[str, Any]:
    """Every result-changing default of validation, with the worker's budgets for a job that sets none."""
    defaults = ValidateConfig().result_settings()
    budgets = {
        name: WorkerSettings.model_fields[name].default
        for name in ("default_max_tokens_cpu", "default_max_tokens_gpu")
    }
    return {**defaults, **budgets, "matched_pool": MATCHED_POOL, "stopwords": list(STOPWORDS)}


def test_the_detection_defaults_are_those_of_the_detector_version() -> None:
    found = canonical_sha256(detector_defaults())
    assert found == RECORDED.get(("detector", DETECTOR_VERSION)), (
        f"a detection default changed ({detector_defaults()}): bump DETECTOR_VERSION in "
        f"contracts/versions.py and record ('detector', NEW): '{found}'"
    )


def test_the_validation_defaults_are_those_of_the_validator_version() -> None:
    found = canonical_sha256(validator_defaults())
    assert found == RECORDED.get(("validator", VALIDATOR_VERSION)), (
        f"a validation default changed ({validator_defaults()}): bump VALIDATOR_VERSION in "
        f"contracts/versions.py and record ('validator', NEW): '{found}'"
    )


def test_the_run_key_holds_both_versions() -> None:
    config = versioned_run_config(JobConfig().as_config(), RUN_VERSIONS)
    assert config["versions"] == {"detector": DETECTOR_VERSION, "validator": VALIDATOR_VERSION}
