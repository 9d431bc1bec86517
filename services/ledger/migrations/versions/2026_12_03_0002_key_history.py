"""Record where in the log each key's life starts and ends.

active_from_size: for the ledger's own keys, the log size at which the key
began signing checkpoints and seals. revoked_at_size: the log size when a
key was revoked; entries below it stay valid, later ones are refused.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 17:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("party_keys") as batch:
        batch.add_column(sa.Column("active_from_size", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("revoked_at_size", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("party_keys") as batch:
        batch.drop_column("revoked_at_size")
        batch.drop_column("active_from_size")
