"""Adds refunds of cancelled requests and the share each party gives back.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 05:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "refunds",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("payment_id", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("refunded_by", sa.String(length=200), nullable=False),
        sa.Column("refunded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"]),
        sa.ForeignKeyConstraint(["request_id"], ["pickup_requests.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("payment_id"),
    )
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_refunds_refunded_at"), ["refunded_at"], unique=False
        )

    op.create_table(
        "refund_shares",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("refund_id", sa.String(length=36), nullable=False),
        sa.Column("party_kind", sa.String(length=32), nullable=False),
        sa.Column("party_id", sa.String(length=100), nullable=True),
        sa.Column("amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.ForeignKeyConstraint(["refund_id"], ["refunds.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("refund_shares", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_refund_shares_party_id"), ["party_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_refund_shares_refund_id"), ["refund_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("refund_shares", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refund_shares_refund_id"))
        batch_op.drop_index(batch_op.f("ix_refund_shares_party_id"))

    op.drop_table("refund_shares")
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refunds_refunded_at"))

    op.drop_table("refunds")
