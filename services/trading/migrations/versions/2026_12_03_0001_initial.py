"""Creates the trading tables: calculations, reports, credits, market and outbox.

Revision ID: 0001
Revises:
Create Date: 2026-12-03 16:33:40
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.idempotency import idempotency_columns
from shared.outbox import outbox_columns

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("org_id", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_accounts_org_id", "accounts", ["org_id"])
    op.create_table("idempotency_keys", *idempotency_columns())
    op.create_table(
        "ledger_pin",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("verifier_key", sa.Text(), nullable=False),
        sa.Column("pinned_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table("outbox", *outbox_columns())
    op.create_table(
        "projects",
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("next_serial", sa.BigInteger(), nullable=False),
        sa.Column("carry_g", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_table(
        "listings",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("price_cny", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("quantity_t", sa.Integer(), nullable=False),
        sa.Column("available_t", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("available_t >= 0", name="ck_listings_available"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_listings_account_id", "listings", ["account_id"])
    op.create_table(
        "reports",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project", sa.String(length=16), nullable=False),
        sa.Column("vintage", sa.Integer(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("total_g", sa.BigInteger(), nullable=False),
        sa.Column("batch_ids", sa.JSON(), nullable=False),
        sa.Column("buffer_permille", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("comments", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.ForeignKeyConstraint(
            ["project"],
            ["projects.code"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "retirements",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("quantity_t", sa.Integer(), nullable=False),
        sa.Column("beneficiary", sa.String(length=200), nullable=False),
        sa.Column("purpose", sa.String(length=500), nullable=False),
        sa.Column("serials", sa.JSON(), nullable=False),
        sa.Column("statement", sa.JSON(), nullable=False),
        sa.Column("signature", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_retirements_account_id", "retirements", ["account_id"])
    op.create_table(
        "transfers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("from_account_id", sa.String(length=36), nullable=False),
        sa.Column("to_account_id", sa.String(length=36), nullable=False),
        sa.Column("quantity_t", sa.Integer(), nullable=False),
        sa.Column("serials", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["from_account_id"],
            ["accounts.id"],
        ),
        sa.ForeignKeyConstraint(
            ["to_account_id"],
            ["accounts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "calculations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("batch_id", sa.String(length=200), nullable=False),
        sa.Column("seal_index", sa.BigInteger(), nullable=False),
        sa.Column("seal_leaf_hash", sa.String(length=64), nullable=False),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checkpoint_size", sa.BigInteger(), nullable=False),
        sa.Column("factor_version", sa.String(length=16), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("net_g", sa.BigInteger(), nullable=False),
        sa.Column("creditable_g", sa.BigInteger(), nullable=False),
        sa.Column("report_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["reports.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("batch_id", name="uq_calculations_batch"),
    )
    op.create_index("ix_calculations_report_id", "calculations", ["report_id"])
    op.create_index("ix_calculations_processed_at", "calculations", ["processed_at"])
    op.create_table(
        "issuances",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("report_id", sa.String(length=36), nullable=False),
        sa.Column("project", sa.String(length=16), nullable=False),
        sa.Column("vintage", sa.Integer(), nullable=False),
        sa.Column("carried_in_g", sa.BigInteger(), nullable=False),
        sa.Column("report_total_g", sa.BigInteger(), nullable=False),
        sa.Column("tonnes", sa.Integer(), nullable=False),
        sa.Column("buffer_tonnes", sa.Integer(), nullable=False),
        sa.Column("carried_out_g", sa.BigInteger(), nullable=False),
        sa.Column("serial_start", sa.BigInteger(), nullable=True),
        sa.Column("serial_end", sa.BigInteger(), nullable=True),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["reports.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("report_id"),
    )
    op.create_table(
        "purchases",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("listing_id", sa.String(length=36), nullable=False),
        sa.Column("buyer_account_id", sa.String(length=36), nullable=False),
        sa.Column("quantity_t", sa.Integer(), nullable=False),
        sa.Column("unit_price_cny", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("total_cny", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("serials", sa.JSON(), nullable=False),
        sa.Column("buyer", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["buyer_account_id"],
            ["accounts.id"],
        ),
        sa.ForeignKeyConstraint(
            ["listing_id"],
            ["listings.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_purchases_listing_id", "purchases", ["listing_id"])
    op.create_table(
        "blocks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project", sa.String(length=16), nullable=False),
        sa.Column("vintage", sa.Integer(), nullable=False),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("end", sa.BigInteger(), nullable=False),
        sa.Column("issuance_id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("listing_id", sa.String(length=36), nullable=True),
        sa.Column("retirement_id", sa.String(length=36), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint('start <= "end"', name="ck_blocks_range"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.ForeignKeyConstraint(
            ["issuance_id"],
            ["issuances.id"],
        ),
        sa.ForeignKeyConstraint(
            ["listing_id"],
            ["listings.id"],
        ),
        sa.ForeignKeyConstraint(
            ["retirement_id"],
            ["retirements.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project", "start", name="uq_blocks_start"),
    )
    op.create_index("ix_blocks_account_id", "blocks", ["account_id"])
    op.create_index("ix_blocks_issuance_id", "blocks", ["issuance_id"])
    op.create_index("ix_blocks_status", "blocks", ["status"])


def downgrade() -> None:
    for table in (
        "blocks",
        "purchases",
        "issuances",
        "calculations",
        "transfers",
        "retirements",
        "reports",
        "listings",
        "projects",
        "outbox",
        "ledger_pin",
        "idempotency_keys",
        "accounts",
    ):
        op.drop_table(table)
