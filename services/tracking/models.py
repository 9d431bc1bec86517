"""Tables of the tracking service: registry copies, positions, motion, alerts."""

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.idempotency import idempotency_table
from shared.outbox import outbox_table

ID = String(64)
Timestamp = DateTime(timezone=True)
Counter = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    pass


outbox = outbox_table(Base.metadata)
idempotency_keys = idempotency_table(Base.metadata)


class Place(Base):
    """A community, plant or depot as intake registered it, with its bounds."""

    __tablename__ = "places"

    place_id: Mapped[str] = mapped_column(ID, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    geometry: Mapped[dict[str, Any]] = mapped_column(JSON)
    radius_m: Mapped[float] = mapped_column(Float)
    licensed: Mapped[bool] = mapped_column(Boolean)
    # Bounding box of the geometry grown by radius_m, for a cheap prefilter.
    min_lat: Mapped[float] = mapped_column(Float, index=True)
    max_lat: Mapped[float] = mapped_column(Float)
    min_lon: Mapped[float] = mapped_column(Float)
    max_lon: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)


class Device(Base):
    """A truck's GPS device as intake registered it."""

    __tablename__ = "devices"

    device_id: Mapped[str] = mapped_column(ID, primary_key=True)
    vehicle_id: Mapped[str] = mapped_column(ID)
    hauler_id: Mapped[str] = mapped_column(ID)
    plate: Mapped[str] = mapped_column(String(32))
    # The licence window, [from, until): fixes outside it raise licence_invalid.
    licence_valid_from: Mapped[datetime | None] = mapped_column(
        Timestamp, nullable=True
    )
    licence_valid_until: Mapped[datetime | None] = mapped_column(
        Timestamp, nullable=True
    )
    updated_at: Mapped[datetime] = mapped_column(Timestamp)


class MotionState(Base):
    """Where each device's incremental cleaning and stop detection stand."""

    __tablename__ = "motion_state"

    device_id: Mapped[str] = mapped_column(
        ID, ForeignKey("devices.device_id"), primary_key=True
    )
    # The newest accepted fix.
    last_time: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    last_lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The newest fix dropped for impossible speed, a possible relocation.
    jump_time: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    jump_lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    jump_lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The cluster of fixes that may be a stop.
    cluster_start: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    cluster_end: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    cluster_count: Mapped[int] = mapped_column(Integer, default=0)
    cluster_lat_sum: Mapped[float] = mapped_column(Float, default=0.0)
    cluster_lon_sum: Mapped[float] = mapped_column(Float, default=0.0)
    # Whether the cluster was checked against places once it ran long.
    cluster_checked: Mapped[bool] = mapped_column(Boolean, default=False)
    cluster_alert_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # Where the trip now going on began: the end of the last stop or break.
    trip_start_time: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    trip_start_lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    trip_start_lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The trip's distance and fixes so far, and up to the cluster's first fix.
    trip_distance_m: Mapped[float | None] = mapped_column(Float, nullable=True)
    trip_points: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cluster_trip_distance_m: Mapped[float | None] = mapped_column(Float, nullable=True)
    cluster_trip_points: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Position(Base):
    """One cleaned fix; the key (device_id, fix_time) makes ingest idempotent."""

    __tablename__ = "positions"

    device_id: Mapped[str] = mapped_column(ID, primary_key=True)
    fix_time: Mapped[datetime] = mapped_column(Timestamp, primary_key=True)
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    speed_mps: Mapped[float | None] = mapped_column(Float, nullable=True)
    course: Mapped[float | None] = mapped_column(Float, nullable=True)
    altitude_m: Mapped[float | None] = mapped_column(Float, nullable=True)
    accuracy_m: Mapped[float | None] = mapped_column(Float, nullable=True)
    hdop: Mapped[float | None] = mapped_column(Float, nullable=True)
    battery: Mapped[float | None] = mapped_column(Float, nullable=True)
    attributes: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    received_at: Mapped[datetime] = mapped_column(Timestamp)


class Drop(Base):
    """How many fixes of a device were dropped on a day, by reason."""

    __tablename__ = "drops"

    device_id: Mapped[str] = mapped_column(ID, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    reason: Mapped[str] = mapped_column(String(32), primary_key=True)
    count: Mapped[int] = mapped_column(Counter, default=0)


class Stop(Base):
    """A closed stop: the device stayed within the stop radius long enough."""

    __tablename__ = "stops"
    __table_args__ = (
        UniqueConstraint("device_id", "start", name="uq_stops_device_start"),
        Index("ix_stops_device_end", "device_id", "end"),
    )

    id: Mapped[int] = mapped_column(Counter, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ID)
    start: Mapped[datetime] = mapped_column(Timestamp)
    end: Mapped[datetime] = mapped_column(Timestamp)
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    point_count: Mapped[int] = mapped_column(Integer)
    place_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    place_kind: Mapped[str | None] = mapped_column(String(16), nullable=True)


class DeviceTrip(Base):
    """Movement between two stops (or telemetry breaks), long enough to count."""

    __tablename__ = "device_trips"
    __table_args__ = (
        UniqueConstraint("device_id", "start", name="uq_device_trips_start"),
        Index("ix_device_trips_device_end", "device_id", "end"),
    )

    id: Mapped[int] = mapped_column(Counter, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ID)
    start: Mapped[datetime] = mapped_column(Timestamp)
    end: Mapped[datetime] = mapped_column(Timestamp)
    start_lat: Mapped[float] = mapped_column(Float)
    start_lon: Mapped[float] = mapped_column(Float)
    end_lat: Mapped[float] = mapped_column(Float)
    end_lon: Mapped[float] = mapped_column(Float)
    distance_m: Mapped[float] = mapped_column(Float)
    point_count: Mapped[int] = mapped_column(Integer)


class Alert(Base):
    """An inconsistency an inspector must look at: open, acknowledged, resolved."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_device_start", "device_id", "start"),
        Index("ix_alerts_created_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # Names the event an alert stands for, so re-detection never duplicates it.
    dedup_key: Mapped[str] = mapped_column(String(300), unique=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    device_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    vehicle_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    start: Mapped[datetime] = mapped_column(Timestamp, index=True)
    end: Mapped[datetime] = mapped_column(Timestamp)
    lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    place_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    message: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    raised_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    acknowledged_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    resolution: Mapped[str | None] = mapped_column(Text, nullable=True)


class AlertBatch(Base):
    """Links an alert to a batch whose trip (or custody) it concerns."""

    __tablename__ = "alert_batches"

    alert_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("alerts.id"), primary_key=True
    )
    batch_id: Mapped[str] = mapped_column(ID, primary_key=True, index=True)


class Trip(Base):
    """A batch's trip summary as signed and sent to the ledger."""

    __tablename__ = "trips"

    batch_id: Mapped[str] = mapped_column(ID, primary_key=True)
    device_id: Mapped[str] = mapped_column(ID, index=True)
    vehicle_id: Mapped[str] = mapped_column(ID)
    start: Mapped[datetime] = mapped_column(Timestamp)
    end: Mapped[datetime] = mapped_column(Timestamp)
    request_digest: Mapped[str] = mapped_column(String(64))
    entry: Mapped[dict[str, Any]] = mapped_column(JSON)
    outbox_key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class Backfill(Base):
    """A position partition created on demand for a day before yesterday, and
    the UTC day it was created on: uploads may create only so many a day."""

    __tablename__ = "partition_backfills"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    created_on: Mapped[date] = mapped_column(Date, index=True)
