"""Data: an existing catalog gets the published data set's new models, coordinates and sources.

Every reported entry gets its sources; OLMo-1B-0724's (2, 1764, 8041) is relabelled "reference code" (the
paper's table puts that weight at layer 1, which is added as the other reading of the dispute). A catalog
that was never seeded stays empty (the embedded default seeds a fresh one after migrating).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 22:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from catalog.seed import apply_published

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply the data set to a catalog that holds reported entries."""
    connection = op.get_bind()
    seeded = connection.execute(sa.text("SELECT 1 FROM super_weights WHERE run_id IS NULL LIMIT 1")).first()
    if seeded is not None:
        apply_published(connection)


def downgrade() -> None:
    """Nothing to undo: the rows stay valid at 0003 (the sources go with the table in 0003's downgrade)."""
