"""Cleaning and storing fixes, and keeping each device's motion up to date.

Fixes newer than the device's last accepted one take the lean path: checks
against the motion state row, one insert, one state update. Older fixes (a
buffered upload arriving late) are checked against their stored neighbours
and make the device's stops be re-derived from the last stop before them.
"""

import json
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import groupby
from typing import Any

import structlog
from prometheus_client import Counter as Metric
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from services.tracking import geo, partitions, service
from services.tracking.config import TrackingConfig
from services.tracking.models import (
    Alert,
    Device,
    Drop,
    MotionState,
    Position,
    Stop,
    Trip,
)
from services.tracking.motion import Cluster, Fix, MotionRules, Track, advance
from services.tracking.osmand import RawFix, plausible
from shared.canonical import digest_of
from shared.timeutil import as_utc, iso_utc

log = structlog.get_logger()

# Places where a truck starts and ends its shift: silence between two of them
# is not a gap in custody.
YARDS = ("depot", "plant")
POINTS_ACCEPTED = Metric(
    "salvage_tracking_points_accepted_total", "Fixes stored after cleaning"
)
POINTS_DROPPED = Metric(
    "salvage_tracking_points_dropped_total", "Fixes dropped by cleaning", ["reason"]
)


@dataclass
class IngestResult:
    received: int = 0
    accepted: int = 0
    dropped: Counter = field(default_factory=Counter)

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1


def ingest(
    session: Session,
    *,
    config: TrackingConfig,
    target: service.IngestTarget,
    fixes: list[RawFix],
    now: datetime,
    pending: "PendingPositions | None" = None,
) -> IngestResult:
    """Cleans fixes, stores the good ones and advances the device's motion.
    With `pending`, fresh fixes are held there for the caller to store along
    with other devices' fixes before it commits."""
    device, state = target.device, target.state
    result = IngestResult(received=len(fixes))
    fixes = [plausible(fix) for fix in fixes]
    usable = [fix for fix in fixes if _usable(config, fix, now, result)]
    usable = _first_of_each_time(usable, result)
    days = {fix.time.date() for fix in usable}
    ensure_partitions(session.get_bind(), config, days, now, create=pending is None)
    last = as_utc(state.last_time) if state.last_time else None
    late = [fix for fix in usable if last is not None and fix.time <= last]
    fresh = [fix for fix in usable if last is None or fix.time > last]

    if late and pending is not None:
        pending.write(session)
    stored_late = _store_late(session, config, device, late, now, result)
    accepted, relocations = _clean_fresh(config, state, fresh, result)
    if pending is None or stored_late:
        _insert(session, device.device_id, accepted, now)
    else:
        pending.add(device.device_id, accepted, now)
    for relocation in relocations:
        _raise_impossible_speed(session, device, relocation, now)
    if stored_late:
        rebuild_motion(
            session,
            config=config,
            device=device,
            state=state,
            since=stored_late[0].time,
            now=now,
        )
    else:
        _advance(session, config, device, state, accepted, now)

    result.accepted = len(stored_late) + len(accepted)
    _check_licence(session, device, [*stored_late, *accepted], now)
    stored = [*stored_late, *accepted]
    _check_summarised_trips(session, target, stored, now)
    _count_drops(session, device.device_id, result, now)
    POINTS_ACCEPTED.inc(result.accepted)
    return result


def usable_days(config: TrackingConfig, fixes: list[RawFix], now) -> set[date]:
    """The days of the fixes cleaning would not drop by their own readings."""
    ignored = IngestResult()
    return {
        fix.time.date()
        for fix in fixes
        if _usable(config, plausible(fix), now, ignored)
    }


def ensure_partitions(
    engine, config: TrackingConfig, days: set[date], now, *, create: bool = True
) -> None:
    """Creates the partitions these days need, on a connection of its own.
    Creating one waits for every open transaction that has touched positions,
    so a caller that stores fixes calls this before its transaction does;
    with `create` false a missing day is an error instead of a wait."""
    partitions.ensure_days(
        engine,
        days,
        max_new=config.max_new_partition_days,
        backfill=partitions.BackfillBudget(
            now.date(), config.max_backfill_partitions_per_day
        ),
        create=create,
    )


