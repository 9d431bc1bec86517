"""Every cleaning filter, with a fix that trips it and one that does not;
idempotent, out-of-order batch uploads; every drop counted with its reason."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.tracking.conftest import (
    DEVICE,
    HOME,
    drive,
    fix,
    offset,
    post_batch,
    register_device,
    stay,
    stored_positions,
)


def osmand(client, token, when: datetime, lat=HOME[0], lon=HOME[1], **extra):
    params = {"id": DEVICE, "lat": lat, "lon": lon, "token": token, **extra}
    params["timestamp"] = str(when.timestamp())
    return client.get("/", params=params)


def drops(client, headers) -> dict:
    response = client.get(f"/v1/devices/{DEVICE}/drops", headers=headers)
    assert response.status_code == 200
    return response.json()["dropped"]


def dropped_as(response, reason: str) -> bool:
    """Answered 200 as Traccar's server does, with the drop and its reason."""
    return response.status_code == 200 and response.json() == {
        "device_id": DEVICE,
        "received": 1,
        "accepted": 0,
        "dropped": {reason: 1},
    }


def test_zero_position_is_acknowledged_counted_and_not_stored(
    client, device, device_token, service_auth
):
    now = datetime.now(UTC)
    dropped = osmand(client, device_token, now, lat=0, lon=0)
    kept = osmand(client, device_token, now + timedelta(seconds=1), lat=0.001, lon=0)

    assert dropped_as(dropped, "zero_position")
    assert kept.status_code == 200 and kept.json()["accepted"] == 1
    assert [p.lat for p in stored_positions(client)] == [0.001]
    assert drops(client, service_auth) == {"zero_position": 1}


def test_fix_in_the_future_is_acknowledged_and_does_not_jam_the_queue(
    client, device, device_token, service_auth
):
    now = datetime.now(UTC)
    dropped = osmand(client, device_token, now + timedelta(hours=1))
    queued_behind = osmand(client, device_token, now + timedelta(minutes=1))

    assert dropped_as(dropped, "future")
    assert queued_behind.status_code == 200
    assert queued_behind.json()["accepted"] == 1
    assert len(stored_positions(client)) == 1
    assert drops(client, service_auth) == {"future": 1}


def test_fix_too_old_is_acknowledged_counted_and_not_stored(
    make_client, device_token, service_auth
):
    client = make_client(max_age_s=86_400)
    register_device(client, service_auth, DEVICE)
    now = datetime.now(UTC)
    dropped = osmand(client, device_token, now - timedelta(days=2))
    ancient = osmand(client, device_token, datetime(1999, 12, 31, tzinfo=UTC))
    kept = osmand(client, device_token, now - timedelta(hours=1))

    assert dropped_as(dropped, "too_old") and dropped_as(ancient, "too_old")
    assert kept.status_code == 200 and kept.json()["accepted"] == 1
    assert len(stored_positions(client)) == 1
    assert drops(client, service_auth) == {"too_old": 2}


def test_invalid_flag_is_acknowledged_counted_and_not_stored(
    client, device, device_token, service_auth
):
    now = datetime.now(UTC)
    dropped = osmand(client, device_token, now, valid="false")
    kept = osmand(client, device_token, now, valid="true")

    assert dropped_as(dropped, "invalid")
    assert kept.status_code == 200 and kept.json()["accepted"] == 1
    assert len(stored_positions(client)) == 1
    assert drops(client, service_auth) == {"invalid": 1}


def test_poor_accuracy_is_dropped_but_acknowledged(
    client, device, device_token, service_auth
):
    now = datetime.now(UTC) - timedelta(minutes=5)
    inaccurate = osmand(client, device_token, now, accuracy=150)
    bad_hdop = osmand(client, device_token, now + timedelta(seconds=1), hdop=15)
    kept = osmand(client, device_token, now + timedelta(seconds=2), accuracy=20)

    assert dropped_as(inaccurate, "poor_accuracy")
    assert dropped_as(bad_hdop, "poor_accuracy")
    assert kept.json()["accepted"] == 1
    assert [p.accuracy_m for p in stored_positions(client)] == [20]
    assert drops(client, service_auth) == {"poor_accuracy": 2}


def test_duplicates_in_a_batch_and_against_the_store(
    client, device, device_token, service_auth
):
    fixes = stay(0, 50, *HOME)
    first = post_batch(client, device_token, fixes + fixes[:2])
    again = post_batch(client, device_token, fixes)

    assert first.status_code == 200, first.text
    assert first.json()["accepted"] == len(fixes)
    assert first.json()["dropped"] == {"duplicate": 2}
    assert again.json() == {
        "device_id": DEVICE,
        "received": len(fixes),
        "accepted": 0,
        "dropped": {"duplicate": len(fixes)},
    }
    assert len(stored_positions(client)) == len(fixes)
    assert drops(client, service_auth) == {"duplicate": 2 + len(fixes)}


