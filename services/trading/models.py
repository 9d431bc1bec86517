"""Tables of the trading service: calculations, reports, credits and market."""

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.idempotency import idempotency_table
from shared.outbox import outbox_table

Stamp = DateTime(timezone=True)


class Base(DeclarativeBase):
    pass


outbox = outbox_table(Base.metadata)
idempotency_keys = idempotency_table(Base.metadata)


class LedgerPin(Base):
    """The ledger verifier key trusted from first use."""

    __tablename__ = "ledger_pin"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    verifier_key: Mapped[str] = mapped_column(Text)
    pinned_at: Mapped[datetime] = mapped_column(Stamp)


class Project(Base):
    """A crediting project: its serial counter and the grams carried over."""

    __tablename__ = "projects"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    next_serial: Mapped[int] = mapped_column(BigInteger, default=1)
    carry_g: Mapped[int] = mapped_column(BigInteger, default=0)


class Report(Base):
    """A monitoring report: the sealed batches of a period, for a verifier."""

    __tablename__ = "reports"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project: Mapped[str] = mapped_column(ForeignKey("projects.code"))
    vintage: Mapped[int] = mapped_column(Integer)
    period_start: Mapped[datetime] = mapped_column(Stamp)
    period_end: Mapped[datetime] = mapped_column(Stamp)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    status: Mapped[str] = mapped_column(String(16))
    total_g: Mapped[int] = mapped_column(BigInteger)
    batch_ids: Mapped[list[str]] = mapped_column(JSON)
    buffer_permille: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(Stamp)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column(Stamp)
    comments: Mapped[str | None] = mapped_column(Text)


class Calculation(Base):
    """One batch's quantification: inputs, factor version and outputs."""

    __tablename__ = "calculations"
    __table_args__ = (UniqueConstraint("batch_id", name="uq_calculations_batch"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    batch_id: Mapped[str] = mapped_column(String(200))
    seal_index: Mapped[int] = mapped_column(BigInteger)
    seal_leaf_hash: Mapped[str] = mapped_column(String(64))
    sealed_at: Mapped[datetime] = mapped_column(Stamp)
    processed_at: Mapped[datetime] = mapped_column(Stamp, index=True)
    checkpoint_size: Mapped[int] = mapped_column(BigInteger)
    factor_version: Mapped[str] = mapped_column(String(16))
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    net_g: Mapped[int] = mapped_column(BigInteger)
    creditable_g: Mapped[int] = mapped_column(BigInteger)
    report_id: Mapped[str | None] = mapped_column(ForeignKey("reports.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(Stamp)


class Account(Base):
    """An organisation's holding account (or the registry's buffer account)."""

    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(200), index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(Stamp)


class Issuance(Base):
    """Whole tonnes issued on an approved report, with what was carried over."""

    __tablename__ = "issuances"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    report_id: Mapped[str] = mapped_column(ForeignKey("reports.id"), unique=True)
    project: Mapped[str] = mapped_column(String(16))
    vintage: Mapped[int] = mapped_column(Integer)
    carried_in_g: Mapped[int] = mapped_column(BigInteger)
    report_total_g: Mapped[int] = mapped_column(BigInteger)
    tonnes: Mapped[int] = mapped_column(Integer)
    buffer_tonnes: Mapped[int] = mapped_column(Integer)
    carried_out_g: Mapped[int] = mapped_column(BigInteger)
    serial_start: Mapped[int | None] = mapped_column(BigInteger)
    serial_end: Mapped[int | None] = mapped_column(BigInteger)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    issued_at: Mapped[datetime] = mapped_column(Stamp)


class Block(Base):
    """A run of consecutive one-tonne serials in one account and status."""

    __tablename__ = "blocks"
    __table_args__ = (
        UniqueConstraint("project", "start", name="uq_blocks_start"),
        CheckConstraint('start <= "end"', name="ck_blocks_range"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project: Mapped[str] = mapped_column(String(16))
    vintage: Mapped[int] = mapped_column(Integer)
    start: Mapped[int] = mapped_column(BigInteger)
    end: Mapped[int] = mapped_column(BigInteger)
    issuance_id: Mapped[str] = mapped_column(ForeignKey("issuances.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    listing_id: Mapped[str | None] = mapped_column(ForeignKey("listings.id"))
    retirement_id: Mapped[str | None] = mapped_column(ForeignKey("retirements.id"))
    cancellation_id: Mapped[str | None] = mapped_column(ForeignKey("cancellations.id"))
    updated_at: Mapped[datetime] = mapped_column(Stamp)

    @property
    def quantity_t(self) -> int:
        return self.end - self.start + 1

    @property
    def serial(self) -> str:
        return f"SALV-{self.project}-{self.vintage}-{self.start}-{self.end}"


class Listing(Base):
    """Tonnes offered at a fixed price per tonne in CNY."""

    __tablename__ = "listings"
    __table_args__ = (
        CheckConstraint("available_t >= 0", name="ck_listings_available"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    price_cny: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    quantity_t: Mapped[int] = mapped_column(Integer)
    available_t: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(Stamp)


class Purchase(Base):
    __tablename__ = "purchases"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    listing_id: Mapped[str] = mapped_column(ForeignKey("listings.id"), index=True)
    buyer_account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    quantity_t: Mapped[int] = mapped_column(Integer)
    unit_price_cny: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    total_cny: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    serials: Mapped[list[str]] = mapped_column(JSON)
    buyer: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(Stamp)


class Transfer(Base):
    __tablename__ = "transfers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    from_account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    to_account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    quantity_t: Mapped[int] = mapped_column(Integer)
    serials: Mapped[list[str]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(Stamp)


class Retirement(Base):
    """An irreversible retirement and the signed statement behind its certificate."""

    __tablename__ = "retirements"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    quantity_t: Mapped[int] = mapped_column(Integer)
    beneficiary: Mapped[str] = mapped_column(String(200))
    purpose: Mapped[str] = mapped_column(String(500))
    serials: Mapped[list[str]] = mapped_column(JSON)
    statement: Mapped[dict[str, Any]] = mapped_column(JSON)
    signature: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(Stamp)


class SealRead(Base):
    """A seal read from the ledger once: verified with its inputs, or refused."""

    __tablename__ = "seal_reads"

    batch_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    seal_index: Mapped[int] = mapped_column(BigInteger, unique=True)
    status: Mapped[str] = mapped_column(String(16))
    seal_leaf_hash: Mapped[str | None] = mapped_column(String(64))
    sealed_at: Mapped[datetime | None] = mapped_column(Stamp)
    processed_at: Mapped[datetime | None] = mapped_column(Stamp, index=True)
    checkpoint_size: Mapped[int | None] = mapped_column(BigInteger)
    inputs: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    alert_ids: Mapped[list[str] | None] = mapped_column(JSON)
    reason: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    read_at: Mapped[datetime] = mapped_column(Stamp)


class SealCursor(Base):
    """The highest seal index trading has read from the ledger's seal list."""

    __tablename__ = "seal_cursor"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_index: Mapped[int] = mapped_column(BigInteger)


class LedgerReceipt(Base):
    """Where one of trading's own statements landed in the ledger."""

    __tablename__ = "ledger_receipts"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    index: Mapped[int] = mapped_column(BigInteger)
    leaf_hash: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(Stamp)


class Cancellation(Base):
    """Tonnes an admin took out of circulation for good, with the reason."""

    __tablename__ = "cancellations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    quantity_t: Mapped[int] = mapped_column(Integer)
    serials: Mapped[list[str]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(String(500))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(Stamp)
