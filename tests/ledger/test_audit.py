"""The auditor's checks against a live ledger, and what they catch when
the ledger's database is changed behind its back."""

import json

import httpx
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from services.ledger.api import create_app
from services.ledger.config import LedgerConfig
from shared import audit_cli
from shared.audit import (
    KEY_HISTORY_FORMAT,
    audit_batches,
    audit_checkpoint,
    audit_entries,
    audit_seals,
    replay,
    verify_bundle,
)
from shared.canonical import b64, canonical_json, unb64
from shared.crypto import generate_key, key_id, private_key_to_b64, public_key_b64
from shared.db import normalize_url
from shared.merkle import leaf_hash
from shared.note import (
    parse_checkpoint,
    parse_verifier_key,
    sign_checkpoint,
    sign_note,
    verifier_key,
)
from tests.ledger.helpers import ORIGIN


def edit_entry(ledger_url: str, index: int, change, *, rehash: bool) -> None:
    """Rewrites one stored entry directly in the database, as an intruder would."""
    engine = create_engine(normalize_url(ledger_url))
    with engine.begin() as connection:
        leaf = connection.execute(
            text('SELECT leaf FROM entries WHERE "index" = :i'), {"i": index}
        ).scalar_one()
        entry = json.loads(bytes(leaf))
        change(entry)
        forged = canonical_json(entry)
        values = {"i": index, "leaf": forged, "hash": leaf_hash(forged)}
        statement = "UPDATE entries SET leaf = :leaf"
        statement += ", leaf_hash = :hash" if rehash else ""
        connection.execute(text(statement + ' WHERE "index" = :i'), values)
    engine.dispose()


def heavier(entry: dict) -> None:
    entry["statement"]["body"]["net_kg"] = 18000


def test_a_checkpoint_audit_remembers_and_checks_consistency(
    client, chain_for, tmp_path
):
    state = tmp_path / "witness.json"
    first = audit_checkpoint(client, state_file=state)
    assert first.ok and first.size == 0

    chain_for("B1").complete()
    second = audit_checkpoint(client, state_file=state)
    assert second.ok and second.size == 6
    assert json.loads(state.read_text())["size"] == 6


def test_a_checkpoint_inconsistent_with_the_remembered_one_fails(
    client, chain_for, tmp_path
):
    chain_for("B1").complete()
    state = tmp_path / "witness.json"
    assert audit_checkpoint(client, state_file=state).ok
    remembered = json.loads(state.read_text())
    remembered["size"], remembered["root"] = 3, b64(b"\x07" * 32)
    state.write_text(json.dumps(remembered))

    report = audit_checkpoint(client, state_file=state)
    assert not report.ok
    assert "not consistent" in report.reason


def test_a_pinned_key_that_did_not_sign_fails(client, tmp_path):
    report = audit_checkpoint(
        client, verifier_key=verifier_key("test.salvage/ledger", generate_key())
    )
    assert not report.ok and "signature" in report.reason


def test_seals_batches_and_entries_pass_on_an_honest_log(client, chain_for, tmp_path):
    chain_for("B1").complete()
    chain_for("B2").complete()
    seals = [s["index"] for s in client.get("/v1/seals").json()["seals"]]

    report = audit_seals(client, seals, tmp_path / "w.json")
    assert report.ok, report.reason
    assert report.checked == 2
    assert audit_batches(client, ["B1", "B2"]).ok
    assert audit_entries(client, [0, 3, 7]).ok
    assert replay(client, page_size=4).ok


def test_an_unsealed_batch_fails_its_audit(client, chain_for):
    chain = chain_for("B1")
    chain.post(chain.pickup_entry())
    report = audit_batches(client, ["B1"])
    assert not report.ok and "not sealed" in report.reason


def test_an_edited_entry_fails_the_audit_naming_its_index(
    client, chain_for, ledger_url
):
    chain_for("B1").complete()
    chain_for("B2").complete()
    assert replay(client).ok

    edit_entry(ledger_url, 2, heavier, rehash=False)

    report = replay(client, page_size=5)
    assert not report.ok
    assert report.first_bad_index == 2
    assert "leaf_hash" in report.reason
    seal = audit_seals(client, [5])
    assert not seal.ok and seal.first_bad_index == 2