def _usable(config: TrackingConfig, fix: RawFix, now: datetime, result) -> bool:
    reason = None
    if not fix.valid:
        reason = "invalid"
    elif fix.lat == 0 and fix.lon == 0:
        reason = "zero_position"
    elif fix.time > now + timedelta(seconds=config.max_future_s):
        reason = "future"
    elif fix.time < _oldest_allowed(config, now):
        reason = "too_old"
    elif (fix.accuracy_m is not None and fix.accuracy_m > config.max_accuracy_m) or (
        fix.hdop is not None and fix.hdop > config.max_hdop
    ):
        reason = "poor_accuracy"
    if reason is not None:
        result.drop(reason)
    return reason is None


def _oldest_allowed(config: TrackingConfig, now: datetime) -> datetime:
    """Fixes before this are too old: by age, and never past the retention."""
    oldest = config.earliest_fix_time
    if config.max_age_s is not None:
        oldest = max(oldest, now - timedelta(seconds=config.max_age_s))
    if config.retention_days is not None:
        oldest = max(oldest, now - timedelta(days=config.retention_days))
    return oldest


def _first_of_each_time(fixes: list[RawFix], result: IngestResult) -> list[RawFix]:
    unique: dict[datetime, RawFix] = {}
    for fix in sorted(fixes, key=lambda f: f.time):
        if fix.time in unique:
            result.drop("duplicate")
        else:
            unique[fix.time] = fix
    return list(unique.values())


def _speed_mps(a_time, a_lat, a_lon, b_time, b_lat, b_lon) -> tuple[float, float]:
    distance = geo.haversine_m(a_lat, a_lon, b_lat, b_lon)
    seconds = abs((b_time - a_time).total_seconds())
    return distance / max(seconds, 1.0), distance


@dataclass
class Relocation:
    """The device reappeared far away and stayed there: a real jump."""

    origin: Fix
    first: Fix
    speed_mps: float
    distance_m: float


def _clean_fresh(
    config: TrackingConfig,
    state: MotionState,
    fixes: list[RawFix],
    result: IngestResult,
) -> tuple[list[RawFix], list[Relocation]]:
    """Drops fixes implying an impossible speed from the last accepted one; two
    consistent fixes far away are a relocation, accepted and alerted."""
    accepted: list[RawFix] = []
    relocations: list[Relocation] = []
    last = _last_fix(state)
    jump = _jump_fix(state)
    for fix in fixes:
        if last is not None:
            speed, distance = _speed_mps(
                last.time, last.lat, last.lon, fix.time, fix.lat, fix.lon
            )
            if speed > config.max_speed_mps:
                if (
                    jump is None
                    or _speed_mps(
                        jump.time, jump.lat, jump.lon, fix.time, fix.lat, fix.lon
                    )[0]
                    > config.max_speed_mps
                ):
                    result.drop("impossible_speed")
                    jump = Fix(fix.time, fix.lat, fix.lon)
                    continue
                relocations.append(Relocation(last, jump, speed, distance))
        accepted.append(fix)
        last, jump = Fix(fix.time, fix.lat, fix.lon), None
    state.jump_time = jump.time if jump else None
    state.jump_lat = jump.lat if jump else None
    state.jump_lon = jump.lon if jump else None
    return accepted, relocations


def _last_fix(state: MotionState) -> Fix | None:
    if state.last_time is None:
        return None
    return Fix(as_utc(state.last_time), state.last_lat, state.last_lon)


def _jump_fix(state: MotionState) -> Fix | None:
    if state.jump_time is None:
        return None
    return Fix(as_utc(state.jump_time), state.jump_lat, state.jump_lon)


