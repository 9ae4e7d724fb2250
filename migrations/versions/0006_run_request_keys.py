"""Two keys per run: the request key (what the user asked for) beside the run key (what the worker used).

`index_runs.config_hash` stays the run key (unique per revision): from now on the hash of the effective
settings a worker resolved (`contracts.jobs.RunSettings`, stored in the new `index_runs.settings`), so a
re-run on a worker that resolves a job's defaults differently (another token budget, corpus, dtype or
device) is stored as a new run. `index_runs.request_key` is the hash of the request configuration
(`index_runs.config`: the job's settings and the code versions); several runs may share one, and the
submission service finds "a run already exists" by it.

Data: a run stored before this revision was keyed by the hash of its request configuration; its request
key is derived from `config` (the same hash) and its run key kept; its effective settings were not kept
(`settings` stays NULL).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 02:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from contracts.identifiers import config_hash

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: JSON, stored as JSONB on PostgreSQL
JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
RUNS = sa.table(
    "index_runs",
    sa.column("id", sa.Integer()),
    sa.column("config", JSON_TYPE),
    sa.column("request_key", sa.String()),
)


def upgrade() -> None:
    """Add the request key (derived for stored runs) and the effective settings (NULL for them)."""
    # SQLite adds a NOT NULL column only with a default; no batch copy of a table others reference
    op.add_column(
        "index_runs", sa.Column("request_key", sa.String(length=64), nullable=False, server_default="")
    )
    op.add_column("index_runs", sa.Column("settings", JSON_TYPE, nullable=True))
    connection = op.get_bind()
    for run_id, config in connection.execute(sa.select(RUNS.c.id, RUNS.c.config)).all():
        key = config_hash(config if isinstance(config, dict) else {})
        connection.execute(RUNS.update().where(RUNS.c.id == run_id).values(request_key=key))
    if connection.dialect.name == "postgresql":
        op.alter_column("index_runs", "request_key", server_default=None)
    op.create_index(
        op.f("ix_index_runs_revision_id_request_key"), "index_runs", ["revision_id", "request_key"]
    )


def downgrade() -> None:
    """Drop the index and both columns (in place, as the upgrade added them)."""
    op.drop_index(op.f("ix_index_runs_revision_id_request_key"), table_name="index_runs")
    op.drop_column("index_runs", "settings")
    op.drop_column("index_runs", "request_key")
