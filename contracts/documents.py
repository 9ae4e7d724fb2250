"""The documents the REST API answers with, and the client reads: one definition for both sides.

Models of JSON documents only (pydantic and `contracts`): `api.schemas` serves them (the OpenAPI schema is
generated from these), `api.views` fills them from catalog rows (`from_attributes`), and `swi.client`
parses them without loading the catalog or the API.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from contracts.base import Coordinate as ContractCoordinate
from contracts.manifest import DecidingFigure
from contracts.results import LayerProfile, LayerStats, SuperActivation
from contracts.status import JobStatus, RunStatus, SuperWeightStatus
from contracts.validation import CorpusIdentity

SHA_EXAMPLE = "8416d3fefb0cb3ff5775a7b13c1692d10ff1aa16"
TIME_EXAMPLE = "2025-01-15T10:12:03.512000Z"
#: read the ORM rows' attributes (pydantic's `from_attributes`) instead of copying them field by field
FROM_ROWS = ConfigDict(from_attributes=True)


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(from_attributes=True, json_schema_extra={"examples": list(examples)})


class Coordinate(ContractCoordinate):
    """A coordinate `(layer, row, col)` of `model.layers[layer].mlp.down_proj.weight[row, col]`."""

    # two models are named Coordinate (this one and `contracts.base.Coordinate`), so the OpenAPI component
    # names carry the module: this one keeps the name it has always been published under
    __module__ = "api.schemas"

    model_config = _examples({"layer": 2, "row": 3968, "col": 7003})


class CorpusOut(CorpusIdentity):
    """The text a quality number was measured on."""

    model_config = FROM_ROWS


class QualityResultOut(DecidingFigure):
    """One validation measurement."""

    model_config = _examples(
        {
            "experiment": "alone",
            "parameters": {"key": "zero/alone/2-3968-7003", "coordinates": [[2, 3968, 7003]]},
            "metric": "perplexity",
            "value": 1211.4,
            "baseline": 5.68,
            "ratio": 213.3,
            "corpus": {"name": "wikitext-2-raw/test", "sha256": "f4b4...", "tokens": 4096, "window": 512},
            "coordinates": {"layer": 2, "row": 3968, "col": 7003},
        }
    )

    ratio: float | None = Field(description="value / baseline")
    corpus: CorpusOut | None
    coordinates: Coordinate | None = Field(description="The super weight this result decided, if any.")


class ReportedSourceOut(BaseModel):
    """One source that reports a coordinate, and the evidence it gives."""

    model_config = _examples(
        {
            "kind": "reference code",
            "locator": "mengxiayu/LLMSuperWeight:outliers/model.py",
            "citation": "mengxiayu/LLMSuperWeight (the paper's reference code)",
            "source_file": "outliers/model.py",
            "commit": "232e4eeb3039fb95132d93e8beba38bba28dd9a5",
            "evidence": None,
            "doubtful": False,
        }
    )

    kind: Literal["paper table", "reference code", "replication"]
    locator: str = Field(description="Where the source gives it: `owner/repo:path`, an issue, or the table.")
    citation: str
    source_file: str | None
    commit: str | None = Field(description="The commit of the source that was read (null for the paper).")
    evidence: str | None = Field(description="The figure the source gives for it, if any.")
    doubtful: bool = Field(
        description="The source itself marks it doubtful (e.g. copied from another model)."
    )


class SuperWeightOut(BaseModel):
    """A super weight with its status and the evidence for it."""

    model_config = _examples(
        {
            "layer": 2,
            "row": 3968,
            "col": 7003,
            "status": "confirmed",
            "source": "measured",
            "reproduction": "reproduced",
            "citation": "Yu et al. 2024, The Super Weight in Large Language Models, arXiv:2411.07191",
            "citation_source": "paper table",
            "sources": [],
            "disputed": False,
            "readings": [],
            "doubtful": False,
            "value": -1.546875,
            "dtype": "float16",
            "hf_tensor": "model.layers.2.mlp.down_proj.weight",
            "gguf_tensor": "blk.2.ffn_down.weight",
            "gguf_index": [7003, 3968],
            "input_activation": 56.1,
            "output_activation": -2540.0,
            "token": 0,
            "magnitude_rank": 1,
            "iteration": 0,
            "verdict_reason": "zeroing it alone raises perplexity 213.30x",
            "member_of_confirmed_set": True,
            "prompt_agreement": 1.0,
            "decided_by": [],
        }
    )

    layer: int
    row: int = Field(description="Hidden (output) channel.")
    col: int = Field(description="Intermediate (input) channel.")
    status: SuperWeightStatus
    source: Literal["measured", "reported"]
    reproduction: Literal["reproduced", "contradicted", "not_found", "unverified"] | None = Field(
        description="Relation to a published entry at the same coordinates (null: none published)."
    )
    citation: str | None
    citation_source: str | None
    sources: list[ReportedSourceOut] = Field(description="Every source that reports this coordinate.")
    disputed: bool = Field(description="Sources put this weight at other layers too (see `readings`).")
    readings: list[Coordinate] = Field(description="The other readings of a disputed weight.")
    doubtful: bool = Field(description="Every source that reports it marks it doubtful.")
    value: float | None
    dtype: str | None
    hf_tensor: str | None
    gguf_tensor: str | None
    gguf_index: list[int] | None = Field(description="GGUF `ne` order: [col, row].")
    input_activation: float | None
    output_activation: float | None
    token: int | None
    magnitude_rank: int | None
    iteration: int | None
    verdict_reason: str | None
    member_of_confirmed_set: bool = Field(
        description="Zeroing the set of super weights that holds it confirmed the model (it matters jointly)."
    )
    prompt_agreement: float | None = Field(
        ge=0,
        le=1,
        description="Share of the detection prompts (one batch) whose spike points at this weight; null "
        "for a published entry, or a run that did not record it.",
    )
    decided_by: list[QualityResultOut]


class SuperActivationOut(SuperActivation):
    """The massive residual-stream activation the super weights create."""

    model_config = _examples(
        {
            "channel": 3968,
            "token": 0,
            "magnitude_by_layer": [0.9, 12.0, 2533.1],
            "peak_layer": 2,
            "peak_magnitude": 2533.1,
            "first_layer": 2,
            "on_first_token": True,
            "on_bos": True,
        }
    )


class RevisionOut(BaseModel):
    """A pinned revision."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [{"sha": SHA_EXAMPLE, "resolved_from": "main", "resolved_at": TIME_EXAMPLE}]
        },
    )

    sha: str = Field(description="40-hex commit sha, or sha256:<hex> of a local file.")
    resolved_from: str | None
    resolved_at: datetime