def _store_late(
    session: Session,
    config: TrackingConfig,
    device: Device,
    fixes: list[RawFix],
    now: datetime,
    result: IngestResult,
) -> list[RawFix]:
    """Stores fixes older than the newest one, each checked against its stored
    neighbours (and the late fixes kept before it), in three range queries."""
    if not fixes:
        return []
    stored = _stored_around(session, device.device_id, fixes[0].time, fixes[-1].time)
    stored_times = [fix.time for fix in stored]
    taken = set(stored_times)
    kept: list[RawFix] = []
    for fix in fixes:
        if fix.time in taken:
            result.drop("duplicate")
            continue
        at = bisect_left(stored_times, fix.time)
        before = stored[at - 1] if at > 0 else None
        if kept and (before is None or kept[-1].time > before.time):
            before = kept[-1]
        after = stored[at] if at < len(stored) else None
        if any(
            _speed_mps(n.time, n.lat, n.lon, fix.time, fix.lat, fix.lon)[0]
            > config.max_speed_mps
            for n in (before, after)
            if n is not None
        ):
            result.drop("impossible_speed")
            continue
        kept.append(fix)
    _insert(session, device.device_id, kept, now)
    return kept


def _stored_around(
    session: Session, device_id: str, first: datetime, last: datetime
) -> list[Fix]:
    """Stored fixes in [first, last] with the one just before and just after."""
    columns = (Position.fix_time, Position.lat, Position.lon)
    same_device = Position.device_id == device_id
    before = session.execute(
        select(*columns)
        .where(same_device, Position.fix_time < first)
        .order_by(Position.fix_time.desc())
        .limit(1)
    ).all()
    inside = session.execute(
        select(*columns)
        .where(same_device, Position.fix_time >= first, Position.fix_time <= last)
        .order_by(Position.fix_time)
    ).all()
    after = session.execute(
        select(*columns)
        .where(same_device, Position.fix_time > last)
        .order_by(Position.fix_time)
        .limit(1)
    ).all()
    return [Fix(as_utc(t), lat, lon) for t, lat, lon in [*before, *inside, *after]]


COLUMNS = (
    "device_id",
    "received_at",
    "fix_time",
    "lat",
    "lon",
    "speed_mps",
    "course",
    "altitude_m",
    "accuracy_m",
    "hdop",
    "battery",
)
# One statement for any number of fixes on PostgreSQL: a row per array element.
UNNEST_INSERT = (
    "INSERT INTO positions (attributes, "
    + ", ".join(COLUMNS)
    + ") SELECT t.a::json, "
    + ", ".join(f"t.{column}" for column in COLUMNS)
    + " FROM unnest("
    "%s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[], "
    "%s::float8[], %s::float8[], %s::float8[], %s::float8[], %s::float8[], "
    "%s::float8[], %s::float8[], %s::float8[]"
    ") AS t(a, " + ", ".join(COLUMNS) + ") "
    "ON CONFLICT (device_id, fix_time) DO NOTHING"
)

# A fix to store: the device it came from, the fix, and when it was received.
Row = tuple[str, RawFix, datetime]


@dataclass
class PendingPositions:
    """Fresh fixes of several devices, held back to be stored in one
    statement when their transaction is about to commit."""

    rows: list[Row] = field(default_factory=list)

    def add(self, device_id: str, fixes: list[RawFix], now: datetime) -> None:
        self.rows.extend((device_id, fix, now) for fix in fixes)

    def write(self, session: Session) -> None:
        _insert_rows(session, self.rows)
        self.rows = []


def _insert(session: Session, device_id: str, fixes: list[RawFix], now) -> None:
    _insert_rows(session, [(device_id, fix, now) for fix in fixes])


def _insert_rows(session: Session, rows: list[Row]) -> None:
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.connection().exec_driver_sql(UNNEST_INSERT, _arrays(rows))
        return
    statement = sqlite.insert(Position).on_conflict_do_nothing(
        index_elements=["device_id", "fix_time"]
    )
    session.execute(statement, [_row(*row) for row in rows])


def _arrays(rows: list[Row]) -> tuple:
    fixes = [fix for _, fix, _ in rows]
    attributes = [json.dumps(f.attributes) if f.attributes else None for f in fixes]
    columns = [
        [device_id for device_id, _, _ in rows],
        [received for _, _, received in rows],
        [f.time for f in fixes],
        [f.lat for f in fixes],
        [f.lon for f in fixes],
        [f.speed_mps for f in fixes],
        [f.course for f in fixes],
        [f.altitude_m for f in fixes],
        [f.accuracy_m for f in fixes],
        [f.hdop for f in fixes],
        [f.battery for f in fixes],
    ]
    return (attributes, *columns)