def test_an_edited_entry_with_a_recomputed_hash_is_still_named(
    client, chain_for, ledger_url
):
    for batch_id in ("B1", "B2", "B3"):
        chain_for(batch_id).complete()

    edit_entry(ledger_url, 9, heavier, rehash=True)

    report = replay(client, page_size=8)
    assert not report.ok
    assert report.first_bad_index == 9
    assert "signed checkpoint" in report.reason
    assert audit_entries(client, [8]).ok
    entry = audit_entries(client, [9])
    assert not entry.ok and entry.first_bad_index == 9
    seal = audit_seals(client, [11])
    assert not seal.ok and seal.first_bad_index == 9


def test_a_deleted_entry_is_named(client, chain_for, ledger_url):
    chain_for("B1").complete()
    engine = create_engine(normalize_url(ledger_url))
    with engine.begin() as connection:
        connection.execute(text('DELETE FROM entries WHERE "index" = 3'))
    engine.dispose()

    report = replay(client)
    assert not report.ok and report.first_bad_index == 3
    assert "missing" in report.reason


def test_the_cli_prints_a_verdict_and_exits_non_zero_on_failure(
    client, chain_for, ledger_url, tmp_path, monkeypatch
):
    chain_for("B1").complete()
    monkeypatch.setattr(audit_cli, "_url", lambda _: client)
    runner = CliRunner()
    state = ["--state-file", str(tmp_path / "w.json")]

    passed = runner.invoke(audit_cli.audit_app, ["checkpoint", *state])
    assert passed.exit_code == 0, passed.output
    assert "PASS" in passed.output
    assert runner.invoke(audit_cli.audit_app, ["batch", "B1", *state]).exit_code == 0
    bundle_file = tmp_path / "b1.json"
    exported = runner.invoke(
        audit_cli.audit_app, ["export", "B1", "-o", str(bundle_file)]
    )
    assert exported.exit_code == 0, exported.output
    offline = runner.invoke(audit_cli.audit_app, ["bundle", str(bundle_file), *state])
    assert offline.exit_code == 0 and "PASS" in offline.output

    edit_entry(ledger_url, 1, heavier, rehash=False)
    failed = runner.invoke(audit_cli.audit_app, ["replay", *state])
    assert failed.exit_code == 1
    assert "FAIL" in failed.output and "index 1" in failed.output
    seals = runner.invoke(audit_cli.audit_app, ["seals", "--index", "5", *state])
    assert seals.exit_code == 1 and "index 1" in seals.output


def test_a_forged_bundle_fails_offline(client, chain_for, tmp_path):
    chain_for("B1").complete()
    bundle = client.get("/v1/batches/B1/bundle").json()
    leaf = json.loads(unb64(bundle["entries"][3]["leaf"]))
    leaf["statement"]["body"]["outputs"][0]["kg"] = 1
    bundle["entries"][3]["leaf"] = b64(canonical_json(leaf))
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(bundle))

    key = ["--key", client.get("/v1/key").text.strip()]
    result = CliRunner().invoke(audit_cli.audit_app, ["bundle", str(path), *key])
    assert result.exit_code == 1
    assert "index 3" in result.output


def test_an_offline_bundle_fails_when_a_signer_was_revoked_before_its_entry(
    client, chain_for
):
    chain_for("B1").complete()
    bundle = client.get("/v1/batches/B1/bundle").json()
    assert verify_bundle(bundle).ok
    for record in bundle["keys"]:
        if record["party_kind"] == "device":
            record["revoked_at_size"] = 0

    report = verify_bundle(bundle)

    assert not report.ok
    assert report.first_bad_index == 0
    assert "key-revoked" in report.reason


def test_after_a_key_rotation_the_head_checkpoint_verifies_with_the_new_key(
    ledger_settings, chain_for, client
):

    chain_for("B1").complete()
    before = client.get("/v1/checkpoint").text
    rotated = ledger_settings.model_copy(
        update={"ledger_signing_key": SecretStr(private_key_to_b64(generate_key()))}
    )
    with TestClient(create_app(rotated, config=LedgerConfig(origin=ORIGIN))) as fresh:
        after = fresh.get("/v1/checkpoint").text
        assert after != before
        assert after.split("\n")[:3] == before.split("\n")[:3]
        assert audit_checkpoint(fresh).ok


