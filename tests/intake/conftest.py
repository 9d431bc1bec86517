"""Fixtures for intake: the app on a migrated database, fake peers, a registry."""

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from services.intake.api import create_app
from services.intake.config import IntakeConfig
from services.intake.models import outbox
from shared.crypto import generate_key, public_key_b64, sign_statement
from shared.timeutil import iso_utc, utcnow

PUBLIC_URL = "http://intake.test"


@dataclass
class Peers:
    """Stands in for ledger and tracking; records every request they get."""

    received: list[dict] = field(default_factory=list)

    def clients(self) -> dict[str, httpx.Client]:
        return {
            name: httpx.Client(
                base_url=f"http://{name}.test", transport=httpx.MockTransport(self._on)
            )
            for name in ("ledger", "tracking")
        }

    def _on(self, request: httpx.Request) -> httpx.Response:
        self.received.append(
            {
                "target": request.url.host.split(".")[0],
                "method": request.method,
                "path": request.url.path,
                "key": request.headers.get("Idempotency-Key"),
                "body": httpx.Response(200, content=request.content).json(),
            }
        )
        return httpx.Response(201, json={})


@pytest.fixture
def peers() -> Peers:
    return Peers()


@pytest.fixture
def config() -> IntakeConfig:
    return IntakeConfig(public_url=PUBLIC_URL)


@pytest.fixture
def app(databases, settings, peers, config):
    settings = settings.model_copy(
        update={
            "intake_database_url": databases.url("intake"),
            "outbox_poll_seconds": 60,
        }
    )
    return create_app(settings, clients=peers.clients(), config=config)


@pytest.fixture
def client(app):
    with TestClient(app) as test_client:
        yield test_client


def outbox_rows(app) -> list:
    with app.state.engine.connect() as connection:
        return list(connection.execute(select(outbox).order_by(outbox.c.id)))


def drain(app, timeout: float = 10.0) -> None:
    """Waits until the app's relay has delivered every queued message."""
    deadline = time.monotonic() + timeout
    while app.state.relay.pending_count():
        assert time.monotonic() < deadline, "the outbox did not drain"
        app.state.relay.wake()
        time.sleep(0.02)


def count(app, table) -> int:
    with app.state.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar()


BASE = utcnow().replace(second=0, microsecond=0) - timedelta(hours=3)


def at(minutes: int = 0) -> str:
    """An RFC 3339 time some minutes after a fixed point three hours ago."""
    return iso_utc(BASE + timedelta(minutes=minutes))


@dataclass
class World:
    """A registered plant, hauler, truck and community, and their keys."""

    client: TestClient
    headers: dict
    plant_id: str
    plant_key: Ed25519PrivateKey
    hauler_id: str
    vehicle_id: str
    device_id: str
    device_key: Ed25519PrivateKey
    pm_id: str
    pm_key: Ed25519PrivateKey
    community_id: str
    community_code: str

    def post(self, path: str, json: dict, who: str = "admin", headers=None):
        return self.client.post(path, json=json, headers=headers or self.headers[who])

    def get(self, path: str, who: str = "admin", **kwargs):
        return self.client.get(path, headers=self.headers[who], **kwargs)

    def request_pickup(self, who: str = "resident", **overrides) -> dict:
        body = {
            "community_id": self.community_id,
            "unit": "3-402",
            "materials": ["17 01 07", "17 02 01"],
            "bags": 6,
            "preferred_start": at(0),
            "preferred_end": at(120),
        }
        body.update(overrides)
        response = self.post("/v1/pickup-requests", body, who)
        assert response.status_code == 201, response.text
        return response.json()

    def paid_request(self, who: str = "resident") -> dict:
        request = self.request_pickup(who)
        response = self.post(
            f"/v1/pickup-requests/{request['id']}/payment",
            {"amount": request["quote"]["amount"], "method": "wechat"},
            who,
            headers={**self.headers[who], "Idempotency-Key": f"pay-{request['id']}"},
        )
        assert response.status_code == 201, response.text
        return request

    def dispatch(self, request_id: str, **overrides) -> httpx.Response:
        body = {
            "hauler_id": self.hauler_id,
            "vehicle_id": self.vehicle_id,
            "window_start": at(0),
            "window_end": at(240),
        }
        body.update(overrides)
        return self.post(f"/v1/pickup-requests/{request_id}/dispatch", body, "hauler")

    def dispatched_batch(self) -> tuple[str, str]:
        request = self.paid_request()
        response = self.dispatch(request["id"])
        assert response.status_code == 200, response.text
        return response.json()["batch_id"], request["id"]

    def statement(self, batch_id: str, kind: str, when: str, body: dict, who: str):
        response = self.post(
            f"/v1/batches/{batch_id}/statements",
            {"kind": kind, "at": when, "body": body},
            who,
        )
        assert response.status_code == 200, response.text
        return response.json()["statement"]

    def record(self, batch_id: str, statement: dict, keys: list, who: str):
        signatures = [sign_statement(key, statement) for key in keys]
        return self.post(
            f"/v1/batches/{batch_id}/custody",
            {"statement": statement, "signatures": signatures},
            who,
        )

    def pickup(
        self, batch_id: str, request_id: str, mass: int = 300, minute=10, volume=400
    ):
        body = {
            "request_id": request_id,
            "declared_volume_l": volume,
            "estimated_mass_kg": mass,
        }
        statement = self.statement(
            batch_id, "custody.pickup", at(minute), body, "device"
        )
        return self.record(
            batch_id, statement, [self.device_key, self.pm_key], "device"
        )

    def deliver(self, batch_id: str, gross: int, tare: int, ticket="T-1", minute=60):
        body = {"ticket_no": ticket, "gross_kg": gross, "tare_kg": tare}
        statement = self.statement(
            batch_id, "custody.delivery", at(minute), body, "plant"
        )
        return self.record(batch_id, statement, [self.plant_key], "plant")

    def process(self, batch_id: str, outputs: list[dict], minute=90):
        statement = self.statement(
            batch_id, "custody.processing", at(minute), {"outputs": outputs}, "plant"
        )
        return self.record(batch_id, statement, [self.plant_key], "plant")