def _row(device_id: str, fix: RawFix, now: datetime) -> dict[str, Any]:
    return {
        "device_id": device_id,
        "fix_time": fix.time,
        "lat": fix.lat,
        "lon": fix.lon,
        "speed_mps": fix.speed_mps,
        "course": fix.course,
        "altitude_m": fix.altitude_m,
        "accuracy_m": fix.accuracy_m,
        "hdop": fix.hdop,
        "battery": fix.battery,
        "attributes": fix.attributes or None,
        "received_at": now,
    }


def _count_drops(session: Session, device_id: str, result: IngestResult, now):
    if not result.dropped:
        return
    dialect = session.get_bind().dialect.name
    dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    for reason, count in sorted(result.dropped.items()):
        POINTS_DROPPED.labels(reason).inc(count)
        statement = dialect_insert(Drop).values(
            device_id=device_id, day=now.date(), reason=reason, count=count
        )
        statement = statement.on_conflict_do_update(
            index_elements=["device_id", "day", "reason"],
            set_={"count": Drop.count + statement.excluded.count},
        )
        session.execute(statement)
    log.info(
        "tracking.fixes_dropped", device_id=device_id, dropped=dict(result.dropped)
    )


# Motion --------------------------------------------------------------------


def rules_of(config: TrackingConfig) -> MotionRules:
    return MotionRules(
        stop_radius_m=config.stop_radius_m,
        min_stop_s=config.min_stop_s,
        dumping_after_s=config.dumping_after_s,
        telemetry_gap_s=config.telemetry_gap_s,
        trip_break_s=config.trip_break_s,
    )


def _advance(
    session: Session,
    config: TrackingConfig,
    device: Device,
    state: MotionState,
    fixes: list[RawFix],
    now: datetime,
) -> None:
    """Feeds accepted fixes, in time order, to the device's stop and trip
    detector and the corridor check."""
    if not fixes:
        return
    rules = rules_of(config)
    track = _track_of(state)
    routes = service.corridors(session, max_age_s=config.corridor_cache_s)
    for raw in fixes:
        fix = Fix(raw.time, raw.lat, raw.lon)
        previous = track.previous
        motion = advance(rules, track, fix)
        if routes and previous is not None:
            _check_corridor(session, device, routes, previous, fix, now)
        _apply(session, config, device, motion, now)
    _save(state, track)


def _apply(session, config: TrackingConfig, device: Device, motion, now) -> None:
    """Stores and alerts what one fix made happen."""
    if motion.gap is not None and not _between_yards(session, motion.gap):
        _raise_gap(session, device, motion.gap, now)
    if motion.closed is not None:
        closed = motion.closed
        if not closed.checked and closed.duration_s >= config.dumping_after_s:
            _check_long_stop(session, config, device, closed, now)
        _close_stop(session, config, device, closed, now)
    if motion.long_stop is not None and not motion.long_stop.checked:
        _check_long_stop(session, config, device, motion.long_stop, now)
    if motion.trip is not None:
        trip = motion.trip
        service.record_device_trip(
            session,
            config=config,
            device_id=device.device_id,
            start=(trip.start.time, trip.start.lat, trip.start.lon),
            end=(trip.end.time, trip.end.lat, trip.end.lon),
            distance_m=trip.distance_m,
            point_count=trip.point_count,
        )


def rebuild_motion(
    session: Session,
    *,
    config: TrackingConfig,
    device: Device,
    state: MotionState,
    since: datetime,
    now: datetime,
) -> None:
    """Re-derives stops and trips from the last stop that ended before `since`,
    the earliest changed fix; here after fixes arrived out of order."""
    session.flush()
    anchor = _anchor_stop(session, device.device_id, since)
    after = as_utc(anchor.end) if anchor is not None else None
    service.delete_stops_after(session, device_id=device.device_id, after=after)
    service.delete_trips_from(session, device_id=device.device_id, since=after)
    query = select(Position.fix_time, Position.lat, Position.lon).where(
        Position.device_id == device.device_id
    )
    if after is not None:
        query = query.where(Position.fix_time >= after)
    rows = session.execute(query.order_by(Position.fix_time)).all()
    fixes = [RawFix(as_utc(t), lat, lon) for t, lat, lon in rows]
    track = Track()
    if after is not None and fixes and fixes[0].time == after:
        first = fixes.pop(0)
        track.previous = Fix(first.time, first.lat, first.lon)
        track.restart_trip(track.previous, track.previous)
    _save(state, track)
    _advance(session, config, device, state, fixes, now)
    log.info(
        "tracking.motion_rebuilt",
        device_id=device.device_id,
        since=iso_utc(since),
        fixes=len(fixes),
    )


