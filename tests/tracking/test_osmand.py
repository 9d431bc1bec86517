"""OsmAnd ingest at `/` in every form Traccar Client sends, and the garbage
it must refuse without storing anything."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.tracking.conftest import DEVICE, position_count, stored_positions

KNOT = 1852 / 3600
WHEN = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
UNIX = int(WHEN.timestamp())


def only_position(client):
    positions = stored_positions(client)
    assert len(positions) == 1
    return positions[0]


def as_utc(value):
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def test_get_with_query_parameters_stores_every_field(client, device, device_token):
    response = client.get(
        "/",
        params={
            "id": DEVICE,
            "lat": "52.6291510",
            "lon": "-8.6617460",
            "timestamp": str(UNIX),
            "speed": "20",
            "bearing": "91.5",
            "altitude": "19.5",
            "accuracy": "8",
            "hdop": "0.9",
            "batt": "87",
            "driverUniqueId": "driver-7",
            "token": device_token,
        },
    )

    assert response.status_code == 200, response.text
    assert response.json() == {
        "device_id": DEVICE,
        "received": 1,
        "accepted": 1,
        "dropped": {},
    }
    position = only_position(client)
    assert as_utc(position.fix_time) == WHEN
    assert (position.lat, position.lon) == (52.629151, -8.661746)
    assert position.speed_mps == pytest.approx(20 * KNOT)
    assert (position.course, position.altitude_m) == (91.5, 19.5)
    assert (position.accuracy_m, position.hdop, position.battery) == (8, 0.9, 87)
    assert position.attributes == {"driverUniqueId": "driver-7"}


def test_post_with_query_parameters_and_bearer_header(client, device, device_token):
    response = client.post(
        "/",
        params={"id": DEVICE, "lat": 52.66, "lon": -8.63, "timestamp": UNIX},
        headers={"Authorization": f"Bearer {device_token}"},
    )

    assert response.status_code == 200, response.text
    assert only_position(client).lat == 52.66


def test_form_encoded_body_when_the_url_has_no_parameters(client, device, device_token):
    response = client.post(
        "/",
        content=f"id={DEVICE}&lat=52.66&lon=-8.63&timestamp={UNIX}&heading=45",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": f"Bearer {device_token}",
        },
    )

    assert response.status_code == 200, response.text
    position = only_position(client)
    assert (position.lat, position.lon, position.course) == (52.66, -8.63, 45)


def test_deviceid_location_and_millisecond_timestamp(client, device, device_token):
    response = client.get(
        "/",
        params={
            "deviceid": DEVICE,
            "location": "52.66,-8.63",
            "timestamp": str(UNIX * 1000 + 250),
            "token": device_token,
        },
    )

    assert response.status_code == 200, response.text
    position = only_position(client)
    assert (position.lat, position.lon) == (52.66, -8.63)
    assert as_utc(position.fix_time) == WHEN.replace(microsecond=250_000)


def test_iso_8601_timestamp(client, device, device_token):
    response = client.get(
        "/",
        params={
            "id": DEVICE,
            "lat": 52.66,
            "lon": -8.63,
            "timestamp": "2026-12-01T09:00:00+01:00",
            "token": device_token,
        },
    )

    assert response.status_code == 200, response.text
    assert as_utc(only_position(client).fix_time) == WHEN


def test_traccar_date_time_timestamp_is_read_as_utc(client, device, device_token):
    response = client.get(
        "/",
        params={
            "id": DEVICE,
            "lat": 52.66,
            "lon": -8.63,
            "timestamp": "2026-12-01 08:00:00",
            "token": device_token,
        },
    )

    assert response.status_code == 200, response.text
    assert as_utc(only_position(client).fix_time) == WHEN


@pytest.mark.parametrize(
    "text", ["2026-12-01 08:00", "2026-12-01 25:00:00", "2026-12-01  08:00:00"]
)
def test_malformed_date_time_timestamp_is_refused(client, device, device_token, text):
    response = client.get(
        "/",
        params={
            "id": DEVICE,
            "lat": 52.66,
            "lon": -8.63,
            "timestamp": text,
            "token": device_token,
        },
    )

    assert response.status_code == 422
    assert response.json()["type"] == "urn:salvage:problem:invalid-fix"
    assert position_count(client) == 0


def test_missing_timestamp_means_now(client, device, device_token):
    before = datetime.now(UTC)
    response = client.get(
        "/", params={"id": DEVICE, "lat": 52.66, "lon": -8.63, "token": device_token}
    )

    assert response.status_code == 200, response.text
    assert as_utc(only_position(client).fix_time) >= before


def test_json_body_of_newer_traccar_clients(client, device, device_token):
    body = {
        "device_id": DEVICE,
        "location": {
            "timestamp": "2026-12-01T08:00:00.000Z",
            "coords": {
                "latitude": 52.66,
                "longitude": -8.63,
                "accuracy": 12.5,
                "speed": 8.3,
                "heading": 270,
                "altitude": 21,
            },
            "is_moving": True,
            "odometer": 1234.5,
            "battery": {"level": 0.73, "is_charging": False},
            "extras": {"load": "full"},
        },
    }
    response = client.post(
        "/",
        content=json.dumps(body),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {device_token}",
        },
    )

    assert response.status_code == 200, response.text
    position = only_position(client)
    assert as_utc(position.fix_time) == WHEN
    assert (position.speed_mps, position.course, position.altitude_m) == (8.3, 270, 21)
    assert position.accuracy_m == 12.5
    assert position.battery == pytest.approx(73)
    assert position.attributes == {
        "is_moving": True,
        "odometer": 1234.5,
        "extras": {"load": "full"},
        "charging": False,
    }


def drops(client, headers) -> dict:
    response = client.get(f"/v1/devices/{DEVICE}/drops", headers=headers)
    return response.json()["dropped"]


def test_a_json_body_fix_cleaning_drops_is_acknowledged_and_counted(
    client, device, device_token, service_auth
):
    ahead = datetime.now(UTC) + timedelta(days=1)
    body = {
        "device_id": DEVICE,
        "location": {
            "timestamp": ahead.isoformat(),
            "coords": {"latitude": 52.66, "longitude": -8.63},
        },
    }
    response = client.post(
        "/",
        content=json.dumps(body),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {device_token}",
        },
    )

    assert response.status_code == 200, response.text
    assert response.json() == {
        "device_id": DEVICE,
        "received": 1,
        "accepted": 0,
        "dropped": {"future": 1},
    }
    assert position_count(client) == 0
    assert drops(client, service_auth) == {"future": 1}


def test_a_form_body_fix_at_zero_zero_is_acknowledged_and_counted(
    client, device, device_token, service_auth
):
    response = client.post(
        "/",
        content=f"id={DEVICE}&lat=0&lon=0&timestamp={UNIX}",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": f"Bearer {device_token}",
        },
    )

    assert response.status_code == 200, response.text
    assert response.json()["dropped"] == {"zero_position": 1}
    assert position_count(client) == 0
    assert drops(client, service_auth) == {"zero_position": 1}


GARBAGE = [
    ({"lat": "abc", "lon": "-8.63"}, 422, "invalid-fix"),
    ({"lat": "91", "lon": "-8.63"}, 422, "invalid-fix"),
    ({"lat": "52.66", "lon": "-181"}, 422, "invalid-fix"),
    ({"lat": "NaN", "lon": "-8.63"}, 422, "invalid-fix"),
    ({"lat": "52.66", "lon": "inf"}, 422, "invalid-fix"),
    ({"lat": "52.66"}, 422, "invalid-fix"),
    ({"location": "52.66"}, 422, "invalid-fix"),
    ({"lat": "52.66", "lon": "-8.63", "timestamp": "1e30"}, 422, "invalid-fix"),
    (
        {"lat": "52.66", "lon": "-8.63", "timestamp": "99999999999999999999"},
        422,
        "invalid-fix",
    ),
    ({"lat": "52.66", "lon": "-8.63", "timestamp": "tomorrow"}, 422, "invalid-fix"),
    (
        {"lat": "52.66", "lon": "-8.63", "timestamp": "2026-12-01T08:00:00"},
        422,
        "invalid-fix",
    ),
    ({"lat": "52.66", "lon": "-8.63", "speed": "fast"}, 422, "invalid-fix"),
    ({"lat": "5_2.66", "lon": "-8.63"}, 422, "invalid-fix"),
    ({"lat": "５２.66", "lon": "-8.63"}, 422, "invalid-fix"),
    ({"lat": " 52.66", "lon": "-8.63"}, 422, "invalid-fix"),
    (
        {"lat": "52.66", "lon": "-8.63", "timestamp": "1_700_000_000"},
        422,
        "invalid-fix",
    ),
]


@pytest.mark.parametrize(("fields", "status", "slug"), GARBAGE)
def test_garbage_parameters_are_refused_and_nothing_stored(
    client, device, device_token, fields, status, slug
):
    params = {"id": DEVICE, "timestamp": str(UNIX), "token": device_token, **fields}
    response = client.get("/", params=params)

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == f"urn:salvage:problem:{slug}"
    assert position_count(client) == 0


def test_missing_device_id_is_refused(client, device, device_token):
    response = client.get(
        "/", params={"lat": 52.66, "lon": -8.63, "token": device_token}
    )

    assert response.status_code == 422
    assert "id or deviceid" in response.json()["detail"]
    assert position_count(client) == 0


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        '{"device_id": "dev-304"}',
        "[1, 2]",
        '{"device_id": 5}',
        "[" * 5000 + "]" * 5000,
        "[" * 5000 + "1" + "]" * 5000,
    ],
)
def test_malformed_json_is_refused(client, device, device_token, body):
    response = client.post(
        "/",
        content=body,
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {device_token}",
        },
    )

    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert position_count(client) == 0


def test_unknown_device_gets_a_clear_404(client, device, token_for):
    response = client.get(
        "/",
        params={
            "id": "ghost",
            "lat": 52.66,
            "lon": -8.63,
            "token": token_for("device", "ghost"),
        },
    )

    assert response.status_code == 404
    assert response.json()["type"] == "urn:salvage:problem:unknown-device"
    assert position_count(client) == 0


def test_a_device_posts_only_as_itself(client, device, token_for, service_auth):
    other = token_for("device", "dev-other")
    response = client.get(
        "/", params={"id": DEVICE, "lat": 52.66, "lon": -8.63, "token": other}
    )

    assert response.status_code == 403
    assert response.json()["type"] == "urn:salvage:problem:wrong-device"
    assert position_count(client) == 0


@pytest.mark.parametrize("token", [None, "not-a-jwt"])
def test_missing_or_bad_token_is_401(client, device, token):
    params = {"id": DEVICE, "lat": 52.66, "lon": -8.63}
    if token:
        params["token"] = token
    response = client.get("/", params=params)

    assert response.status_code == 401
    assert position_count(client) == 0


def test_other_roles_may_not_post_telemetry(client, device, token_for):
    response = client.get(
        "/",
        params={
            "id": DEVICE,
            "lat": 52.66,
            "lon": -8.63,
            "token": token_for("resident", DEVICE),
        },
    )

    assert response.status_code == 403
    assert position_count(client) == 0


UNSIGNABLE_BODY = json.dumps(
    {
        "device_id": DEVICE,
        "location": {
            "timestamp": "2026-12-01T08:00:00Z",
            "coords": {"latitude": 52.66, "longitude": -8.63},
            "extras": {"v": float("nan")},
        },
    }
)


@pytest.mark.parametrize("content_type", [None, "text/plain"])
def test_a_json_body_under_any_label_is_refused_if_it_cannot_be_signed(
    client, device, device_token, content_type
):
    headers = {"Authorization": f"Bearer {device_token}"}
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post("/", content=UNSIGNABLE_BODY, headers=headers)

    assert response.status_code == 422, response.text
    assert response.json()["type"].endswith("json-number-out-of-range")
    assert position_count(client) == 0


@pytest.mark.parametrize(
    "body", [f"id={DEVICE}%00&lat=52.66&lon=-8.63", "id=dev&lat=52.66&lon=-8.63&x=\0"]
)
def test_a_nul_in_a_form_body_under_any_label_is_refused(
    client, device, device_token, body
):
    response = client.post(
        "/",
        content=body.encode(),
        headers={"Authorization": f"Bearer {device_token}", "Content-Type": "text/x"},
    )

    assert response.status_code == 422, response.text
    assert response.json()["type"].endswith("nul-character")
    assert position_count(client) == 0
