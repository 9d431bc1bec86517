"""A message the ledger rejects holds back the batch's later entries, and an
admin sees it and retries it once the cause is fixed."""

import time
from dataclasses import dataclass, field

import httpx
import pytest

from .conftest import Peers, drain


@dataclass
class RejectingPeers(Peers):
    """Peers that answer 422 on the paths listed in `rejecting`."""

    rejecting: set[str] = field(default_factory=set)

    def _on(self, request: httpx.Request) -> httpx.Response:
        if request.url.path in self.rejecting:
            return httpx.Response(422, json={"detail": "signer key unknown"})
        return super()._on(request)


@pytest.fixture
def peers() -> RejectingPeers:
    return RejectingPeers()


def failed(world, who: str = "admin") -> list[dict]:
    response = world.get("/v1/outbox/failed", who)
    assert response.status_code == 200, response.text
    return response.json()


def wait_until(app, condition) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the relay did not get there"
        app.state.relay.wake()
        time.sleep(0.02)


def entry_keys(peers) -> list[str]:
    return [m["key"] for m in peers.received if m["path"] == "/v1/entries"]


def test_a_rejected_entry_holds_back_later_ones_until_an_admin_retries(
    app, world, peers
):
    drain(app)
    batch_id, request_id = world.dispatched_batch()
    peers.rejecting = {"/v1/entries"}
    pickup = world.pickup(batch_id, request_id).json()
    wait_until(app, lambda: failed(world))
    delivery = world.deliver(batch_id, gross=11_300, tare=11_000).json()
    trip = f"/v1/batches/{batch_id}/trip"
    wait_until(app, lambda: trip in [m["path"] for m in peers.received])
    [parked] = failed(world)

    assert parked["key"] == f"custody:{pickup['event_id']}"
    assert (parked["target"], parked["ordering_key"]) == ("ledger", "ledger")
    assert parked["last_error"].startswith("HTTP 422")
    assert entry_keys(peers) == []
    assert app.state.relay.pending_count() == 1

    peers.rejecting = set()
    retried = world.post(f"/v1/outbox/{parked['id']}/retry", {})
    drain(app)

    assert retried.status_code == 200, retried.text
    assert retried.json()["failed_at"] is None
    assert entry_keys(peers) == [
        f"custody:{pickup['event_id']}",
        f"custody:{delivery['event_id']}",
    ]
    assert failed(world) == []


def test_failed_messages_are_for_admins_only(world):
    for who in ("inspector", "hauler", "plant", "resident"):
        assert world.get("/v1/outbox/failed", who).status_code == 403
        assert world.post("/v1/outbox/1/retry", {}, who).status_code == 403


def test_only_a_failed_message_can_be_retried(app, world):
    drain(app)

    delivered = world.post("/v1/outbox/1/retry", {})
    missing = world.post("/v1/outbox/999999/retry", {})

    assert delivered.status_code == 409
    assert delivered.json()["type"] == "urn:salvage:problem:outbox-not-failed"
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