def _anchor_stop(session: Session, device_id: str, since: datetime) -> Stop | None:
    """The newest stored stop that ended before a given time."""
    return session.scalar(
        select(Stop)
        .where(Stop.device_id == device_id, Stop.end < since)
        .order_by(Stop.end.desc())
        .limit(1)
    )


def _track_of(state: MotionState) -> Track:
    trip_start = None
    if state.trip_start_time is not None:
        trip_start = Fix(
            as_utc(state.trip_start_time), state.trip_start_lat, state.trip_start_lon
        )
    return Track(
        previous=_last_fix(state),
        cluster=_cluster_of(state),
        trip_start=trip_start,
        trip_distance_m=state.trip_distance_m or 0.0,
        trip_points=state.trip_points or 0,
    )


def _cluster_of(state: MotionState) -> Cluster | None:
    if not state.cluster_count:
        return None
    return Cluster(
        start=as_utc(state.cluster_start),
        end=as_utc(state.cluster_end),
        count=state.cluster_count,
        lat_sum=state.cluster_lat_sum,
        lon_sum=state.cluster_lon_sum,
        checked=bool(state.cluster_checked),
        alert_id=state.cluster_alert_id,
        trip_distance_m=state.cluster_trip_distance_m or 0.0,
        trip_points=state.cluster_trip_points or 1,
    )


def _save(state: MotionState, track: Track) -> None:
    last, cluster, trip = track.previous, track.cluster, track.trip_start
    state.last_time = last.time if last else None
    state.last_lat = last.lat if last else None
    state.last_lon = last.lon if last else None
    state.cluster_start = cluster.start if cluster else None
    state.cluster_end = cluster.end if cluster else None
    state.cluster_count = cluster.count if cluster else 0
    state.cluster_lat_sum = cluster.lat_sum if cluster else 0.0
    state.cluster_lon_sum = cluster.lon_sum if cluster else 0.0
    state.cluster_checked = cluster.checked if cluster else False
    state.cluster_alert_id = cluster.alert_id if cluster else None
    state.trip_start_time = trip.time if trip else None
    state.trip_start_lat = trip.lat if trip else None
    state.trip_start_lon = trip.lon if trip else None
    state.trip_distance_m = track.trip_distance_m
    state.trip_points = track.trip_points
    state.cluster_trip_distance_m = cluster.trip_distance_m if cluster else None
    state.cluster_trip_points = cluster.trip_points if cluster else None


def _close_stop(
    session: Session, config: TrackingConfig, device: Device, cluster: Cluster, now
) -> None:
    place = service.find_place(session, lat=cluster.lat, lon=cluster.lon)
    _check_site(session, config, device, cluster, place, now)
    session.add(
        Stop(
            device_id=device.device_id,
            start=cluster.start,
            end=cluster.end,
            lat=cluster.lat,
            lon=cluster.lon,
            point_count=cluster.count,
            place_id=place.place_id if place else None,
            place_kind=place.kind if place else None,
        )
    )
    if cluster.alert_id is not None:
        _update_dumping_alert(session, cluster)


def _update_dumping_alert(session: Session, cluster: Cluster) -> None:
    """The stop's alert follows the stop as more of it arrives."""
    alert = session.get(Alert, cluster.alert_id)
    if alert is not None:
        alert.end = cluster.end
        alert.lat, alert.lon = cluster.lat, cluster.lon
        alert.detail = {**alert.detail, "duration_s": int(cluster.duration_s)}
        alert.message = _dumping_message(cluster)


def _alert_of_same_stop(session: Session, device_id: str, cluster: Cluster):
    """The dumping alert already raised for this stop, when late fixes have
    moved its start: one stop keeps one alert."""
    query = (
        select(Alert)
        .where(
            Alert.device_id == device_id,
            Alert.kind == "dumping_suspected",
            Alert.start <= cluster.end,
            Alert.end >= cluster.start,
        )
        .order_by(Alert.start)
        .limit(1)
    )
    return session.scalars(query).first()


