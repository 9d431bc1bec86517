"""Records each position partition created on demand for a past day, so that
uploads can create only a bounded number of them per day.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 09:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "partition_backfills",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("created_on", sa.Date(), nullable=False),
    )
    op.create_index(
        "ix_partition_backfills_created_on", "partition_backfills", ["created_on"]
    )


def downgrade() -> None:
    op.drop_index("ix_partition_backfills_created_on", table_name="partition_backfills")
    op.drop_table("partition_backfills")