def test_osmand_resend_is_a_duplicate_answered_200(client, device, device_token):
    now = datetime.now(UTC)
    first = osmand(client, device_token, now)
    resent = osmand(client, device_token, now)

    assert first.json()["accepted"] == 1
    assert resent.status_code == 200
    assert resent.json()["dropped"] == {"duplicate": 1}
    assert len(stored_positions(client)) == 1


def test_a_single_glitch_is_dropped_without_an_alert(
    client, device, device_token, service_auth
):
    fixes = drive(0, HOME, north_m=0, east_m=300, speed_mps=10)
    glitch = fix(32, *offset(*HOME, north_m=5000))
    fixes.append(glitch)
    fixes += drive(35, offset(*HOME, east_m=300), north_m=0, east_m=50, speed_mps=10)

    response = post_batch(client, device_token, fixes)

    assert response.json()["dropped"] == {"impossible_speed": 1}
    assert response.json()["accepted"] == len(fixes) - 1
    assert max(p.lat for p in stored_positions(client)) < HOME[0] + 0.001
    alerts = client.get("/v1/alerts", headers=service_auth).json()["alerts"]
    assert alerts == []


def test_a_sustained_jump_is_kept_and_raises_impossible_speed(
    client, device, device_token, service_auth
):
    far = offset(*HOME, north_m=20_000)
    fixes = [fix(0, *HOME), fix(10, *HOME), fix(20, *far), fix(25, *far)]

    response = post_batch(client, device_token, fixes)

    assert response.json()["dropped"] == {"impossible_speed": 1}
    assert response.json()["accepted"] == 3
    alerts = client.get("/v1/alerts", headers=service_auth).json()["alerts"]
    assert [a["kind"] for a in alerts] == ["impossible_speed"]
    assert alerts[0]["detail"]["speed_mps"] > 55
    assert alerts[0]["detail"]["distance_m"] > 19_000


def test_legitimate_speed_is_never_dropped(client, device, device_token):
    fixes = drive(0, HOME, north_m=3000, east_m=0, speed_mps=30, step_s=1)

    response = post_batch(client, device_token, fixes)

    assert response.json()["dropped"] == {}
    assert len(stored_positions(client)) == len(fixes)


