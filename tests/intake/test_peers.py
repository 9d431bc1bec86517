"""What the real ledger and tracking apps learn from intake's outbox: keys and
their revocation, places, licences and custody, with nobody copying them."""

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from services.intake.api import create_app
from services.ledger.api import create_app as create_ledger
from services.tracking.api import create_app as create_tracking
from services.tracking.models import Place
from shared.crypto import generate_key, key_id, public_key_b64, sign_statement
from shared.timeutil import iso_utc, parse_utc

from .conftest import at, drain, sorted_outputs


def peer(app, auth_header) -> Iterator[TestClient]:
    with TestClient(app) as client:
        client.headers.update(auth_header("service", sub="service:intake"))
        yield client


@pytest.fixture
def ledger(databases, settings, auth_header) -> Iterator[TestClient]:
    url = databases.url("ledger")
    app = create_ledger(settings.model_copy(update={"ledger_database_url": url}))
    yield from peer(app, auth_header)


@pytest.fixture
def tracking(databases, settings, auth_header, ledger) -> Iterator[TestClient]:
    update = {
        "tracking_database_url": databases.url("tracking"),
        "outbox_poll_seconds": 60,
    }
    app = create_tracking(settings.model_copy(update=update), clients={})
    yield from peer(app, auth_header)


@pytest.fixture
def app(databases, settings, config, ledger, tracking):
    """Intake whose outbox delivers to the real ledger and tracking apps."""
    update = {
        "intake_database_url": databases.url("intake"),
        "outbox_poll_seconds": 0.05,
    }
    clients = {"ledger": ledger, "tracking": tracking}
    return create_app(
        settings.model_copy(update=update), clients=clients, config=config
    )


def ledger_key(ledger: TestClient, key) -> dict:
    response = ledger.get(f"/v1/keys/{key_id(key)}")
    assert response.status_code == 200, response.text
    return response.json()


def tracking_place(tracking: TestClient, place_id: str) -> Place:
    with tracking.app.state.sessions() as session:
        return session.scalars(select(Place).where(Place.place_id == place_id)).one()


def pickup_draft(world, batch_id: str, request_id: str, minute: int) -> dict:
    body = {"request_id": request_id, "declared_volume_l": 80, "estimated_mass_kg": 60}
    return world.statement(batch_id, "custody.pickup", at(minute), body, "device")


def test_registered_keys_reach_the_ledger(app, world, ledger):
    drain(app)

    stored = ledger_key(ledger, world.plant_key)

    assert stored["public_key"] == public_key_b64(world.plant_key)
    assert (stored["party_kind"], stored["party_id"]) == ("plant", world.plant_id)
    assert stored["kinds"] == ["custody.delivery", "custody.processing"]
    assert ledger_key(ledger, world.device_key)["revoked_at"] is None


def test_a_revoked_key_signs_nothing_more_at_intake_or_the_ledger(app, world, ledger):
    batch_id, request_id = world.dispatched_batch()
    second = world.paid_request()["id"]
    assert world.dispatch(second).json()["batch_id"] == batch_id
    assert world.pickup(batch_id, request_id, mass=60).status_code == 201
    draft = pickup_draft(world, batch_id, second, minute=20)
    signatures = [sign_statement(k, draft) for k in (world.device_key, world.pm_key)]

    revoked = world.post(
        f"/v1/parties/keys/{key_id(world.device_key)}/revoke", {"reason": "stolen"}
    )
    drain(app)

    assert revoked.status_code == 200
    assert ledger_key(ledger, world.device_key)["revoke_reason"] == "stolen"
    at_intake = world.post(
        f"/v1/batches/{batch_id}/custody",
        {"statement": draft, "signatures": signatures},
        "device",
    )
    assert at_intake.status_code == 422
    assert at_intake.json()["type"] == "urn:salvage:problem:key-revoked"
    at_ledger = ledger.post(
        "/v1/entries",
        json={"statement": draft, "signatures": signatures},
        headers={"Idempotency-Key": "bypassing-intake"},
    )
    assert at_ledger.status_code in (409, 422), at_ledger.text
    assert [
        e["kind"] for e in ledger.get(f"/v1/batches/{batch_id}").json()["entries"]
    ] == ["custody.pickup"]


def test_a_rotated_key_is_live_at_the_ledger_and_the_old_one_revoked(
    app, world, ledger
):
    new = generate_key()

    response = world.post(
        f"/v1/parties/keys/{key_id(world.pm_key)}/rotate",
        {"public_key": public_key_b64(new), "reason": "staff change"},
    )
    drain(app)

    assert response.status_code == 201, response.text
    assert ledger_key(ledger, new)["party_id"] == world.pm_id
    assert ledger_key(ledger, new)["revoked_at"] is None
    assert ledger_key(ledger, world.pm_key)["revoked_at"] is not None


def test_a_hauler_licence_change_reaches_tracking(app, world, tracking):
    drain(app)
    before = tracking.get(f"/v1/devices/{world.device_id}").json()

    response = world.client.patch(
        f"/v1/haulers/{world.hauler_id}",
        json={"valid_until": "2027-01-15T12:30:00.25+08:00"},
        headers=world.headers["inspector"],
    )
    drain(app)
    extended = tracking.get(f"/v1/devices/{world.device_id}").json()
    world.client.patch(
        f"/v1/haulers/{world.hauler_id}",
        json={"status": "revoked"},
        headers=world.headers["inspector"],
    )
    drain(app)
    revoked = tracking.get(f"/v1/devices/{world.device_id}").json()

    assert response.status_code == 200, response.text
    assert (before["vehicle_id"], before["hauler_id"]) == (
        world.vehicle_id,
        world.hauler_id,
    )
    assert extended["licence_valid_from"] == response.json()["valid_from"]
    assert extended["licence_valid_until"] == "2027-01-15T04:30:00.250000Z"
    assert revoked["licence_valid_until"] < extended["licence_valid_until"]


