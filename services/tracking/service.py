"""Domain logic of the tracking service: registry, places, stops, alerts, trips."""

import base64
import hashlib
import json
import math
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any

import structlog
from sqlalchemy import Select, and_, delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.tracking import geo
from services.tracking.config import TrackingConfig
from services.tracking.models import (
    Alert,
    AlertBatch,
    Device,
    DeviceTrip,
    Drop,
    MotionState,
    Place,
    Position,
    Stop,
    Trip,
    outbox,
)
from services.tracking.schemas import AlertIn, DeviceIn, PlaceIn, TripIn
from shared.auth import Principal, Role
from shared.canonical import canonical_json, digest_of
from shared.crypto import key_id, public_key_b64, sign_statement
from shared.outbox import enqueue
from shared.problems import Conflict, Forbidden, NotFound, Unprocessable
from shared.settings import Settings
from shared.timeutil import as_utc, iso_utc, parse_utc

log = structlog.get_logger()

LEDGER = "ledger"
# One ordering key: the key registration reaches the ledger before any trip.
LEDGER_ORDER = "ledger:tracking"
COORDINATE_PLACES = 6


class UnknownDevice(NotFound):
    slug, title = "unknown-device", "Unknown device"


class UnknownAlert(NotFound):
    slug, title = "unknown-alert", "Unknown alert"


class InvalidCursor(Unprocessable):
    slug, title = "invalid-cursor", "Invalid cursor"


class UnknownTrip(NotFound):
    slug, title = "unknown-trip", "No trip summary for this batch"


# Registry ------------------------------------------------------------------


def put_place(
    session: Session, *, place_id: str, data: PlaceIn, now: datetime
) -> tuple[Place, bool]:
    """Creates or replaces a place; returns it and whether it is new. A corridor
    is a LineString grown by radius_m on each side."""
    kinds = ("LineString",) if data.kind == "corridor" else ("Point", "Polygon")
    try:
        geometry = geo.parse_geometry(data.geometry, kinds)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise Unprocessable(str(exc), slug="invalid-geometry") from exc
    min_lat, max_lat, min_lon, max_lon = geo.bounds_with_margin(geometry, data.radius_m)
    place = session.get(Place, place_id)
    created = place is None
    if place is None:
        place = Place(place_id=place_id)
        session.add(place)
    place.kind, place.name, place.licensed = data.kind, data.name, data.licensed
    place.geometry, place.radius_m = data.geometry, data.radius_m
    place.min_lat, place.max_lat = min_lat, max_lat
    place.min_lon, place.max_lon = min_lon, max_lon
    place.updated_at = now
    _corridor_cache.pop(str(session.get_bind().url), None)
    log.info("tracking.place_saved", place_id=place_id, kind=data.kind)
    return place, created


def put_device(
    session: Session, *, device_id: str, data: DeviceIn, now: datetime
) -> tuple[Device, bool]:
    """Creates or replaces a device and gives it an empty motion state."""
    device = session.get(Device, device_id)
    created = device is None
    if device is None:
        device = Device(device_id=device_id)
        session.add(device)
        session.add(MotionState(device_id=device_id, cluster_count=0))
    device.vehicle_id, device.hauler_id = data.vehicle_id, data.hauler_id
    device.plate = data.plate
    device.licence_valid_from = data.licence_valid_from
    device.licence_valid_until = data.licence_valid_until
    device.updated_at = now
    log.info("tracking.device_saved", device_id=device_id, vehicle_id=data.vehicle_id)
    return device, created


def get_device(session: Session, device_id: str) -> Device:
    device = session.get(Device, device_id)
    if device is None:
        raise UnknownDevice(
            f"Device {device_id!r} is not registered; intake registers devices.",
            device_id=device_id,
        )
    return device


LicenceWindow = tuple[datetime | None, datetime | None]


def licence_window(device: Device) -> LicenceWindow:
    """The device's licence window [from, until) in UTC; None for an open end."""
    start, end = device.licence_valid_from, device.licence_valid_until
    return (
        as_utc(start) if start is not None else None,
        as_utc(end) if end is not None else None,
    )


def outside_licence(window: LicenceWindow, at: datetime) -> bool:
    """Whether an instant is before the window's start or at or after its end."""
    start, end = window
    return (start is not None and at < start) or (end is not None and at >= end)