class RunSummaryOut(BaseModel):
    """An index run, briefly."""

    model_config = _examples(
        {
            "id": 7,
            "url": "/v1/runs/7",
            "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
            "quantization": None,
            "revision": SHA_EXAMPLE,
            "status": "succeeded",
            "config_hash": "9f2c...",
            "request_key": "51ab...",
            "model_verdict": "confirmed",
            "detector_version": "1.0.0",
            "validator_version": "1.0.0",
            "created_at": TIME_EXAMPLE,
            "finished_at": TIME_EXAMPLE,
        }
    )

    id: int
    url: str
    model: str = Field(description="The model the run measured: this one, or one of its builds.")
    quantization: str | None = Field(description="The build's quantization type (e.g. Q4_1), if a build.")
    revision: str
    status: RunStatus
    config_hash: str = Field(description="The run key: the hash of the settings the worker used.")
    request_key: str = Field(description="The hash of what was asked for; runs of one request share it.")
    model_verdict: str | None
    detector_version: str | None
    validator_version: str | None
    created_at: datetime
    finished_at: datetime | None


class RunVerdictOut(BaseModel):
    """What one run says about a coordinate, with the figure that decided it."""

    run_id: int
    model: str = Field(description="The model (or build) the run measured.")
    quantization: str | None
    reproduction: Literal["reproduced", "contradicted", "not_found"]
    status: str | None = Field(description="The coordinate's status in that run; null when not detected.")
    figure: float | None = Field(
        description="The perplexity ratio of zeroing it, else the detected output activation."
    )
    prompt_agreement: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Share of that run's detection prompts whose spike points at it (null: not detected, "
        "or not recorded).",
    )


class CoordinateHistoryOut(BaseModel):
    """One coordinate across the runs of a model and of its builds (newest run first)."""

    layer: int
    row: int
    col: int
    reported: bool = Field(description="A source reports this coordinate.")
    reproduction: Literal["reproduced", "contradicted", "not_found", "unverified"] = Field(
        description="The newest run's verdict."
    )
    runs: list[RunVerdictOut]


class DerivedModelOut(BaseModel):
    """A model derived from this one."""

    id: str
    url: str
    relation: Literal["fine-tune", "quantized build", "merge"]
    quantization: str | None


