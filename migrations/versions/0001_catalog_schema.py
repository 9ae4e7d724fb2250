"""The catalog schema: models, revisions, runs, super weights, quality results, jobs, API keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-28 16:10:34.842156
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: JSON, stored as JSONB on PostgreSQL
JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    """Create every table of the catalog."""
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("scopes", JSON_TYPE, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )
    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hub_id", sa.String(length=200), nullable=False),
        sa.Column("org", sa.String(length=96), nullable=False),
        sa.Column("name", sa.String(length=96), nullable=False),
        sa.Column("model_type", sa.String(length=64), nullable=True),
        sa.Column("family", sa.String(length=64), nullable=True),
        sa.Column("parameter_count", sa.BigInteger(), nullable=True),
        sa.Column("base_model", sa.String(length=200), nullable=True),
        sa.Column("source_kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
        sa.UniqueConstraint("hub_id", name=op.f("uq_models_hub_id")),
    )
    op.create_index(op.f("ix_models_family"), "models", ["family"], unique=False)
    op.create_index(op.f("ix_models_model_type"), "models", ["model_type"], unique=False)
    op.create_index(op.f("ix_models_updated_at"), "models", ["updated_at"], unique=False)
    op.create_table(
        "revisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("sha", sa.String(length=71), nullable=False),
        sa.Column("resolved_from", sa.String(length=255), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name=op.f("fk_revisions_model_id_models"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revisions")),
        sa.UniqueConstraint("model_id", "sha", name=op.f("uq_revisions_model_id_sha")),
    )
    op.create_table(
        "index_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("revision_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("config", JSON_TYPE, nullable=False),
        sa.Column("config_hash", sa.String(length=64), nullable=False),
        sa.Column("provenance", JSON_TYPE, nullable=False),
        sa.Column("detector_version", sa.String(length=32), nullable=True),
        sa.Column("model_verdict", sa.String(length=32), nullable=True),
        sa.Column("profile_removed", JSON_TYPE, nullable=False),
        sa.Column("timings", JSON_TYPE, nullable=False),
        sa.Column("wall_time_s", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('succeeded', 'failed')", name=op.f("ck_index_runs_status")),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name=op.f("fk_index_runs_model_id_models"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["revision_id"],
            ["revisions.id"],
            name=op.f("fk_index_runs_revision_id_revisions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_index_runs")),
        sa.UniqueConstraint("revision_id", "config_hash", name=op.f("uq_index_runs_revision_id_config_hash")),
    )
    op.create_index(
        "ix_index_runs_model_id_created_at", "index_runs", ["model_id", "created_at"], unique=False
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("requested_revision", sa.String(length=255), nullable=True),
        sa.Column("resolved_sha", sa.String(length=71), nullable=True),
        sa.Column("config", JSON_TYPE, nullable=False),
        sa.Column("config_hash", sa.String(length=64), nullable=False),
        sa.Column("dedup_key", sa.String(length=600), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("requester_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("phase", sa.String(length=32), nullable=True),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("run_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'retry', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_jobs_status"),
        ),
        sa.CheckConstraint("attempts >= 0 AND max_attempts >= 1", name=op.f("ck_jobs_attempts")),
        sa.CheckConstraint("progress >= 0 AND progress <= 1", name=op.f("ck_jobs_progress")),
        sa.ForeignKeyConstraint(
            ["requester_id"], ["api_keys.id"], name=op.f("fk_jobs_requester_id_api_keys"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["index_runs.id"], name=op.f("fk_jobs_run_id_index_runs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint(
            "requester_id", "idempotency_key", name=op.f("uq_jobs_requester_id_idempotency_key")
        ),
    )
    op.create_index(op.f("ix_jobs_model"), "jobs", ["model"], unique=False)
    op.create_index("ix_jobs_requester_id_created_at", "jobs", ["requester_id", "created_at"], unique=False)
    op.create_index("ix_jobs_status_heartbeat_at", "jobs", ["status", "heartbeat_at"], unique=False)
    op.create_index(
        "uq_jobs_active_dedup_key",
        "jobs",
        ["dedup_key"],
        unique=True,
        postgresql_where=sa.text("status IN ('queued', 'running', 'retry')"),
        sqlite_where=sa.text("status IN ('queued', 'running', 'retry')"),
    )
    op.create_table(
        "layer_profiles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("iteration", sa.Integer(), nullable=False),
        sa.Column("layer", sa.Integer(), nullable=False),
        sa.Column("input_max", sa.Float(), nullable=False),
        sa.Column("input_value", sa.Float(), nullable=False),
        sa.Column("input_token", sa.Integer(), nullable=False),
        sa.Column("input_channel", sa.Integer(), nullable=False),
        sa.Column("output_max", sa.Float(), nullable=False),
        sa.Column("output_value", sa.Float(), nullable=False),
        sa.Column("output_token", sa.Integer(), nullable=False),
        sa.Column("output_channel", sa.Integer(), nullable=False),
        sa.Column("residual_max", sa.Float(), nullable=False),
        sa.Column("residual_token", sa.Integer(), nullable=False),
        sa.Column("residual_channel", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["index_runs.id"],
            name=op.f("fk_layer_profiles_run_id_index_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_layer_profiles")),
        sa.UniqueConstraint(
            "run_id", "iteration", "layer", name=op.f("uq_layer_profiles_run_id_iteration_layer")
        ),
    )
    op.create_table(
        "super_activations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.Integer(), nullable=False),
        sa.Column("token", sa.Integer(), nullable=False),
        sa.Column("magnitude_by_layer", JSON_TYPE, nullable=False),
        sa.Column("peak_layer", sa.Integer(), nullable=False),
        sa.Column("peak_magnitude", sa.Float(), nullable=False),
        sa.Column("first_layer", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["index_runs.id"],
            name=op.f("fk_super_activations_run_id_index_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_super_activations")),
        sa.UniqueConstraint("run_id", name=op.f("uq_super_activations_run_id")),
    )
    op.create_table(
        "super_weights",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("layer", sa.Integer(), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("col", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("dtype", sa.String(length=32), nullable=True),
        sa.Column("hf_tensor", sa.String(length=255), nullable=True),
        sa.Column("gguf_tensor", sa.String(length=255), nullable=True),
        sa.Column("gguf_index", JSON_TYPE, nullable=True),
        sa.Column("input_activation", sa.Float(), nullable=True),
        sa.Column("output_activation", sa.Float(), nullable=True),
        sa.Column("token", sa.Integer(), nullable=True),
        sa.Column("magnitude_rank", sa.Integer(), nullable=True),
        sa.Column("iteration", sa.Integer(), nullable=True),
        sa.Column("citation", sa.Text(), nullable=True),
        sa.Column("citation_source", sa.String(length=64), nullable=True),
        sa.Column("verdict_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(run_id IS NULL) = (status = 'reported')", name=op.f("ck_super_weights_reported_has_no_run")
        ),
        sa.CheckConstraint(
            "status IN ('reported', 'candidate', 'confirmed', 'inert')", name=op.f("ck_super_weights_status")
        ),
        sa.CheckConstraint("layer >= 0 AND row >= 0 AND col >= 0", name=op.f("ck_super_weights_coordinates")),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name=op.f("fk_super_weights_model_id_models"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["index_runs.id"], name=op.f("fk_super_weights_run_id_index_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_super_weights")),
        sa.UniqueConstraint(
            "run_id", "layer", "row", "col", name=op.f("uq_super_weights_run_id_layer_row_col")
        ),
    )
    op.create_index(op.f("ix_super_weights_layer"), "super_weights", ["layer"], unique=False)
    op.create_index("ix_super_weights_model_id_status", "super_weights", ["model_id", "status"], unique=False)
    op.create_index(op.f("ix_super_weights_run_id"), "super_weights", ["run_id"], unique=False)
    op.create_index(
        "uq_super_weights_reported_coordinates",
        "super_weights",
        ["model_id", "layer", "row", "col"],
        unique=True,
        postgresql_where=sa.text("run_id IS NULL"),
        sqlite_where=sa.text("run_id IS NULL"),
    )
    op.create_table(
        "quality_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("super_weight_id", sa.Integer(), nullable=True),
        sa.Column("experiment", sa.String(length=100), nullable=False),
        sa.Column("parameters", JSON_TYPE, nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("baseline", sa.Float(), nullable=True),
        sa.Column("ratio", sa.Float(), nullable=True),
        sa.Column("corpus", JSON_TYPE, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["index_runs.id"],
            name=op.f("fk_quality_results_run_id_index_runs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["super_weight_id"],
            ["super_weights.id"],
            name=op.f("fk_quality_results_super_weight_id_super_weights"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quality_results")),
    )
    op.create_index(op.f("ix_quality_results_run_id"), "quality_results", ["run_id"], unique=False)
    op.create_index(
        op.f("ix_quality_results_super_weight_id"), "quality_results", ["super_weight_id"], unique=False
    )


def downgrade() -> None:
    """Drop every table of the catalog."""
    op.drop_index(op.f("ix_quality_results_super_weight_id"), table_name="quality_results")
    op.drop_index(op.f("ix_quality_results_run_id"), table_name="quality_results")
    op.drop_table("quality_results")
    op.drop_index(
        "uq_super_weights_reported_coordinates",
        table_name="super_weights",
        postgresql_where=sa.text("run_id IS NULL"),
        sqlite_where=sa.text("run_id IS NULL"),
    )
    op.drop_index(op.f("ix_super_weights_run_id"), table_name="super_weights")
    op.drop_index("ix_super_weights_model_id_status", table_name="super_weights")
    op.drop_index(op.f("ix_super_weights_layer"), table_name="super_weights")
    op.drop_table("super_weights")
    op.drop_table("super_activations")
    op.drop_table("layer_profiles")
    op.drop_index(
        "uq_jobs_active_dedup_key",
        table_name="jobs",
        postgresql_where=sa.text("status IN ('queued', 'running', 'retry')"),
        sqlite_where=sa.text("status IN ('queued', 'running', 'retry')"),
    )
    op.drop_index("ix_jobs_status_heartbeat_at", table_name="jobs")
    op.drop_index("ix_jobs_requester_id_created_at", table_name="jobs")
    op.drop_index(op.f("ix_jobs_model"), table_name="jobs")
    op.drop_table("jobs")
    op.drop_index("ix_index_runs_model_id_created_at", table_name="index_runs")
    op.drop_table("index_runs")
    op.drop_table("revisions")
    op.drop_index(op.f("ix_models_updated_at"), table_name="models")
    op.drop_index(op.f("ix_models_model_type"), table_name="models")
    op.drop_index(op.f("ix_models_family"), table_name="models")
    op.drop_table("models")
    op.drop_table("api_keys")