def describe_licence(window: LicenceWindow) -> str:
    """The window in words, such as 'valid from … until …'."""
    start, end = window
    parts = ["valid"]
    if start is not None:
        parts.append(f"from {iso_utc(start)}")
    if end is not None:
        parts.append(f"until {iso_utc(end)}")
    return " ".join(parts)


@dataclass(frozen=True)
class IngestTarget:
    """A device, its motion row locked for this transaction, and the end of
    its latest summarised trip (fixes before then may fall inside a summary)."""

    device: Device
    state: MotionState
    summarised_until: datetime | None


def device_for_ingest(session: Session, device_id: str) -> IngestTarget:
    """The device, its locked motion row and its latest trip end, in one round
    trip."""
    found = devices_for_ingest(session, [device_id])
    if device_id in found:
        return found[device_id]
    device = get_device(session, device_id)
    state = MotionState(device_id=device_id, cluster_count=0)
    session.add(state)
    until = session.scalar(_latest_trip_end(device_id))
    return IngestTarget(device, state, as_utc(until) if until else None)


def devices_for_ingest(
    session: Session, device_ids: Iterable[str]
) -> dict[str, IngestTarget]:
    """Each registered device with a motion row, that row locked, in one round
    trip. Rows are locked in device order, so that two writers locking
    overlapping sets wait for each other instead of deadlocking."""
    latest_trip_end = _latest_trip_end(Device.device_id)
    rows = session.execute(
        select(Device, MotionState, latest_trip_end)
        .join(MotionState, MotionState.device_id == Device.device_id)
        .where(Device.device_id.in_(sorted(set(device_ids))))
        .order_by(Device.device_id)
        .with_for_update(of=MotionState)
    ).all()
    return {
        device.device_id: IngestTarget(device, state, as_utc(until) if until else None)
        for device, state, until in rows
    }


def _latest_trip_end(device_id):
    """The end of the device's latest summarised trip, as a scalar subquery."""
    return (
        select(func.max(Trip.end)).where(Trip.device_id == device_id).scalar_subquery()
    )


def check_device_access(principal: Principal, device_id: str) -> None:
    """A device posts and reads only as itself."""
    if principal.role == Role.DEVICE and principal.sub != device_id:
        raise Forbidden(
            f"This token belongs to device {principal.sub!r}, not {device_id!r}.",
            slug="wrong-device",
        )


def find_place(session: Session, *, lat: float, lon: float) -> Place | None:
    """The registered place a point is at (nearest if several), or None;
    corridors are routes, not places."""
    candidates = session.scalars(
        select(Place).where(
            Place.kind != "corridor",
            Place.min_lat <= lat,
            Place.max_lat >= lat,
            Place.min_lon <= lon,
            Place.max_lon >= lon,
        )
    ).all()
    best, best_distance = None, math.inf
    for place in candidates:
        shape = geo.parse_geometry(place.geometry)
        distance = geo.distance_to_geometry_m(shape, lat, lon)
        if distance <= place.radius_m and distance < best_distance:
            best, best_distance = place, distance
    return best


# Corridors per database URL: (monotonic expiry, parsed corridors).
_corridor_cache: dict[str, tuple[float, list[geo.Corridor]]] = {}


def corridors(session: Session, *, max_age_s: float) -> list[geo.Corridor]:
    """The registered corridors, read again at most every max_age_s seconds."""
    key = str(session.get_bind().url)
    cached = _corridor_cache.get(key)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    rows = session.execute(
        select(Place.place_id, Place.geometry, Place.radius_m).where(
            Place.kind == "corridor"
        )
    ).all()
    parsed = [
        geo.Corridor(place_id, geo.parse_geometry(geometry, ("LineString",)), radius)
        for place_id, geometry, radius in rows
    ]
    _corridor_cache[key] = (time.monotonic() + max_age_s, parsed)
    return parsed


# Alerts --------------------------------------------------------------------


