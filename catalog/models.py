"""SQLAlchemy 2 models of the catalog (the schema itself is owned by Alembic, see `migrations/`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import DateTime, TypeDecorator

from contracts.lineage import RelationKind, SourceKind
from contracts.status import ACTIVE_JOB_STATUSES, JobStatus, RunStatus, SuperWeightStatus
from contracts.validation import FigureKey, Measurement

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: JSON everywhere, stored as JSONB on PostgreSQL
JsonType = JSON().with_variant(JSONB(), "postgresql")

HUB_ID_MAX = 200
REVISION_MAX = 71  # 40-hex commit sha, or "sha256:" + 64 hex for local files
REF_MAX = 255


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp that also comes back aware from SQLite (which stores no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _in(values: Any) -> str:
    return ", ".join(f"'{v}'" for v in values)


class Base(DeclarativeBase):
    """Declarative base with the constraint naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UtcDateTime(),
        dict[str, Any]: JsonType,
        list[Any]: JsonType,
    }


class ApiKey(Base):
    """An API key: only its SHA-256 is stored; the secret is shown once at creation."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    owner: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[list[Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class CatalogModel(Base):
    """A model, named by its hub id `org/name` (local sources use the org `local`)."""

    __tablename__ = "models"
    __table_args__ = (
        CheckConstraint(f"relation IN ({_in(RelationKind)})", name="relation"),
        CheckConstraint("(relation IS NULL) = (base_model_id IS NULL)", name="relation_has_base"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hub_id: Mapped[str] = mapped_column(String(HUB_ID_MAX), unique=True)
    org: Mapped[str] = mapped_column(String(96))
    name: Mapped[str] = mapped_column(String(96))
    model_type: Mapped[str | None] = mapped_column(String(64), index=True)
    family: Mapped[str | None] = mapped_column(String(64), index=True)
    parameter_count: Mapped[int | None] = mapped_column(BigInteger)
    base_model_id: Mapped[int | None] = mapped_column(
        ForeignKey("models.id", ondelete="SET NULL"), index=True
    )
    relation: Mapped[str | None] = mapped_column(String(16))
    quantization: Mapped[str | None] = mapped_column(String(16))  # a build's type, e.g. Q4_1
    source_kind: Mapped[str] = mapped_column(String(16), default="hub")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    revisions: Mapped[list[Revision]] = relationship(back_populates="model", passive_deletes=True)
    base: Mapped[CatalogModel | None] = relationship(remote_side=[id], lazy="joined", join_depth=1)

    @property
    def base_model(self) -> str | None:
        """The hub id of the model this one derives from, if any."""
        return self.base.hub_id if self.base is not None else None


class Revision(Base):
    """A pinned revision of a model: a commit sha, or a content digest for local files."""

    __tablename__ = "revisions"
    __table_args__ = (UniqueConstraint("model_id", "sha"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    sha: Mapped[str] = mapped_column(String(REVISION_MAX))
    resolved_from: Mapped[str | None] = mapped_column(String(REF_MAX))
    resolved_at: Mapped[datetime] = mapped_column(default=utcnow)

    model: Mapped[CatalogModel] = relationship(back_populates="revisions")


class IndexRun(Base):
    """One detection (and validation) of one revision with one configuration."""

    __tablename__ = "index_runs"
    __table_args__ = (
        UniqueConstraint("revision_id", "config_hash"),
        CheckConstraint(f"status IN ({_in(RunStatus)})", name="status"),
        Index("ix_index_runs_model_id_created_at", "model_id", "created_at"),
        Index("ix_index_runs_revision_id_request_key", "revision_id", "request_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    revision_id: Mapped[int] = mapped_column(ForeignKey("revisions.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    config: Mapped[dict[str, Any]]  # the request configuration: the job's settings and the code versions
    #: the run key (`contracts.jobs.RunKey`): the hash of `settings`, or of `config` for a run without them
    config_hash: Mapped[str] = mapped_column(String(64))
    #: the request key (`contracts.jobs.RequestKey`): the hash of `config`; several runs may share one
    request_key: Mapped[str] = mapped_column(String(64))
    #: the effective settings the worker used (`contracts.jobs.RunSettings`); NULL for runs stored before 0006
    settings: Mapped[dict[str, Any] | None] = mapped_column(JsonType, nullable=True)
    provenance: Mapped[dict[str, Any]]
    detector_version: Mapped[str | None] = mapped_column(String(32))
    model_verdict: Mapped[str | None] = mapped_column(String(32))
    profile_removed: Mapped[list[Any]]  # per iteration: the (layer, row, col) zeroed during that pass
    timings: Mapped[dict[str, Any]]
    wall_time_s: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    model: Mapped[CatalogModel] = relationship()
    revision: Mapped[Revision] = relationship()


class SuperWeight(Base):
    """A super-weight coordinate: reported (run_id NULL, with citation) or measured by a run."""

    __tablename__ = "super_weights"
    __table_args__ = (
        UniqueConstraint("run_id", "layer", "row", "col"),
        Index(
            "uq_super_weights_reported_coordinates",
            "model_id",
            "layer",
            "row",
            "col",
            unique=True,
            postgresql_where=text("run_id IS NULL"),
            sqlite_where=text("run_id IS NULL"),
        ),
        Index("ix_super_weights_model_id_status", "model_id", "status"),
        CheckConstraint(f"status IN ({_in(SuperWeightStatus)})", name="status"),
        CheckConstraint("(run_id IS NULL) = (status = 'reported')", name="reported_has_no_run"),
        CheckConstraint("layer >= 0 AND row >= 0 AND col >= 0", name="coordinates"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("index_runs.id", ondelete="CASCADE"), index=True)
    layer: Mapped[int] = mapped_column(Integer, index=True)
    row: Mapped[int] = mapped_column(Integer, index=True)
    col: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    value: Mapped[float | None] = mapped_column(Float)
    dtype: Mapped[str | None] = mapped_column(String(32))
    hf_tensor: Mapped[str | None] = mapped_column(String(255))
    gguf_tensor: Mapped[str | None] = mapped_column(String(255))
    gguf_index: Mapped[list[Any] | None]
    input_activation: Mapped[float | None] = mapped_column(Float)
    output_activation: Mapped[float | None] = mapped_column(Float)
    token: Mapped[int | None] = mapped_column(Integer)
    magnitude_rank: Mapped[int | None] = mapped_column(Integer)
    iteration: Mapped[int | None] = mapped_column(Integer)
    citation: Mapped[str | None] = mapped_column(Text)
    citation_source: Mapped[str | None] = mapped_column(String(64))
    verdict_reason: Mapped[str | None] = mapped_column(Text)
    #: zeroing the set that contains it confirmed the model (it matters at least jointly)
    member_of_confirmed_set: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: share of the detection prompts whose spike points at it (NULL: reported, or not recorded)
    prompt_agreement: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def coordinates(self) -> tuple[int, int, int]:
        """The `(layer, row, col)` triple."""
        return (self.layer, self.row, self.col)


class ReportedSource(Base):
    """One source that reports a `reported` super-weight entry, with what it gives as evidence."""

    __tablename__ = "reported_sources"
    __table_args__ = (
        UniqueConstraint("super_weight_id", "locator"),
        CheckConstraint(f"kind IN ({_in(SourceKind)})", name="kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    super_weight_id: Mapped[int] = mapped_column(
        ForeignKey("super_weights.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    locator: Mapped[str] = mapped_column(String(500))  # `owner/repo:path`, or the paper's table
    citation: Mapped[str] = mapped_column(Text)
    source_file: Mapped[str | None] = mapped_column(String(500))
    commit: Mapped[str | None] = mapped_column(String(40))
    evidence: Mapped[str | None] = mapped_column(Text)
    doubtful: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SuperActivation(Base):
    """The massive residual-stream activation that a run's super weights create."""

    __tablename__ = "super_activations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("index_runs.id", ondelete="CASCADE"), unique=True)
    channel: Mapped[int] = mapped_column(Integer)
    token: Mapped[int] = mapped_column(Integer)
    magnitude_by_layer: Mapped[list[Any]]
    peak_layer: Mapped[int] = mapped_column(Integer)
    peak_magnitude: Mapped[float] = mapped_column(Float)
    first_layer: Mapped[int] = mapped_column(Integer)
    #: it sits on the detection prompt's first token, and that token is the tokenizer's BOS
    on_first_token: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    on_bos: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class LayerProfile(Base):
    """Per-layer activation maxima of one detection iteration."""

    __tablename__ = "layer_profiles"
    __table_args__ = (UniqueConstraint("run_id", "iteration", "layer"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("index_runs.id", ondelete="CASCADE"))
    iteration: Mapped[int] = mapped_column(Integer)
    layer: Mapped[int] = mapped_column(Integer)
    input_max: Mapped[float] = mapped_column(Float)
    input_value: Mapped[float] = mapped_column(Float)
    input_token: Mapped[int] = mapped_column(Integer)
    input_channel: Mapped[int] = mapped_column(Integer)
    output_max: Mapped[float] = mapped_column(Float)
    output_value: Mapped[float] = mapped_column(Float)
    output_token: Mapped[int] = mapped_column(Integer)
    output_channel: Mapped[int] = mapped_column(Integer)
    residual_max: Mapped[float] = mapped_column(Float)
    residual_token: Mapped[int] = mapped_column(Integer)
    residual_channel: Mapped[int] = mapped_column(Integer)


class QualityResult(Base):
    """One measurement of a validation experiment (e.g. perplexity with a super weight zeroed)."""

    __tablename__ = "quality_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("index_runs.id", ondelete="CASCADE"), index=True)
    super_weight_id: Mapped[int | None] = mapped_column(
        ForeignKey("super_weights.id", ondelete="CASCADE"), index=True
    )
    experiment: Mapped[str] = mapped_column(String(100))
    parameters: Mapped[dict[str, Any]]
    metric: Mapped[str] = mapped_column(String(64))
    value: Mapped[float | None] = mapped_column(Float)
    baseline: Mapped[float | None] = mapped_column(Float)
    ratio: Mapped[float | None] = mapped_column(Float)
    corpus: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def figure(self) -> FigureKey:
        """Which figure this is (stored as its key's text form in `parameters`)."""
        return Measurement.model_validate(self, from_attributes=True).figure


class Job(Base):
    """A submission and its life cycle; the row is the source of truth for job state."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("requester_id", "idempotency_key"),
        Index(
            "uq_jobs_active_dedup_key",
            "dedup_key",
            unique=True,
            postgresql_where=text(f"status IN ({_in(ACTIVE_JOB_STATUSES)})"),
            sqlite_where=text(f"status IN ({_in(ACTIVE_JOB_STATUSES)})"),
        ),
        Index("ix_jobs_status_heartbeat_at", "status", "heartbeat_at"),
        Index("ix_jobs_requester_id_created_at", "requester_id", "created_at"),
        CheckConstraint(f"status IN ({_in(JobStatus)})", name="status"),
        CheckConstraint("progress >= 0 AND progress <= 1", name="progress"),
        CheckConstraint("attempts >= 0 AND max_attempts >= 1", name="attempts"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    model: Mapped[str] = mapped_column(String(HUB_ID_MAX), index=True)
    requested_revision: Mapped[str | None] = mapped_column(String(REF_MAX))
    resolved_sha: Mapped[str | None] = mapped_column(String(REVISION_MAX))
    config: Mapped[dict[str, Any]]
    config_hash: Mapped[str] = mapped_column(String(64))
    dedup_key: Mapped[str] = mapped_column(String(600))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    requester_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    phase: Mapped[str | None] = mapped_column(String(32))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    last_error: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("index_runs.id", ondelete="SET NULL"))
    run_after: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    enqueued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
