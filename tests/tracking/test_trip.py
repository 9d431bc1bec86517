"""Trip summaries: the body the ledger expects, signed with the tracking key,
linked alerts, idempotency, and delivery through the durable outbox."""

import hashlib
import json
import time
from itertools import pairwise

import rfc8785

from services.tracking.geo import haversine_m
from shared.crypto import key_id, public_key_b64, verify_statement
from tests.tracking.conftest import (
    DEVICE,
    HOME,
    VEHICLE,
    at,
    drive,
    fix,
    offset,
    post_batch,
    register_place,
    stay,
)

COMMUNITY = offset(*HOME, east_m=1000)
LAYBY = offset(*HOME, east_m=1000, north_m=1000)
TRIP = {
    "device_id": DEVICE,
    "vehicle_id": VEHICLE,
    "start": "2026-12-01T08:00:00Z",
    "end": "2026-12-01T08:30:00Z",
}
BODY_FIELDS = {
    "device_id",
    "vehicle_id",
    "start",
    "end",
    "distance_m",
    "duration_s",
    "point_count",
    "coverage_permille",
    "points_sha256",
    "stops",
    "alert_ids",
}


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def collection_run(client, token, headers) -> list[dict]:
    """Depot to a community (2 min), on to a lay-by (15 min), then onwards; the
    telemetry ends 520 s before the end of the batch window."""
    register_place(client, headers, "community-7", *COMMUNITY, radius_m=40)
    fixes = (
        drive(0, HOME, 0, 1000, speed_mps=10)
        + stay(110, 110, *COMMUNITY)
        + drive(230, COMMUNITY, 1000, 0, speed_mps=10)
        + stay(340, 900, *LAYBY, step_s=30)
        + drive(1250, LAYBY, 300, 0, speed_mps=10)
    )
    response = post_batch(client, token, fixes)
    assert response.json()["accepted"] == len(fixes)
    return fixes


def post_trip(client, headers, batch="batch-1", body=TRIP):
    return client.post(f"/v1/batches/{batch}/trip", json=body, headers=headers)


def test_trip_summary_body_statement_and_signature(
    client, device, device_token, service_auth, tracking_key
):
    fixes = collection_run(client, device_token, service_auth)

    response = post_trip(client, service_auth)

    assert response.status_code == 201, response.text
    trip = response.json()
    statement = trip["entry"]["statement"]
    body = statement["body"]
    assert set(body) == BODY_FIELDS
    assert statement == {
        "v": 1,
        "kind": "trip.summary",
        "batch_id": "batch-1",
        "prev": None,
        "at": "2026-12-01T08:30:00Z",
        "body": body,
    }
    assert trip["summary"] == body
    assert body["duration_s"] == 1800 and body["point_count"] == len(fixes)
    path = [(f["lat"], f["lon"]) for f in fixes]
    expected = sum(haversine_m(*a, *b) for a, b in pairwise(path))
    assert body["distance_m"] == round(expected)
    listed = [{"time": f["time"], "lat": f["lat"], "lon": f["lon"]} for f in fixes]
    assert body["points_sha256"] == hashlib.sha256(rfc8785.dumps(listed)).hexdigest()
    last = at(1250 + 300 / 10).isoformat()
    assert fixes[-1]["time"] == last.replace("+00:00", "Z")
    assert body["coverage_permille"] == int(1000 * (1280 - 0) / 1800)
    assert [s["place_id"] for s in body["stops"]] == ["community-7", None]
    assert set(body["stops"][0]) == {
        "start",
        "end",
        "duration_s",
        "lat",
        "lon",
        "place_id",
    }
    assert body["stops"][1]["duration_s"] >= 900
    [signature] = trip["entry"]["signatures"]
    assert signature["key_id"] == key_id(tracking_key)
    assert verify_statement(
        tracking_key.public_key(), statement, signature["signature"]
    )


def test_trip_links_its_alerts_to_the_batch(client, device, device_token, service_auth):
    collection_run(client, device_token, service_auth)

    body = post_trip(client, service_auth).json()["summary"]
    linked = client.get(
        "/v1/alerts", params={"batch_id": "batch-1"}, headers=service_auth
    ).json()["alerts"]

    assert [a["kind"] for a in linked] == ["dumping_suspected", "telemetry_gap"]
    assert body["alert_ids"] == [a["id"] for a in linked]
    assert all(a["batch_ids"] == ["batch-1"] for a in linked)