def record_alert(
    session: Session,
    *,
    dedup_key: str,
    kind: str,
    start: datetime,
    end: datetime,
    message: str,
    raised_by: str,
    now: datetime,
    device: Device | None = None,
    lat: float | None = None,
    lon: float | None = None,
    place_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> Alert:
    """Raises an alert once per event: a repeat of dedup_key returns the first."""
    existing = session.scalar(select(Alert).where(Alert.dedup_key == dedup_key))
    if existing is not None:
        return existing
    alert = Alert(
        id=uuid.uuid4().hex,
        dedup_key=dedup_key,
        kind=kind,
        status="open",
        device_id=device.device_id if device else None,
        vehicle_id=device.vehicle_id if device else None,
        start=start,
        end=end,
        lat=lat,
        lon=lon,
        place_id=place_id,
        message=message,
        detail=detail or {},
        raised_by=raised_by,
        created_at=now,
    )
    session.add(alert)
    session.flush()
    log.info("tracking.alert_raised", alert_id=alert.id, kind=kind, key=dedup_key)
    return alert


def raise_external_alert(
    session: Session, *, principal: Principal, data: AlertIn, now: datetime
) -> Alert:
    """Records an alert another service found, such as a mass discrepancy."""
    device = session.get(Device, data.device_id) if data.device_id else None
    start = as_utc(data.start) if data.start else now
    end = as_utc(data.end) if data.end else start
    if end < start:
        raise Unprocessable("end is before start.", slug="invalid-window")
    alert = record_alert(
        session,
        dedup_key=f"{data.kind}:{uuid.uuid4().hex}",
        kind=data.kind,
        start=start,
        end=end,
        message=data.message,
        raised_by=principal.sub,
        now=now,
        device=device,
        lat=data.lat,
        lon=data.lon,
        place_id=data.place_id,
        detail=data.detail,
    )
    if device is None and data.device_id:
        alert.device_id = data.device_id
    if data.vehicle_id:
        alert.vehicle_id = data.vehicle_id
    if data.batch_id:
        attach_alerts(session, batch_id=data.batch_id, alert_ids=[alert.id])
    return alert


def attach_alerts(session: Session, *, batch_id: str, alert_ids: list[str]) -> None:
    linked = set(
        session.scalars(
            select(AlertBatch.alert_id).where(AlertBatch.batch_id == batch_id)
        )
    )
    for alert_id in alert_ids:
        if alert_id not in linked:
            session.add(AlertBatch(alert_id=alert_id, batch_id=batch_id))
    session.flush()


@dataclass(frozen=True)
class AlertPage:
    """One page of alerts and the cursor of the next, None on the last."""

    alerts: list[Alert]
    next_cursor: str | None


def list_alerts(
    session: Session,
    *,
    batch_id: str | None = None,
    device_id: str | None = None,
    status: str | None = None,
    day: date | None = None,
    limit: int = 500,
    cursor: str | None = None,
) -> AlertPage:
    """Alerts in the order they were raised (then by id), `limit` at a time
    after the cursor: created_at never changes, so a walk through the pages
    meets every alert once, including those raised while it walks."""
    query = _alert_filter(
        select(Alert), batch_id=batch_id, device_id=device_id, status=status, day=day
    )
    if cursor is not None:
        raised, alert_id = _cursor_position(cursor)
        query = query.where(
            or_(
                Alert.created_at > raised,
                and_(Alert.created_at == raised, Alert.id > alert_id),
            )
        )
    query = query.order_by(Alert.created_at, Alert.id).limit(limit + 1)
    alerts = list(session.scalars(query))
    if len(alerts) <= limit:
        return AlertPage(alerts, None)
    return AlertPage(alerts[:limit], alert_cursor(alerts[limit - 1]))


def _alert_filter(
    query: Select,
    *,
    batch_id: str | None,
    device_id: str | None,
    status: str | None,
    day: date | None,
) -> Select:
    if batch_id is not None:
        query = query.join(AlertBatch, AlertBatch.alert_id == Alert.id).where(
            AlertBatch.batch_id == batch_id
        )
    if device_id is not None:
        query = query.where(Alert.device_id == device_id)
    if status is not None:
        query = query.where(Alert.status == status)
    if day is not None:
        day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        query = query.where(
            Alert.start < day_start + timedelta(days=1), Alert.end >= day_start
        )
    return query


def alert_cursor(alert: Alert) -> str:
    """The opaque position just after an alert: its raised time and id."""
    position = json.dumps([iso_utc(alert.created_at), alert.id])
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


def _cursor_position(cursor: str) -> tuple[datetime, str]:
    """The raised time and alert id a cursor holds; a 422 problem otherwise."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raised, alert_id = json.loads(base64.urlsafe_b64decode(padded))
        if not re.fullmatch(r"[A-Za-z0-9._:-]{1,32}", alert_id):
            raise ValueError("not an alert id")
        return parse_utc(raised), alert_id
    except (ValueError, TypeError, AttributeError, OverflowError) as exc:
        raise InvalidCursor(
            "cursor is not one this service gave out; start again without it.",
        ) from exc


def get_alert(session: Session, alert_id: str) -> Alert:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise UnknownAlert(f"Alert {alert_id!r} does not exist.")
    return alert


def acknowledge_alert(
    session: Session, *, alert_id: str, principal: Principal, now: datetime
) -> Alert:
    alert = get_alert(session, alert_id)
    if alert.status == "resolved":
        raise Conflict("A resolved alert cannot be acknowledged.", slug="resolved")
    if alert.status == "open":
        alert.status = "acknowledged"
        alert.acknowledged_at, alert.acknowledged_by = now, principal.sub
        log.info("tracking.alert_acknowledged", alert_id=alert_id, by=principal.sub)
    return alert


def resolve_alert(
    session: Session,
    *,
    alert_id: str,
    principal: Principal,
    reason: str,
    now: datetime,
) -> Alert:
    alert = get_alert(session, alert_id)
    if alert.status == "resolved":
        raise Conflict(
            "This alert is already resolved.",
            slug="resolved",
            resolution=alert.resolution,
        )
    alert.status = "resolved"
    alert.resolved_at, alert.resolved_by, alert.resolution = now, principal.sub, reason
    log.info("tracking.alert_resolved", alert_id=alert_id, by=principal.sub)
    return alert


def alert_view(session: Session, alert: Alert) -> dict[str, Any]:
    return alert_views(session, [alert])[0]


def alert_views(session: Session, alerts: list[Alert]) -> list[dict[str, Any]]:
    """Alerts as the API shows them, with the batches each is linked to, read
    in one query for all of them."""
    links = session.execute(
        select(AlertBatch.alert_id, AlertBatch.batch_id)
        .where(AlertBatch.alert_id.in_([alert.id for alert in alerts]))
        .order_by(AlertBatch.batch_id)
    ).all()
    batches: dict[str, list[str]] = {alert.id: [] for alert in alerts}
    for alert_id, batch_id in links:
        batches[alert_id].append(batch_id)
    return [_alert_fields(alert, batches[alert.id]) for alert in alerts]


def _alert_fields(alert: Alert, batch_ids: list[str]) -> dict[str, Any]:
    start, end = as_utc(alert.start), as_utc(alert.end)
    return {
        "id": alert.id,
        "kind": alert.kind,
        "status": alert.status,
        "device_id": alert.device_id,
        "vehicle_id": alert.vehicle_id,
        "batch_ids": batch_ids,
        "start": start,
        "end": end,
        "duration_s": int((end - start).total_seconds()),
        "lat": alert.lat,
        "lon": alert.lon,
        "place_id": alert.place_id,
        "message": alert.message,
        "detail": alert.detail,
        "raised_by": alert.raised_by,
        "created_at": as_utc(alert.created_at),
        "acknowledged_at": _maybe_utc(alert.acknowledged_at),
        "acknowledged_by": alert.acknowledged_by,
        "resolved_at": _maybe_utc(alert.resolved_at),
        "resolved_by": alert.resolved_by,
        "resolution": alert.resolution,
    }


def _maybe_utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


# Stops, distance, drops ----------------------------------------------------


def stops_between(
    session: Session,
    *,
    config: TrackingConfig,
    device_id: str,
    start: datetime,
    end: datetime,
) -> list[dict[str, Any]]:
    """Stops overlapping [start, end] in time order, the ongoing one last."""
    rows = session.scalars(
        select(Stop)
        .where(Stop.device_id == device_id, Stop.start <= end, Stop.end >= start)
        .order_by(Stop.start)
    ).all()
    stops = [
        _stop_view(s.start, s.end, s.lat, s.lon, s.place_id, s.place_kind) for s in rows
    ]
    ongoing = _ongoing_stop(session, config=config, device_id=device_id)
    if ongoing is not None and ongoing["start"] <= end and ongoing["end"] >= start:
        stops.append(ongoing)
    return stops


def _ongoing_stop(
    session: Session, *, config: TrackingConfig, device_id: str
) -> dict[str, Any] | None:
    state = session.get(MotionState, device_id)
    if state is None or not state.cluster_count:
        return None
    started, ended = as_utc(state.cluster_start), as_utc(state.cluster_end)
    if (ended - started).total_seconds() < config.min_stop_s:
        return None
    lat = state.cluster_lat_sum / state.cluster_count
    lon = state.cluster_lon_sum / state.cluster_count
    place = find_place(session, lat=lat, lon=lon)
    view = _stop_view(
        started,
        ended,
        lat,
        lon,
        place.place_id if place else None,
        place.kind if place else None,
    )
    view["ongoing"] = True
    return view


def _stop_view(start, end, lat, lon, place_id, place_kind) -> dict[str, Any]:
    start, end = as_utc(start), as_utc(end)
    return {
        "start": start,
        "end": end,
        "duration_s": int((end - start).total_seconds()),
        "lat": round(lat, COORDINATE_PLACES),
        "lon": round(lon, COORDINATE_PLACES),
        "place_id": place_id,
        "place_kind": place_kind,
        "ongoing": False,
    }


def points_between(
    session: Session, *, device_id: str, start: datetime, end: datetime
) -> list[tuple[datetime, float, float]]:
    """The device's cleaned fixes in [start, end], oldest first."""
    rows = session.execute(
        select(Position.fix_time, Position.lat, Position.lon)
        .where(
            Position.device_id == device_id,
            Position.fix_time >= start,
            Position.fix_time <= end,
        )
        .order_by(Position.fix_time)
    ).all()
    return [(as_utc(t), lat, lon) for t, lat, lon in rows]


def distance_between(
    session: Session, *, device_id: str, start: datetime, end: datetime
) -> tuple[float, int]:
    """Haversine distance over the cleaned fixes in the window, and their count."""
    points = points_between(session, device_id=device_id, start=start, end=end)
    return geo.path_length_m([(lat, lon) for _, lat, lon in points]), len(points)


def drop_counts(session: Session, *, device_id: str) -> dict[str, int]:
    rows = session.execute(
        select(Drop.reason, Drop.count).where(Drop.device_id == device_id)
    ).all()
    totals: dict[str, int] = {}
    for reason, count in rows:
        totals[reason] = totals.get(reason, 0) + count
    return totals


def check_window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    start, end = as_utc(start), as_utc(end)
    if end <= start:
        raise Unprocessable("end must be after start.", slug="invalid-window")
    return start, end


# Trip summaries ------------------------------------------------------------


def create_trip(
    session: Session,
    *,
    config: TrackingConfig,
    settings: Settings,
    batch_id: str,
    data: TripIn,
    now: datetime,
) -> tuple[Trip, bool]:
    """Summarises a batch's trip, signs it and queues it for the ledger once."""
    start, end = check_window(data.start, data.end)
    request = {
        "device_id": data.device_id,
        "vehicle_id": data.vehicle_id,
        "start": iso_utc(start),
        "end": iso_utc(end),
    }
    digest = digest_of(request)
    existing = session.get(Trip, batch_id)
    if existing is not None:
        if existing.request_digest != digest:
            raise Conflict(
                "This batch already has a trip summary for another request.",
                slug="trip-exists",
            )
        return existing, False
    device = get_device(session, data.device_id)
    if device.vehicle_id != data.vehicle_id:
        raise Unprocessable(
            f"Device {device.device_id!r} belongs to vehicle {device.vehicle_id!r}.",
            slug="vehicle-mismatch",
        )
    points = points_between(session, device_id=device.device_id, start=start, end=end)
    raise_window_gaps(
        session,
        config=config,
        device=device,
        batch_id=batch_id,
        start=start,
        end=end,
        points=points,
        now=now,
    )
    body = trip_body(
        session, config=config, device=device, start=start, end=end, points=points
    )
    attach_alerts(session, batch_id=batch_id, alert_ids=body["alert_ids"])
    statement = {
        "v": 1,
        "kind": "trip.summary",
        "batch_id": batch_id,
        "prev": None,
        "at": iso_utc(end),
        "body": body,
    }
    signature = sign_statement(settings.signing_key("tracking"), statement)
    entry = {"statement": statement, "signatures": [signature]}
    message_key = f"trip:{batch_id}"
    enqueue(
        session,
        outbox,
        target=LEDGER,
        path="/v1/entries",
        body=entry,
        key=message_key,
        ordering_key=LEDGER_ORDER,
    )
    trip = Trip(
        batch_id=batch_id,
        device_id=device.device_id,
        vehicle_id=device.vehicle_id,
        start=start,
        end=end,
        request_digest=digest,
        entry=entry,
        outbox_key=message_key,
        created_at=now,
    )
    session.add(trip)
    log.info(
        "tracking.trip_summarised",
        batch_id=batch_id,
        distance_m=body["distance_m"],
        point_count=body["point_count"],
    )
    return trip, True


def trip_body(
    session: Session,
    *,
    config: TrackingConfig,
    device: Device,
    start: datetime,
    end: datetime,
    points: list[tuple[datetime, float, float]] | None = None,
) -> dict[str, Any]:
    """The body of a trip.summary statement, as docs/architecture.md fixes it;
    `points` are the window's fixes if the caller has read them already."""
    if points is None:
        points = points_between(
            session, device_id=device.device_id, start=start, end=end
        )
    stops = stops_between(
        session, config=config, device_id=device.device_id, start=start, end=end
    )
    alerts = session.scalars(
        select(Alert.id)
        .where(
            Alert.device_id == device.device_id,
            Alert.start <= end,
            Alert.end >= start,
        )
        .order_by(Alert.start, Alert.id)
    ).all()
    duration_s = int((end - start).total_seconds())
    return {
        "device_id": device.device_id,
        "vehicle_id": device.vehicle_id,
        "start": iso_utc(start),
        "end": iso_utc(end),
        "distance_m": round(geo.path_length_m([(la, lo) for _, la, lo in points])),
        "duration_s": duration_s,
        "point_count": len(points),
        "coverage_permille": coverage_permille(
            [t for t, _, _ in points], duration_s, config.coverage_gap_s
        ),
        "points_sha256": points_sha256(points),
        "stops": [_clipped_stop(stop, start, end) for stop in stops],
        "alert_ids": list(alerts),
    }


def raise_window_gaps(
    session: Session,
    *,
    config: TrackingConfig,
    device: Device,
    batch_id: str,
    start: datetime,
    end: datetime,
    points: list[tuple[datetime, float, float]],
    now: datetime,
) -> None:
    """Every silence in the batch window longer than the telemetry gap, its
    edges included, raises a telemetry_gap alert unless one already covers it."""
    marks = [(start, None), *((t, (lat, lon)) for t, lat, lon in points), (end, None)]
    for (before, at_before), (after, at_after) in pairwise(marks):
        silence = (after - before).total_seconds()
        if silence <= config.telemetry_gap_s:
            continue
        if _gap_alerted(session, device_id=device.device_id, start=before, end=after):
            continue
        lat, lon = at_before or at_after or (None, None)
        record_alert(
            session,
            dedup_key=f"telemetry_gap:{device.device_id}:{iso_utc(before)}",
            kind="telemetry_gap",
            start=before,
            end=after,
            message=f"No telemetry for {int(silence)} s in batch {batch_id}'s window.",
            raised_by="tracking",
            now=now,
            device=device,
            lat=lat,
            lon=lon,
            detail={"gap_s": int(silence), "batch_id": batch_id},
        )
        log.warning(
            "tracking.window_gap_raised",
            batch_id=batch_id,
            device_id=device.device_id,
            gap_s=int(silence),
        )


def _gap_alerted(
    session: Session, *, device_id: str, start: datetime, end: datetime
) -> bool:
    """Whether a telemetry_gap alert of the device overlaps (start, end)."""
    found = session.scalar(
        select(Alert.id)
        .where(
            Alert.device_id == device_id,
            Alert.kind == "telemetry_gap",
            Alert.start < end,
            Alert.end > start,
        )
        .limit(1)
    )
    return found is not None


def coverage_permille(times: list[datetime], duration_s: int, gap_s: float) -> int:
    """Thousandths of the window covered by fixes at most gap_s apart, rounded down."""
    if duration_s <= 0:
        return 0
    covered = 0.0
    for earlier, later in pairwise(times):
        step = (later - earlier).total_seconds()
        if step <= gap_s:
            covered += step
    return min(1000, math.floor(1000 * covered / duration_s))


def points_sha256(points: list[tuple[datetime, float, float]]) -> str:
    """Hex SHA-256 of the canonical JSON list of {time, lat, lon}, oldest first."""
    listed = [{"time": iso_utc(t), "lat": lat, "lon": lon} for t, lat, lon in points]
    return hashlib.sha256(canonical_json(listed)).hexdigest()


def _clipped_stop(stop: dict[str, Any], start: datetime, end: datetime) -> dict:
    clipped_start, clipped_end = max(stop["start"], start), min(stop["end"], end)
    return {
        "start": iso_utc(clipped_start),
        "end": iso_utc(clipped_end),
        "duration_s": int((clipped_end - clipped_start).total_seconds()),
        "lat": stop["lat"],
        "lon": stop["lon"],
        "place_id": stop["place_id"],
    }


def get_trip(session: Session, batch_id: str) -> Trip:
    trip = session.get(Trip, batch_id)
    if trip is None:
        raise UnknownTrip(f"Batch {batch_id!r} has no trip summary yet.")
    return trip


def trip_view(session: Session, trip: Trip) -> dict[str, Any]:
    row = session.execute(
        select(outbox.c.delivered_at, outbox.c.failed_at).where(
            outbox.c.key == trip.outbox_key
        )
    ).first()
    status = "pending"
    if row is not None and row.delivered_at is not None:
        status = "delivered"
    elif row is not None and row.failed_at is not None:
        status = "failed"
    return {
        "batch_id": trip.batch_id,
        "summary": trip.entry["statement"]["body"],
        "entry": trip.entry,
        "ledger_status": status,
    }


def trip_geojson(session: Session, trip: Trip) -> dict[str, Any]:
    """The batch's trip as a GeoJSON FeatureCollection: path, stops, alerts."""
    body = trip.entry["statement"]["body"]
    return _replay(
        session,
        device_id=trip.device_id,
        window=(as_utc(trip.start), as_utc(trip.end)),
        stops=body["stops"],
        alert_ids=body["alert_ids"],
        properties={"batch_id": trip.batch_id, "distance_m": body["distance_m"]},
    )


def _replay(
    session: Session,
    *,
    device_id: str,
    window: tuple[datetime, datetime],
    stops: list[dict[str, Any]],
    alert_ids: list[str],
    properties: dict[str, Any],
) -> dict[str, Any]:
    points = points_between(
        session, device_id=device_id, start=window[0], end=window[1]
    )
    features: list[dict[str, Any]] = [
        {
            "type": "Feature",
            "geometry": {
                "type": "LineString",
                "coordinates": [[lon, lat] for _, lat, lon in points],
            },
            "properties": {
                "role": "path",
                **properties,
                "times": [iso_utc(t) for t, _, _ in points],
            },
        }
    ]
    for stop in stops:
        features.append(_point_feature(stop["lat"], stop["lon"], "stop", stop))
    for alert_id in alert_ids:
        alert = session.get(Alert, alert_id)
        if alert is not None and alert.lat is not None:
            view = alert_view(session, alert)
            properties = {k: _jsonable(v) for k, v in view.items()}
            features.append(_point_feature(alert.lat, alert.lon, "alert", properties))
    return {"type": "FeatureCollection", "features": features}


def _point_feature(lat, lon, role: str, properties: dict[str, Any]) -> dict:
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": {"role": role, **properties},
    }


