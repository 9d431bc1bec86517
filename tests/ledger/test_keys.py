"""Key rotation of the ledger's own key, revocation of parties' keys, and
audits of credit serials through trading's public provenance."""

import json

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from services.ledger.api import create_app
from services.ledger.config import LedgerConfig
from shared import audit_cli
from shared.audit import (
    audit_checkpoint,
    audit_checkpoints,
    audit_seals,
    audit_serials,
    log_key_history,
    open_checkpoint,
    replay,
    verify_bundle,
)
from shared.crypto import generate_key, key_id, private_key_to_b64
from shared.db import normalize_url
from shared.note import sign_note, verifier_key
from tests.ledger.helpers import ORIGIN, Chain


@pytest.fixture
def rotated(ledger_settings, client, chain_for, parties, tmp_path):
    """B1 sealed under the first key, then the ledger restarted with a new
    key, then B2 sealed under it; yields (old key, new key, client)."""
    old_key = client.get("/v1/key").text.strip()
    state = tmp_path / "witness.json"
    chain_for("B1").complete()
    assert audit_checkpoint(client, state_file=state).ok
    new_key = generate_key()
    settings = ledger_settings.model_copy(
        update={"ledger_signing_key": SecretStr(private_key_to_b64(new_key))}
    )
    with TestClient(create_app(settings, config=LedgerConfig(origin=ORIGIN))) as fresh:
        fresh.headers.update(client.headers)
        Chain(fresh, parties, "B2").complete()
        yield old_key, verifier_key(ORIGIN, new_key), fresh, state


def test_the_key_history_lists_each_key_from_the_size_it_took_over(rotated):
    old_key, new_key, fresh, _ = rotated
    history = log_key_history(fresh.get("/v1/log-keys").text, new_key)
    assert [item.from_size for item in history] == [0, 6]
    assert verifier_key(ORIGIN, history[0].public_key) == old_key
    assert verifier_key(ORIGIN, history[1].public_key) == new_key


def test_seals_signed_before_a_rotation_still_verify(rotated):
    _, new_key, fresh, _ = rotated
    seals = [s["index"] for s in fresh.get("/v1/seals").json()["seals"]]
    assert seals == [5, 11]
    report = audit_seals(fresh, seals, verifier_key=new_key)
    assert report.ok, report.reason
    bundle = fresh.get("/v1/batches/B1/bundle").json()
    offline = verify_bundle(bundle, verifier_key=new_key)
    assert offline.ok, offline.reason


def test_every_past_checkpoint_verifies_across_the_rotation(rotated):
    old_key, new_key, fresh, _ = rotated
    report = audit_checkpoints(fresh, verifier_key=new_key)
    assert report.ok, report.reason
    listed = {
        c["size"]: c["note"] for c in fresh.get("/v1/checkpoints").json()["checkpoints"]
    }
    handover = listed[6]
    assert open_checkpoint(handover, old_key) == open_checkpoint(handover, new_key)
    assert open_checkpoint(listed[12], new_key).size == 12


def test_a_witness_follows_the_rotation_only_through_the_key_history(rotated):
    _, new_key, fresh, state = rotated
    stranger = verifier_key(ORIGIN, generate_key())
    refused = audit_checkpoint(fresh, state_file=state, verifier_key=stranger)
    assert not refused.ok and "key history" in refused.reason

    followed = audit_checkpoint(fresh, state_file=state, verifier_key=new_key)
    assert followed.ok, followed.reason
    assert json.loads(state.read_text())["verifier_key"] == new_key


def test_a_key_history_signed_by_another_key_is_refused(rotated):
    _, new_key, fresh, _ = rotated
    text_ = fresh.get("/v1/log-keys").text.rpartition("\n\n")[0] + "\n"
    forged = sign_note(text_, ORIGIN, generate_key())
    with pytest.raises(Exception, match="does not verify"):
        log_key_history(forged, new_key)


def test_a_key_revoked_after_an_entry_keeps_it_valid(client, chain_for, parties):
    chain = chain_for("B1")
    chain.post(chain.pickup_entry())
    device = parties.device.key_id
    revoked = client.post(f"/v1/keys/{device}/revoke", json={"reason": "lost"})
    assert revoked.json()["revoked_at_size"] == 1
    refused = chain.post(chain.pickup_entry(request_id="r2"))
    assert refused.json()["type"].endswith("key-revoked")
    for build in (chain.delivery_entry, chain.processing_entry, chain.trip_entry):
        assert chain.post(build()).status_code == 201

    assert client.get("/v1/batches/B1").json()["seal_index"] == 4
    report = replay(client, signatures=True)
    assert report.ok, report.reason


def test_an_entry_signed_after_its_key_was_revoked_is_named(
    client, chain_for, parties, ledger_url
):
    chain_for("B1").complete()
    assert replay(client, signatures=True).ok
    engine = create_engine(normalize_url(ledger_url))
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE party_keys SET revoked_at_size = 2 WHERE key_id = :k"),
            {"k": parties.plant.key_id},
        )
    engine.dispose()

    report = replay(client, signatures=True)
    assert not report.ok
    assert report.first_bad_index == 2
    assert "revoked when the log had 2 entries" in report.reason
    assert replay(client).ok


