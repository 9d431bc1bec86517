"""A whole trip uploaded as GPX: stored like a batch, idempotent, and refused
cleanly when it cannot be read."""

from tests.tracking.conftest import DEVICE, position_count, stored_positions

GPX = """<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="test" xmlns="http://www.topografix.com/GPX/1/1">
  <trk><name>run</name><trkseg>
    <trkpt lat="52.660000" lon="-8.630000"><ele>12.5</ele>
      <time>2026-12-01T08:00:00Z</time><hdop>0.8</hdop></trkpt>
    <trkpt lat="52.660500" lon="-8.630000"><ele>13.0</ele>
      <time>2026-12-01T08:00:10Z</time></trkpt>
    <trkpt lat="52.661000" lon="-8.630000"><time>2026-12-01T08:00:20Z</time></trkpt>
    <trkpt lat="52.661500" lon="-8.630000"></trkpt>
  </trkseg></trk>
</gpx>
"""
GPX_TYPE = {"Content-Type": "application/gpx+xml"}


def upload(client, token, body, device_id=DEVICE):
    return client.post(
        f"/v1/devices/{device_id}/gpx",
        content=body,
        headers={**GPX_TYPE, "Authorization": f"Bearer {token}"},
    )


def test_a_gpx_trip_is_stored_point_by_point(client, device, device_token):
    response = upload(client, device_token, GPX)

    assert response.status_code == 200, response.text
    assert response.json() == {
        "device_id": DEVICE,
        "received": 4,
        "accepted": 3,
        "dropped": {"invalid": 1},
    }
    stored = stored_positions(client)
    assert [p.lat for p in stored] == [52.66, 52.6605, 52.661]
    assert (stored[0].altitude_m, stored[0].hdop) == (12.5, 0.8)


def test_uploading_the_same_gpx_again_stores_nothing_new(client, device, device_token):
    upload(client, device_token, GPX)

    again = upload(client, device_token, GPX)

    assert again.json()["dropped"] == {"duplicate": 3, "invalid": 1}
    assert position_count(client) == 3


def test_unreadable_gpx_is_refused_and_nothing_stored(client, device, device_token):
    response = upload(client, device_token, "<gpx><trk><trkseg><trkpt lat=")

    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert position_count(client) == 0


def test_a_gpx_without_points_is_refused(client, device, device_token):
    empty = '<?xml version="1.0"?><gpx version="1.1" creator="t"></gpx>'

    assert upload(client, device_token, empty).status_code == 422


def test_a_device_uploads_only_as_itself(client, device, token_for):
    response = upload(client, token_for("device", "someone-else"), GPX)

    assert response.status_code == 403
    assert position_count(client) == 0


def test_a_gpx_over_the_size_limit_is_refused(make_client, token_for, auth_header):
    client = make_client(max_gpx_bytes=200)
    headers = auth_header("service", "service:intake")
    client.put(
        f"/v1/devices/{DEVICE}",
        json={"vehicle_id": "v", "hauler_id": "h", "plate": "P"},
        headers=headers,
    )

    response = upload(client, token_for("device", DEVICE), GPX)

    assert response.status_code == 413
    assert position_count(client) == 0


def test_points_off_the_globe_or_not_finite_are_counted_invalid(
    client, device, device_token
):
    body = GPX.replace(
        '<trkpt lat="52.661500" lon="-8.630000"></trkpt>',
        '<trkpt lat="NaN" lon="inf"><time>2026-12-01T08:00:30Z</time></trkpt>'
        '<trkpt lat="95" lon="200"><time>2026-12-01T08:00:40Z</time></trkpt>'
        '<trkpt lat="52.6620" lon="-8.63"><ele>inf</ele>'
        "<time>2026-12-01T08:00:50Z</time></trkpt>",
    )

    response = upload(client, device_token, body)

    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 4
    assert response.json()["dropped"] == {"invalid": 2}
    stored = stored_positions(client)
    assert [p.lat for p in stored] == [52.66, 52.6605, 52.661, 52.662]
    assert stored[-1].altitude_m is None