def _jsonable(value: Any) -> Any:
    return iso_utc(value) if isinstance(value, datetime) else value


# Ledger key ----------------------------------------------------------------


def enqueue_key_registration(session: Session, *, settings: Settings) -> bool:
    """Queues the registration of the tracking key with the ledger, once."""
    key = settings.signing_key("tracking")
    kid = key_id(key)
    message_key = f"key:{kid}"
    queued = session.execute(
        select(outbox.c.id).where(outbox.c.key == message_key)
    ).first()
    if queued is not None:
        return False
    try:
        with session.begin_nested():
            enqueue(
                session,
                outbox,
                target=LEDGER,
                method="PUT",
                path=f"/v1/keys/{kid}",
                body={
                    "public_key": public_key_b64(key),
                    "party_kind": "service",
                    "party_id": "tracking",
                    "kinds": ["trip.summary"],
                },
                key=message_key,
                ordering_key=LEDGER_ORDER,
            )
    except IntegrityError:
        return False
    log.info("tracking.key_registration_queued", key_id=kid)
    return True


def delete_stops_after(session: Session, *, device_id: str, after: datetime | None):
    query = delete(Stop).where(Stop.device_id == device_id)
    if after is not None:
        query = query.where(Stop.start > after)
    session.execute(query, execution_options={"synchronize_session": False})