def licence_alerts(tracking: TestClient, device_id: str) -> list[dict]:
    response = tracking.get("/v1/alerts", params={"device_id": device_id})
    assert response.status_code == 200, response.text
    return [a for a in response.json()["alerts"] if a["kind"] == "licence_invalid"]


def test_telemetry_from_the_licence_end_on_is_an_alert_at_tracking(
    app, world, tracking
):
    end = parse_utc(at(60))
    world.client.patch(
        f"/v1/haulers/{world.hauler_id}",
        json={"valid_until": iso_utc(end)},
        headers=world.headers["inspector"],
    )
    drain(app)
    positions = f"/v1/devices/{world.device_id}/positions"

    def post_fix(time):
        fix = {"time": iso_utc(time), "lat": 29.87, "lon": 121.55}
        return tracking.post(positions, json={"positions": [fix]})

    inside = post_fix(end - timedelta(seconds=1))
    before_end = licence_alerts(tracking, world.device_id)
    at_end = post_fix(end)

    assert inside.json()["accepted"] == at_end.json()["accepted"] == 1
    assert before_end == []
    [raised] = licence_alerts(tracking, world.device_id)
    assert raised["detail"]["licence_valid_until"] == iso_utc(end)


def test_plant_licensing_changes_reach_tracking(app, world, tracking):
    drain(app)
    assert tracking_place(tracking, world.plant_id).licensed is True

    world.client.patch(
        f"/v1/plants/{world.plant_id}",
        json={"licensed": False},
        headers=world.headers["inspector"],
    )
    drain(app)
    unlicensed = tracking_place(tracking, world.plant_id)
    world.client.patch(
        f"/v1/plants/{world.plant_id}",
        json={"licensed": True},
        headers=world.headers["inspector"],
    )
    drain(app)

    assert (unlicensed.kind, unlicensed.licensed) == ("plant", False)
    assert tracking_place(tracking, world.plant_id).licensed is True
    community = tracking_place(tracking, world.community_id)
    assert (community.kind, community.name) == ("community", "Lakeside Gardens")


def test_a_moved_geofence_reaches_tracking(app, world, tracking):
    ring = [[121.54, 29.86], [121.56, 29.86], [121.56, 29.88], [121.54, 29.86]]

    response = world.client.put(
        f"/v1/communities/{world.community_id}/geofence",
        json={
            "lat": 29.87,
            "lon": 121.553,
            "polygon": {"type": "Polygon", "coordinates": [ring]},
        },
        headers=world.headers["admin"],
    )
    drain(app)
    moved = tracking_place(tracking, world.community_id)
    world.client.put(
        f"/v1/plants/{world.plant_id}/geofence",
        json={"lat": 29.91, "lon": 121.61, "radius_m": 400},
        headers=world.headers["admin"],
    )
    drain(app)
    plant = tracking_place(tracking, world.plant_id)

    assert response.status_code == 200, response.text
    assert response.json()["kind"] == "community"
    assert moved.geometry == {"type": "Polygon", "coordinates": [ring]}
    assert moved.radius_m == 0
    assert plant.geometry == {"type": "Point", "coordinates": [121.61, 29.91]}
    assert (plant.radius_m, plant.licensed) == (400, True)


def test_discrepancies_are_alerts_at_tracking(app, world, tracking, auth_header):
    batch_id, request_id = world.dispatched_batch()
    world.pickup(batch_id, request_id, mass=300, volume=1000)
    world.deliver(batch_id, gross=11_900, tare=11_000)
    world.process(batch_id, sorted_outputs(800))
    drain(app)

    response = tracking.get(
        "/v1/alerts",
        params={"batch_id": batch_id},
        headers=auth_header("inspector", "inspector-1"),
    )

    assert response.status_code == 200, response.text
    alerts = response.json()["alerts"]
    discrepancies = [a for a in alerts if a["kind"] == "mass_discrepancy"]
    assert sorted(alert["detail"]["check"] for alert in discrepancies) == [
        "sorting_outputs",
        "weighbridge",
    ]
    assert all(alert["status"] == "open" for alert in discrepancies)
    # This truck sent no telemetry at all: the batch's window is one long gap.
    assert {a["kind"] for a in alerts} == {"mass_discrepancy", "telemetry_gap"}


def test_a_volume_discrepancy_is_its_own_alert_at_tracking(
    app, world, tracking, auth_header
):
    batch_id, request_id = world.dispatched_batch()
    world.pickup(batch_id, request_id, mass=300, volume=100)
    found = world.deliver(batch_id, gross=11_300, tare=11_000).json()
    drain(app)

    response = tracking.get(
        "/v1/alerts",
        params={"batch_id": batch_id},
        headers=auth_header("inspector", "inspector-1"),
    )

    assert response.status_code == 200, response.text
    alerts = response.json()["alerts"]
    [volume] = [a for a in alerts if a["kind"] == "volume_discrepancy"]
    assert volume["status"] == "open"
    assert volume["batch_ids"] == [batch_id]
    assert volume["detail"]["discrepancy_id"] == found["discrepancy"]["id"]
    assert volume["detail"]["density_kg_m3"] == 3000
    assert "mass_discrepancy" not in {a["kind"] for a in alerts}