MODEL_SUMMARY_EXAMPLE: dict[str, Any] = {
    "id": "huggyllama/llama-7b",
    "url": "/v1/models/huggyllama/llama-7b",
    "org": "huggyllama",
    "name": "llama-7b",
    "architecture": "llama",
    "family": "Llama",
    "parameter_count": 6738415616,
    "base_model": None,
    "relation": None,
    "quantization": None,
    "source_kind": "hub",
    "super_weight_count": 1,
    "status_counts": {"reported": 1},
    "updated_at": TIME_EXAMPLE,
}


class ModelSummaryOut(BaseModel):
    """A model in a listing."""

    model_config = _examples(MODEL_SUMMARY_EXAMPLE)

    id: str = Field(description="Hub id `org/name`.")
    url: str
    org: str
    name: str
    architecture: str | None = Field(description="`config.model_type`.")
    family: str | None
    parameter_count: int | None
    base_model: str | None = Field(description="The model this one was derived from, when known.")
    relation: Literal["fine-tune", "quantized build", "merge"] | None = Field(
        description="How it derives from `base_model`."
    )
    quantization: str | None = Field(description="A quantized build's type, e.g. Q4_1.")
    source_kind: str
    super_weight_count: int
    status_counts: dict[str, int]
    updated_at: datetime


class ModelDetailOut(ModelSummaryOut):
    """A model with its latest revision and its runs."""

    model_config = _examples(
        {**MODEL_SUMMARY_EXAMPLE, "latest_revision": None, "runs": [], "derived": [], "history": []}
    )

    latest_revision: RevisionOut | None
    runs: list[RunSummaryOut] = Field(
        description="Runs of this model and of its quantized builds, newest first."
    )
    derived: list[DerivedModelOut] = Field(description="Fine-tunes, merges and builds of this model.")
    history: list[CoordinateHistoryOut] = Field(
        description="Each coordinate, reported or measured, across the runs."
    )


class MeasuredOnOut(BaseModel):
    """The model a run measured."""

    model: str
    relation: Literal["fine-tune", "quantized build", "merge"] | None
    quantization: str | None


class SuperWeightsOut(BaseModel):
    """A model's super weights at one revision."""

    model_config = _examples(
        {
            "model": "huggyllama/llama-7b",
            "revision": None,
            "run_id": None,
            "measured_on": None,
            "super_weights": [SuperWeightOut.model_config["json_schema_extra"]["examples"][0]],  # type: ignore[index]
            "super_activation": None,
        }
    )

    model: str
    revision: RevisionOut | None = Field(description="Null when only published entries exist.")
    run_id: int | None
    measured_on: MeasuredOnOut | None = Field(
        description="The model the run measured, when it is a build of this one (else this model or null)."
    )
    super_weights: list[SuperWeightOut]
    super_activation: SuperActivationOut | None


class LayerStatsOut(LayerStats):
    """Per-layer activation maxima of one iteration."""

    model_config = FROM_ROWS


class ProfileIterationOut(LayerProfile):
    """One detection iteration: what was zeroed, and the per-layer maxima."""

    layers: tuple[LayerStatsOut, ...] = ()


class RunReportOut(BaseModel):
    """The full report of an index run."""

    model_config = _examples(
        {
            "id": 7,
            "model": "org/model",
            "revision": {"sha": SHA_EXAMPLE, "resolved_from": "main", "resolved_at": TIME_EXAMPLE},
            "status": "succeeded",
            "config": {"prompt": "Apple Inc. is"},
            "config_hash": "9f2c...",
            "request_key": "51ab...",
            "settings": {"device": "cuda", "dtype": "bfloat16", "validation": {"max_tokens": 65536}},
            "provenance": {"detector_version": "1.0.0"},
            "timings": {"detect": 3.2},
            "wall_time_s": 3.2,
            "error": None,
            "model_verdict": "confirmed",
            "detector_version": "1.0.0",
            "started_at": TIME_EXAMPLE,
            "finished_at": TIME_EXAMPLE,
            "created_at": TIME_EXAMPLE,
            "job_id": None,
            "super_weights": [],
            "super_activation": None,
            "layer_profile": [],
            "quality_results": [],
        }
    )

    id: int
    model: str
    revision: RevisionOut
    status: RunStatus
    config: dict[str, Any] = Field(description="What was asked for: the job's settings and code versions.")
    config_hash: str = Field(description="The run key: the hash of `settings`, or of `config` before 0006.")
    request_key: str = Field(description="The hash of `config`; runs of one request share it.")
    settings: dict[str, Any] | None = Field(
        description="The settings the worker resolved and used (budget, window, corpus, dtype, device, "
        "detection and validation); null for runs stored before they were kept."
    )
    provenance: dict[str, Any]
    timings: dict[str, Any]
    wall_time_s: float | None
    error: str | None
    model_verdict: str | None
    detector_version: str | None
    started_at: datetime | None
    finished_at: datetime | None
    created_at: datetime
    job_id: uuid.UUID | None
    super_weights: list[SuperWeightOut]
    super_activation: SuperActivationOut | None
    layer_profile: list[ProfileIterationOut]
    quality_results: list[QualityResultOut]


