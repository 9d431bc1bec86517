"""Intake's tables: the registry, pickup requests, payments, batches, custody."""

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
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

Id = String(36)
Time = DateTime(timezone=True)
Money = Numeric(14, 2)


class Base(DeclarativeBase):
    pass


outbox = outbox_table(Base.metadata)
idempotency_keys = idempotency_table(Base.metadata)


class Community(Base):
    __tablename__ = "communities"

    id: Mapped[str] = mapped_column(Id, primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(500))
    city: Mapped[str] = mapped_column(String(100))
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    radius_m: Mapped[int | None] = mapped_column(Integer)
    polygon: Mapped[dict | None] = mapped_column(JSON)
    property_manager_id: Mapped[str] = mapped_column(String(100), index=True)
    created_at: Mapped[datetime] = mapped_column(Time)


class Hauler(Base):
    __tablename__ = "haulers"

    id: Mapped[str] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    licence_no: Mapped[str] = mapped_column(String(100), unique=True)
    valid_from: Mapped[datetime] = mapped_column(Time)
    valid_until: Mapped[datetime] = mapped_column(Time)
    status: Mapped[str] = mapped_column(String(16))
    status_changed_at: Mapped[datetime] = mapped_column(Time)
    created_at: Mapped[datetime] = mapped_column(Time)


class Vehicle(Base):
    __tablename__ = "vehicles"

    id: Mapped[str] = mapped_column(Id, primary_key=True)
    plate: Mapped[str] = mapped_column(String(32), unique=True)
    capacity_kg: Mapped[int] = mapped_column(Integer)
    hauler_id: Mapped[str] = mapped_column(ForeignKey("haulers.id"), index=True)
    device_id: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(Time)


class Plant(Base):
    __tablename__ = "plants"

    id: Mapped[str] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    permit_no: Mapped[str] = mapped_column(String(100), unique=True)
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    radius_m: Mapped[int | None] = mapped_column(Integer)
    polygon: Mapped[dict | None] = mapped_column(JSON)
    accepted_ewc: Mapped[list] = mapped_column(JSON)
    licensed: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(Time)


class Depot(Base):
    __tablename__ = "depots"

    id: Mapped[str] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    radius_m: Mapped[int | None] = mapped_column(Integer)
    polygon: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(Time)


class PartyKey(Base):
    __tablename__ = "party_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    party_kind: Mapped[str] = mapped_column(String(32))
    party_id: Mapped[str] = mapped_column(String(100), index=True)
    public_key: Mapped[str] = mapped_column(String(64))
    kinds: Mapped[list] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(Time)
    revoked_at: Mapped[datetime | None] = mapped_column(Time)
    revoke_reason: Mapped[str | None] = mapped_column(String(500))


class Batch(Base):
    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(Id, primary_key=True)
    vehicle_id: Mapped[str] = mapped_column(ForeignKey("vehicles.id"), index=True)
    hauler_id: Mapped[str] = mapped_column(ForeignKey("haulers.id"), index=True)
    device_id: Mapped[str] = mapped_column(String(100))
    plant_id: Mapped[str] = mapped_column(ForeignKey("plants.id"), index=True)
    window_start: Mapped[datetime] = mapped_column(Time)
    window_end: Mapped[datetime] = mapped_column(Time)
    status: Mapped[str] = mapped_column(String(16), index=True)
    head: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(Time)
    delivered_at: Mapped[datetime | None] = mapped_column(Time)
    processed_at: Mapped[datetime | None] = mapped_column(Time)


class PickupRequest(Base):
    __tablename__ = "pickup_requests"

    id: Mapped[str] = mapped_column(Id, primary_key=True)
    community_id: Mapped[str] = mapped_column(ForeignKey("communities.id"), index=True)
    resident_sub: Mapped[str] = mapped_column(String(200), index=True)
    unit: Mapped[str] = mapped_column(String(100))
    materials: Mapped[list] = mapped_column(JSON)
    bags: Mapped[int | None] = mapped_column(Integer)
    volume_l: Mapped[int | None] = mapped_column(Integer)
    preferred_start: Mapped[datetime] = mapped_column(Time)
    preferred_end: Mapped[datetime] = mapped_column(Time)
    status: Mapped[str] = mapped_column(String(16), index=True)
    fee: Mapped[Decimal | None] = mapped_column(Money)
    quote: Mapped[dict | None] = mapped_column(JSON)
    hauler_id: Mapped[str | None] = mapped_column(ForeignKey("haulers.id"))
    vehicle_id: Mapped[str | None] = mapped_column(ForeignKey("vehicles.id"))
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(Time)
    updated_at: Mapped[datetime] = mapped_column(Time)


class RequestEvent(Base):
    """Who moved a pickup request to which state, and when."""

    __tablename__ = "request_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(
        ForeignKey("pickup_requests.id"), index=True
    )
    status: Mapped[str] = mapped_column(String(16))
    actor_sub: Mapped[str] = mapped_column(String(200))
    actor_role: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(Time)
    note: Mapped[str | None] = mapped_column(Text)


class Payment(Base):
    __tablename__ = "payments"

    id: Mapped[str] = mapped_column(Id, primary_key=True)
    request_id: Mapped[str] = mapped_column(
        ForeignKey("pickup_requests.id"), unique=True
    )
    payer_sub: Mapped[str] = mapped_column(String(200))
    amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    method: Mapped[str] = mapped_column(String(32))
    reference: Mapped[str | None] = mapped_column(String(200))
    paid_at: Mapped[datetime] = mapped_column(Time, index=True)


class PaymentShare(Base):
    __tablename__ = "payment_shares"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    party_kind: Mapped[str] = mapped_column(String(32))
    # The hauler's share waits for dispatch to know who the hauler is.
    party_id: Mapped[str | None] = mapped_column(String(100), index=True)
    amount: Mapped[Decimal] = mapped_column(Money)


class Refund(Base):
    """The fee of a cancelled request given back to the resident."""

    __tablename__ = "refunds"

    id: Mapped[str] = mapped_column(Id, primary_key=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), unique=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("pickup_requests.id"))
    amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(String(500))
    refunded_by: Mapped[str] = mapped_column(String(200))
    refunded_at: Mapped[datetime] = mapped_column(Time, index=True)


class RefundShare(Base):
    """What a refund takes back from one party: the negative of its share."""

    __tablename__ = "refund_shares"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    refund_id: Mapped[str] = mapped_column(ForeignKey("refunds.id"), index=True)
    party_kind: Mapped[str] = mapped_column(String(32))
    party_id: Mapped[str | None] = mapped_column(String(100), index=True)
    amount: Mapped[Decimal] = mapped_column(Money)


class CustodyEvent(Base):
    __tablename__ = "custody_events"
    __table_args__ = (
        UniqueConstraint("batch_id", "seq"),
        UniqueConstraint("plant_id", "ticket_no"),
    )

    id: Mapped[str] = mapped_column(Id, primary_key=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    statement: Mapped[dict] = mapped_column(JSON)
    signatures: Mapped[list] = mapped_column(JSON)
    leaf_hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(Time)
    request_id: Mapped[str | None] = mapped_column(
        ForeignKey("pickup_requests.id"), unique=True
    )
    plant_id: Mapped[str | None] = mapped_column(String(36))
    ticket_no: Mapped[str | None] = mapped_column(String(64))
    recorded_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(Time)


class Discrepancy(Base):
    __tablename__ = "discrepancies"

    id: Mapped[str] = mapped_column(Id, primary_key=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    expected_kg: Mapped[int] = mapped_column(Integer)
    actual_kg: Mapped[int] = mapped_column(Integer)
    detail: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(Time)
