"""Super weights: the statuses of the verdicts to come, and whether a weight belongs to the confirmed set.

`member_of_confirmed_set` is the validator's flag (zeroing the set that contains the weight confirmed the
model); until now it was dropped on the way to the catalog. The status check admits every
`contracts.status.SuperWeightStatus` value.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 22:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = ("reported", "candidate", "confirmed", "inert")
NEW_STATUSES = (*OLD_STATUSES, "set-confirmed", "redundant", "not_measured")
PARTIAL_INDEX = "uq_super_weights_reported_coordinates"


def _status_check(statuses: Sequence[str]) -> str:
    return "status IN ({})".format(", ".join(f"'{s}'" for s in statuses))


def _recreate(statuses: Sequence[str], add_flag: bool) -> None:
    # SQLite rebuilds the table in batch mode; its partial index is dropped and made again around it
    op.drop_index(PARTIAL_INDEX, table_name="super_weights")
    with op.batch_alter_table("super_weights") as batch:
        batch.drop_constraint(op.f("ck_super_weights_status"), type_="check")
        batch.create_check_constraint(op.f("ck_super_weights_status"), _status_check(statuses))
        if add_flag:
            batch.add_column(
                sa.Column("member_of_confirmed_set", sa.Boolean(), nullable=False, server_default=sa.false())
            )
        else:
            batch.drop_column("member_of_confirmed_set")
    op.create_index(
        PARTIAL_INDEX,
        "super_weights",
        ["model_id", "layer", "row", "col"],
        unique=True,
        postgresql_where=sa.text("run_id IS NULL"),
        sqlite_where=sa.text("run_id IS NULL"),
    )


def upgrade() -> None:
    """Admit the new statuses; add `member_of_confirmed_set` (false for existing rows)."""
    _recreate(NEW_STATUSES, add_flag=True)


def downgrade() -> None:
    """Back to the four statuses (new ones become `candidate`); drop `member_of_confirmed_set`."""
    op.execute(
        sa.text(
            "UPDATE super_weights SET status = 'candidate' WHERE status IN ('set-confirmed', 'redundant', "
            "'not_measured')"
        )
    )
    _recreate(OLD_STATUSES, add_flag=False)