def test_out_of_order_batches_give_the_same_points_and_stops(
    make_client, token_for, auth_header
):
    headers = auth_header("service", "service:intake")
    token = token_for("device", DEVICE)
    fixes = (
        drive(0, HOME, north_m=0, east_m=500, speed_mps=10)
        + stay(60, 120, *offset(*HOME, east_m=500))
        + drive(190, offset(*HOME, east_m=500), north_m=500, east_m=0)
        + stay(250, 90, *offset(*HOME, east_m=500, north_m=500))
        + drive(350, offset(*HOME, east_m=500, north_m=500), north_m=300, east_m=0)
    )
    results = []
    for order in (fixes, fixes[len(fixes) // 2 :] + fixes[: len(fixes) // 2]):
        client = make_client()
        register_device(client, headers, DEVICE)
        half = len(order) // 2
        post_batch(client, token, order[half:])
        post_batch(client, token, order[:half])
        post_batch(client, token, list(reversed(order)))
        stops = client.get(f"/v1/devices/{DEVICE}/stops", headers=headers).json()
        results.append((len(stored_positions(client)), stops))

    assert results[0][0] == results[1][0] == len(fixes)
    assert len(results[0][1]) == 2
    assert results[0][1] == results[1][1]


def test_points_off_the_globe_are_counted_invalid_and_the_rest_stored(
    client, device, device_token, service_auth
):
    fixes = stay(0, 60, *HOME)
    fixes[1]["lat"] = 91
    fixes[3]["lon"] = -181.5
    fixes[5]["accuracy_m"] = -3

    response = post_batch(client, device_token, fixes)

    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == len(fixes) - 2
    assert response.json()["dropped"] == {"invalid": 2}
    stored = stored_positions(client)
    assert len(stored) == len(fixes) - 2
    assert all(-90 <= p.lat <= 90 and -180 <= p.lon <= 180 for p in stored)
    assert stored[3].accuracy_m is None
    assert stored[3].attributes == {"out_of_range": {"accuracy_m": -3.0}}
    assert drops(client, service_auth) == {"invalid": 2}


def test_points_on_the_edge_of_the_globe_are_kept(client, device, device_token):
    fixes = [fix(0, 90, 180), fix(10, 90, -180)]

    response = post_batch(client, device_token, fixes)

    assert response.json()["accepted"] == 2 and response.json()["dropped"] == {}


@pytest.mark.parametrize(
    "broken",
    [
        {"lat": "north"},
        {"lat": None},
        {"time": "2026-12-01T08:00:10"},
        {"time": "soon"},
        {"speed": 3},
    ],
)
def test_a_structurally_broken_batch_is_refused_whole(
    client, device, device_token, broken
):
    fixes = stay(0, 30, *HOME)
    fixes[1] = {**fixes[1], **broken}

    response = post_batch(client, device_token, fixes)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert stored_positions(client) == []


def test_a_non_finite_number_refuses_the_batch_whole(client, device, device_token):
    fixes = stay(0, 30, *HOME)
    body = json.dumps({"positions": fixes}).replace(str(fixes[1]["lat"]), "NaN", 1)

    response = client.post(
        f"/v1/devices/{DEVICE}/positions",
        content=body,
        headers={
            "Authorization": f"Bearer {device_token}",
            "Content-Type": "application/json",
        },
    )

    assert response.status_code == 422
    assert stored_positions(client) == []


def test_batch_needs_the_devices_own_token(client, device, token_for):
    response = post_batch(client, token_for("device", "dev-other"), stay(0, 30, *HOME))

    assert response.status_code == 403
    assert stored_positions(client) == []


def test_batch_for_unknown_device_is_404(client, device, token_for):
    response = post_batch(
        client, token_for("device", "ghost"), stay(0, 30, *HOME), device_id="ghost"
    )

    assert response.status_code == 404


def test_a_late_glitch_is_checked_against_its_stored_neighbours(
    client, device, device_token, service_auth
):
    fixes = drive(0, HOME, north_m=0, east_m=600, speed_mps=10, step_s=10)
    post_batch(client, device_token, fixes[::2])

    late = post_batch(
        client,
        device_token,
        [fix(15, *offset(*HOME, north_m=3000)), *fixes[1::2]],
    )

    assert late.json()["dropped"] == {"impossible_speed": 1}
    assert late.json()["accepted"] == len(fixes[1::2])
    assert len(stored_positions(client)) == len(fixes)


def test_implausible_readings_are_set_aside_and_the_fix_kept(
    client, device, device_token
):
    now = datetime.now(UTC)
    broken = osmand(
        client,
        device_token,
        now,
        bearing="1e308",
        batt="1e308",
        altitude="-9e9",
        accuracy="-1",
    )
    sane = osmand(
        client, device_token, now + timedelta(seconds=5), bearing="90", batt="55"
    )

    assert broken.json()["accepted"] == 1 and sane.json()["accepted"] == 1
    first, second = stored_positions(client)
    assert (first.course, first.battery, first.altitude_m) == (None, None, None)
    assert first.accuracy_m is None
    assert first.attributes["out_of_range"] == {
        "accuracy_m": -1.0,
        "course": 1e308,
        "battery": 1e308,
        "altitude_m": -9e9,
    }
    assert (second.course, second.battery) == (90.0, 55.0)
    assert "out_of_range" not in (second.attributes or {})


def test_oversized_attributes_are_replaced_by_their_size(client, device, device_token):
    bulky = {"note": "x" * 10_000}
    small = {"event": "motionchange"}
    response = post_batch(
        client,
        device_token,
        [fix(0, *HOME, attributes=bulky), fix(5, *HOME, attributes=small)],
    )

    assert response.json()["accepted"] == 2
    first, second = stored_positions(client)
    assert first.attributes == {"attributes_dropped_bytes": 10_011}
    assert second.attributes == small


def test_a_battery_level_that_overflows_as_a_percentage_is_set_aside_as_text(
    client, device, device_token
):
    body = {
        "device_id": device,
        "location": {
            "timestamp": datetime.now(UTC).isoformat(),
            "coords": {"latitude": HOME[0], "longitude": HOME[1]},
            "battery": {"level": 1e307},
        },
    }

    response = client.post(
        "/", json=body, headers={"Authorization": f"Bearer {device_token}"}
    )

    assert response.json()["accepted"] == 1, response.text
    [stored] = stored_positions(client)
    assert stored.battery is None
    assert stored.attributes["out_of_range"] == {"battery": "inf"}
