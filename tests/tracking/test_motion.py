"""Stops, places, telemetry gaps and the dumping alert, each with an input
that triggers it and one that does not."""

from tests.tracking.conftest import (
    DEVICE,
    HOME,
    drive,
    fix,
    offset,
    post_batch,
    register_device,
    register_place,
    stay,
)

SITE = offset(*HOME, east_m=1000)


def stops(client, headers, **window) -> list[dict]:
    response = client.get(f"/v1/devices/{DEVICE}/stops", params=window, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def alerts(client, headers, kind: str) -> list[dict]:
    response = client.get("/v1/alerts", params={"device_id": DEVICE}, headers=headers)
    return [a for a in response.json()["alerts"] if a["kind"] == kind]


def visit(seconds_at_site: float, step_s: float = 10.0) -> list[dict]:
    """Drive 1 km east to SITE, stand there, drive on 500 m."""
    arrive = 100.0
    leave = arrive + seconds_at_site
    return (
        drive(0, HOME, north_m=0, east_m=1000, speed_mps=10)
        + stay(arrive + step_s, seconds_at_site - step_s, *SITE, step_s=step_s)
        + drive(leave + 10, SITE, north_m=500, east_m=0, speed_mps=10)
    )


def test_a_minute_at_a_community_is_a_stop_at_that_place(
    client, device, device_token, service_auth
):
    register_place(client, service_auth, "community-7", *SITE, radius_m=40)
    post_batch(client, device_token, visit(60))

    found = stops(client, service_auth)

    assert len(found) == 1
    stop = found[0]
    assert stop["place_id"] == "community-7"
    assert stop["place_kind"] == "community"
    assert 60 <= stop["duration_s"] <= 80
    assert abs(stop["lat"] - SITE[0]) < 0.0001 and abs(stop["lon"] - SITE[1]) < 0.0001
    assert stop["ongoing"] is False


def test_a_brief_halt_is_not_a_stop(client, device, device_token, service_auth):
    fixes = visit(5, step_s=5)

    post_batch(client, device_token, fixes)

    assert stops(client, service_auth) == []


def test_a_stop_inside_a_polygon_place(client, device, device_token, service_auth):
    lat, lon = SITE
    square = [
        [lon - 0.001, lat - 0.001],
        [lon + 0.001, lat - 0.001],
        [lon + 0.001, lat + 0.001],
        [lon - 0.001, lat + 0.001],
        [lon - 0.001, lat - 0.001],
    ]
    response = client.put(
        "/v1/places/plant-1",
        json={
            "kind": "plant",
            "name": "Plant",
            "geometry": {"type": "Polygon", "coordinates": [square]},
            "radius_m": 0,
            "licensed": True,
        },
        headers=service_auth,
    )
    assert response.status_code == 201
    post_batch(client, device_token, visit(60))

    assert [s["place_id"] for s in stops(client, service_auth)] == ["plant-1"]


def test_stops_are_filtered_by_window_and_ordered(
    client, device, device_token, service_auth
):
    post_batch(client, device_token, visit(60) + stay(400, 60, *HOME))
    everything = stops(client, service_auth)
    early = stops(
        client, service_auth, start="2026-12-01T08:00:00Z", end="2026-12-01T08:03:00Z"
    )

    assert len(everything) == 2
    assert everything[0]["start"] < everything[1]["start"]
    assert everything[1]["ongoing"] is True
    assert early == everything[:1]


def test_a_long_stop_outside_every_place_raises_dumping(
    client, device, device_token, service_auth
):
    register_place(client, service_auth, "community-7", *HOME, radius_m=40)
    post_batch(client, device_token, visit(900, step_s=30))

    raised = alerts(client, service_auth, "dumping_suspected")

    assert len(raised) == 1
    alert = raised[0]
    assert alert["status"] == "open"
    assert alert["duration_s"] >= 870
    assert abs(alert["lat"] - SITE[0]) < 0.0001
    assert alert["place_id"] is None
    assert "outside every registered place" in alert["message"]


def test_a_long_stop_at_a_registered_place_raises_nothing(
    client, device, device_token, service_auth
):
    register_place(client, service_auth, "depot", *SITE, kind="depot", radius_m=40)
    post_batch(client, device_token, visit(900, step_s=30))

    assert alerts(client, service_auth, "dumping_suspected") == []
    assert [s["place_id"] for s in stops(client, service_auth)] == ["depot"]


def test_a_stop_shorter_than_the_threshold_raises_nothing(
    client, device, device_token, service_auth
):
    post_batch(client, device_token, visit(300, step_s=30))

    assert len(stops(client, service_auth)) == 1
    assert alerts(client, service_auth, "dumping_suspected") == []


def test_the_dumping_threshold_is_configurable(make_client, token_for, auth_header):
    client = make_client(dumping_after_s=120)
    headers = auth_header("service", "service:intake")
    register_device(client, headers, DEVICE)
    post_batch(client, token_for("device", DEVICE), visit(300, step_s=30))

    assert len(alerts(client, headers, "dumping_suspected")) == 1


def test_moving_while_silent_is_a_telemetry_gap(
    client, device, device_token, service_auth
):
    far = offset(*HOME, north_m=2000)
    post_batch(client, device_token, [fix(0, *HOME), fix(10, *HOME), fix(610, *far)])

    raised = alerts(client, service_auth, "telemetry_gap")

    assert len(raised) == 1
    assert raised[0]["duration_s"] == 600
    assert raised[0]["detail"] == {"gap_s": 600, "distance_m": 2000}


def test_silence_while_parked_or_a_short_silence_is_no_gap(
    client, device, device_token, service_auth
):
    near = offset(*HOME, north_m=1000)
    fixes = [fix(0, *HOME), fix(900, *HOME), fix(1000, *near)]

    post_batch(client, device_token, fixes)

    assert alerts(client, service_auth, "telemetry_gap") == []


def test_registry_writes_need_the_service_role(client, device_token, auth_header):
    place = {
        "kind": "community",
        "name": "A",
        "geometry": {"type": "Point", "coordinates": [-8.63, 52.66]},
        "radius_m": 30,
        "licensed": False,
    }
    device = {"vehicle_id": "v", "hauler_id": "h", "plate": "P"}

    as_device = {"Authorization": f"Bearer {device_token}"}
    assert client.put("/v1/places/a", json=place, headers=as_device).status_code == 403
    assert (
        client.put("/v1/devices/d", json=device, headers=as_device).status_code == 403
    )
    assert client.put("/v1/places/a", json=place).status_code == 401


def test_registry_refuses_bad_geometry(client, service_auth):
    for geometry in (
        {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},
        {"type": "Point", "coordinates": [200, 52]},
        {"type": "Point"},
    ):
        response = client.put(
            "/v1/places/bad",
            json={"kind": "plant", "name": "x", "geometry": geometry, "radius_m": 10},
            headers=service_auth,
        )
        assert response.status_code == 422, geometry
        assert response.headers["content-type"] == "application/problem+json"


def test_registry_put_replaces(client, service_auth):
    first = register_place(client, service_auth, "p1", *HOME)
    second = register_place(client, service_auth, "p1", *SITE, kind="plant")

    assert first.status_code == 201 and second.status_code == 200
    assert second.json()["kind"] == "plant"
    assert second.json()["geometry"]["coordinates"] == [SITE[1], SITE[0]]


def test_a_device_is_readable_once_synced(client, service_auth):
    missing = client.get(f"/v1/devices/{DEVICE}", headers=service_auth)
    register_device(client, service_auth, DEVICE)
    found = client.get(f"/v1/devices/{DEVICE}", headers=service_auth)

    assert missing.status_code == 404
    assert missing.json()["type"] == "urn:salvage:problem:unknown-device"
    assert found.json() == {
        "device_id": DEVICE,
        "vehicle_id": "veh-304",
        "hauler_id": "hauler-1",
        "plate": "LK-304",
        "licence_valid_from": None,
        "licence_valid_until": None,
    }


def test_late_fixes_that_lengthen_an_alerted_stop_keep_one_alert(
    client, device, device_token, service_auth
):
    fixes = visit(900, step_s=30)
    cut = fix(200, *SITE)["time"]
    later = [f for f in fixes if f["time"] >= cut]
    earlier = [f for f in fixes if f["time"] < cut]
    post_batch(client, device_token, later)
    [first] = alerts(client, service_auth, "dumping_suspected")

    post_batch(client, device_token, earlier)

    [alert] = alerts(client, service_auth, "dumping_suspected")
    assert alert["id"] == first["id"]
    assert alert["start"] < first["start"]
    assert alert["duration_s"] > first["duration_s"]