class CompareSideOut(BaseModel):
    """What one side of a comparison is based on."""

    model: str
    basis: Literal["run", "reported", "none"]
    run_id: int | None
    revision: str | None


class MovedOut(BaseModel):
    """A super weight whose counterpart sits elsewhere: same hidden channel (`row`), or same layer and col."""

    a: Coordinate
    b: Coordinate
    shared: Literal["row", "layer_col"]


class DriftOut(BaseModel):
    """A kept (or moved) super weight's value in both models."""

    a: Coordinate
    b: Coordinate
    value_a: float | None
    value_b: float | None
    difference: float | None = Field(description="value_b - value_a.")
    relative: float | None = Field(
        description="|difference| / |value_a|; for a quantized build, the dequantization error."
    )


class CompareOut(BaseModel):
    """Coordinates two models share, which moved, which vanished (only in a), which appeared (only in b)."""

    model_config = _examples(
        {
            "a": {"model": "meta-llama/Llama-2-7b-hf", "basis": "reported", "run_id": None, "revision": None},
            "b": {
                "model": "meta-llama/Llama-2-7b-chat-hf",
                "basis": "run",
                "run_id": 3,
                "revision": SHA_EXAMPLE,
            },
            "relation": "fine-tune",
            "shared": [{"layer": 1, "row": 2533, "col": 7890}],
            "moved": [],
            "vanished": [],
            "appeared": [],
            "drift": [],
            "dequantization_error": False,
            "super_activation_channel_a": None,
            "super_activation_channel_b": 2533,
        }
    )

    a: CompareSideOut
    b: CompareSideOut
    relation: Literal["fine-tune", "quantized build", "merge"] | None = Field(
        description="How one model derives from the other, when the catalog knows."
    )
    shared: list[Coordinate]
    moved: list[MovedOut]
    vanished: list[Coordinate]
    appeared: list[Coordinate]
    drift: list[DriftOut] = Field(description="Value of each shared or moved super weight on both sides.")
    dequantization_error: bool = Field(
        description="One side is a quantized build of the other: `drift` is its dequantized values' error."
    )
    super_activation_channel_a: int | None
    super_activation_channel_b: int | None


JOB_EXAMPLE: dict[str, Any] = {
    "id": "0b9f7a51-3a83-4b8e-9c6e-2a4c1c0f5d11",
    "url": "/v1/jobs/0b9f7a51-3a83-4b8e-9c6e-2a4c1c0f5d11",
    "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "requested_revision": "main",
    "resolved_sha": None,
    "config": {"max_super_weights": 8},
    "config_hash": "9f2c...",
    "status": "running",
    "phase": "detect",
    "progress": 0.4,
    "attempts": 1,
    "max_attempts": 3,
    "last_error": None,
    "run_id": None,
    "run_url": None,
    "created_at": TIME_EXAMPLE,
    "updated_at": TIME_EXAMPLE,
    "started_at": TIME_EXAMPLE,
    "finished_at": None,
    "heartbeat_at": TIME_EXAMPLE,
}


class JobOut(BaseModel):
    """A submission's job: status, phase, progress, attempts and error."""

    model_config = _examples(JOB_EXAMPLE)

    id: uuid.UUID
    model: str
    requested_revision: str | None
    resolved_sha: str | None
    config: dict[str, Any]
    config_hash: str
    status: JobStatus
    phase: str | None
    progress: float = Field(ge=0, le=1)
    attempts: int
    max_attempts: int
    last_error: str | None
    run_id: int | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def url(self) -> str:
        """The API path of the job."""
        return f"/v1/jobs/{self.id}"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def run_url(self) -> str | None:
        """The API path of the run the job produced, once it did."""
        return f"/v1/runs/{self.run_id}" if self.run_id is not None else None


class SubmissionOut(BaseModel):
    """The job a submission created or found (or the existing run when no job produced it)."""

    model_config = _examples({"created": True, "job": JOB_EXAMPLE, "run_id": None, "run_url": None})

    created: bool = Field(description="False when an identical submission's job or run was returned.")
    job: JobOut | None
    run_id: int | None
    run_url: str | None
