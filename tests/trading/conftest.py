"""Fixtures for trading: the real ledger app holding real sealed batches, a
tracking stand-in that lists alerts, and the trading app wired to both."""

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from services.ledger.api import create_app as create_ledger_app
from services.ledger.config import LedgerConfig
from services.trading.api import create_app
from services.trading.config import TradingConfig
from shared.crypto import generate_key, key_id, public_key_b64, sign_statement
from shared.timeutil import iso_utc, utcnow

ORIGIN = "test.salvage/ledger"
_keys = itertools.count()


@dataclass
class Party:
    key: Ed25519PrivateKey
    party_kind: str
    party_id: str
    kinds: list[str]


@dataclass
class SealedLog:
    """Writes signed custody chains and trip summaries to the real ledger."""

    client: TestClient
    # Headers of whoever may vouch for any key (an administrator).
    registrar: dict[str, str] = field(default_factory=dict)
    parties: dict[str, Party] = field(default_factory=dict)

    def register(self, party: Party) -> None:
        response = self.client.put(
            f"/v1/keys/{key_id(party.key)}",
            json={
                "public_key": public_key_b64(party.key),
                "party_kind": party.party_kind,
                "party_id": party.party_id,
                "kinds": party.kinds,
            },
            headers=self.registrar,
        )
        assert response.status_code in (200, 201), response.text
        self.parties[party.party_kind] = party

    def post(self, statement: dict[str, Any], *signers: str) -> dict[str, Any]:
        entry = {
            "statement": statement,
            "signatures": [
                sign_statement(self.parties[name].key, statement) for name in signers
            ],
        }
        response = self.client.post(
            "/v1/entries", json=entry, headers={"Idempotency-Key": f"t-{next(_keys)}"}
        )
        assert response.status_code == 201, response.text
        return response.json()

    def write_batch(
        self,
        batch_id: str,
        *,
        net_kg: int,
        outputs: dict[str, int],
        distance_m: int,
        coverage_permille: int = 1000,
        alert_ids: tuple[str, ...] = (),
        with_processing: bool = True,
        at: str | None = None,
    ) -> None:
        """Pickup, delivery, processing and trip: the ledger seals by itself."""
        at = at or iso_utc(utcnow())
        prev = None
        pickup = {
            "request_id": f"req-{batch_id}",
            "community_id": "community-1",
            "property_manager_id": "pm-1",
            "hauler_id": "hauler-1",
            "vehicle_id": "truck-1",
            "device_id": "dev-1",
            "declared_volume_l": 3000,
            "estimated_mass_kg": net_kg,
            "mass_basis": "estimated",
            "materials": ["17 09 04"],
            "photo_sha256": None,
        }
        delivery = {
            "plant_id": "plant-1",
            "ticket_no": f"T-{batch_id}",
            "vehicle_id": "truck-1",
            "gross_kg": 12000 + net_kg,
            "tare_kg": 12000,
            "net_kg": net_kg,
            "mass_basis": "measured",
        }
        processing = {
            "plant_id": "plant-1",
            "input_net_kg": net_kg,
            "outputs": [
                {"material": material, "ewc": "17 09 04", "kg": kg}
                for material, kg in outputs.items()
            ],
        }
        steps = [
            ("custody.pickup", pickup, ("device", "property_manager")),
            ("custody.delivery", delivery, ("plant",)),
        ]
        if with_processing:
            steps.append(("custody.processing", processing, ("plant",)))
        for kind, body, signers in steps:
            statement = {
                "v": 1,
                "kind": kind,
                "batch_id": batch_id,
                "prev": prev,
                "at": at,
                "body": body,
            }
            prev = self.post(statement, *signers)["leaf_hash"]
        trip = {
            "device_id": "dev-1",
            "vehicle_id": "truck-1",
            "start": at,
            "end": at,
            "distance_m": distance_m,
            "duration_s": 3600,
            "point_count": 120,
            "coverage_permille": coverage_permille,
            "points_sha256": "0" * 64,
            "stops": [],
            "alert_ids": list(alert_ids),
        }
        statement = {
            "v": 1,
            "kind": "trip.summary",
            "batch_id": batch_id,
            "at": at,
            "body": trip,
        }
        self.post(statement, "service")

    def entries_of_kind(self, kind: str) -> list[dict[str, Any]]:
        size = self.client.get("/v1/checkpoint").text.split("\n")[1]
        found = []
        for index in range(int(size)):
            entry = self.client.get(f"/v1/entries/{index}").json()["entry"]
            if entry and entry["statement"]["kind"] == kind:
                found.append(entry)
        return found