def _check_long_stop(
    session: Session, config: TrackingConfig, device: Device, cluster: Cluster, now
) -> None:
    """A stop past the dumping threshold outside every place raises an alert."""
    cluster.checked = True
    place = service.find_place(session, lat=cluster.lat, lon=cluster.lon)
    if place is not None:
        _check_site(session, config, device, cluster, place, now)
        return
    earlier = _alert_of_same_stop(session, device.device_id, cluster)
    if earlier is not None:
        earlier.start = min(as_utc(earlier.start), cluster.start)
        cluster.alert_id = earlier.id
        _update_dumping_alert(session, cluster)
        return
    alert = service.record_alert(
        session,
        dedup_key=f"dumping_suspected:{device.device_id}:{iso_utc(cluster.start)}",
        kind="dumping_suspected",
        start=cluster.start,
        end=cluster.end,
        message=_dumping_message(cluster),
        raised_by="tracking",
        now=now,
        device=device,
        lat=cluster.lat,
        lon=cluster.lon,
        detail={"duration_s": int(cluster.duration_s)},
    )
    cluster.alert_id = alert.id


def _check_site(session, config: TrackingConfig, device, cluster, place, now) -> None:
    """A delivery-length stop at a plant without a licence raises an alert."""
    if place is None or place.kind != "plant" or place.licensed:
        return
    if cluster.duration_s < config.delivery_min_s:
        return
    service.record_alert(
        session,
        dedup_key=f"unlicensed_site:{device.device_id}:{iso_utc(cluster.start)}",
        kind="unlicensed_site",
        start=cluster.start,
        end=cluster.end,
        message=(
            f"Stopped {int(cluster.duration_s // 60)} min at {place.name}, "
            "a plant without a valid licence."
        ),
        raised_by="tracking",
        now=now,
        device=device,
        lat=cluster.lat,
        lon=cluster.lon,
        place_id=place.place_id,
        detail={"duration_s": int(cluster.duration_s)},
    )


def _check_corridor(session, device: Device, routes, previous: Fix, fix: Fix, now):
    """Leaving an allowed corridor, even between two sparse fixes, raises an
    alert unless the fix is at a registered place."""
    left = geo.left_corridors(routes, (previous.lat, previous.lon), (fix.lat, fix.lon))
    if left is None or service.find_place(session, lat=fix.lat, lon=fix.lon):
        return
    service.record_alert(
        session,
        dedup_key=f"corridor_left:{device.device_id}:{iso_utc(previous.time)}",
        kind="corridor_left",
        start=previous.time,
        end=fix.time,
        message=f"Left the allowed corridor {left.place_id}.",
        raised_by="tracking",
        now=now,
        device=device,
        lat=fix.lat,
        lon=fix.lon,
        place_id=left.place_id,
        detail={"from": {"lat": previous.lat, "lon": previous.lon}},
    )


def _check_licence(session, device: Device, fixes: list[RawFix], now) -> None:
    """Fixes before the licence window or from its end on raise one alert per
    UTC day and window, spanning that day's fixes outside it. A new window
    (a suspension, a renewal) raises a new alert even on a day that has one."""
    window = service.licence_window(device)
    outside = sorted(
        fix.time for fix in fixes if service.outside_licence(window, fix.time)
    )
    for day, times in groupby(outside, key=lambda time: time.date()):
        _raise_licence_alert(session, device, window, day, list(times), now)


def _raise_licence_alert(session, device, window, day: date, times, now) -> None:
    start, end = (iso_utc(t) if t is not None else None for t in window)
    tag = digest_of({"from": start, "until": end})[:12]
    alert = service.record_alert(
        session,
        dedup_key=f"licence_invalid:{device.device_id}:{day.isoformat()}:{tag}",
        kind="licence_invalid",
        start=times[0],
        end=times[-1],
        message=(
            f"Operating on {day} outside its licence, "
            f"{service.describe_licence(window)}."
        ),
        raised_by="tracking",
        now=now,
        device=device,
        detail={"licence_valid_from": start, "licence_valid_until": end},
    )
    if alert.status != "resolved":
        _widen(alert, times[0], times[-1])


