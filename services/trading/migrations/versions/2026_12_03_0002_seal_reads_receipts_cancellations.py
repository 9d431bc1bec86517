"""Adds seal reads and their cursor, ledger receipts, and cancellations.

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

Stamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "seal_reads",
        sa.Column("batch_id", sa.String(length=200), nullable=False),
        sa.Column("seal_index", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("seal_leaf_hash", sa.String(length=64), nullable=True),
        sa.Column("sealed_at", Stamp, nullable=True),
        sa.Column("processed_at", Stamp, nullable=True),
        sa.Column("checkpoint_size", sa.BigInteger(), nullable=True),
        sa.Column("inputs", sa.JSON(), nullable=True),
        sa.Column("alert_ids", sa.JSON(), nullable=True),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("read_at", Stamp, nullable=False),
        sa.PrimaryKeyConstraint("batch_id"),
        sa.UniqueConstraint("seal_index"),
    )
    op.create_index("ix_seal_reads_processed_at", "seal_reads", ["processed_at"])
    op.create_table(
        "seal_cursor",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_index", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "ledger_receipts",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("index", sa.BigInteger(), nullable=False),
        sa.Column("leaf_hash", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", Stamp, nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "cancellations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("quantity_t", sa.Integer(), nullable=False),
        sa.Column("serials", sa.JSON(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", Stamp, nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_cancellations_account_id", "cancellations", ["account_id"])
    _add_block_cancellation()


def _add_block_cancellation() -> None:
    """SQLite adds a referencing column in place; a table copy would drop checks."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "ALTER TABLE blocks ADD COLUMN cancellation_id VARCHAR(36) "
            "REFERENCES cancellations (id)"
        )
        return
    op.add_column("blocks", sa.Column("cancellation_id", sa.String(36)))
    op.create_foreign_key(
        "fk_blocks_cancellation_id",
        "blocks",
        "cancellations",
        ["cancellation_id"],
        ["id"],
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint("fk_blocks_cancellation_id", "blocks", type_="foreignkey")
    op.drop_column("blocks", "cancellation_id")
    op.drop_index("ix_cancellations_account_id", table_name="cancellations")
    op.drop_table("cancellations")
    op.drop_table("ledger_receipts")
    op.drop_table("seal_cursor")
    op.drop_index("ix_seal_reads_processed_at", table_name="seal_reads")
    op.drop_table("seal_reads")
