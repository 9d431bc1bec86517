"""Indexes alerts in the order they are listed and paged: by when each was
raised, then by id.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 09:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_alerts_created_id", "alerts", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_alerts_created_id", table_name="alerts")
