"""Stop detection and movement checks over a device's cleaned fixes, one fix
at a time, from a state small enough to keep in one row per device."""

from dataclasses import dataclass
from datetime import datetime

from services.tracking.geo import haversine_m


@dataclass
class Fix:
    time: datetime
    lat: float
    lon: float


@dataclass
class Cluster:
    """Consecutive fixes within the stop radius of their common centre."""

    start: datetime
    end: datetime
    count: int
    lat_sum: float
    lon_sum: float
    checked: bool = False
    alert_id: str | None = None

    @classmethod
    def of(cls, fix: Fix) -> "Cluster":
        return cls(fix.time, fix.time, 1, fix.lat, fix.lon)

    @property
    def lat(self) -> float:
        return self.lat_sum / self.count

    @property
    def lon(self) -> float:
        return self.lon_sum / self.count

    @property
    def duration_s(self) -> float:
        return (self.end - self.start).total_seconds()

    def add(self, fix: Fix) -> None:
        self.end = fix.time
        self.count += 1
        self.lat_sum += fix.lat
        self.lon_sum += fix.lon


@dataclass
class Gap:
    """Silence between two accepted fixes while the device moved."""

    start: Fix
    end: Fix
    distance_m: float


@dataclass
class Motion:
    """What one fix changed: a stop that ended, a gap, a long stop going on."""

    closed: Cluster | None = None
    gap: Gap | None = None
    long_stop: Cluster | None = None


@dataclass(frozen=True)
class MotionRules:
    stop_radius_m: float
    min_stop_s: float
    dumping_after_s: float
    telemetry_gap_s: float


def advance(
    rules: MotionRules, previous: Fix | None, cluster: Cluster | None, fix: Fix
) -> tuple[Cluster, Motion]:
    """Feeds one accepted fix, in time order; returns the new cluster and
    what happened."""
    motion = Motion()
    if previous is not None:
        silence = (fix.time - previous.time).total_seconds()
        moved = haversine_m(previous.lat, previous.lon, fix.lat, fix.lon)
        if silence >= rules.telemetry_gap_s and moved > rules.stop_radius_m:
            motion.gap = Gap(previous, fix, moved)
    if cluster is not None:
        if haversine_m(cluster.lat, cluster.lon, fix.lat, fix.lon) <= (
            rules.stop_radius_m
        ):
            cluster.add(fix)
            if cluster.duration_s >= rules.dumping_after_s:
                motion.long_stop = cluster
            return cluster, motion
        if cluster.duration_s >= rules.min_stop_s:
            motion.closed = cluster
    return Cluster.of(fix), motion
