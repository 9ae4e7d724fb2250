"""Lineage (base model as a foreign key, relation kind, a build's quantization) and reported sources.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 22:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RELATIONS = "'fine-tune', 'quantized build', 'merge'"
SOURCE_KINDS = "'paper table', 'reference code', 'replication'"


def upgrade() -> None:
    """Add the lineage columns (the old free-text base_model becomes a foreign key) and reported_sources."""
    # No batch (copy-and-move) on SQLite: dropping the old `models` table with foreign keys on would cascade
    # to every run. In place, SQLite adds columns but no table constraint, and cannot drop a referencing
    # column again, so the foreign key and the two CHECKs exist on PostgreSQL only (models are never deleted,
    # and the repository writes no other values).
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.add_column("models", sa.Column("base_model_id", sa.Integer(), nullable=True))
    op.add_column("models", sa.Column("relation", sa.String(length=16), nullable=True))
    op.add_column("models", sa.Column("quantization", sa.String(length=16), nullable=True))
    if not sqlite:
        op.create_foreign_key(
            op.f("fk_models_base_model_id_models"),
            "models",
            "models",
            ["base_model_id"],
            ["id"],
            ondelete="SET NULL",
        )
        op.create_check_constraint(op.f("ck_models_relation"), "models", f"relation IN ({RELATIONS})")
        op.create_check_constraint(
            op.f("ck_models_relation_has_base"), "models", "(relation IS NULL) = (base_model_id IS NULL)"
        )
    op.create_index(op.f("ix_models_base_model_id"), "models", ["base_model_id"], unique=False)
    models = sa.table(
        "models",
        sa.column("id", sa.Integer()),
        sa.column("hub_id", sa.String()),
        sa.column("base_model", sa.String()),
        sa.column("base_model_id", sa.Integer()),
        sa.column("relation", sa.String()),
    )
    connection = op.get_bind()
    ids = dict(connection.execute(sa.select(models.c.hub_id, models.c.id)).all())
    for model_id, base in connection.execute(
        sa.select(models.c.id, models.c.base_model).where(models.c.base_model.is_not(None))
    ).all():
        # the old column was free text: keep the links it names to catalogued models, as fine-tunes
        if base in ids and ids[base] != model_id:
            connection.execute(
                models.update()
                .where(models.c.id == model_id)
                .values(base_model_id=ids[base], relation="fine-tune")
            )
    op.drop_column("models", "base_model")
    op.create_index(op.f("ix_super_weights_row"), "super_weights", ["row"], unique=False)
    op.create_table(
        "reported_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("super_weight_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("locator", sa.String(length=500), nullable=False),
        sa.Column("citation", sa.Text(), nullable=False),
        sa.Column("source_file", sa.String(length=500), nullable=True),
        sa.Column("commit", sa.String(length=40), nullable=True),
        sa.Column("evidence", sa.Text(), nullable=True),
        sa.Column("doubtful", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(f"kind IN ({SOURCE_KINDS})", name=op.f("ck_reported_sources_kind")),
        sa.ForeignKeyConstraint(
            ["super_weight_id"],
            ["super_weights.id"],
            name=op.f("fk_reported_sources_super_weight_id_super_weights"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reported_sources")),
        sa.UniqueConstraint(
            "super_weight_id", "locator", name=op.f("uq_reported_sources_super_weight_id_locator")
        ),
    )
    op.create_index(
        op.f("ix_reported_sources_super_weight_id"), "reported_sources", ["super_weight_id"], unique=False
    )


def downgrade() -> None:
    """Drop reported_sources and the lineage columns (a base model goes back to its hub id as text)."""
    op.drop_index(op.f("ix_reported_sources_super_weight_id"), table_name="reported_sources")
    op.drop_table("reported_sources")
    op.drop_index(op.f("ix_super_weights_row"), table_name="super_weights")
    op.add_column("models", sa.Column("base_model", sa.String(length=200), nullable=True))
    models = sa.table(
        "models",
        sa.column("id", sa.Integer()),
        sa.column("base_model", sa.String()),
        sa.column("base_model_id", sa.Integer()),
    )
    base = sa.table("models", sa.column("id", sa.Integer()), sa.column("hub_id", sa.String())).alias("base")
    connection = op.get_bind()
    for model_id, hub_id in connection.execute(
        sa.select(models.c.id, base.c.hub_id).join(base, models.c.base_model_id == base.c.id)
    ).all():
        connection.execute(models.update().where(models.c.id == model_id).values(base_model=hub_id))
    op.drop_index(op.f("ix_models_base_model_id"), table_name="models")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(op.f("ck_models_relation_has_base"), "models", type_="check")
        op.drop_constraint(op.f("ck_models_relation"), "models", type_="check")
        op.drop_constraint(op.f("fk_models_base_model_id_models"), "models", type_="foreignkey")
    op.drop_column("models", "quantization")
    op.drop_column("models", "relation")
    op.drop_column("models", "base_model_id")
