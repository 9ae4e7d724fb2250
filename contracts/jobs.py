"""The configuration of a job: what a user may submit, and what a job row carries (`jobs.config`).

One model for every layer: the API validates submissions with `SubmissionOptions`, the web form and
`swi index` build a `JobConfig`, the workers read it back.

Two keys identify a run (both SHA-256 of canonical JSON):
- the request key (`request_key`): what the user asked for, the job's settings and the code versions. The
  submission service, which cannot know which worker will run a job, finds "a run already exists" by it.
- the run key (`RunSettings.key`): the settings the worker resolved and used (token budget, window, corpus
  and its sha256, dtype, device kind, every detection and validation setting, the versions). A run whose
  effective settings differ from every stored one is a new run; an identical re-run finds the stored one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NewType

from pydantic import BaseModel, ConfigDict, Field

from contracts.base import Frozen
from contracts.identifiers import MODEL_ID_PATTERN, VERSIONS_KEY, config_hash
from contracts.text import StorableText
from contracts.validation import CorpusIdentity

#: SHA-256 hex of a run's request configuration (`request_key`): what the user asked for
RequestKey = NewType("RequestKey", str)
#: SHA-256 hex of a run's effective settings (`RunSettings.key`): what the worker used
RunKey = NewType("RunKey", str)

#: the key of a job's configuration that names a local source (never part of the run's configuration)
SOURCE_PATH_KEY = "source_path"
#: the key naming the hub model a local GGUF file is a build of (lineage, not a setting of the run)
BUILD_OF_KEY = "build_of"
#: the key that picks the engine; not part of the run's configuration either (the results are the same)
ENGINE_KEY = "engine"
#: the keys always written; the others are written only when set, so equal settings hash equally
BASE_KEYS = ("prompt", "max_super_weights", "z_threshold", "dtype", "validate", "quantization_checks")
#: experiments of the quantization checks (the rest is prune validation)
QUANTIZATION_EXPERIMENTS = ("rtn", "w8a8")
Dtype = Literal["auto", "float32", "float16", "bfloat16"]


class SubmissionOptions(BaseModel):
    """Detection and validation settings a submission may set (defaults are the published recipe)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        json_schema_extra={"examples": [{"max_super_weights": 8, "validate": True, "dtype": "auto"}]},
    )

    prompt: StorableText | None = Field(
        default=None, min_length=1, max_length=2000, description="Detection prompt."
    )
    max_super_weights: int = Field(default=8, ge=1, le=64)
    z_threshold: float = Field(default=3.0, gt=0, le=100)
    dtype: Dtype = "auto"
    validate_: bool = Field(
        default=True, alias="validate", description="Validate by pruning each super weight."
    )
    quantization_checks: bool = Field(default=True, description="Run the RTN hold-out checks.")

    def as_config(self) -> dict[str, Any]:
        """The JSON stored on the job (its request key hashes it): the base keys, and the others when set."""
        data = self.model_dump(by_alias=True, mode="json")
        return {key: value for key, value in data.items() if key in BASE_KEYS or value is not None}

    @property
    def measures_anything(self) -> bool:
        """Whether validation or quantization checks run at all."""
        return self.validate_ or self.quantization_checks


class JobConfig(SubmissionOptions):
    """Everything a job carries: the submission options and the local runs' settings (extra keys ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True, json_schema_extra=None)

    max_tokens: int | None = Field(default=None, ge=2, description="Validation token budget.")
    window: int | None = Field(default=None, ge=2, description="Validation window length.")
    corpus: StorableText | None = Field(
        default=None,
        max_length=200,
        description="auto (WikiText-2 where `datasets` loads it, else builtin), builtin, wikitext2, a file.",
    )
    experiments: tuple[StorableText, ...] | None = Field(
        default=None, description="Subset of the validation experiments."
    )
    null_sets: int | None = Field(
        default=None, ge=0, le=1024, description="Random magnitude-matched sets of the null (default 32)."
    )
    null_column_sets: int | None = Field(
        default=None, ge=0, le=1024, description="Same-column sets of the null (default 8)."
    )
    source_path: StorableText | None = Field(
        default=None, description="A local folder or .gguf file (local jobs only)."
    )
    build_of: str | None = Field(
        default=None,
        max_length=193,
        pattern=MODEL_ID_PATTERN,
        description="The hub model a local GGUF file is a quantized build of.",
    )
    engine: Literal["auto", "memory", "streamed"] | None = Field(
        default=None,
        description="memory, streamed (one decoder layer at a time), or auto (None): streamed when the "
        "weights exceed the worker's memory budget. Not part of the run key: both engines give the same.",
    )


def run_config_of(job_config: dict[str, Any]) -> dict[str, Any]:
    """The settings that shape a run's results: all but the local path, the build link and the engine."""
    excluded = (SOURCE_PATH_KEY, BUILD_OF_KEY, ENGINE_KEY)
    return {key: value for key, value in job_config.items() if key not in excluded}


def versioned_run_config(job_config: dict[str, Any], versions: Mapping[str, str]) -> dict[str, Any]:
    """The request configuration a run is stored with (its hash is the request key): settings and versions.

    `versions` names the version of each part that produced the results (`contracts.versions.RUN_VERSIONS`):
    a re-run with a new detector or validator version is a new request and a new run; the earlier is kept.
    """
    return {**run_config_of(job_config), VERSIONS_KEY: dict(versions)}


def request_key(request_config: Mapping[str, Any]) -> RequestKey:
    """The request key of a request configuration (`versioned_run_config`)."""
    return RequestKey(config_hash(request_config))


class RunSettings(Frozen):
    """The settings a run's results were actually produced with, as the worker resolved them.

    Whatever a job leaves to the worker is resolved here: the token budget (`SWI_DEFAULT_MAX_TOKENS_*`), the
    window, `corpus: auto` (WikiText-2 or the built-in text, named with its sha256), `dtype: auto`, the
    device.
    The engine is left out: the streamed and in-memory engines detect the same
    (`tests/indexer/detection`), and validation runs in memory only.
    """

    versions: dict[str, str]
    #: the kind of device the model ran on (`cpu`, `cuda`, `mps`): numerics differ between kinds
    device: str = Field(max_length=16)
    #: the dtype the weights were loaded in (`float32`, `bfloat16`, ...)
    dtype: str = Field(max_length=16)
    #: every setting of detection (the detector's configuration, prompts included)
    detection: dict[str, Any]
    #: every result-changing setting of validation (budget and window resolved), None when nothing ran
    validation: dict[str, Any] | None = None
    #: the text validation measured (its name and the sha256 of the whole text), None when nothing ran
    corpus: CorpusIdentity | None = None

    def key(self) -> RunKey:
        """The run key: the hash of these settings."""
        return RunKey(config_hash(self.model_dump(mode="json")))