# Trips from motion ---------------------------------------------------------


def record_device_trip(
    session: Session,
    *,
    config: TrackingConfig,
    device_id: str,
    start: tuple[datetime, float, float],
    end: tuple[datetime, float, float],
    distance_m: float,
    point_count: int,
) -> DeviceTrip | None:
    """Stores movement between two stops if it is long enough to be a trip."""
    if (end[0] - start[0]).total_seconds() < config.min_trip_s:
        return None
    if distance_m < config.min_trip_distance_m:
        return None
    trip = DeviceTrip(
        device_id=device_id,
        start=start[0],
        end=end[0],
        start_lat=start[1],
        start_lon=start[2],
        end_lat=end[1],
        end_lon=end[2],
        distance_m=distance_m,
        point_count=point_count,
    )
    session.add(trip)
    log.info(
        "tracking.trip_detected", device_id=device_id, distance_m=round(distance_m)
    )
    return trip


def delete_trips_from(session: Session, *, device_id: str, since: datetime | None):
    """Forgets the device's trips that start at or after `since` (all if None)."""
    query = delete(DeviceTrip).where(DeviceTrip.device_id == device_id)
    if since is not None:
        query = query.where(DeviceTrip.start >= since)
    session.execute(query)


def device_trips(
    session: Session, *, device_id: str, start: datetime, end: datetime
) -> list[DeviceTrip]:
    """The device's trips overlapping [start, end], oldest first."""
    return list(
        session.scalars(
            select(DeviceTrip)
            .where(
                DeviceTrip.device_id == device_id,
                DeviceTrip.start <= end,
                DeviceTrip.end >= start,
            )
            .order_by(DeviceTrip.start)
        )
    )


