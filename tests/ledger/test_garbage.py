"""Garbage in: every bad request gets a problem+json 4xx, never a 500, and
leaves the log exactly as it was."""

import pytest

from tests.ledger.helpers import signed


def log_state(client) -> tuple[str, int]:
    checkpoint = client.get("/v1/checkpoint").text
    entries = client.get("/v1/entries", params={"start": 0, "end": 0})
    return checkpoint, entries.status_code


def assert_problem(response, status: int | None = None) -> dict:
    assert 400 <= response.status_code < 500, response.text
    if status is not None:
        assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()


@pytest.fixture
def seeded(chain_for):
    chain = chain_for("B1")
    chain.post(chain.pickup_entry())
    return chain


RAW_BODIES = [
    b"{not json",
    b"",
    b"[]",
    b'"a string"',
    b'{"statement": {}, "signatures": "nope"}',
    b'{"statement": [], "signatures": []}',
    b'{"statement": {"v": 1}, "signatures": [], "extra": 1}',
    b'{"statement": {"v": NaN}, "signatures": [{"key_id": "a", "signature": "b"}]}',
    b"\xff\xfe\x00",
]


@pytest.mark.parametrize("raw", RAW_BODIES)
def test_malformed_bodies_are_refused(client, seeded, raw):
    before = log_state(client)
    response = client.post(
        "/v1/entries",
        content=raw,
        headers={"Idempotency-Key": "g", "Content-Type": "application/json"},
    )
    assert_problem(response)
    assert log_state(client) == before


def _mutations(chain):
    def with_body(**changes):
        entry = chain.delivery_entry(**changes)
        return entry

    def statement_change(key, value):
        entry = chain.delivery_entry()
        entry["statement"][key] = value
        return signed(entry["statement"], chain.parties.plant)

    def unsigned_body(**changes):
        entry = chain.delivery_entry()
        entry["statement"]["body"].update(changes)
        return entry

    def bad_signature(value):
        entry = chain.delivery_entry()
        entry["signatures"][0]["signature"] = value
        return entry

    return [
        ("huge integer", unsigned_body(gross_kg=10**30, net_kg=10**30)),
        ("float mass", with_body(gross_kg=14200.5)),
        ("negative mass", with_body(gross_kg=-1, tare_kg=0, net_kg=-1)),
        ("boolean mass", with_body(tare_kg=True)),
        ("string mass", with_body(gross_kg="14200")),
        ("wrong version", statement_change("v", 2)),
        ("unknown kind", statement_change("kind", "custody.teleport")),
        ("naive time", statement_change("at", "2026-12-03T08:00:00")),
        ("no batch", statement_change("batch_id", None)),
        ("batch too long", statement_change("batch_id", "b" * 500)),
        ("prev not base64", statement_change("prev", "!!!")),
        ("body a list", statement_change("body", [])),
        ("signature not base64", bad_signature("%%%")),
        ("signature short", bad_signature("AAAA")),
    ]


def test_wrong_values_in_entries_are_refused_by_rule(client, seeded):
    before = log_state(client)
    for name, entry in _mutations(seeded):
        response = client.post(
            "/v1/entries", json=entry, headers={"Idempotency-Key": f"g-{name}"}
        )
        problem = assert_problem(response)
        assert problem["type"].startswith("urn:salvage:problem:"), name
        assert problem["detail"], name
    assert log_state(client) == before


def test_an_oversized_entry_is_refused(client, seeded):
    entry = seeded.delivery_entry(ticket_no="x" * 70_000)
    response = client.post(
        "/v1/entries", json=entry, headers={"Idempotency-Key": "big"}
    )
    assert assert_problem(response, 413)["type"].endswith("entry-too-large")


BAD_QUERIES = [
    ("/v1/proof/inclusion", {"index": -1, "size": 1}),
    ("/v1/proof/inclusion", {"index": "x", "size": 1}),
    ("/v1/proof/inclusion", {"index": 0, "size": 10**40}),
    ("/v1/proof/inclusion", {"index": 5, "size": 1}),
    ("/v1/proof/inclusion", {"index": 0, "size": 2}),
    ("/v1/proof/inclusion", {"index": 0, "size": 0}),
    ("/v1/proof/consistency", {"old": 3, "size": 1}),
    ("/v1/proof/consistency", {"old": -2, "size": 1}),
    ("/v1/proof/consistency", {"old": "1e3", "size": 1}),
    ("/v1/proof/consistency", {"old": 1, "size": 99}),
    ("/v1/entries", {"start": 0, "end": 10}),
    ("/v1/entries", {"start": 5, "end": 1}),
    ("/v1/entries", {"start": 0, "end": 100_000}),
    ("/v1/entries", {"start": "a", "end": 1}),
    ("/v1/entries/99", {}),
    ("/v1/entries/-1", {}),
    ("/v1/entries/99999999999999999999999", {}),
    ("/v1/seals", {"after": "x"}),
    ("/v1/seals", {"limit": 0}),
    ("/v1/checkpoints", {"limit": 10**9}),
    ("/v1/batches/nope", {}),
    ("/v1/batches/nope/seal", {}),
    ("/v1/batches/nope/bundle", {}),
    ("/v1/keys/not-a-key-id", {}),
]


@pytest.mark.parametrize(("path", "params"), BAD_QUERIES)
def test_bad_query_values_get_a_4xx_problem(client, seeded, path, params):
    response = client.get(path, params=params)
    assert_problem(response)


def test_the_proof_paths_answer_for_a_checkpointed_size(client, seeded):
    proof = client.get("/v1/proof/inclusion", params={"index": 0, "size": 1})
    assert proof.json() == {"index": 0, "size": 1, "hashes": []}
    latest = client.get("/v1/proof/inclusion", params={"index": 0})
    assert latest.json() == proof.json()
    empty = client.get("/v1/proof/consistency", params={"old": 0, "size": 1})
    assert empty.json() == {"old": 0, "size": 1, "hashes": []}


def test_bad_key_registrations_are_refused(client):
    key_id = "a" * 32
    for body in (
        {"public_key": "!!", "party_kind": "plant", "party_id": "p", "kinds": []},
        {"public_key": "AAAA", "party_kind": "plant", "party_id": "p", "kinds": []},
        {"public_key": "A" * 43 + "=", "party_kind": "alien", "party_id": "p"},
        {"party_kind": "plant"},
    ):
        assert_problem(client.put(f"/v1/keys/{key_id}", json=body))
    assert_problem(client.post(f"/v1/keys/{key_id}/revoke", json={"reason": "x"}), 404)


def test_a_nul_character_is_refused_before_it_reaches_the_database(client, seeded):
    before = log_state(client)
    in_batch = seeded.delivery_entry()
    in_batch["statement"]["batch_id"] = "B\u00001"
    in_key = seeded.delivery_entry()
    in_key["signatures"][0]["key_id"] = "a\u0000"
    for name, entry in (("batch", in_batch), ("key", in_key)):
        response = client.post(
            "/v1/entries", json=entry, headers={"Idempotency-Key": f"nul-{name}"}
        )
        assert assert_problem(response, 422)["type"].endswith("nul-character")
    assert assert_problem(client.get("/v1/batches/B%001"), 422)
    assert log_state(client) == before
    assert (
        client.post(
            "/v1/entries",
            json=seeded.delivery_entry(),
            headers={"Idempotency-Key": "ok"},
        ).status_code
        == 201
    )