def window_gaps(client, headers) -> list[dict]:
    """The batch's gap alerts by start: alerts raised together are listed in
    no particular order."""
    listed = client.get(
        "/v1/alerts", params={"batch_id": "batch-1"}, headers=headers
    ).json()["alerts"]
    gaps = [a for a in listed if a["kind"] == "telemetry_gap"]
    return sorted(gaps, key=lambda a: a["start"])


def test_silence_at_either_edge_of_the_window_raises_a_gap_for_the_batch(
    client, device, device_token, service_auth
):
    post_batch(client, device_token, stay(600, 800, *HOME, step_s=20))

    body = post_trip(client, service_auth).json()["summary"]

    gaps = window_gaps(client, service_auth)
    assert [(g["start"], g["end"]) for g in gaps] == [
        ("2026-12-01T08:00:00Z", "2026-12-01T08:10:00Z"),
        ("2026-12-01T08:23:20Z", "2026-12-01T08:30:00Z"),
    ]
    assert [g["detail"] for g in gaps] == [
        {"gap_s": 600, "batch_id": "batch-1"},
        {"gap_s": 400, "batch_id": "batch-1"},
    ]
    assert {g["id"] for g in gaps} <= set(body["alert_ids"])


def test_silence_while_parked_in_the_window_raises_a_gap_for_the_batch(
    client, device, device_token, service_auth
):
    fixes = stay(0, 600, *HOME, step_s=60) + stay(1200, 600, *HOME, step_s=60)
    post_batch(client, device_token, fixes)
    assert window_gaps(client, service_auth) == []

    post_trip(client, service_auth)

    [gap] = window_gaps(client, service_auth)
    assert (gap["start"], gap["duration_s"]) == ("2026-12-01T08:10:00Z", 600)
    assert abs(gap["lat"] - HOME[0]) < 0.0001


def test_a_window_covered_by_fixes_raises_no_gap(
    client, device, device_token, service_auth
):
    post_batch(client, device_token, stay(0, 1800, *HOME, step_s=300))

    assert post_trip(client, service_auth).status_code == 201

    assert window_gaps(client, service_auth) == []


def test_a_gap_motion_raised_is_not_raised_again_for_the_batch(
    client, device, device_token, service_auth
):
    far = offset(*HOME, north_m=2000)
    moving = drive(0, HOME, north_m=500, east_m=0, step_s=10)
    resumed = drive(900, far, north_m=0, east_m=9000, step_s=30)
    post_batch(client, device_token, moving + resumed)
    [raised] = [
        a
        for a in client.get("/v1/alerts", headers=service_auth).json()["alerts"]
        if a["kind"] == "telemetry_gap"
    ]

    post_trip(client, service_auth)

    assert [g["id"] for g in window_gaps(client, service_auth)] == [raised["id"]]


def test_trip_reaches_the_ledger_after_the_key(
    client, device, device_token, service_auth, ledger, tracking_key
):
    collection_run(client, device_token, service_auth)
    entry = post_trip(client, service_auth).json()["entry"]

    assert wait_for(lambda: ledger.received("POST", "/v1/entries"))
    kid = key_id(tracking_key)
    methods = [(m, p) for m, p, _, _ in ledger.requests]
    assert methods == [("PUT", f"/v1/keys/{kid}"), ("POST", "/v1/entries")]
    _, _, key_headers, key_body = ledger.requests[0]
    assert key_body == {
        "public_key": public_key_b64(tracking_key),
        "party_kind": "service",
        "party_id": "tracking",
        "kinds": ["trip.summary"],
    }
    _, _, headers, body = ledger.requests[1]
    assert headers["idempotency-key"] == "trip:batch-1"
    assert body == entry
    assert wait_for(
        lambda: (
            client.get("/v1/batches/batch-1/trip", headers=service_auth).json()[
                "ledger_status"
            ]
            == "delivered"
        )
    )