def resigned(bundle: dict, forger) -> dict:
    """The same bundle with its checkpoint and key history re-signed by a
    forger's key under the log's name, and the forger's verifier key inside:
    the seals stay the log's, so only the key the auditor trusts decides."""
    real = parse_verifier_key(bundle["verifier_key"]).public_key
    body = bundle["checkpoint"].rpartition("\n\n")[0] + "\n"
    lines = [
        KEY_HISTORY_FORMAT,
        ORIGIN,
        f"{key_id(real)} {public_key_b64(real)} 0",
        f"{key_id(forger)} {public_key_b64(forger)} 1000000",
    ]
    return {
        **bundle,
        "verifier_key": verifier_key(ORIGIN, forger),
        "checkpoint": sign_checkpoint(parse_checkpoint(body), ORIGIN, forger),
        "key_history": sign_note("\n".join(lines) + "\n", ORIGIN, forger),
    }


def bundle_files(client, tmp_path) -> tuple[str, str]:
    honest = client.get("/v1/batches/B1/bundle").json()
    files = tmp_path / "honest.json", tmp_path / "resigned.json"
    files[0].write_text(json.dumps(honest))
    files[1].write_text(json.dumps(resigned(honest, generate_key())))
    return str(files[0]), str(files[1])


def test_a_bundle_resigned_with_another_key_fails_against_the_pinned_key(
    client, chain_for, tmp_path, monkeypatch
):
    chain_for("B1").complete()
    monkeypatch.setattr(audit_cli, "_url", lambda _: client)
    runner = CliRunner()
    state = ["--state-file", str(tmp_path / "w.json")]
    assert runner.invoke(audit_cli.audit_app, ["checkpoint", *state]).exit_code == 0
    honest, forged = bundle_files(client, tmp_path)

    passed = runner.invoke(audit_cli.audit_app, ["bundle", honest, *state])
    refused = runner.invoke(audit_cli.audit_app, ["bundle", forged, *state])
    pinned = ["--key", client.get("/v1/key").text.strip()]
    refused_by_key = runner.invoke(audit_cli.audit_app, ["bundle", forged, *pinned])

    assert passed.exit_code == 0 and "PASS bundle" in passed.output, passed.output
    assert refused.exit_code == 1 and "FAIL bundle" in refused.output
    assert "signature does not verify" in refused.output
    assert refused_by_key.exit_code == 1 and "FAIL bundle" in refused_by_key.output


def test_a_bundle_with_no_pinned_key_is_refused_unless_trusted_loudly(
    client, chain_for, tmp_path
):
    chain_for("B1").complete()
    honest, forged = bundle_files(client, tmp_path)
    runner = CliRunner()
    nowhere = ["--state-file", str(tmp_path / "none.json")]

    for command in ("bundle", "credit-bundle"):
        refused = runner.invoke(audit_cli.audit_app, [command, honest, *nowhere])
        assert refused.exit_code == 1, refused.output
        assert f"FAIL {command}: no log key" in refused.output
        assert "--key" in refused.output and "--trust-bundle-key" in refused.output
    trusted = runner.invoke(
        audit_cli.audit_app, ["bundle", forged, *nowhere, "--trust-bundle-key"]
    )

    assert trusted.exit_code == 0, trusted.output
    assert "WARNING" in trusted.output and "PASS bundle" in trusted.output
    assert "verifier key taken from the bundle itself" in trusted.output
    assert not (tmp_path / "none.json").exists()


class _Redirecting(httpx.BaseTransport):
    """A lying ledger: answers one path with what another path holds."""

    def __init__(self, honest, lies: dict[str, str]) -> None:
        self.honest, self.lies = honest, lies

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = self.lies.get(request.url.path, request.url.path)
        answer = self.honest.get(path, params=request.url.params)
        return httpx.Response(
            answer.status_code, headers=answer.headers, content=answer.content
        )


def test_a_batch_audit_fails_when_the_ledger_points_at_another_batchs_seal(
    client, chain_for
):
    chain_for("B1").complete()
    chain_for("B2").complete()
    lying = httpx.Client(
        base_url="http://ledger",
        transport=_Redirecting(client, {"/v1/batches/B1": "/v1/batches/B2"}),
    )

    report = audit_batches(lying, ["B1"])

    assert not report.ok
    assert "not B1" in report.reason
    assert audit_batches(client, ["B1"]).ok


def test_a_bundle_relabelled_as_another_batch_fails_offline(client, chain_for):
    chain_for("B1").complete()
    bundle = client.get("/v1/batches/B1/bundle").json()
    key = client.get("/v1/key").text.strip()
    assert verify_bundle(bundle, verifier_key=key).ok

    bundle["batch_id"] = "B2"
    report = verify_bundle(bundle, verifier_key=key)

    assert not report.ok
    assert "not B2" in report.reason
