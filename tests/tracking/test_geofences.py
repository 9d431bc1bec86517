"""Corridors for allowed routes, crossings between sparse fixes, deliveries at
unlicensed plants and trucks without a valid licence."""

import pytest

from shared.timeutil import iso_utc
from tests.tracking.conftest import (
    DEVICE,
    HAULER,
    HOME,
    at,
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


def put_licensed_device(client, headers, **licence: str):
    """Registers the device with a licence window given as RFC 3339 texts."""
    return client.put(
        f"/v1/devices/{DEVICE}",
        json={
            "vehicle_id": "veh-304",
            "hauler_id": HAULER,
            "plate": "LK-304",
            **{f"licence_{end}": value for end, value in licence.items()},
        },
        headers=headers,
    )


def register_with_licence(client, headers, **licence: str) -> None:
    response = put_licensed_device(client, headers, **licence)
    assert response.status_code in (200, 201), response.text


def test_a_truck_with_an_expired_licence_raises_one_alert_a_day(
    client, device_token, service_auth
):
    register_with_licence(client, service_auth, valid_until="2026-12-01T00:00:00Z")

    post_batch(client, device_token, drive(0, HOME, north_m=500, east_m=0))
    post_batch(client, device_token, drive(600, HOME, north_m=0, east_m=500))

    raised = alerts(client, service_auth, "licence_invalid")
    assert len(raised) == 1
    assert (raised[0]["start"], raised[0]["end"]) == (
        iso_utc(at(0)),
        last_time(drive(600, HOME, north_m=0, east_m=500)),
    )
    assert raised[0]["detail"] == {
        "licence_valid_from": None,
        "licence_valid_until": "2026-12-01T00:00:00Z",
    }


def last_time(fixes: list[dict]) -> str:
    return max(f["time"] for f in fixes)


def test_a_new_licence_window_raises_a_new_alert_the_same_day(
    client, device_token, service_auth, auth_header
):
    register_with_licence(client, service_auth, valid_until="2026-12-01T00:00:00Z")
    post_batch(client, device_token, [fix(0, *HOME)])
    [first] = alerts(client, service_auth, "licence_invalid")
    resolved = client.post(
        f"/v1/alerts/{first['id']}/resolve",
        json={"reason": "renewal on its way"},
        headers=auth_header("inspector", "inspector:ann"),
    )
    assert resolved.status_code == 200, resolved.text

    register_with_licence(
        client,
        service_auth,
        valid_from="2026-01-01T00:00:00Z",
        valid_until=iso_utc(at(3600)),
    )
    post_batch(client, device_token, [fix(1800, *HOME)])
    assert len(alerts(client, service_auth, "licence_invalid")) == 1
    post_batch(client, device_token, [fix(3600, *HOME), fix(3660, *HOME)])

    second = [
        a
        for a in alerts(client, service_auth, "licence_invalid")
        if a["id"] != first["id"]
    ]
    assert [(a["start"], a["end"], a["status"]) for a in second] == [
        (iso_utc(at(3600)), iso_utc(at(3660)), "open")
    ]


def test_a_fix_at_the_licence_end_alerts_and_one_a_second_before_does_not(
    client, device_token, service_auth
):
    register_with_licence(
        client,
        service_auth,
        valid_from="2026-01-01T00:00:00Z",
        valid_until=iso_utc(at(60)),
    )

    inside = post_batch(client, device_token, [fix(59, *HOME)])
    before_end = alerts(client, service_auth, "licence_invalid")
    at_end = post_batch(client, device_token, [fix(60, *HOME)])
    raised = alerts(client, service_auth, "licence_invalid")

    assert inside.json()["accepted"] == at_end.json()["accepted"] == 1
    assert before_end == []
    assert len(raised) == 1
    assert (raised[0]["start"], raised[0]["end"]) == (iso_utc(at(60)), iso_utc(at(60)))
    assert raised[0]["message"] == (
        "Operating on 2026-12-01 outside its licence, "
        "valid from 2026-01-01T00:00:00Z until 2026-12-01T08:01:00Z."
    )
    assert raised[0]["detail"] == {
        "licence_valid_from": "2026-01-01T00:00:00Z",
        "licence_valid_until": "2026-12-01T08:01:00Z",
    }


def test_a_fix_before_the_licence_begins_alerts(client, device_token, service_auth):
    register_with_licence(
        client,
        service_auth,
        valid_from=iso_utc(at(3600)),
        valid_until="2027-12-01T00:00:00Z",
    )

    post_batch(client, device_token, drive(0, HOME, north_m=500, east_m=0))

    [raised] = alerts(client, service_auth, "licence_invalid")
    assert raised["detail"]["licence_valid_from"] == "2026-12-01T09:00:00Z"
    assert raised["message"].startswith("Operating on 2026-12-01 outside its licence")


def test_a_truck_with_a_valid_licence_raises_nothing(
    client, device_token, service_auth
):
    register_with_licence(
        client,
        service_auth,
        valid_from="2026-12-01T00:00:00Z",
        valid_until="2026-12-02T00:00:00Z",
    )

    post_batch(client, device_token, drive(0, HOME, north_m=500, east_m=0))

    assert alerts(client, service_auth, "licence_invalid") == []


def test_a_truck_without_a_licence_window_is_not_checked(
    client, device, device_token, service_auth
):
    post_batch(client, device_token, drive(0, HOME, north_m=500, east_m=0))

    assert alerts(client, service_auth, "licence_invalid") == []


def test_the_licence_window_is_shown_in_utc(client, service_auth):
    register_with_licence(
        client,
        service_auth,
        valid_from="2026-01-01T08:00:00+08:00",
        valid_until="2026-12-01T12:30:00.5+01:00",
    )

    found = client.get(f"/v1/devices/{DEVICE}", headers=service_auth).json()

    assert found["licence_valid_from"] == "2026-01-01T00:00:00Z"
    assert found["licence_valid_until"] == "2026-12-01T11:30:00.500000Z"


@pytest.mark.parametrize(
    "licence",
    [
        {"valid_until": "2026-12-01T00:00:00"},
        {"valid_from": "2026-12-01"},
        {"valid_until": "9999-12-31T23:59:59-05:00"},
        {"valid_from": "2026-12-02T00:00:00Z", "valid_until": "2026-12-01T00:00:00Z"},
        {"valid_until": 1767225600},
        {"valid_until": "1767225600"},
        {"valid_until": "2026-12-01 00:00:00Z"},
        {"valid_until": "2026-12-01T00:00Z"},
    ],
)
def test_a_licence_window_that_is_not_exact_or_in_order_is_refused(
    client, service_auth, licence
):
    response = put_licensed_device(client, service_auth, **licence)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    missing = client.get(f"/v1/devices/{DEVICE}", headers=service_auth)
    assert missing.status_code == 404