def test_trip_waits_in_the_outbox_while_the_ledger_is_down(
    client, device, device_token, service_auth, ledger
):
    ledger.down = True
    collection_run(client, device_token, service_auth)
    post_trip(client, service_auth)
    time.sleep(0.3)

    status = client.get("/v1/batches/batch-1/trip", headers=service_auth).json()
    assert status["ledger_status"] == "pending"
    assert ledger.received("POST", "/v1/entries") == []

    ledger.down = False
    assert wait_for(lambda: ledger.received("POST", "/v1/entries"), timeout=20)
    assert wait_for(lambda: client.app.state.outbox_relay.pending_count() == 0)


def test_trip_is_idempotent_by_batch(client, device, device_token, service_auth):
    collection_run(client, device_token, service_auth)

    first = post_trip(client, service_auth)
    again = post_trip(client, service_auth)
    other = post_trip(
        client, service_auth, body={**TRIP, "end": "2026-12-01T09:00:00Z"}
    )

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["entry"] == first.json()["entry"]
    assert other.status_code == 409
    assert other.json()["type"] == "urn:salvage:problem:trip-exists"


def test_trip_refuses_bad_requests(
    client, device, device_token, service_auth, auth_header
):
    unknown = post_trip(client, service_auth, body={**TRIP, "device_id": "ghost"})
    mismatch = post_trip(client, service_auth, body={**TRIP, "vehicle_id": "veh-9"})
    backwards = post_trip(
        client, service_auth, body={**TRIP, "end": "2026-12-01T07:00:00Z"}
    )
    naive = post_trip(client, service_auth, body={**TRIP, "end": "2026-12-01T09:00:00"})
    not_service = post_trip(client, auth_header("inspector"))

    assert unknown.status_code == 404
    assert mismatch.status_code == 422
    assert mismatch.json()["type"] == "urn:salvage:problem:vehicle-mismatch"
    assert backwards.status_code == 422
    assert naive.status_code == 422
    assert not_service.status_code == 403
    missing = client.get("/v1/batches/batch-1/trip", headers=service_auth)
    assert missing.status_code == 404


def test_trip_as_geojson(client, device, device_token, service_auth):
    fixes = collection_run(client, device_token, service_auth)
    post_trip(client, service_auth)

    response = client.get("/v1/batches/batch-1/trip/geojson", headers=service_auth)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/geo+json"
    collection = json.loads(response.content)
    roles = [f["properties"]["role"] for f in collection["features"]]
    assert roles == ["path", "stop", "stop", "alert", "alert"]
    assert len(collection["features"][0]["geometry"]["coordinates"]) == len(fixes)


def test_key_registration_is_queued_once_across_restarts(make_client, settings, ledger):
    first = make_client()
    url = first.app.state.settings.tracking_database_url
    make_client(url=url)

    assert wait_for(lambda: len(ledger.received("PUT", "/v1/keys/")) >= 1)
    time.sleep(0.2)
    assert len(ledger.received("PUT", "/v1/keys/")) == 1


def test_fixes_arriving_inside_a_summarised_trip_raise_one_alert_with_a_count(
    client, device, device_token, service_auth
):
    collection_run(client, device_token, service_auth)
    assert post_trip(client, service_auth).status_code == 201
    signed = client.get("/v1/batches/batch-1/trip", headers=service_auth).json()
    backfilled = fix(2.5, *offset(*HOME, east_m=25))
    in_window = drive(1500, LAYBY, 0, 100, speed_mps=10)
    after_window = drive(1900, LAYBY, 0, 100, speed_mps=10)

    first = post_batch(client, device_token, [backfilled])
    second = post_batch(client, device_token, in_window + after_window)

    assert first.json()["accepted"] == 1
    assert second.json()["accepted"] == len(in_window) + len(after_window)
    listed = client.get(
        "/v1/alerts", params={"batch_id": "batch-1"}, headers=service_auth
    ).json()["alerts"]
    [alert] = [a for a in listed if a["kind"] == "fix_after_summary"]
    assert alert["detail"] == {"batch_id": "batch-1", "fixes": 1 + len(in_window)}
    assert alert["start"] == backfilled["time"]
    assert alert["end"] == in_window[-1]["time"]
    again = client.get("/v1/batches/batch-1/trip", headers=service_auth).json()
    assert again["entry"] == signed["entry"]