def _widen(alert: Alert, first: datetime, last: datetime) -> None:
    """Stretches an alert's span to cover the instants first to last."""
    alert.start = min(as_utc(alert.start), first)
    alert.end = max(as_utc(alert.end), last)


def _check_summarised_trips(
    session: Session, target: service.IngestTarget, fixes: list[RawFix], now
) -> None:
    """Fixes stored inside the window of a trip already summarised and signed
    are kept, but the signed summary lacks them: one alert per batch says so
    and counts them."""
    if not fixes:
        return
    times = sorted(fix.time for fix in fixes)
    if target.summarised_until is None or target.summarised_until < times[0]:
        return
    device = target.device
    trips = session.scalars(
        select(Trip).where(
            Trip.device_id == device.device_id,
            Trip.start <= times[-1],
            Trip.end >= times[0],
        )
    )
    for trip in trips:
        start, end = as_utc(trip.start), as_utc(trip.end)
        inside = [t for t in times if start <= t <= end]
        if inside:
            _raise_late_fixes(session, device, trip.batch_id, inside, now)


def _raise_late_fixes(session, device, batch_id: str, inside, now) -> None:
    alert = service.record_alert(
        session,
        dedup_key=f"fix_after_summary:{batch_id}",
        kind="fix_after_summary",
        start=inside[0],
        end=inside[-1],
        message=(
            f"Fixes arrived inside batch {batch_id}'s trip after its summary "
            "was signed; the signed distance and stops do not include them."
        ),
        raised_by="tracking",
        now=now,
        device=device,
        detail={"batch_id": batch_id, "fixes": 0},
    )
    alert.detail = {**alert.detail, "fixes": alert.detail["fixes"] + len(inside)}
    _widen(alert, inside[0], inside[-1])
    service.attach_alerts(session, batch_id=batch_id, alert_ids=[alert.id])
    log.warning("tracking.fix_after_summary", batch_id=batch_id, fixes=len(inside))


def _dumping_message(cluster: Cluster) -> str:
    return (
        f"Stopped {int(cluster.duration_s // 60)} min at "
        f"{cluster.lat:.5f},{cluster.lon:.5f}, outside every registered place."
    )


def _between_yards(session: Session, gap) -> bool:
    """A silence from a plant or depot to a plant or depot is the end of a
    shift (an emptied truck going home), not a loaded truck gone dark."""
    return all(
        (place := service.find_place(session, lat=fix.lat, lon=fix.lon)) is not None
        and place.kind in YARDS
        for fix in (gap.start, gap.end)
    )


def _raise_gap(session: Session, device: Device, gap, now) -> None:
    silence = int((gap.end.time - gap.start.time).total_seconds())
    service.record_alert(
        session,
        dedup_key=f"telemetry_gap:{device.device_id}:{iso_utc(gap.start.time)}",
        kind="telemetry_gap",
        start=gap.start.time,
        end=gap.end.time,
        message=(
            f"No telemetry for {silence} s; reappeared {gap.distance_m:.0f} m "
            "from where it fell silent."
        ),
        raised_by="tracking",
        now=now,
        device=device,
        lat=gap.end.lat,
        lon=gap.end.lon,
        detail={"gap_s": silence, "distance_m": round(gap.distance_m)},
    )


def _raise_impossible_speed(session, device: Device, jump: Relocation, now) -> None:
    service.record_alert(
        session,
        dedup_key=f"impossible_speed:{device.device_id}:{iso_utc(jump.first.time)}",
        kind="impossible_speed",
        start=jump.origin.time,
        end=jump.first.time,
        message=(
            f"Moved {jump.distance_m:.0f} m at {jump.speed_mps:.0f} m/s, "
            "faster than a truck can."
        ),
        raised_by="tracking",
        now=now,
        device=device,
        lat=jump.first.lat,
        lon=jump.first.lon,
        detail={
            "speed_mps": round(jump.speed_mps, 1),
            "distance_m": round(jump.distance_m),
            "from": {"lat": jump.origin.lat, "lon": jump.origin.lon},
        },
    )
