"""Cleaning and storing fixes, and keeping each device's motion up to date.

Fixes newer than the device's last accepted one take the lean path: checks
against the motion state row, one insert, one state update. Older fixes (a
buffered upload arriving late) are checked against their stored neighbours
and make the device's stops be re-derived from the last stop before them.
"""

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from prometheus_client import Counter as Metric
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from services.tracking import geo, service
from services.tracking.config import TrackingConfig
from services.tracking.models import (
    Alert,
    Device,
    Drop,
    MotionState,
    Position,
    Stop,
)
from services.tracking.motion import Cluster, Fix, MotionRules, advance
from services.tracking.osmand import RawFix
from shared.timeutil import as_utc, iso_utc

log = structlog.get_logger()

POINTS_ACCEPTED = Metric(
    "salvage_tracking_points_accepted_total", "Fixes stored after cleaning"
)
POINTS_DROPPED = Metric(
    "salvage_tracking_points_dropped_total", "Fixes dropped by cleaning", ["reason"]
)
# Reasons that mean the fix itself is unusable, whatever came before it.
UNUSABLE = ("invalid", "zero_position", "future", "too_old")


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
    device: Device,
    fixes: list[RawFix],
    now: datetime,
) -> IngestResult:
    """Cleans fixes, stores the good ones and advances the device's motion."""
    result = IngestResult(received=len(fixes))
    usable = [fix for fix in fixes if _usable(config, fix, now, result)]
    usable = _first_of_each_time(usable, result)
    state = _locked_state(session, device.device_id)
    last = as_utc(state.last_time) if state.last_time else None
    late = [fix for fix in usable if last is not None and fix.time <= last]
    fresh = [fix for fix in usable if last is None or fix.time > last]

    stored_late = _store_late(session, config, device, late, now, result)
    accepted, relocations = _clean_fresh(config, state, fresh, result)
    _insert(session, device.device_id, accepted, now)
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
    _count_drops(session, device.device_id, result, now)
    POINTS_ACCEPTED.inc(result.accepted)
    return result


def refusal_reason(result: IngestResult) -> str | None:
    """For a single fix: the reason it was unusable, if it was."""
    for reason in UNUSABLE:
        if result.dropped.get(reason):
            return reason
    return None


def _usable(config: TrackingConfig, fix: RawFix, now: datetime, result) -> bool:
    reason = None
    if not fix.valid:
        reason = "invalid"
    elif fix.lat == 0 and fix.lon == 0:
        reason = "zero_position"
    elif fix.time > now + timedelta(seconds=config.max_future_s):
        reason = "future"
    elif fix.time < config.earliest_fix_time or (
        config.max_age_s is not None
        and fix.time < now - timedelta(seconds=config.max_age_s)
    ):
        reason = "too_old"
    elif (fix.accuracy_m is not None and fix.accuracy_m > config.max_accuracy_m) or (
        fix.hdop is not None and fix.hdop > config.max_hdop
    ):
        reason = "poor_accuracy"
    if reason is not None:
        result.drop(reason)
    return reason is None


def _first_of_each_time(fixes: list[RawFix], result: IngestResult) -> list[RawFix]:
    unique: dict[datetime, RawFix] = {}
    for fix in sorted(fixes, key=lambda f: f.time):
        if fix.time in unique:
            result.drop("duplicate")
        else:
            unique[fix.time] = fix
    return list(unique.values())


def _locked_state(session: Session, device_id: str) -> MotionState:
    state = session.scalar(
        select(MotionState).where(MotionState.device_id == device_id).with_for_update()
    )
    if state is None:
        state = MotionState(device_id=device_id, cluster_count=0)
        session.add(state)
    return state


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


def _insert(session: Session, device_id: str, fixes: list[RawFix], now) -> None:
    if not fixes:
        return
    rows = [_row(device_id, fix, now) for fix in fixes]
    dialect = session.get_bind().dialect.name
    dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = dialect_insert(Position).on_conflict_do_nothing(
        index_elements=["device_id", "fix_time"]
    )
    session.execute(statement, rows)


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
    )


def _advance(
    session: Session,
    config: TrackingConfig,
    device: Device,
    state: MotionState,
    fixes: list[RawFix],
    now: datetime,
) -> None:
    """Feeds accepted fixes, in time order, to the device's stop detector."""
    rules = rules_of(config)
    previous = _last_fix(state)
    cluster = _cluster_of(state)
    for raw in fixes:
        fix = Fix(raw.time, raw.lat, raw.lon)
        cluster, motion = advance(rules, previous, cluster, fix)
        if motion.gap is not None:
            _raise_gap(session, device, motion.gap, now)
        if motion.closed is not None:
            _close_stop(session, device, motion.closed, now)
        if motion.long_stop is not None and not motion.long_stop.checked:
            _check_long_stop(session, device, motion.long_stop, now)
        previous = fix
    _save(state, previous, cluster)


def rebuild_motion(
    session: Session,
    *,
    config: TrackingConfig,
    device: Device,
    state: MotionState,
    since: datetime,
    now: datetime,
) -> None:
    """Re-derives stops from the last stop that ended before `since`, the
    earliest changed fix; here after fixes arrived out of order."""
    session.flush()
    anchor = _anchor_stop(session, device.device_id, since)
    after = as_utc(anchor.end) if anchor is not None else None
    service.delete_stops_after(session, device_id=device.device_id, after=after)
    query = select(Position.fix_time, Position.lat, Position.lon).where(
        Position.device_id == device.device_id
    )
    if after is not None:
        query = query.where(Position.fix_time >= after)
    rows = session.execute(query.order_by(Position.fix_time)).all()
    fixes = [RawFix(as_utc(t), lat, lon) for t, lat, lon in rows]
    if after is not None and fixes and fixes[0].time == after:
        previous = fixes.pop(0)
        _save(state, Fix(previous.time, previous.lat, previous.lon), None)
    else:
        _save(state, None, None)
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
    )


def _save(state: MotionState, last: Fix | None, cluster: Cluster | None) -> None:
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


def _close_stop(session: Session, device: Device, cluster: Cluster, now) -> None:
    place = service.find_place(session, lat=cluster.lat, lon=cluster.lon)
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
        alert = session.get(Alert, cluster.alert_id)
        if alert is not None:
            alert.end = cluster.end
            alert.lat, alert.lon = cluster.lat, cluster.lon
            alert.detail = {**alert.detail, "duration_s": int(cluster.duration_s)}
            alert.message = _dumping_message(cluster)


def _check_long_stop(session: Session, device: Device, cluster: Cluster, now) -> None:
    """A stop past the dumping threshold outside every place raises an alert."""
    cluster.checked = True
    if service.find_place(session, lat=cluster.lat, lon=cluster.lon) is not None:
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


def _dumping_message(cluster: Cluster) -> str:
    return (
        f"Stopped {int(cluster.duration_s // 60)} min at "
        f"{cluster.lat:.5f},{cluster.lon:.5f}, outside every registered place."
    )


def _raise_gap(session: Session, device: Device, gap, now) -> None:
    silence = int((gap.end.time - gap.start.time).total_seconds())
    service.record_alert(
        session,
        dedup_key=f"telemetry_gap:{device.device_id}:{iso_utc(gap.start.time)}",
        kind="telemetry_gap",
        start=gap.start.time,
        end=gap.end.time,
        message=f"No telemetry for {silence} s while moving {gap.distance_m:.0f} m.",
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