def register_key(client, headers, kind: str, party_id: str) -> Ed25519PrivateKey:
    key = generate_key()
    response = client.post(
        "/v1/parties/keys",
        json={
            "party_kind": kind,
            "party_id": party_id,
            "public_key": public_key_b64(key),
        },
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return key


def licence(days_from: int, days_until: int) -> dict:
    now = utcnow().replace(microsecond=0)
    return {
        "valid_from": iso_utc(now + timedelta(days=days_from)),
        "valid_until": iso_utc(now + timedelta(days=days_until)),
    }


@pytest.fixture
def world(client, auth_header) -> World:
    admin = auth_header("admin", "admin-1")
    plant = client.post(
        "/v1/plants",
        json={
            "name": "Ningbo C&D Recycling",
            "permit_no": "NB-P-001",
            "lat": 29.90,
            "lon": 121.60,
            "radius_m": 250,
            "accepted_ewc": ["17 01 01", "17 01 02", "17 01 07", "17 02 01"]
            + ["17 02 03", "17 04 07", "17 08 02", "17 09 04"],
        },
        headers=admin,
    ).json()
    hauler = client.post(
        "/v1/haulers",
        json={"name": "Green Haul", "licence_no": "NB-H-7", **licence(-30, 300)},
        headers=admin,
    ).json()
    vehicle = client.post(
        "/v1/vehicles",
        json={
            "plate": "浙B-12345",
            "capacity_kg": 5000,
            "hauler_id": hauler["id"],
            "device_id": "truck-304",
        },
        headers=admin,
    ).json()
    community = client.post(
        "/v1/communities",
        json={
            "name": "Lakeside Gardens",
            "address": "12 Lake Road",
            "city": "Ningbo",
            "lat": 29.87,
            "lon": 121.55,
            "radius_m": 120,
            "property_manager_id": "pm-lakeside",
        },
        headers=admin,
    ).json()
    headers = {
        "admin": admin,
        "resident": auth_header("resident", "resident-1"),
        "neighbour": auth_header("resident", "resident-2"),
        "hauler": auth_header("hauler", "dispatcher-1", hauler["id"]),
        "device": auth_header("device", "truck-304", hauler["id"]),
        "plant": auth_header("plant", "weighbridge-1", plant["id"]),
        "pm": auth_header("property_manager", "pm-user", "pm-lakeside"),
        "inspector": auth_header("inspector", "inspector-1"),
    }
    return World(
        client=client,
        headers=headers,
        plant_id=plant["id"],
        plant_key=register_key(client, admin, "plant", plant["id"]),
        hauler_id=hauler["id"],
        vehicle_id=vehicle["id"],
        device_id="truck-304",
        device_key=register_key(client, admin, "device", "truck-304"),
        pm_id="pm-lakeside",
        pm_key=register_key(client, admin, "property_manager", "pm-lakeside"),
        community_id=community["id"],
        community_code=community["code"],
    )


def sorted_outputs(net: int) -> list[dict]:
    """Sorting outputs that balance a net input exactly."""
    concrete = net // 2
    wood = net // 4
    return [
        {"material": "concrete_mortar", "ewc": "17 01 07", "kg": concrete},
        {"material": "wood", "ewc": "17 02 01", "kg": wood},
        {
            "material": "residue_landfill",
            "ewc": "17 09 04",
            "kg": net - concrete - wood,
        },
    ]


def moments() -> tuple[datetime, datetime]:
    now = utcnow()
    return now - timedelta(days=1), now + timedelta(days=1)