def get_device_trip(session: Session, *, device_id: str, trip_id: int) -> DeviceTrip:
    trip = session.get(DeviceTrip, trip_id)
    if trip is None or trip.device_id != device_id:
        raise UnknownTrip(f"Device {device_id!r} has no trip {trip_id}.")
    return trip


def device_trip_view(trip: DeviceTrip) -> dict[str, Any]:
    start, end = as_utc(trip.start), as_utc(trip.end)
    return {
        "id": trip.id,
        "device_id": trip.device_id,
        "start": start,
        "end": end,
        "duration_s": int((end - start).total_seconds()),
        "distance_m": round(trip.distance_m),
        "point_count": trip.point_count,
        "start_lat": trip.start_lat,
        "start_lon": trip.start_lon,
        "end_lat": trip.end_lat,
        "end_lon": trip.end_lon,
    }


def device_trip_geojson(
    session: Session, *, config: TrackingConfig, trip: DeviceTrip
) -> dict[str, Any]:
    """A trip from motion as GeoJSON: its path, the stops at its ends and the
    alerts raised during it."""
    start, end = as_utc(trip.start), as_utc(trip.end)
    stops = stops_between(
        session, config=config, device_id=trip.device_id, start=start, end=end
    )
    alert_ids = session.scalars(
        select(Alert.id)
        .where(
            Alert.device_id == trip.device_id, Alert.start <= end, Alert.end >= start
        )
        .order_by(Alert.start, Alert.id)
    ).all()
    view = {k: _jsonable(v) for k, v in device_trip_view(trip).items()}
    return _replay(
        session,
        device_id=trip.device_id,
        window=(start, end),
        stops=[_clipped_stop(stop, stop["start"], stop["end"]) for stop in stops],
        alert_ids=list(alert_ids),
        properties={"trip_id": trip.id, "distance_m": view["distance_m"]},
    )


