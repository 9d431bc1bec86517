"""Appending signed statements: what the ledger accepts, what it refuses
and why, and that a refusal or a replay changes nothing stored."""

import pytest

from shared.crypto import generate_key, public_key_b64, sign_statement
from tests.ledger.helpers import Party, register, signed


def size_of(client) -> int:
    return int(client.get("/v1/checkpoint").text.split("\n")[1])


def assert_refused(response, status: int, slug: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"] == f"urn:salvage:problem:{slug}"
    return problem


def test_a_pickup_signed_by_device_and_manager_is_appended_at_index_zero(chain_for):
    chain = chain_for("B1")
    response = chain.post(chain.pickup_entry())

    assert response.status_code == 201
    body = response.json()
    assert body["index"] == 0 and body["size"] == 1
    stored = chain.client.get("/v1/entries/0").json()
    assert stored["leaf_hash"] == body["leaf_hash"]
    assert stored["entry"]["statement"]["kind"] == "custody.pickup"


def test_a_replay_with_the_same_key_returns_the_same_index(chain_for):
    chain = chain_for("B1")
    entry = chain.pickup_entry()
    first = chain.post(entry, key="k-1")
    chain.post(chain.delivery_entry(), key="k-2")
    again = chain.post(entry, key="k-1")

    assert again.status_code == 200
    assert again.json() == first.json()
    assert size_of(chain.client) == 2


def test_the_same_key_with_a_different_entry_is_a_conflict(chain_for):
    chain = chain_for("B1")
    chain.post(chain.pickup_entry(), key="k-1")
    response = chain.post(chain.pickup_entry(request_id="other"), key="k-1")

    assert_refused(response, 409, "idempotency-key-reused")
    assert size_of(chain.client) == 1


def test_an_append_needs_an_idempotency_key(client, chain_for):
    chain = chain_for("B1")
    response = client.post("/v1/entries", json=chain.pickup_entry())
    assert_refused(response, 422, "idempotency-key-missing")
    reserved = client.post(
        "/v1/entries",
        json=chain.pickup_entry(),
        headers={"Idempotency-Key": "ledger:seal:B1"},
    )
    assert_refused(reserved, 422, "idempotency-key-reserved")
    assert size_of(client) == 0


def test_an_append_needs_a_service_token(client, chain_for, auth_header):
    entry = chain_for("B1").pickup_entry()
    headers = {**auth_header("resident"), "Idempotency-Key": "x"}
    assert client.post("/v1/entries", json=entry, headers=headers).status_code == 403
    client.headers.pop("Authorization")
    response = client.post("/v1/entries", json=entry, headers={"Idempotency-Key": "x"})
    assert response.status_code == 401
    assert size_of(client) == 0


def test_a_tampered_statement_fails_its_signature(chain_for):
    chain = chain_for("B1")
    entry = chain.pickup_entry()
    entry["statement"]["body"]["estimated_mass_kg"] = 9999
    problem = assert_refused(chain.post(entry), 422, "signature-invalid")
    assert chain.parties.device.key_id in problem["detail"]


def test_an_unknown_key_is_refused(chain_for):
    chain = chain_for("B1")
    stranger = Party(generate_key(), "device", "dev-1", ["custody.pickup"])
    statement = chain.pickup_entry()["statement"]
    entry = signed(statement, stranger, chain.parties.manager)
    problem = assert_refused(chain.post(entry), 422, "unknown-key")
    assert stranger.key_id in problem["detail"]


def test_a_revoked_key_signs_nothing_more(client, chain_for):
    chain = chain_for("B1")
    assert chain.post(chain.pickup_entry()).status_code == 201
    revoke = client.post(
        f"/v1/keys/{chain.parties.device.key_id}/revoke", json={"reason": "lost"}
    )
    assert revoke.status_code == 200 and revoke.json()["revoked_at"]

    assert_refused(chain.post(chain.pickup_entry(request_id="r2")), 422, "key-revoked")
    assert size_of(client) == 1


def test_a_key_may_sign_only_the_kinds_it_was_registered_for(chain_for):
    chain = chain_for("B1")
    chain.post(chain.pickup_entry())
    statement = chain.delivery_entry()["statement"]
    entry = signed(statement, chain.parties.device)
    assert_refused(chain.post(entry), 422, "kind-not-allowed")


def test_a_pickup_needs_both_the_device_and_the_property_manager(chain_for):
    chain = chain_for("B1")
    statement = chain.pickup_entry()["statement"]
    problem = assert_refused(
        chain.post(signed(statement, chain.parties.device)), 422, "signer-missing"
    )
    assert "property_manager" in problem["detail"]


def test_the_signing_party_must_be_the_one_the_body_names(client, chain_for):
    chain = chain_for("B1")
    other_device = Party(generate_key(), "device", "dev-2", ["custody.pickup"])
    register(client, other_device)
    statement = chain.pickup_entry()["statement"]
    entry = signed(statement, other_device, chain.parties.manager)
    problem = assert_refused(chain.post(entry), 422, "party-mismatch")
    assert "dev-2" in problem["detail"] and "dev-1" in problem["detail"]


def test_prev_must_be_the_previous_custody_entrys_leaf_hash(chain_for):
    chain = chain_for("B1")
    chain.post(chain.pickup_entry())
    chain.prev = None
    assert_refused(chain.post(chain.delivery_entry()), 422, "prev-mismatch")
    chain.prev = "A" * 43 + "="
    assert_refused(chain.post(chain.delivery_entry()), 422, "prev-mismatch")


def test_a_first_custody_entry_has_a_null_prev(chain_for):
    chain = chain_for("B1")
    chain.prev = "A" * 43 + "="
    assert_refused(chain.post(chain.pickup_entry()), 422, "prev-mismatch")


@pytest.mark.parametrize(
    ("steps", "refused"),
    [
        (["delivery"], "delivery"),
        (["pickup", "processing"], "processing"),
        (["pickup", "delivery", "pickup"], "pickup"),
        (["pickup", "delivery", "delivery"], "delivery"),
    ],
)
def test_custody_comes_in_order(chain_for, steps, refused):
    chain = chain_for("B1")
    for step in steps[:-1]:
        assert chain.post(getattr(chain, f"{step}_entry")()).status_code == 201
    response = chain.post(getattr(chain, f"{refused}_entry")(ticket_no="again"))
    assert_refused(response, 422, "order-violation")


def test_a_delivery_net_mass_is_gross_minus_tare(chain_for):
    chain = chain_for("B1")
    chain.post(chain.pickup_entry())
    problem = assert_refused(
        chain.post(chain.delivery_entry(net_kg=1801)), 422, "net-mass-mismatch"
    )
    assert "1801" in problem["detail"]


def test_only_the_ledger_appends_seals(client, chain_for, parties):
    chain = chain_for("B1")
    statement = chain.statement("batch.seal", {"chain": []})
    entry = {
        "statement": statement,
        "signatures": [sign_statement(parties.tracking.key, statement)],
    }
    assert chain.post(entry).status_code == 422
    assert size_of(client) == 0


def test_registering_a_key_again_is_a_no_op_and_different_content_a_conflict(
    client,
):
    party = Party(generate_key(), "plant", "plant-9", ["custody.delivery"])
    register(client, party)
    body = {
        "public_key": client.get(f"/v1/keys/{party.key_id}").json()["public_key"],
        "party_kind": "plant",
        "party_id": "plant-9",
        "kinds": ["custody.delivery"],
    }
    assert client.put(f"/v1/keys/{party.key_id}", json=body).status_code == 200
    changed = {**body, "party_id": "plant-10"}
    assert_refused(
        client.put(f"/v1/keys/{party.key_id}", json=changed), 409, "key-conflict"
    )
    wrong_id = client.put("/v1/keys/" + "0" * 32, json=body)
    assert_refused(wrong_id, 422, "key-id-mismatch")


def test_the_ledger_registers_its_own_key_for_seals(client):
    key_text = client.get("/v1/key").text.strip()
    name, _, _ = key_text.split("+", 2)
    assert name == "test.salvage/ledger"
    checkpoints = client.get("/v1/checkpoints").json()["checkpoints"]
    assert [c["size"] for c in checkpoints] == [0]


def test_only_an_administrator_revokes_a_services_key(client, parties, auth_header):
    tracking = parties.tracking.key_id
    by_service = client.post(f"/v1/keys/{tracking}/revoke", json={"reason": "x"})
    assert_refused(by_service, 403, "service-key-admin-only")
    assert client.get(f"/v1/keys/{tracking}").json()["revoked_at"] is None

    by_admin = client.post(
        f"/v1/keys/{tracking}/revoke",
        json={"reason": "key leaked"},
        headers=auth_header("admin", sub="admin:ops"),
    )
    assert by_admin.status_code == 200, by_admin.text
    assert by_admin.json()["revoke_reason"] == "key leaked"


@pytest.mark.parametrize("reason", ["lost\n\x1b[31mFORGED", "a\x00b", "\x7f"])
def test_a_revocation_reason_with_control_characters_is_refused(
    client, parties, reason
):
    device = parties.device.key_id
    response = client.post(f"/v1/keys/{device}/revoke", json={"reason": reason})
    assert response.status_code == 422, response.text
    assert client.get(f"/v1/keys/{device}").json()["revoked_at"] is None


def test_a_batch_appends_in_one_checkpoint_and_answers_each_item(client, chain_for):
    first, second, third = chain_for("B1"), chain_for("B2"), chain_for("B3")
    pickup = first.pickup_entry()
    earlier = first.post(pickup, key="k-1").json()
    forged = third.pickup_entry()
    forged["signatures"] = [sign_statement(generate_key(), forged["statement"])]
    checkpoints_before = len(client.get("/v1/checkpoints").json()["checkpoints"])

    response = client.post(
        "/v1/entries/batch",
        json={
            "items": [
                {"key": "k-1", "entry": pickup},
                {"key": "k-2", "entry": second.pickup_entry()},
                {"key": "k-3", "entry": forged},
                {"key": "k-4", "entry": third.pickup_entry(request_id="r-4")},
            ]
        },
    )

    assert response.status_code == 200, response.text
    replay, new, refused, last = response.json()["results"]
    assert (replay["status"], replay["index"]) == (200, earlier["index"])
    assert (new["status"], new["index"], new["size"]) == (201, 1, 3)
    assert refused["status"] == 422 and refused["index"] is None
    assert refused["problem"]["type"] == "urn:salvage:problem:unknown-key"
    assert (last["status"], last["index"]) == (201, 2)
    assert size_of(client) == 3
    checkpoints = client.get("/v1/checkpoints").json()["checkpoints"]
    assert len(checkpoints) == checkpoints_before + 1


@pytest.mark.parametrize(
    ("keys", "slug"),
    [
        (["same", "same"], "batch-keys-repeated"),
        (["ledger:seal:B1"], "idempotency-key-reserved"),
        (["bad\nkey"], "idempotency-key-invalid"),
    ],
)
def test_a_bad_batch_is_refused_whole_and_stores_nothing(client, chain_for, keys, slug):
    chain = chain_for("B1")
    items = [{"key": key, "entry": chain.pickup_entry()} for key in keys]
    before = size_of(client)

    response = client.post("/v1/entries/batch", json={"items": items})

    assert_refused(response, 422, slug)
    assert size_of(client) == before


@pytest.mark.parametrize(
    ("caller", "party_kind", "party_id", "allowed"),
    [
        ("service:intake", "plant", "plant-9", True),
        ("service:trading", "plant", "plant-9", False),
        ("service:tracking", "service", "tracking", True),
        ("service:tracking", "service", "trading", False),
        ("service:intake", "service", "trading", False),
    ],
)
def test_only_the_registry_vouches_for_parties_and_a_service_for_itself(
    client, auth_header, caller, party_kind, party_id, allowed
):
    key = generate_key()
    party = Party(key, party_kind, party_id, ["custody.processing"])
    body = {
        "public_key": public_key_b64(key),
        "party_kind": party_kind,
        "party_id": party_id,
        "kinds": party.kinds,
    }
    response = client.put(
        f"/v1/keys/{party.key_id}",
        json=body,
        headers=auth_header("service", sub=caller),
    )

    if allowed:
        assert response.status_code == 201, response.text
    else:
        assert_refused(response, 403, "key-authority")
        assert client.get(f"/v1/keys/{party.key_id}").status_code == 404


def test_a_party_key_is_revoked_only_through_the_registry(client, parties, auth_header):
    device = parties.device.key_id
    by_trading = client.post(
        f"/v1/keys/{device}/revoke",
        json={"reason": "x"},
        headers=auth_header("service", sub="service:trading"),
    )
    assert_refused(by_trading, 403, "key-authority")
    assert client.get(f"/v1/keys/{device}").json()["revoked_at"] is None
