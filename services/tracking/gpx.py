"""A whole trip uploaded as a GPX file, turned into raw fixes."""

import math
from datetime import datetime

import gpxpy
import gpxpy.gpx

from services.tracking.osmand import RawFix
from shared.problems import BadRequest
from shared.timeutil import as_utc


class MalformedGpx(BadRequest):
    slug, title = "malformed-gpx", "The GPX file cannot be read"


def fixes_from_gpx(data: bytes, now: datetime) -> list[RawFix]:
    """Track points of every track and segment, then route points; a point
    without a time is kept as an invalid fix so cleaning counts it."""
    try:
        parsed = gpxpy.parse(data.decode("utf-8"))
    except (gpxpy.gpx.GPXException, UnicodeDecodeError, ValueError) as exc:
        raise MalformedGpx(f"The GPX file cannot be parsed: {exc}"[:300]) from exc
    points = [
        point
        for track in parsed.tracks
        for segment in track.segments
        for point in segment.points
    ]
    points += [point for route in parsed.routes for point in route.points]
    return [_fix(point, now) for point in points]


def _fix(point, now: datetime) -> RawFix:
    """A point without a time, or with a position off the globe, becomes an
    invalid fix (counted by cleaning); non-finite readings are dropped."""
    timed = point.time is not None and point.time.tzinfo is not None
    placed = _on_globe(point.latitude, point.longitude)
    return RawFix(
        time=as_utc(point.time) if timed else now,
        lat=point.latitude if placed else 0.0,
        lon=point.longitude if placed else 0.0,
        speed_mps=_finite(getattr(point, "speed", None)),
        course=_finite(getattr(point, "course", None)),
        altitude_m=_finite(point.elevation),
        hdop=_finite(point.horizontal_dilution),
        valid=timed and placed,
    )


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _on_globe(lat: float | None, lon: float | None) -> bool:
    if _finite(lat) is None or _finite(lon) is None:
        return False
    return -90 <= lat <= 90 and -180 <= lon <= 180
