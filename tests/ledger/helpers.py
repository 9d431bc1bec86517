"""Test helpers for the ledger: parties with keys, signed entries, and a
builder for one batch's custody chain."""

import itertools
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from shared.canonical import b64, canonical_json
from shared.crypto import generate_key, key_id, public_key_b64, sign_statement
from shared.merkle import leaf_hash

ORIGIN = "test.salvage/ledger"
AT = "2026-12-03T08:00:00Z"


@dataclass
class Party:
    key: Ed25519PrivateKey
    party_kind: str
    party_id: str
    kinds: list[str]

    @property
    def key_id(self) -> str:
        return key_id(self.key)


def register(
    client: TestClient, party: Party, headers: dict[str, str] | None = None
) -> None:
    """Registers a party's key; the client's own token unless headers say
    who vouches for it."""
    response = client.put(
        f"/v1/keys/{party.key_id}",
        json={
            "public_key": public_key_b64(party.key),
            "party_kind": party.party_kind,
            "party_id": party.party_id,
            "kinds": party.kinds,
        },
        headers=headers,
    )
    assert response.status_code in (200, 201), response.text


@dataclass
class Parties:
    device: Party
    manager: Party
    plant: Party
    tracking: Party

    def all(self) -> list[Party]:
        return [self.device, self.manager, self.plant, self.tracking]


def make_parties() -> Parties:
    return Parties(
        device=Party(generate_key(), "device", "dev-1", ["custody.pickup"]),
        manager=Party(generate_key(), "property_manager", "pm-1", ["custody.pickup"]),
        plant=Party(
            generate_key(),
            "plant",
            "plant-1",
            ["custody.delivery", "custody.processing"],
        ),
        tracking=Party(generate_key(), "service", "tracking", ["trip.summary"]),
    )


def signed(statement: dict[str, Any], *signers: Party) -> dict[str, Any]:
    return {
        "statement": statement,
        "signatures": [sign_statement(party.key, statement) for party in signers],
    }


def entry_hash(entry: dict[str, Any]) -> str:
    return b64(leaf_hash(canonical_json(entry)))


_keys = itertools.count()


@dataclass
class Chain:
    """Builds and posts one batch's entries, tracking the custody link."""

    client: TestClient
    parties: Parties
    batch_id: str
    prev: str | None = None
    responses: list = field(default_factory=list)

    def statement(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        statement = {
            "v": 1,
            "kind": kind,
            "batch_id": self.batch_id,
            "at": AT,
            "body": body,
        }
        if kind.startswith("custody."):
            statement["prev"] = self.prev
        return statement

    def post(self, entry: dict[str, Any], key: str | None = None):
        key = key or f"test-{next(_keys)}"
        response = self.client.post(
            "/v1/entries", json=entry, headers={"Idempotency-Key": key}
        )
        self.responses.append(response)
        if response.status_code == 201 and entry["statement"]["kind"].startswith(
            "custody."
        ):
            self.prev = response.json()["leaf_hash"]
        return response

    def pickup_entry(self, **changes: Any) -> dict[str, Any]:
        body = {
            "request_id": f"req-{self.batch_id}",
            "community_id": "community-1",
            "property_manager_id": "pm-1",
            "hauler_id": "hauler-1",
            "vehicle_id": "truck-1",
            "device_id": "dev-1",
            "declared_volume_l": 3000,
            "estimated_mass_kg": 1800,
            "mass_basis": "estimated",
            "materials": ["17 01 07"],
            "photo_sha256": None,
            **changes,
        }
        return signed(
            self.statement("custody.pickup", body),
            self.parties.device,
            self.parties.manager,
        )

    def delivery_entry(self, **changes: Any) -> dict[str, Any]:
        body = {
            "plant_id": "plant-1",
            "ticket_no": "T-1",
            "vehicle_id": "truck-1",
            "gross_kg": 14200,
            "tare_kg": 12400,
            "net_kg": 1800,
            "mass_basis": "measured",
            **changes,
        }
        return signed(self.statement("custody.delivery", body), self.parties.plant)

    def processing_entry(self, outputs: list | None = None, **changes: Any) -> dict:
        body = {
            "plant_id": "plant-1",
            "input_net_kg": 1800,
            "outputs": outputs
            or [
                {"material": "concrete_mortar", "ewc": "17 01 01", "kg": 1100},
                {"material": "wood", "ewc": "17 02 01", "kg": 300},
                {"material": "residue_landfill", "ewc": "19 12 12", "kg": 350},
            ],
            **changes,
        }
        return signed(self.statement("custody.processing", body), self.parties.plant)

    def trip_entry(self) -> dict[str, Any]:
        body = {
            "device_id": "dev-1",
            "vehicle_id": "truck-1",
            "start": "2026-12-03T07:45:00Z",
            "end": "2026-12-03T09:00:00Z",
            "distance_m": 23456,
            "duration_s": 4500,
            "point_count": 2144,
            "coverage_permille": 987,
            "points_sha256": "00" * 32,
            "stops": [],
            "alert_ids": [],
        }
        return signed(self.statement("trip.summary", body), self.parties.tracking)

    def complete(self, outputs: list | None = None) -> None:
        steps = (
            self.pickup_entry,
            lambda: self.pickup_entry(request_id=f"req2-{self.batch_id}"),
            self.delivery_entry,
            lambda: self.processing_entry(outputs),
            self.trip_entry,
        )
        for build in steps:
            response = self.post(build())
            assert response.status_code == 201, response.text