MAX_DAYS = 92


def daily_distance(
    session: Session,
    *,
    config: TrackingConfig,
    device_id: str,
    start: datetime,
    end: datetime,
) -> list[dict[str, Any]]:
    """Distance, fixes and trips per UTC day. A step counts for the day it
    began; a step over a silence that breaks trips (the truck was off, its
    path unknown) does not count."""
    if end - start > timedelta(days=MAX_DAYS):
        raise Unprocessable(
            f"Ask for at most {MAX_DAYS} days at a time.", slug="window-too-long"
        )
    points = points_between(session, device_id=device_id, start=start, end=end)
    days: dict[date, dict[str, Any]] = {}
    for t, _, _ in points:
        days.setdefault(t.date(), {"day": t.date(), "distance_m": 0.0})
    for (t, lat1, lon1), (t2, lat2, lon2) in pairwise(points):
        if (t2 - t).total_seconds() < config.trip_break_s:
            days[t.date()]["distance_m"] += geo.haversine_m(lat1, lon1, lat2, lon2)
    counts = _per_day([t for t, _, _ in points])
    trips = _per_day(
        [
            as_utc(t.start)
            for t in device_trips(session, device_id=device_id, start=start, end=end)
        ]
    )
    return [
        {
            **day,
            "distance_m": round(day["distance_m"]),
            "point_count": counts.get(key, 0),
            "trip_count": trips.get(key, 0),
        }
        for key, day in sorted(days.items())
    ]


def _per_day(times: list[datetime]) -> dict[date, int]:
    counts: dict[date, int] = {}
    for t in times:
        counts[t.date()] = counts.get(t.date(), 0) + 1
    return counts
