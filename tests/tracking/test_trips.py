"""Trips from motion, distance per trip and per day, the trip replay, and
telemetry gaps: any silence during a trip, and any silence after which the
truck reappears away from where it fell silent, whatever it was doing."""

import json

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

FAR = offset(*HOME, north_m=2000)
FARTHER = offset(*HOME, north_m=2300)
DAY = 86_400


def trips(client, headers) -> list[dict]:
    response = client.get(f"/v1/devices/{DEVICE}/trips", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def alerts(client, headers, kind: str) -> list[dict]:
    response = client.get("/v1/alerts", params={"device_id": DEVICE}, headers=headers)
    return [a for a in response.json()["alerts"] if a["kind"] == kind]


def long_and_short_leg() -> list[dict]:
    """Stand, drive 2 km, stand, drive 300 m, stand, drive off."""
    return (
        stay(0, 60, *HOME)
        + drive(70, HOME, north_m=2000, east_m=0)
        + stay(280, 60, *FAR)
        + drive(350, FAR, north_m=300, east_m=0)
        + stay(390, 60, *FARTHER)
        + drive(460, FARTHER, north_m=1000, east_m=0)
    )


def test_a_long_drive_between_stops_is_a_trip_and_a_short_one_is_not(
    client, device, device_token, service_auth
):
    post_batch(client, device_token, long_and_short_leg())

    found = trips(client, service_auth)

    assert len(found) == 1
    trip = found[0]
    assert abs(trip["distance_m"] - 2000) <= 30
    assert 200 <= trip["duration_s"] <= 220
    assert abs(trip["start_lat"] - HOME[0]) < 0.0001
    assert abs(trip["end_lat"] - FAR[0]) < 0.0001


def test_minimum_trip_distance_and_duration_are_configurable(
    make_client, token_for, auth_header
):
    client = make_client(min_trip_distance_m=200, min_trip_s=30)
    headers = auth_header("service", "service:intake")
    register_device(client, headers, DEVICE)
    post_batch(client, token_for("device", DEVICE), long_and_short_leg())

    distances = [t["distance_m"] for t in trips(client, headers)]

    assert len(distances) == 2
    assert abs(distances[1] - 300) <= 20


def test_trips_are_the_same_when_the_fixes_arrive_out_of_order(
    client, device, device_token, service_auth
):
    fixes = long_and_short_leg()
    post_batch(client, device_token, fixes[len(fixes) // 2 :])
    post_batch(client, device_token, fixes[: len(fixes) // 2])

    found = trips(client, service_auth)

    assert len(found) == 1
    assert abs(found[0]["distance_m"] - 2000) <= 30


def test_distance_per_day_leaves_out_the_silent_night(
    client, device, device_token, service_auth
):
    first = drive(0, HOME, north_m=1000, east_m=0)
    second = drive(DAY, HOME, north_m=0, east_m=3000)
    post_batch(client, device_token, first + second)

    response = client.get(
        f"/v1/devices/{DEVICE}/days",
        params={"start": "2026-12-01T00:00:00Z", "end": "2026-12-03T00:00:00Z"},
        headers=service_auth,
    )

    assert response.status_code == 200, response.text
    days = response.json()["days"]
    assert [d["day"] for d in days] == ["2026-12-01", "2026-12-02"]
    assert abs(days[0]["distance_m"] - 1000) <= 10
    assert abs(days[1]["distance_m"] - 3000) <= 10
    assert days[0]["point_count"] == len(first)


def test_days_refuse_a_window_that_is_too_long(client, device, service_auth):
    response = client.get(
        f"/v1/devices/{DEVICE}/days",
        params={"start": "2026-01-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"},
        headers=service_auth,
    )

    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")


def test_a_trip_replays_as_geojson_with_its_stops_and_alerts(
    client, device, device_token, service_auth
):
    falls_silent = drive(70, HOME, north_m=2000, east_m=0)[:7]
    fixes = (
        stay(0, 60, *HOME)
        + falls_silent
        + [fix(500, *FAR)]
        + stay(510, 60, *FAR)
        + drive(580, FAR, north_m=1000, east_m=0)
    )
    post_batch(client, device_token, fixes)
    trip = trips(client, service_auth)[0]

    response = client.get(
        f"/v1/devices/{DEVICE}/trips/{trip['id']}/geojson", headers=service_auth
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/geo+json")
    features = json.loads(response.content)["features"]
    roles = [f["properties"]["role"] for f in features]
    assert roles.count("path") == 1 and roles.count("stop") == 2
    alert = next(f for f in features if f["properties"]["role"] == "alert")
    assert alert["properties"]["kind"] == "telemetry_gap"
    path = features[0]
    assert len(path["geometry"]["coordinates"]) == trip["point_count"]
    assert len(path["properties"]["times"]) == trip["point_count"]


def test_an_unknown_trip_is_404(client, device, service_auth):
    response = client.get(
        f"/v1/devices/{DEVICE}/trips/99/geojson", headers=service_auth
    )

    assert response.status_code == 404


def test_overnight_silence_at_the_same_spot_is_no_telemetry_gap(
    client, device, device_token, service_auth
):
    depot_evening = stay(0, 120, *HOME)
    morning_there = stay(10 * 3600, 60, *HOME)
    driving_off = drive(10 * 3600 + 70, HOME, north_m=1000, east_m=0)

    post_batch(client, device_token, depot_evening + morning_there + driving_off)

    assert alerts(client, service_auth, "telemetry_gap") == []


def test_reappearing_elsewhere_after_the_night_is_a_telemetry_gap(
    client, device, device_token, service_auth
):
    depot_evening = stay(0, 120, *HOME)
    morning_elsewhere = drive(10 * 3600, FAR, north_m=1000, east_m=0)

    post_batch(client, device_token, depot_evening + morning_elsewhere)

    [gap] = alerts(client, service_auth, "telemetry_gap")
    assert gap["duration_s"] == 10 * 3600 - 120
    assert abs(gap["detail"]["distance_m"] - 2000) <= 5
    assert abs(gap["lat"] - FAR[0]) < 0.0001


def test_dark_from_the_plant_back_to_the_depot_is_the_end_of_a_shift(
    client, device, device_token, service_auth
):
    register_place(client, service_auth, "plant", *HOME, kind="plant")
    register_place(client, service_auth, "depot", *FAR, kind="depot")
    at_plant = stay(0, 120, *HOME)
    morning_at_depot = stay(10 * 3600, 60, *FAR)

    post_batch(client, device_token, at_plant + morning_at_depot)

    assert alerts(client, service_auth, "telemetry_gap") == []


def test_dark_from_a_community_to_the_depot_is_still_a_gap(
    client, device, device_token, service_auth
):
    register_place(client, service_auth, "flats", *HOME, kind="community")
    register_place(client, service_auth, "depot", *FAR, kind="depot")
    at_flats = stay(0, 120, *HOME)
    morning_at_depot = stay(10 * 3600, 60, *FAR)

    post_batch(client, device_token, at_flats + morning_at_depot)

    [gap] = alerts(client, service_auth, "telemetry_gap")
    assert gap["duration_s"] == 10 * 3600 - 120


def test_silence_while_parked_then_driving_off_from_there_is_no_gap(
    client, device, device_token, service_auth
):
    parked = stay(0, 120, *HOME)
    later = drive(120 + 2400, HOME, north_m=1000, east_m=0)

    post_batch(client, device_token, parked + later)

    assert alerts(client, service_auth, "telemetry_gap") == []


def test_parked_switched_off_and_reappearing_elsewhere_is_a_telemetry_gap(
    client, device, device_token, service_auth
):
    parked = stay(0, 120, *HOME)
    later = drive(120 + 2400, FAR, north_m=1000, east_m=0)

    post_batch(client, device_token, parked + later)

    [gap] = alerts(client, service_auth, "telemetry_gap")
    assert gap["duration_s"] == 2400
    assert gap["start"] == "2026-12-01T08:02:00Z"


def test_a_stop_then_hours_dark_and_a_drive_elsewhere_is_a_gap_and_ends_the_stop(
    client, device, device_token, service_auth
):
    paused = stay(0, 300, *HOME)
    reappears = drive(300 + 2 * 3600, FAR, north_m=1000, east_m=0)

    post_batch(client, device_token, paused + reappears)

    [gap] = alerts(client, service_auth, "telemetry_gap")
    assert gap["duration_s"] == 2 * 3600
    stops = client.get(f"/v1/devices/{DEVICE}/stops", headers=service_auth).json()
    assert stops[0]["duration_s"] == 300 and not stops[0]["ongoing"]
    assert alerts(client, service_auth, "dumping_suspected") == []


def test_parked_dark_for_hours_outside_every_place_is_one_stop_and_dumping(
    client, device, device_token, service_auth
):
    paused = stay(0, 300, *HOME)
    same_spot = stay(300 + 2 * 3600, 60, *HOME)
    driving_off = drive(300 + 2 * 3600 + 70, HOME, north_m=1000, east_m=0)

    post_batch(client, device_token, paused + same_spot + driving_off)

    assert alerts(client, service_auth, "telemetry_gap") == []
    [dumping] = alerts(client, service_auth, "dumping_suspected")
    assert dumping["duration_s"] == 300 + 2 * 3600 + 70
    stops = client.get(f"/v1/devices/{DEVICE}/stops", headers=service_auth).json()
    assert [s["duration_s"] for s in stops] == [300 + 2 * 3600 + 70]


def test_silence_during_a_trip_is_a_gap_even_back_at_the_same_spot(
    client, device, device_token, service_auth
):
    moving = drive(0, HOME, north_m=500, east_m=0)
    end = offset(*HOME, north_m=500)
    after_silence = drive(50 + 600, end, north_m=500, east_m=0)

    post_batch(client, device_token, moving + after_silence)

    [gap] = alerts(client, service_auth, "telemetry_gap")
    assert gap["duration_s"] == 600
    assert gap["detail"]["distance_m"] == 0


def test_a_short_silence_during_a_trip_is_no_gap(
    client, device, device_token, service_auth
):
    moving = drive(0, HOME, north_m=500, east_m=0)
    after_silence = drive(50 + 300, offset(*HOME, north_m=500), 500, 0)

    post_batch(client, device_token, moving + after_silence)

    assert alerts(client, service_auth, "telemetry_gap") == []


def test_silence_while_driving_on_a_trip_is_a_telemetry_gap(
    client, device, device_token, service_auth
):
    moving = drive(0, HOME, north_m=500, east_m=0)
    after_silence = drive(50 + 900, FAR, north_m=500, east_m=0)

    post_batch(client, device_token, moving + after_silence)

    raised = alerts(client, service_auth, "telemetry_gap")
    assert len(raised) == 1
    assert raised[0]["duration_s"] == 900


def test_a_long_silence_ends_the_trip_before_it(
    client, device, device_token, service_auth
):
    evening = stay(0, 60, *HOME) + drive(70, HOME, north_m=2000, east_m=0)
    morning = stay(10 * 3600, 60, *HOME) + drive(10 * 3600 + 70, HOME, 1000, 0)

    post_batch(client, device_token, evening + morning)

    found = trips(client, service_auth)
    assert len(found) == 1
    assert abs(found[0]["distance_m"] - 2000) <= 30
    assert found[0]["end"].startswith("2026-12-01T08:04:30")
