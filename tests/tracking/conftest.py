"""Fixtures for the tracking service: an app on a fresh database, a stand-in
ledger that records what reaches it, and registry helpers."""

import json
import math
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from services.tracking.api import create_app
from services.tracking.config import TrackingConfig
from services.tracking.models import Position

DEVICE = "dev-304"
VEHICLE = "veh-304"
HAULER = "hauler-1"
# A quiet spot in Limerick far from every registered place of these tests.
HOME = (52.6600, -8.6300)
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


class FakeLedger:
    """Answers like the ledger and keeps every request it got."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict, dict]] = []
        self.lock = threading.Lock()
        self.down = False

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            return httpx.Response(503, json={"detail": "down"})
        body = json.loads(request.content or b"{}")
        with self.lock:
            self.requests.append(
                (request.method, request.url.path, dict(request.headers), body)
            )
            size = len(self.requests)
        if request.method == "POST":
            return httpx.Response(
                201, json={"index": size, "leaf_hash": "x", "size": size}
            )
        return httpx.Response(200, json={})

    def client(self) -> httpx.Client:
        return httpx.Client(
            transport=httpx.MockTransport(self.handle), base_url="http://ledger"
        )

    def received(self, method: str, prefix: str) -> list[tuple]:
        with self.lock:
            return [
                r for r in self.requests if r[0] == method and r[1].startswith(prefix)
            ]


@pytest.fixture
def ledger() -> FakeLedger:
    return FakeLedger()


@pytest.fixture
def make_client(settings, databases, ledger) -> Iterator[Callable[..., TestClient]]:
    """Starts the app (with its outbox relay) under a given cleaning config, on
    a fresh database unless `url` names one."""
    opened: list[TestClient] = []

    def start(url: str | None = None, **overrides) -> TestClient:
        app_settings = settings.model_copy(
            update={
                "tracking_database_url": url or databases.url("tracking"),
                "outbox_poll_seconds": 0.05,
            }
        )
        config = TrackingConfig(**overrides)
        app = create_app(
            app_settings, clients={"ledger": ledger.client()}, config=config
        )
        client = TestClient(app)
        client.__enter__()
        opened.append(client)
        return client

    yield start
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


@pytest.fixture
def tracking_key(settings):
    return settings.signing_key("tracking")


@pytest.fixture
def service_auth(auth_header) -> dict[str, str]:
    return auth_header("service", "service:intake")


@pytest.fixture
def device_token(token_for) -> str:
    return token_for("device", DEVICE)


@pytest.fixture
def device(client, service_auth) -> str:
    register_device(client, service_auth, DEVICE)
    return DEVICE


def register_device(client, headers, device_id: str, vehicle: str = VEHICLE):
    response = client.put(
        f"/v1/devices/{device_id}",
        json={"vehicle_id": vehicle, "hauler_id": HAULER, "plate": "LK-304"},
        headers=headers,
    )
    assert response.status_code in (200, 201), response.text
    return response


def register_place(
    client,
    headers,
    place_id: str,
    lat: float,
    lon: float,
    *,
    kind="community",
    radius_m: float = 50.0,
):
    response = client.put(
        f"/v1/places/{place_id}",
        json={
            "kind": kind,
            "name": place_id,
            "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "radius_m": radius_m,
            "licensed": kind == "plant",
        },
        headers=headers,
    )
    assert response.status_code in (200, 201), response.text
    return response


def offset(lat: float, lon: float, north_m: float = 0.0, east_m: float = 0.0):
    """A point shifted by metres north and east (small distances)."""
    dlat = north_m / 111_195.0
    dlon = east_m / (111_195.0 * math.cos(math.radians(lat)))
    return lat + dlat, lon + dlon


def stored_positions(client, device_id: str = DEVICE) -> list[Position]:
    with client.app.state.sessions() as session:
        return list(
            session.scalars(
                select(Position)
                .where(Position.device_id == device_id)
                .order_by(Position.fix_time)
            )
        )


def position_count(client) -> int:
    with client.app.state.sessions() as session:
        return session.scalar(select(func.count()).select_from(Position))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def fix(seconds: float, lat: float, lon: float, **extra) -> dict:
    """One fix of a JSON batch, `seconds` after T0."""
    return {
        "time": at(seconds).isoformat().replace("+00:00", "Z"),
        "lat": lat,
        "lon": lon,
        **extra,
    }


def post_batch(client, token: str, fixes: list[dict], device_id: str = DEVICE):
    return client.post(
        f"/v1/devices/{device_id}/positions",
        json={"positions": fixes},
        headers={"Authorization": f"Bearer {token}"},
    )


def stay(start_s: float, duration_s: float, lat: float, lon: float, step_s=10.0):
    """Fixes of a device standing still (with a metre of jitter)."""
    fixes, t, flip = [], start_s, 1.0
    while t <= start_s + duration_s:
        fixes.append(fix(t, *offset(lat, lon, north_m=flip)))
        t += step_s
        flip = -flip
    return fixes


def drive(
    start_s: float, origin, north_m: float, east_m: float, speed_mps=10.0, step_s=5.0
):
    """Fixes of a device driving in a straight line at a steady speed."""
    length = math.hypot(north_m, east_m)
    seconds = length / speed_mps
    fixes, t = [], 0.0
    while t <= seconds:
        share = t / seconds if seconds else 1.0
        fixes.append(
            fix(start_s + t, *offset(*origin, north_m * share, east_m * share))
        )
        t += step_s
    return fixes
