"""A whole trip uploaded as a GPX file, turned into raw fixes."""

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
    timed = point.time is not None and point.time.tzinfo is not None
    return RawFix(
        time=as_utc(point.time) if timed else now,
        lat=point.latitude,
        lon=point.longitude,
        speed_mps=getattr(point, "speed", None),
        course=getattr(point, "course", None),
        altitude_m=point.elevation,
        hdop=point.horizontal_dilution,
        valid=timed,
    )
