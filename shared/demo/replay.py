"""Replays a GPX trace as a Traccar Client would send it (OsmAnd form)."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import gpxpy
import httpx

from shared.timeutil import as_utc

METRES_PER_SECOND_IN_KNOTS = 1 / 0.514444


@dataclass(frozen=True)
class Fix:
    time: datetime
    lat: float
    lon: float
    altitude: float | None
    speed_mps: float | None
    bearing: float | None


def read_fixes(path: Path) -> list[Fix]:
    """Every track point of a GPX file, in file order, with derived speed."""
    with path.open() as handle:
        gpx = gpxpy.parse(handle)
    fixes = []
    for track in gpx.tracks:
        for segment in track.segments:
            fixes.extend(_segment_fixes(segment))
    return fixes


def _segment_fixes(segment) -> Iterator[Fix]:
    previous = None
    for number, point in enumerate(segment.points):
        speed = segment.get_speed(number)
        bearing = point.course_between(previous) if previous is not None else None
        yield Fix(
            time=as_utc(point.time),
            lat=point.latitude,
            lon=point.longitude,
            altitude=point.elevation,
            speed_mps=speed,
            bearing=(bearing + 180) % 360 if bearing is not None else None,
        )
        previous = point


def osmand_params(device_id: str, fix: Fix, battery: int) -> dict[str, str]:
    """The query parameters Traccar Client sends for one fix."""
    params = {
        "id": device_id,
        "lat": f"{fix.lat:.7f}",
        "lon": f"{fix.lon:.7f}",
        "timestamp": str(int(fix.time.timestamp())),
        "accuracy": "5",
        "batt": str(battery),
    }
    if fix.speed_mps is not None:
        params["speed"] = f"{fix.speed_mps * METRES_PER_SECOND_IN_KNOTS:.2f}"
    if fix.bearing is not None:
        params["bearing"] = f"{fix.bearing:.1f}"
    if fix.altitude is not None:
        params["altitude"] = f"{fix.altitude:.1f}"
    return params


def replay(client: httpx.Client, device_id: str, token: str, fixes: list[Fix]) -> int:
    """Posts every fix to the tracking root path; returns how many were accepted."""
    accepted = 0
    headers = {"Authorization": f"Bearer {token}"}
    for number, fix in enumerate(fixes):
        battery = max(20, 100 - number * 60 // max(1, len(fixes)))
        response = client.get(
            "/", params=osmand_params(device_id, fix, battery), headers=headers
        )
        if response.status_code < 300:
            accepted += 1
    return accepted
