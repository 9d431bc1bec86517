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
    # The trip's distance and fix count up to the cluster's first fix.
    trip_distance_m: float = 0.0
    trip_points: int = 1

    @classmethod
    def of(cls, fix: Fix, track: "Track | None" = None) -> "Cluster":
        cluster = cls(fix.time, fix.time, 1, fix.lat, fix.lon)
        if track is not None:
            cluster.trip_distance_m = track.trip_distance_m
            cluster.trip_points = track.trip_points
        return cluster

    @property
    def lat(self) -> float:
        return self.lat_sum / self.count

    @property
    def lon(self) -> float:
        return self.lon_sum / self.count

    @property
    def duration_s(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def start_fix(self) -> Fix:
        return Fix(self.start, self.lat, self.lon)

    def add(self, fix: Fix) -> None:
        self.end = fix.time
        self.count += 1
        self.lat_sum += fix.lat
        self.lon_sum += fix.lon


@dataclass
class Gap:
    """Silence between two accepted fixes during a trip, or after which the
    device reappeared away from where it fell silent."""

    start: Fix
    end: Fix
    distance_m: float


@dataclass
class TripSpan:
    """Movement from one stop (or break in telemetry) to the next."""

    start: Fix
    end: Fix
    distance_m: float
    point_count: int


@dataclass
class Motion:
    """What one fix changed: a stop or trip that ended, a gap, a long stop."""

    closed: Cluster | None = None
    gap: Gap | None = None
    long_stop: Cluster | None = None
    trip: TripSpan | None = None


@dataclass
class Track:
    """What stop and trip detection keep between one fix and the next."""

    previous: Fix | None = None
    cluster: Cluster | None = None
    trip_start: Fix | None = None
    # Haversine distance and fixes from the trip's start to the previous fix.
    trip_distance_m: float = 0.0
    trip_points: int = 0

    def restart_trip(self, start: Fix, fix: Fix) -> None:
        """Starts the trip at `start` (a stop's end or a fix after a break)."""
        self.trip_start = start
        self.trip_distance_m = 0.0
        self.trip_points = 1
        if fix is not start:
            self.step(start, fix)

    def step(self, previous: Fix, fix: Fix) -> None:
        self.trip_distance_m += haversine_m(
            previous.lat, previous.lon, fix.lat, fix.lon
        )
        self.trip_points += 1


@dataclass(frozen=True)
class MotionRules:
    stop_radius_m: float
    min_stop_s: float
    dumping_after_s: float
    telemetry_gap_s: float
    trip_break_s: float = 3600.0


def advance(rules: MotionRules, track: Track, fix: Fix) -> Motion:
    """Feeds one accepted fix, in time order, and says what happened."""
    motion = Motion()
    previous, cluster = track.previous, track.cluster
    if previous is not None:
        motion.gap = _gap(rules, track, fix)
        silence = (fix.time - previous.time).total_seconds()
        if silence >= rules.trip_break_s and not _parked_through(rules, track, fix):
            _break_trip(rules, track, fix, motion)
            return motion
    track.previous = fix
    if track.trip_start is None:
        track.restart_trip(fix, fix)
    elif previous is not None:
        track.step(previous, fix)
    if cluster is not None:
        if _within(rules, cluster, fix):
            cluster.add(fix)
            if cluster.duration_s >= rules.dumping_after_s:
                motion.long_stop = cluster
            return motion
        if _stopped(rules, cluster):
            motion.closed = cluster
            motion.trip = _trip_until(track.trip_start, cluster)
            track.restart_trip(previous, fix)
    track.cluster = Cluster.of(fix, track)
    return motion


def _gap(rules: MotionRules, track: Track, fix: Fix) -> Gap | None:
    """Silence longer than the gap during a trip, or whatever the motion state
    when the device reappears beyond the stop radius from where it fell silent."""
    previous = track.previous
    if (fix.time - previous.time).total_seconds() <= rules.telemetry_gap_s:
        return None
    moved = haversine_m(previous.lat, previous.lon, fix.lat, fix.lon)
    if moved > rules.stop_radius_m or _on_trip(rules, track):
        return Gap(previous, fix, moved)
    return None


def _on_trip(rules: MotionRules, track: Track) -> bool:
    """Moving: not at a stop, and gone beyond the stop radius since the trip began."""
    return (
        not _stopped(rules, track.cluster)
        and track.trip_distance_m > rules.stop_radius_m
    )


def _parked_through(rules: MotionRules, track: Track, fix: Fix) -> bool:
    """A stopped device that reappears at its stop stayed there while silent:
    the stop goes on (and is checked for dumping) instead of the trip breaking."""
    cluster = track.cluster
    return _stopped(rules, cluster) and _within(rules, cluster, fix)


def _within(rules: MotionRules, cluster: Cluster, fix: Fix) -> bool:
    distance = haversine_m(cluster.lat, cluster.lon, fix.lat, fix.lon)
    return distance <= rules.stop_radius_m


def _stopped(rules: MotionRules, cluster: Cluster | None) -> bool:
    return cluster is not None and cluster.duration_s >= rules.min_stop_s


def _trip_until(start: Fix | None, stop: Cluster) -> TripSpan | None:
    """The trip that ended where a stop began."""
    if start is None or start.time >= stop.start:
        return None
    return TripSpan(start, stop.start_fix, stop.trip_distance_m, stop.trip_points)


def _break_trip(rules: MotionRules, track: Track, fix: Fix, motion: Motion) -> None:
    """A long silence ends the trip (and the stop) and starts afresh at fix."""
    if _stopped(rules, track.cluster):
        motion.closed = track.cluster
        motion.trip = _trip_until(track.trip_start, track.cluster)
    elif track.trip_start is not None and track.trip_start.time < track.previous.time:
        motion.trip = TripSpan(
            track.trip_start,
            track.previous,
            track.trip_distance_m,
            track.trip_points,
        )
    track.previous = fix
    track.restart_trip(fix, fix)
    track.cluster = Cluster.of(fix, track)
