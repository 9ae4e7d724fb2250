"""Detection's prompt agreement per super weight, and where the super activation sits (first token, BOS).

`super_weights.prompt_agreement` is the share of the detection prompts whose spike points at the weight
(`contracts.results.SuperWeight.prompt_agreement`); `super_activations.on_first_token` / `on_bos` say
whether the super activation sits on the prompt's first token and whether that token is the BOS.

Data: the flags of stored runs follow from what they kept (the activation's token, and the provenance's
`bos_present`). A run whose detection used one prompt (its provenance lists at most one) has an agreement
of 1.0 by definition, as the detector writes it; a run that used a batch of prompts lost its figures
before this revision and keeps NULL (not recorded), like every reported entry.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 01:30:00.000000
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUNS = sa.table("index_runs", sa.column("id", sa.Integer()), sa.column("provenance", sa.JSON()))
ACTIVATIONS = sa.table(
    "super_activations",
    sa.column("id", sa.Integer()),
    sa.column("run_id", sa.Integer()),
    sa.column("token", sa.Integer()),
    sa.column("on_first_token", sa.Boolean()),
    sa.column("on_bos", sa.Boolean()),
)
WEIGHTS = sa.table(
    "super_weights",
    sa.column("run_id", sa.Integer()),
    sa.column("prompt_agreement", sa.Float()),
)


def _one_prompt(provenance: Mapping[str, Any]) -> bool:
    """Whether the run's detection decided on a single prompt (no batch recorded, or a batch of one)."""
    extra = provenance.get("extra")
    prompts = extra.get("prompts") if isinstance(extra, Mapping) else None
    return not isinstance(prompts, list) or len(prompts) <= 1


def upgrade() -> None:
    """Add the three columns and derive their values for the runs already stored."""
    op.add_column("super_weights", sa.Column("prompt_agreement", sa.Float(), nullable=True))
    op.add_column(
        "super_activations",
        sa.Column("on_first_token", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "super_activations", sa.Column("on_bos", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    connection = op.get_bind()
    provenances = {
        run_id: provenance if isinstance(provenance, Mapping) else {}
        for run_id, provenance in connection.execute(sa.select(RUNS.c.id, RUNS.c.provenance)).all()
    }
    for activation_id, run_id, token in connection.execute(
        sa.select(ACTIVATIONS.c.id, ACTIVATIONS.c.run_id, ACTIVATIONS.c.token)
    ).all():
        first = token == 0
        bos = first and provenances.get(run_id, {}).get("bos_present") is True
        if first:
            connection.execute(
                ACTIVATIONS.update()
                .where(ACTIVATIONS.c.id == activation_id)
                .values(on_first_token=True, on_bos=bos)
            )
    single = [run_id for run_id, provenance in provenances.items() if _one_prompt(provenance)]
    for start in range(0, len(single), 500):
        connection.execute(
            WEIGHTS.update()
            .where(WEIGHTS.c.run_id.in_(single[start : start + 500]))
            .values(prompt_agreement=1.0)
        )


def downgrade() -> None:
    """Drop the three columns (in place: no batch copy of tables that others reference, on SQLite too)."""
    op.drop_column("super_activations", "on_bos")
    op.drop_column("super_activations", "on_first_token")
    op.drop_column("super_weights", "prompt_agreement")
