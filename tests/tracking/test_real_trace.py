"""The real Limerick bus run replayed through the OsmAnd endpoint, as Traccar
Client would send it, against the route's 36 official stops."""

import json
import math
from datetime import timedelta
from itertools import pairwise

import gpxpy
import pytest

from tests.conftest import DATA_DIR
from tests.tracking.conftest import DEVICE, VEHICLE, offset, register_place

KNOTS_PER_MPS = 3600 / 1852
MATCH_M = 50.0


def independent_haversine(lat1, lon1, lat2, lon2) -> float:
    """A haversine written apart from the service's, for the cross-check."""
    r = 6_371_008.8
    a = (
        math.sin(math.radians(lat2 - lat1) / 2) ** 2
        + math.cos(math.radians(lat1))
        * math.cos(math.radians(lat2))
        * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * r * math.atan2(math.sqrt(a), math.sqrt(1 - a))


@pytest.fixture(scope="module")
def trace():
    with open(DATA_DIR / "limerick-bus-304-2019-02-18.gpx") as handle:
        gpx = gpxpy.parse(handle)
    return [p for t in gpx.tracks for s in t.segments for p in s.points]


@pytest.fixture(scope="module")
def official_stops():
    with open(DATA_DIR / "limerick-bus-304-stops.geojson") as handle:
        features = json.load(handle)["features"]
    return [
        (f["properties"]["stop_id"], *reversed(f["geometry"]["coordinates"]))
        for f in features
    ]


def osmand_params(point, previous, token: str) -> dict:
    """The query Traccar Client sends for one fix, speed in knots."""
    params = {
        "id": DEVICE,
        "lat": f"{point.latitude:.7f}",
        "lon": f"{point.longitude:.7f}",
        "timestamp": str(int(point.time.timestamp())),
        "altitude": f"{point.elevation:.1f}",
        "batt": "87",
        "token": token,
    }
    if previous is not None:
        speed = point.speed_between(previous) or 0.0
        params["speed"] = f"{speed * KNOTS_PER_MPS:.2f}"
        params["bearing"] = f"{previous.course_between(point):.1f}"
    return params


def replay(client, trace, token) -> None:
    previous = None
    for point in trace:
        response = client.get("/", params=osmand_params(point, previous, token))
        assert response.status_code == 200, response.text
        previous = point


def register_route(client, headers, official_stops) -> None:
    """First stop the depot, last the plant, the ones between communities."""
    last = len(official_stops) - 1
    for i, (stop_id, lat, lon) in enumerate(official_stops):
        kind = "depot" if i == 0 else "plant" if i == last else "community"
        register_place(client, headers, stop_id, lat, lon, kind=kind, radius_m=30)


def test_real_trace_stops_distance_and_dumping(
    client, device, device_token, service_auth, trace, official_stops
):
    register_route(client, service_auth, official_stops)
    replay(client, trace, device_token)
    start, end = trace[0].time, trace[-1].time
    window = {"start": start.isoformat(), "end": end.isoformat()}

    stops = client.get(
        f"/v1/devices/{DEVICE}/stops", params=window, headers=service_auth
    ).json()
    matched = [
        stop_id
        for stop_id, lat, lon in official_stops
        if any(
            independent_haversine(lat, lon, s["lat"], s["lon"]) <= MATCH_M
            for s in stops
        )
    ]
    unlisted = [
        s
        for s in stops
        if not any(
            independent_haversine(lat, lon, s["lat"], s["lon"]) <= MATCH_M
            for _, lat, lon in official_stops
        )
    ]
    at_places = [s for s in stops if s["place_id"] is not None]
    print(
        f"\nreal trace: {len(stops)} stops detected; {len(matched)} of "
        f"{len(official_stops)} official stops have one within {MATCH_M:.0f} m; "
        f"{len(unlisted)} detected stops are on no list "
        f"(longest {max((s['duration_s'] for s in unlisted), default=0)} s); "
        f"{len(at_places)} stops matched to a registered place"
    )
    assert len(matched) >= 28
    assert len(unlisted) <= 8
    assert all(s["start"] < t["start"] for s, t in pairwise(stops))

    raw = sum(
        independent_haversine(a.latitude, a.longitude, b.latitude, b.longitude)
        for a, b in pairwise(trace)
    )
    distance = client.get(
        f"/v1/devices/{DEVICE}/distance", params=window, headers=service_auth
    ).json()
    drops = client.get(f"/v1/devices/{DEVICE}/drops", headers=service_auth).json()
    print(
        f"real trace: {distance['point_count']} of {len(trace)} fixes kept, "
        f"dropped {drops['dropped']}; distance {distance['distance_m']} m against "
        f"{raw:.0f} m raw haversine ({100 * (distance['distance_m'] / raw - 1):+.3f}%)"
    )
    assert abs(distance["distance_m"] - raw) <= 0.01 * raw
    alerts = client.get(
        "/v1/alerts", params={"device_id": DEVICE}, headers=service_auth
    ).json()["alerts"]
    print(f"real trace: alerts during the run {[a['kind'] for a in alerts]}")
    assert not [a for a in alerts if a["kind"] == "dumping_suspected"]

    # A stop inserted after the run: 400 m off the route, in no registered place.
    last = trace[-1]
    spot = offset(last.latitude, last.longitude, north_m=400)
    t = int(last.time.timestamp())
    inserted = [(t + 60 + 30 * i, *spot) for i in range(31)]
    inserted.append((inserted[-1][0] + 60, last.latitude, last.longitude))
    for when, lat, lon in inserted:
        response = client.get(
            "/",
            params={
                "id": DEVICE,
                "lat": lat,
                "lon": lon,
                "timestamp": when,
                "token": device_token,
            },
        )
        assert response.status_code == 200, response.text

    dumping = [
        a
        for a in client.get(
            "/v1/alerts", params={"device_id": DEVICE}, headers=service_auth
        ).json()["alerts"]
        if a["kind"] == "dumping_suspected"
    ]
    assert len(dumping) == 1
    alert = dumping[0]
    assert independent_haversine(alert["lat"], alert["lon"], *spot) < 5
    assert alert["duration_s"] == 900 and alert["detail"]["duration_s"] == 900
    assert alert["status"] == "open" and alert["vehicle_id"] == VEHICLE
    print(f"real trace: inserted stop raised {alert['message']!r}")

    trip = client.post(
        "/v1/batches/batch-real/trip",
        json={
            "device_id": DEVICE,
            "vehicle_id": VEHICLE,
            "start": start.isoformat(),
            "end": (last.time + timedelta(hours=1)).isoformat(),
        },
        headers=service_auth,
    )
    assert trip.status_code == 201, trip.text
    summary = trip.json()["summary"]
    print(
        f"real trace: trip summary {summary['distance_m']} m, "
        f"{summary['point_count']} fixes, coverage {summary['coverage_permille']}‰, "
        f"{len(summary['stops'])} stops, alerts {len(summary['alert_ids'])}"
    )
    assert summary["point_count"] == len(trace) + len(inserted)
    assert alert["id"] in summary["alert_ids"]
