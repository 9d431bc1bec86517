"""Corridors for allowed routes, crossings between sparse fixes, deliveries at
unlicensed plants and trucks without a valid licence."""

from tests.tracking.conftest import (
    DEVICE,
    HAULER,
    HOME,
    drive,
    fix,
    offset,
    post_batch,
    register_place,
    stay,
)

CORNER = offset(*HOME, east_m=1000)
ROUTE_END = offset(*HOME, east_m=1000, north_m=1000)
SITE = offset(*HOME, east_m=1000)


def alerts(client, headers, kind: str) -> list[dict]:
    response = client.get("/v1/alerts", params={"device_id": DEVICE}, headers=headers)
    return [a for a in response.json()["alerts"] if a["kind"] == kind]


def put_corridor(client, headers, *points, half_width_m=30.0):
    return client.put(
        "/v1/places/route-1",
        json={
            "kind": "corridor",
            "name": "Allowed route",
            "geometry": {
                "type": "LineString",
                "coordinates": [[lon, lat] for lat, lon in points],
            },
            "radius_m": half_width_m,
        },
        headers=headers,
    )


def put_plant(client, headers, *, licensed: bool):
    response = client.put(
        "/v1/places/plant-9",
        json={
            "kind": "plant",
            "name": "Plant 9",
            "geometry": {"type": "Point", "coordinates": [SITE[1], SITE[0]]},
            "radius_m": 40,
            "licensed": licensed,
        },
        headers=headers,
    )
    assert response.status_code in (200, 201), response.text


def along_the_route() -> list[dict]:
    """East 1 km to the corner, then north 1 km, a fix every 50 m."""
    return drive(0, HOME, north_m=0, east_m=1000) + drive(
        105, CORNER, north_m=1000, east_m=0
    )


def test_driving_along_the_corridor_raises_nothing(
    client, device, device_token, service_auth
):
    assert put_corridor(client, service_auth, HOME, CORNER, ROUTE_END).status_code in (
        200,
        201,
    )

    post_batch(client, device_token, along_the_route())

    assert alerts(client, service_auth, "corridor_left") == []


def test_leaving_the_corridor_raises_one_alert(
    client, device, device_token, service_auth
):
    put_corridor(client, service_auth, HOME, CORNER, ROUTE_END)
    fixes = drive(0, HOME, north_m=0, east_m=500) + drive(
        55, offset(*HOME, east_m=500), north_m=-800, east_m=0
    )

    post_batch(client, device_token, fixes)

    raised = alerts(client, service_auth, "corridor_left")
    assert len(raised) == 1
    assert raised[0]["place_id"] == "route-1"


def test_cutting_the_corner_between_two_sparse_fixes_is_caught(
    client, device, device_token, service_auth
):
    put_corridor(client, service_auth, HOME, CORNER, ROUTE_END)
    both_inside = [fix(0, *HOME), fix(150, *ROUTE_END)]

    post_batch(client, device_token, both_inside)

    assert len(alerts(client, service_auth, "corridor_left")) == 1


def test_leaving_the_corridor_into_a_registered_place_raises_nothing(
    client, device, device_token, service_auth
):
    put_corridor(client, service_auth, HOME, CORNER)
    depot = offset(*CORNER, north_m=300)
    register_place(client, service_auth, "depot-1", *depot, kind="depot", radius_m=80)
    fixes = drive(0, HOME, north_m=0, east_m=1000) + [fix(140, *depot)]

    post_batch(client, device_token, fixes)

    assert alerts(client, service_auth, "corridor_left") == []


def test_a_corridor_must_be_a_line_and_a_line_must_be_a_corridor(client, service_auth):
    as_point = client.put(
        "/v1/places/route-2",
        json={
            "kind": "corridor",
            "name": "R",
            "geometry": {"type": "Point", "coordinates": [HOME[1], HOME[0]]},
            "radius_m": 20,
        },
        headers=service_auth,
    )
    line = {"type": "LineString", "coordinates": [[-8.63, 52.66], [-8.62, 52.66]]}
    as_community = client.put(
        "/v1/places/c-2",
        json={"kind": "community", "name": "C", "geometry": line},
        headers=service_auth,
    )

    assert as_point.status_code == 422
    assert as_community.status_code == 422
    assert as_point.headers["content-type"].startswith("application/problem+json")


def visit_site(seconds: float) -> list[dict]:
    return (
        drive(0, HOME, north_m=0, east_m=1000)
        + stay(110, seconds, *SITE)
        + drive(120 + seconds, SITE, north_m=500, east_m=0)
    )


def test_a_delivery_at_an_unlicensed_plant_raises_an_alert(
    client, device, device_token, service_auth
):
    put_plant(client, service_auth, licensed=False)

    post_batch(client, device_token, visit_site(300))

    raised = alerts(client, service_auth, "unlicensed_site")
    assert len(raised) == 1
    assert raised[0]["place_id"] == "plant-9"
    assert raised[0]["duration_s"] >= 300


def test_a_delivery_at_a_licensed_plant_raises_nothing(
    client, device, device_token, service_auth
):
    put_plant(client, service_auth, licensed=True)

    post_batch(client, device_token, visit_site(300))

    assert alerts(client, service_auth, "unlicensed_site") == []


def test_driving_past_an_unlicensed_plant_raises_nothing(
    client, device, device_token, service_auth
):
    put_plant(client, service_auth, licensed=False)

    post_batch(client, device_token, visit_site(60))

    assert alerts(client, service_auth, "unlicensed_site") == []


def register_with_licence(client, headers, valid_until: str):
    response = client.put(
        f"/v1/devices/{DEVICE}",
        json={
            "vehicle_id": "veh-304",
            "hauler_id": HAULER,
            "plate": "LK-304",
            "licence_valid_until": valid_until,
        },
        headers=headers,
    )
    assert response.status_code in (200, 201), response.text


def test_a_truck_with_an_expired_licence_raises_one_alert_a_day(
    client, device_token, service_auth
):
    register_with_licence(client, service_auth, "2026-11-30")

    post_batch(client, device_token, drive(0, HOME, north_m=500, east_m=0))
    post_batch(client, device_token, drive(600, HOME, north_m=0, east_m=500))

    raised = alerts(client, service_auth, "licence_invalid")
    assert len(raised) == 1
    assert raised[0]["start"].startswith("2026-12-01T00:00:00")
    assert raised[0]["detail"] == {"licence_valid_until": "2026-11-30"}


def test_a_truck_with_a_valid_licence_raises_nothing(
    client, device_token, service_auth
):
    register_with_licence(client, service_auth, "2026-12-01")

    post_batch(client, device_token, drive(0, HOME, north_m=500, east_m=0))

    assert alerts(client, service_auth, "licence_invalid") == []
