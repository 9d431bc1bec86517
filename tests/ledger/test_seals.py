"""Batch seals: appended by the ledger itself once a chain is complete and
valid, refused with the failed rule otherwise, and served with a proof."""

from shared.audit import open_checkpoint, verify_bundle
from shared.canonical import b64, unb64
from shared.crypto import key_id, public_key_from_b64, verify_statement
from shared.merkle import leaf_hash, verify_inclusion
from shared.note import parse_verifier_key


def test_a_complete_chain_is_sealed_by_the_ledger(client, chain_for):
    chain = chain_for("B1")
    chain.complete()

    batch = client.get("/v1/batches/B1").json()
    kinds = [entry["kind"] for entry in batch["entries"]]
    assert kinds == [
        "custody.pickup",
        "custody.pickup",
        "custody.delivery",
        "custody.processing",
        "trip.summary",
        "batch.seal",
    ]
    assert batch["seal_index"] == 5 and batch["refusal"] is None

    seal = client.get("/v1/batches/B1/seal").json()
    body = seal["entry"]["statement"]["body"]
    assert body["net_kg"] == 1800
    assert body["outputs"] == {
        "concrete_mortar": 1100,
        "residue_landfill": 350,
        "wood": 300,
    }
    assert body["distance_m"] == 23456 and body["coverage_permille"] == 987
    assert [link["index"] for link in body["chain"]] == [0, 1, 2, 3]
    assert body["trip"]["index"] == 4
    assert [link["leaf_hash"] for link in body["chain"]] == [
        e["leaf_hash"] for e in batch["entries"][:4]
    ]


def test_the_seal_is_signed_by_the_log_key_and_proven_in_its_checkpoint(
    client, chain_for
):
    chain_for("B1").complete()
    seal = client.get("/v1/batches/B1/seal").json()
    verifier_key = client.get("/v1/key").text.strip()

    checkpoint = open_checkpoint(seal["checkpoint"], verifier_key)
    leaf = unb64(seal["leaf"])
    hashes = [unb64(h) for h in seal["inclusion"]["hashes"]]
    assert seal["inclusion"]["size"] == checkpoint.size
    assert verify_inclusion(
        leaf_hash(leaf), seal["index"], checkpoint.size, hashes, checkpoint.root
    )

    public = parse_verifier_key(verifier_key).public_key
    signature = seal["entry"]["signatures"][0]
    assert signature["key_id"] == key_id(public)
    assert verify_statement(public, seal["entry"]["statement"], signature["signature"])
    ledger_key = client.get(f"/v1/keys/{signature['key_id']}").json()
    assert ledger_key["party_id"] == "ledger" and ledger_key["kinds"] == ["batch.seal"]
    assert key_id(public_key_from_b64(ledger_key["public_key"])) == signature["key_id"]


def test_an_incomplete_batch_is_not_sealed_and_says_what_it_lacks(client, chain_for):
    chain = chain_for("B1")
    chain.post(chain.pickup_entry())
    chain.post(chain.delivery_entry())

    response = client.get("/v1/batches/B1/seal")
    assert response.status_code == 404
    problem = response.json()
    assert problem["type"] == "urn:salvage:problem:not-sealed"
    assert problem["missing"] == ["custody.processing", "trip.summary"]
    assert "custody.processing" in problem["detail"]

    retry = client.post("/v1/batches/B1/seal")
    assert retry.status_code == 409
    assert retry.json()["type"] == "urn:salvage:problem:not-ready"


def test_outputs_above_the_weighed_net_mass_refuse_the_seal(client, chain_for):
    chain = chain_for("B1")
    outputs = [
        {"material": "concrete_mortar", "ewc": "17 01 01", "kg": 1500},
        {"material": "wood", "ewc": "17 02 01", "kg": 400},
    ]
    chain.complete(outputs)

    batch = client.get("/v1/batches/B1").json()
    assert batch["seal_index"] is None
    assert batch["refusal"]["rule"] == "outputs-exceed-net"
    assert "1900" in batch["refusal"]["detail"]

    problem = client.get("/v1/batches/B1/seal").json()
    assert problem["type"] == "urn:salvage:problem:not-sealed"
    assert problem["refusal"]["rule"] == "outputs-exceed-net"

    retry = client.post("/v1/batches/B1/seal")
    assert retry.status_code == 422
    assert retry.json()["type"] == "urn:salvage:problem:outputs-exceed-net"
    assert client.get("/v1/seals").json()["seals"] == []


def test_the_trip_summary_may_arrive_before_the_plant(client, chain_for):
    chain = chain_for("B1")
    chain.post(chain.pickup_entry())
    chain.post(chain.trip_entry())
    chain.post(chain.delivery_entry())
    assert client.get("/v1/batches/B1").json()["seal_index"] is None
    chain.post(chain.processing_entry())

    assert client.get("/v1/batches/B1").json()["seal_index"] == 4


def test_custody_after_the_seal_is_refused(client, chain_for):
    chain = chain_for("B1")
    chain.complete()
    response = chain.post(chain.pickup_entry(request_id="late"))
    assert response.status_code == 422
    assert response.json()["type"] == "urn:salvage:problem:batch-sealed"


def test_a_second_trip_summary_is_refused(chain_for):
    chain = chain_for("B1")
    chain.post(chain.pickup_entry())
    chain.post(chain.trip_entry())
    response = chain.post(chain.trip_entry())
    assert response.json()["type"] == "urn:salvage:problem:trip-duplicate"


def test_an_explicit_seal_of_a_sealed_batch_returns_the_seal(client, chain_for):
    chain_for("B1").complete()
    response = client.post("/v1/batches/B1/seal")
    assert response.status_code == 200
    assert response.json()["index"] == 5
    assert len(client.get("/v1/seals").json()["seals"]) == 1


def test_seals_are_listed_in_log_order(client, chain_for):
    for batch_id in ("B1", "B2", "B3"):
        chain_for(batch_id).complete()
    seals = client.get("/v1/seals").json()["seals"]
    assert [s["batch_id"] for s in seals] == ["B1", "B2", "B3"]

    after_first = client.get("/v1/seals", params={"after": seals[0]["index"]}).json()
    assert [s["batch_id"] for s in after_first["seals"]] == ["B2", "B3"]
    page = client.get("/v1/seals", params={"limit": 1}).json()
    assert page["seals"] == seals[:1] and page["next_after"] == seals[0]["index"]


def test_a_bundle_verifies_offline(client, chain_for):
    chain_for("B1").complete()
    bundle = client.get("/v1/batches/B1/bundle").json()
    verifier_key = client.get("/v1/key").text.strip()

    report = verify_bundle(bundle, verifier_key=verifier_key)
    assert report.ok, report.reason
    assert report.checked == 6

    bundle["entries"][2]["leaf"] = b64(b"{}")
    broken = verify_bundle(bundle, verifier_key=verifier_key)
    assert not broken.ok and broken.first_bad_index == 2