@dataclass
class Alerts:
    """Tracking's GET /v1/alerts?batch_id=, answered from a dict, at most
    `page_size` alerts a page whatever the limit asked for (as tracking may)."""

    by_batch: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    page_size: int = 1000
    requests: list[dict[str, str]] = field(default_factory=list)

    def raise_alert(
        self,
        batch_id: str,
        alert_id: str,
        status: str = "open",
        kind: str = "dumping_suspected",
    ) -> None:
        self.by_batch.setdefault(batch_id, []).append(
            {"id": alert_id, "kind": kind, "status": status}
        )

    def resolve(self, alert_id: str) -> None:
        for alerts in self.by_batch.values():
            for alert in alerts:
                if alert["id"] == alert_id:
                    alert["status"] = "resolved"

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/v1/alerts":
            return httpx.Response(404, json={"status": 404})
        params = dict(request.url.params)
        self.requests.append(params)
        listed = self.by_batch.get(params.get("batch_id", ""), [])
        start = int(params.get("cursor", "0"))
        end = start + min(self.page_size, int(params.get("limit", "500")))
        following = str(end) if end < len(listed) else None
        return httpx.Response(
            200, json={"alerts": listed[start:end], "next_cursor": following}
        )


@pytest.fixture
def ledger(databases, settings, auth_header) -> Iterator[TestClient]:
    ledger_settings = settings.model_copy(
        update={"ledger_database_url": databases.url("ledger")}
    )
    app = create_ledger_app(ledger_settings, config=LedgerConfig(origin=ORIGIN))
    with TestClient(app, base_url="http://ledger") as client:
        client.headers.update(auth_header("service", sub="service:trading"))
        yield client


@pytest.fixture
def sealed_log(ledger, auth_header) -> SealedLog:
    log = SealedLog(ledger, registrar=auth_header("admin", sub="admin:test"))
    log.register(Party(generate_key(), "device", "dev-1", ["custody.pickup"]))
    log.register(Party(generate_key(), "property_manager", "pm-1", ["custody.pickup"]))
    log.register(
        Party(
            generate_key(),
            "plant",
            "plant-1",
            ["custody.delivery", "custody.processing"],
        )
    )
    log.register(Party(generate_key(), "service", "tracking", ["trip.summary"]))
    return log


@pytest.fixture
def alerts() -> Alerts:
    return Alerts()


@pytest.fixture
def trading_config() -> TradingConfig:
    return TradingConfig(
        ledger_key=None,
        project="TEST",
        factor_version="v1",
        truck_class="diesel_truck_2t",
        coverage_threshold_permille=900,
        low_coverage_discount_permille=100,
        estimated_mass_discount_permille=200,
        buffer_permille=100,
    )


@pytest.fixture
def trading_url(databases) -> str:
    return databases.url("trading")


@pytest.fixture
def make_trading(
    settings, trading_url, ledger, alerts, trading_config
) -> Callable[..., TestClient]:
    """Builds the trading app; use it in a with block."""

    def build(ledger_client: httpx.Client | None = None, **config_changes: Any):
        config = trading_config.model_copy(update=config_changes)
        trading_settings = settings.model_copy(
            update={"trading_database_url": trading_url, "outbox_poll_seconds": 60}
        )
        tracking = httpx.Client(
            transport=httpx.MockTransport(alerts.handler), base_url="http://tracking"
        )
        trading_ledger = ledger_client or TestClient(
            ledger.app, base_url="http://ledger", headers=dict(ledger.headers)
        )
        app = create_app(
            trading_settings,
            clients={"ledger": trading_ledger, "tracking": tracking},
            config=config,
        )
        return TestClient(app)

    return build


@pytest.fixture
def trading(make_trading) -> Iterator[TestClient]:
    with make_trading() as client:
        yield client


@dataclass
class Desk:
    """The people around trading: an admin, the operator's service, a verifier."""

    client: TestClient
    header: Callable[..., dict[str, str]]

    def account(self, org_id: str, name: str = "Main") -> str:
        response = self.client.post(
            "/v1/accounts",
            json={"org_id": org_id, "name": name},
            headers=self.header("admin", sub="admin-1"),
        )
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def report(
        self, account_id: str, period: tuple[str, str] | None = None
    ) -> httpx.Response:
        today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
        start, end = period or (iso_utc(today), iso_utc(today + timedelta(days=1)))
        return self.client.post(
            "/v1/reports",
            json={"period_start": start, "period_end": end, "account_id": account_id},
            headers=self.header("service", sub="service:operator"),
        )

    def decide(self, report_id: str, decision: str = "approve") -> httpx.Response:
        return self.client.post(
            f"/v1/reports/{report_id}/decision",
            json={"decision": decision, "comments": "Checked seals and factors."},
            headers=self.header("verifier", sub="verifier-1"),
        )

    def issue(self, account_id: str) -> dict[str, Any]:
        report = self.report(account_id)
        assert report.status_code == 201, report.text
        decided = self.decide(report.json()["id"])
        assert decided.status_code == 200, decided.text
        return decided.json()


@pytest.fixture
def desk(trading, auth_header) -> Desk:
    return Desk(trading, auth_header)


@pytest.fixture
def desk_for(auth_header) -> Callable[[TestClient], Desk]:
    return lambda client: Desk(client, auth_header)