def post_all_but_the_trip(chain: Chain) -> None:
    steps = (
        chain.pickup_entry,
        lambda: chain.pickup_entry(request_id="req2-B1"),
        chain.delivery_entry,
        chain.processing_entry,
    )
    for build in steps:
        assert chain.post(build()).status_code == 201


def test_a_seal_is_refused_when_a_signer_was_revoked_before_its_entry(
    client, chain_for, parties, ledger_url
):
    chain = chain_for("B1")
    post_all_but_the_trip(chain)
    engine = create_engine(normalize_url(ledger_url))
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE party_keys SET revoked_at = CURRENT_TIMESTAMP, "
                "revoked_at_size = 2 WHERE key_id = :k"
            ),
            {"k": parties.plant.key_id},
        )
    engine.dispose()

    assert chain.post(chain.trip_entry()).status_code == 201
    batch = client.get("/v1/batches/B1").json()

    assert batch["seal_index"] is None
    assert batch["refusal"]["rule"] == "key-revoked"
    assert "Entry 2: " in batch["refusal"]["detail"]
    assert "revoked when the log had 2 entries" in batch["refusal"]["detail"]


def test_a_seal_goes_ahead_when_a_signer_was_revoked_after_its_entries(
    client, chain_for, parties
):
    chain = chain_for("B1")
    post_all_but_the_trip(chain)
    revoked = client.post(
        f"/v1/keys/{parties.plant.key_id}/revoke", json={"reason": "retired"}
    )
    assert revoked.json()["revoked_at_size"] == 4

    assert chain.post(chain.trip_entry()).status_code == 201

    assert client.get("/v1/batches/B1").json()["seal_index"] == 5


def provenance_server(seals_by_serial: dict[str, list[dict]]) -> httpx.Client:
    def answer(request: httpx.Request) -> httpx.Response:
        serial = request.url.path.split("/")[3]
        if serial not in seals_by_serial:
            return httpx.Response(404, json={"title": "Not found"})
        return httpx.Response(200, json={"seals": seals_by_serial[serial]})

    return httpx.Client(
        base_url="http://trading", transport=httpx.MockTransport(answer)
    )


def test_a_credit_serial_is_audited_through_its_seals(client, chain_for):
    chain_for("B1").complete()
    chain_for("B2").complete()
    seal = client.get("/v1/batches/B2/seal").json()
    good = {"batch_id": "B2", "index": seal["index"], "leaf_hash": seal["leaf_hash"]}
    trading = provenance_server(
        {
            "SALV-A-2026-1": [good],
            "SALV-B-2026-1": [{**good, "leaf_hash": seal["inclusion"]["hashes"][0]}],
            "SALV-C-2026-1": [{**good, "batch_id": "B1"}],
        }
    )

    report = audit_serials(client, trading, ["SALV-A-2026-1"])
    assert report.ok and report.checked == 1, report.reason
    wrong_hash = audit_serials(client, trading, ["SALV-B-2026-1"])
    assert not wrong_hash.ok and wrong_hash.first_bad_index == seal["index"]
    wrong_batch = audit_serials(client, trading, ["SALV-C-2026-1"])
    assert not wrong_batch.ok and "not B1" in wrong_batch.reason
    unknown = audit_serials(client, trading, ["SALV-X-2026-9"])
    assert not unknown.ok and "nothing at" in unknown.reason


def test_the_cli_audits_a_serial(client, chain_for, tmp_path, monkeypatch):
    chain_for("B1").complete()
    seal = client.get("/v1/batches/B1/seal").json()
    trading = provenance_server(
        {
            "SALV-A-2026-1": [
                {
                    "batch_id": "B1",
                    "index": seal["index"],
                    "leaf_hash": seal["leaf_hash"],
                }
            ]
        }
    )
    monkeypatch.setattr(audit_cli, "_url", lambda _: client)
    monkeypatch.setattr(audit_cli, "audit_serials", _with_trading(trading))
    state = ["--state-file", str(tmp_path / "w.json")]
    result = CliRunner().invoke(
        audit_cli.audit_app,
        ["serial", "SALV-A-2026-1", "--trading-url", "http://trading", *state],
    )
    assert result.exit_code == 0 and "PASS serials" in result.output, result.output


def _with_trading(trading: httpx.Client):
    def audit(ledger, url, serials, **options):
        assert url == "http://trading"
        return audit_serials(ledger, trading, serials, **options)

    return audit


def test_the_ledger_key_id_is_the_one_in_its_history(client):
    history = log_key_history(
        client.get("/v1/log-keys").text, client.get("/v1/key").text.strip()
    )
    assert len(history) == 1 and history[0].from_size == 0
    assert history[0].key_id == key_id(history[0].public_key)


def test_a_worker_still_holding_the_old_key_signs_nothing(rotated, client, parties):
    _, new_key, fresh, _ = rotated
    size = open_checkpoint(fresh.get("/v1/checkpoint").text, new_key).size
    stale = Chain(client, parties, "B3")
    response = stale.post(stale.pickup_entry())
    assert response.status_code == 503
    assert response.json()["type"].endswith("log-key-superseded")
    assert open_checkpoint(fresh.get("/v1/checkpoint").text, new_key).size == size
