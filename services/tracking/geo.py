"""Distances on the Earth and the geometry of registered places."""

import math
from itertools import pairwise
from typing import Any

import shapely
from shapely.geometry import Point, shape

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


def parse_geometry(geometry: dict[str, Any]):
    """A shapely Point or Polygon from GeoJSON; raises ValueError otherwise."""
    if geometry.get("type") not in ("Point", "Polygon"):
        raise ValueError("geometry must be a GeoJSON Point or Polygon")
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
