"""Distances on the Earth and the geometry of registered places."""

import math
from itertools import pairwise
from typing import Any

import shapely
from shapely.geometry import LineString, Point, shape

EARTH_RADIUS_M = 6_371_008.8
METRES_PER_DEGREE = math.pi * EARTH_RADIUS_M / 180


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres on the mean Earth sphere."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    half_dphi = (phi2 - phi1) / 2
    half_dlambda = math.radians(lon2 - lon1) / 2
    h = (
        math.sin(half_dphi) ** 2
        + math.cos(phi1) * math.cos(phi2) * math.sin(half_dlambda) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def path_length_m(points: list[tuple[float, float]]) -> float:
    """Haversine length of a path of (lat, lon) points."""
    return sum(haversine_m(*a, *b) for a, b in pairwise(points))


def parse_geometry(geometry: dict[str, Any], kinds=("Point", "Polygon")):
    """A shapely geometry of one of `kinds` from GeoJSON; raises ValueError
    otherwise."""
    if geometry.get("type") not in kinds:
        raise ValueError(f"geometry must be a GeoJSON {' or '.join(kinds)}")
    parsed = shape(geometry)
    if parsed.is_empty or not parsed.is_valid:
        raise ValueError("geometry is empty or invalid")
    for lon, lat in _coordinates(parsed):
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise ValueError("coordinates must be [longitude, latitude] in range")
    return parsed


def _coordinates(geometry) -> list[tuple[float, float]]:
    if geometry.geom_type == "Point":
        return [(geometry.x, geometry.y)]
    if geometry.geom_type == "LineString":
        return list(geometry.coords)
    return list(geometry.exterior.coords)


def bounds_with_margin(geometry, margin_m: float) -> tuple[float, ...]:
    """(min_lat, max_lat, min_lon, max_lon) of a geometry grown by margin_m."""
    min_lon, min_lat, max_lon, max_lat = geometry.bounds
    dlat = margin_m / METRES_PER_DEGREE
    widest = max(abs(min_lat), abs(max_lat))
    dlon = margin_m / (METRES_PER_DEGREE * max(math.cos(math.radians(widest)), 0.01))
    return min_lat - dlat, max_lat + dlat, min_lon - dlon, max_lon + dlon


def distance_to_geometry_m(geometry, lat: float, lon: float) -> float:
    """Metres from a point to a geometry (0 inside a polygon)."""
    if geometry.geom_type == "Point":
        return haversine_m(lat, lon, geometry.y, geometry.x)
    scale_x = METRES_PER_DEGREE * math.cos(math.radians(lat))

    def to_local(coordinates):
        local = coordinates.copy()
        local[:, 0] = (coordinates[:, 0] - lon) * scale_x
        local[:, 1] = (coordinates[:, 1] - lat) * METRES_PER_DEGREE
        return local

    return shapely.transform(geometry, to_local).distance(Point(0.0, 0.0))


class Corridor:
    """An allowed route: a line grown by a half-width, in local metres."""

    def __init__(self, place_id: str, line, half_width_m: float) -> None:
        self.place_id = place_id
        self.lon0, self.lat0 = line.centroid.x, line.centroid.y
        self.scale_x = METRES_PER_DEGREE * math.cos(math.radians(self.lat0))
        local = LineString([self._local(lat, lon) for lon, lat in line.coords])
        self.area = local.buffer(max(half_width_m, 0.5))
        shapely.prepare(self.area)

    def _local(self, lat: float, lon: float) -> tuple[float, float]:
        x = (lon - self.lon0) * self.scale_x
        return x, (lat - self.lat0) * METRES_PER_DEGREE

    def contains(self, lat: float, lon: float) -> bool:
        return self.area.covers(Point(self._local(lat, lon)))

    def covers_segment(self, a: tuple[float, float], b: tuple[float, float]) -> bool:
        """Whether the straight path a to b ((lat, lon) each) stays inside,
        which catches a bend left between two sparse fixes inside."""
        if a == b:
            return self.contains(*a)
        return self.area.covers(LineString([self._local(*a), self._local(*b)]))


def left_corridors(
    corridors: list[Corridor], a: tuple[float, float], b: tuple[float, float]
) -> Corridor | None:
    """The corridor a path a to b left, if it started inside one and the
    corridors do not hold the whole path; None otherwise."""
    inside = [c for c in corridors if c.contains(*a)]
    if not inside or any(c.covers_segment(a, b) for c in inside):
        return None
    if all(any(c.contains(*p) for c in corridors) for p in _samples(a, b)):
        return None
    return inside[0]


def _samples(a: tuple[float, float], b: tuple[float, float], step_m=10.0):
    """Points every step_m metres (at most 500) along a to b, both ends included."""
    count = min(500, max(1, math.ceil(haversine_m(*a, *b) / step_m)))
    for i in range(count + 1):
        share = i / count
        yield a[0] + (b[0] - a[0]) * share, a[1] + (b[1] - a[1]) * share
