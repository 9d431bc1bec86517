"""A serial's provenance bundle: downloaded once, verified with no network."""

import base64
import copy
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from services.trading.methodology import load_factor_table
from shared.audit_cli import audit_app
from shared.canonical import canonical_json
from shared.crypto import sign_statement
from shared.provenance import recompute, seals_root, verify_credit_bundle

METALS = {"metals": 4000, "concrete_mortar": 3000, "residue_landfill": 500}


@pytest.fixture
def trading(make_trading):
    with make_trading(buffer_permille=0) as client:
        yield client


@pytest.fixture
def retired(trading, desk, sealed_log, auth_header) -> dict:
    """Two sealed batches issued, sold to a buyer and partly retired."""
    owner = desk.account("operator")
    sealed_log.write_batch("B1", net_kg=8000, outputs=METALS, distance_m=12000)
    sealed_log.write_batch("B2", net_kg=8000, outputs=METALS, distance_m=3000)
    issuance = desk.issue(owner)["issuance"]
    buyer = auth_header("buyer", sub="pens-user", org="pens")
    mine = desk.account("pens")
    listing = trading.post(
        "/v1/listings",
        json={"account_id": owner, "quantity_t": issuance["tonnes"], "price_cny": "60"},
        headers=auth_header("service", sub="service:operator"),
    ).json()
    trading.post(
        "/v1/purchases",
        json={"listing_id": listing["id"], "quantity_t": 5},
        headers={**buyer, "Idempotency-Key": "order-1"},
    )
    retirement = trading.post(
        "/v1/retirements",
        json={
            "account_id": mine,
            "quantity_t": 3,
            "beneficiary": "Pens Ltd",
            "purpose": "Carbon-neutral pens",
        },
        headers=buyer,
    ).json()
    trading.app.state.relay.deliver_due()
    return retirement


def download(trading, serial: str) -> dict:
    response = trading.get(f"/v1/credits/{serial}/bundle")
    assert response.status_code == 200, response.text
    return response.json()


def test_a_retired_serial_verifies_offline_against_one_checkpoint(
    trading, retired, ledger
):
    serial = retired["serials"][0]

    bundle = download(trading, serial)
    report = verify_credit_bundle(bundle, verifier_key=ledger.get("/v1/key").text)

    assert report.ok, report.reason
    assert [s["batch_id"] for s in bundle["seals"]] == ["B1", "B2"]
    assert len(bundle["retirements"]) == 1
    assert report.size == int(bundle["checkpoint"].split("\n")[1])
    kinds = {
        json.loads(base64.b64decode(e["leaf"]))["statement"]["kind"]
        for e in bundle["entries"]
    }
    assert {"batch.seal", "credit.quantification", "credit.issuance"} <= kinds
    assert any("Pens Ltd" in note for note in report.notes)
    assert any("approved by verifier-1" in note for note in report.notes)


def test_a_second_download_reuses_the_receipts_and_still_verifies(
    trading, retired, ledger
):
    serial = retired["serials"][0]
    first = download(trading, serial)
    size = int(ledger.get("/v1/checkpoint").text.split("\n")[1])

    second = download(trading, serial)

    assert int(ledger.get("/v1/checkpoint").text.split("\n")[1]) == size
    assert second["issuance"] == first["issuance"]
    assert verify_credit_bundle(second).ok


def _leaf(bundle: dict, kind: str) -> tuple[dict, dict]:
    for item in bundle["entries"]:
        entry = json.loads(base64.b64decode(item["leaf"]))
        if entry["statement"]["kind"] == kind:
            return item, entry
    raise AssertionError(kind)


def _rewrite(item: dict, entry: dict) -> None:
    item["leaf"] = base64.b64encode(canonical_json(entry)).decode()


@pytest.mark.parametrize(
    "tamper, reason",
    [
        (lambda b: b["seals"].pop(), "committed"),
        (lambda b: b["seals"].reverse(), "committed"),
        (lambda b: b.update(start=10_000, end=10_000), "does not hold"),
        (lambda b: b["entries"].pop(0), "lacks"),
        (
            lambda b: b.update(checkpoint=b["checkpoint"].replace("\n\n", "\n\n\n")),
            "checkpoint signature",
        ),
    ],
)
def test_a_bundle_changed_after_download_fails(trading, retired, tamper, reason):
    bundle = download(trading, retired["serials"][0])
    broken = copy.deepcopy(bundle)

    tamper(broken)
    report = verify_credit_bundle(broken)

    assert not report.ok
    assert reason in report.reason, report.reason


def test_a_bundle_whose_trading_key_was_revoked_before_issuing_fails(trading, retired):
    bundle = download(trading, retired["serials"][0])
    issuance, _ = _leaf(bundle, "credit.issuance")
    for record in bundle["keys"]:
        if record["party_id"] == "trading":
            record["revoked_at_size"] = issuance["index"]

    report = verify_credit_bundle(bundle)

    assert not report.ok
    assert report.first_bad_index == issuance["index"]
    assert "not signed by trading" in report.reason


def test_a_quantification_inflated_in_the_bundle_fails(trading, retired):
    bundle = download(trading, retired["serials"][0])
    item, entry = _leaf(bundle, "credit.quantification")

    entry["statement"]["body"]["result"]["creditable_g"] += 1
    _rewrite(item, entry)
    report = verify_credit_bundle(bundle)

    assert not report.ok
    assert "not included" in report.reason


def test_a_serial_never_issued_has_no_bundle(trading, retired):
    missing = trading.get("/v1/credits/SALV-TEST-2026-9000-9001/bundle")
    garbage = trading.get("/v1/credits/not-a-serial/bundle")

    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert garbage.status_code == 422


def test_a_bundle_before_the_issuance_reaches_the_ledger_is_refused(
    trading, desk, sealed_log
):
    owner = desk.account("operator")
    sealed_log.write_batch("B1", net_kg=8000, outputs=METALS, distance_m=12000)
    issuance = desk.issue(owner)["issuance"]

    early = trading.get(f"/v1/credits/{issuance['blocks'][0]['serial']}/bundle")

    assert early.status_code == 409
    assert early.json()["type"] == "urn:salvage:problem:not-yet-logged"


def test_the_issuance_commits_to_its_seals_by_a_root(trading, retired, sealed_log):
    [entry] = sealed_log.entries_of_kind("credit.issuance")
    body = entry["statement"]["body"]
    listed = trading.get(f"/v1/issuances/{body['issuance_id']}/seals").json()

    assert "seals" not in body
    assert body["seal_count"] == 2 == len(listed["seals"])
    assert body["seals_root"] == seals_root(listed["seals"]) == listed["seals_root"]


def test_the_command_line_passes_a_good_bundle_and_fails_a_bad_one(
    trading, retired, tmp_path, ledger
):
    bundle = download(trading, retired["serials"][0])
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(bundle))
    bundle["seals"] = bundle["seals"][:1]
    bad.write_text(json.dumps(bundle))
    key = ledger.get("/v1/key").text

    passed = run_cli(str(good), "--verifier-key", key)
    failed = run_cli(str(bad))

    assert passed.returncode == 0, passed.stdout
    assert passed.stdout.startswith("PASS")
    assert failed.returncode == 1
    assert failed.stdout.startswith("FAIL")


def test_salvage_audit_credit_bundle_passes_a_good_bundle_and_names_the_fault(
    trading, retired, tmp_path, ledger
):
    bundle = download(trading, retired["serials"][0])
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(bundle))
    bundle["seals"] = bundle["seals"][:1]
    bad.write_text(json.dumps(bundle))
    key = ledger.get("/v1/key").text
    runner = CliRunner()

    passed = runner.invoke(audit_app, ["credit-bundle", str(good), "--key", key])
    failed = runner.invoke(audit_app, ["credit-bundle", str(bad), "--key", key])
    unreadable = runner.invoke(
        audit_app, ["credit-bundle", str(tmp_path / "none"), "--key", key]
    )

    assert passed.exit_code == 0, passed.output
    assert "PASS credit-bundle" in passed.output
    assert "2 sealed batch(es)" in passed.output
    assert failed.exit_code == 1
    assert "FAIL credit-bundle" in failed.output
    assert "seal list" in failed.output
    assert unreadable.exit_code == 1
    assert "cannot read" in unreadable.output


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "shared.provenance", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_recompute_matches_the_worked_example_of_the_methodology():
    table = load_factor_table("v1")
    keys = [f"avoided.{m}" for m in WORKED_OUTPUTS]
    factors = table.snapshot(
        [
            *keys,
            "transport.diesel_truck_2t",
            "plant.processing",
            "leakage.share_of_avoided",
        ]
    )
    policy = {
        "truck_class": "diesel_truck_2t",
        "coverage_threshold_permille": 900,
        "low_coverage_discount_permille": 100,
        "estimated_mass_discount_permille": 200,
    }
    inputs = {
        "outputs": WORKED_OUTPUTS,
        "net_kg": 5000,
        "distance_m": 23456,
        "coverage_permille": 1000,
        "mass_basis": "measured",
    }

    weighed = recompute(inputs, policy, factors)
    weak = recompute(
        {**inputs, "coverage_permille": 850, "mass_basis": "estimated"},
        policy,
        factors,
    )

    assert weighed == (189_272, 189_272)
    assert weak == (189_272, 132_490)


WORKED_OUTPUTS = {
    "concrete_mortar": 2000,
    "brick_tile": 1000,
    "metals": 150,
    "gypsum": 200,
    "plastics": 300,
    "wood": 400,
    "glass": 100,
    "residue_landfill": 800,
}


def test_a_batch_counted_twice_in_the_log_fails_the_offline_check(
    trading, retired, ledger
):
    [first] = [
        entry
        for entry in _log(ledger)
        if entry["statement"]["kind"] == "credit.quantification"
        and entry["statement"]["batch_id"] == "B1"
    ]
    again = copy.deepcopy(first["statement"])
    again["body"]["calculation_id"] = "a-second-count"
    signer = trading.app.state.trading.signer
    posted = ledger.post(
        "/v1/entries",
        json={"statement": again, "signatures": [sign_statement(signer, again)]},
        headers={"Idempotency-Key": "double-count"},
    )
    assert posted.status_code == 201, posted.text

    report = verify_credit_bundle(download(trading, retired["serials"][0]))

    assert not report.ok
    assert "quantified 2 times" in report.reason


def _log(ledger) -> list[dict]:
    size = int(ledger.get("/v1/checkpoint").text.split("\n")[1])
    return [ledger.get(f"/v1/entries/{i}").json()["entry"] for i in range(size)]


def _issuance_leaf(bundle: dict) -> dict:
    index = bundle["issuance"]["index"]
    [item] = [item for item in bundle["entries"] if item["index"] == index]
    return json.loads(base64.b64decode(item["leaf"]))


def _relogged(trading, ledger, bundle: dict, change) -> dict:
    """The bundle with its issuance replaced by a copy that trading's key signed
    and the ledger logged, its body first changed by change."""
    statement = copy.deepcopy(_issuance_leaf(bundle)["statement"])
    change(statement["body"])
    signer = trading.app.state.trading.signer
    posted = ledger.post(
        "/v1/entries",
        json={
            "statement": statement,
            "signatures": [sign_statement(signer, statement)],
        },
        headers={"Idempotency-Key": f"relogged-{len(_log(ledger))}"},
    )
    assert posted.status_code == 201, posted.text
    index = posted.json()["index"]
    note = ledger.get("/v1/checkpoint").text
    size = int(note.split("\n")[1])
    forged = copy.deepcopy(bundle)
    leaf = ledger.get(f"/v1/entries/{index}").json()["leaf"]
    forged["entries"].append({"index": index, "leaf": leaf})
    for item in forged["entries"]:
        proof = ledger.get(
            "/v1/proof/inclusion", params={"index": item["index"], "size": size}
        )
        item["inclusion"] = proof.json()["hashes"]
    forged["checkpoint"] = note
    forged["issuance"]["index"] = index
    return forged


def _grow_last_block(body: dict, tonnes: int) -> None:
    block = body["blocks"][-1]
    first = int(block["serial"].split("-")[3])
    block["quantity_t"] += tonnes
    block["serial"] = f"SALV-TEST-{body['vintage']}-{first}-{body['serial_end']}"


def _inflate_tonnes(body: dict) -> None:
    body["tonnes"] += 1
    body["serial_end"] += 1
    _grow_last_block(body, 1)


def _inflate_carry(body: dict) -> None:
    body["carried_in_g"] += 2_000_000
    _inflate_tonnes(body)
    _inflate_tonnes(body)


@pytest.mark.parametrize(
    "change, reason",
    [
        (_inflate_carry, "first issuance carries in 2000000 g"),
        (_inflate_tonnes, "t, but 0 g carried in and"),
        (lambda b: b.update(carried_out_g=b["carried_out_g"] + 1), "carries out"),
        (lambda b: b.update(serial_end=b["serial_end"] + 1), "serial range"),
        (lambda b: b["blocks"][0].update(quantity_t=1), "serial block"),
        (lambda b: b.update(buffer_tonnes=1), "holds back 1 buffer t"),
        (lambda b: b.pop("buffer_permille"), "does not record buffer_permille"),
        (
            lambda b: b.update(serial_start=0, serial_end=b["serial_end"] - 1),
            "serial 1",
        ),
    ],
)
def test_an_issuance_whose_arithmetic_is_inflated_fails_the_offline_check(
    trading, retired, ledger, change, reason
):
    bundle = download(trading, retired["serials"][0])

    report = verify_credit_bundle(_relogged(trading, ledger, bundle, change))

    assert not report.ok
    assert reason in report.reason, report.reason
    assert report.first_bad_index == len(_log(ledger)) - 1


def test_an_honest_issuance_logged_again_still_passes(trading, retired, ledger):
    bundle = download(trading, retired["serials"][0])
    body = _issuance_leaf(bundle)["statement"]["body"]

    report = verify_credit_bundle(_relogged(trading, ledger, bundle, lambda b: b))

    assert report.ok, report.reason
    assert body["previous_issuance_id"] is None
    assert body["carried_in_g"] == 0 and body["buffer_permille"] == 0
    assert any(f"issued {body['tonnes']} t from 0 g" in n for n in report.notes)


@pytest.fixture
def second(trading, desk, sealed_log, retired) -> dict:
    """A second issuance of the project, taking the first one's carry-over."""
    sealed_log.write_batch("B3", net_kg=8000, outputs=METALS, distance_m=5000)
    issuance = desk.issue(desk.account("operator", name="Second"))["issuance"]
    trading.app.state.relay.deliver_due()
    return issuance


def test_a_later_issuance_carries_in_what_the_previous_one_carried_out(
    trading, second, ledger
):
    bundle = download(trading, second["blocks"][0]["serial"])
    before = json.loads(
        base64.b64decode(
            next(
                item["leaf"]
                for item in bundle["entries"]
                if item["index"] == bundle["previous_issuance"]["index"]
            )
        )
    )["statement"]["body"]

    report = verify_credit_bundle(bundle, verifier_key=ledger.get("/v1/key").text)

    assert report.ok, report.reason
    assert second["previous_issuance_id"] == before["issuance_id"]
    assert second["carried_in_g"] == before["carried_out_g"] != 0
    assert second["serial_start"] == before["serial_end"] + 1


def test_a_later_issuance_with_an_inflated_carry_over_fails(trading, second, ledger):
    bundle = download(trading, second["blocks"][0]["serial"])

    def inflate(body: dict) -> None:
        body["carried_in_g"] += 1_000_000
        _inflate_tonnes(body)

    report = verify_credit_bundle(_relogged(trading, ledger, bundle, inflate))

    assert not report.ok
    assert "but the previous issuance" in report.reason
    assert "carried out" in report.reason


def test_a_later_issuance_without_its_previous_one_fails(trading, second):
    bundle = download(trading, second["blocks"][0]["serial"])
    previous = bundle.pop("previous_issuance")
    bundle["entries"] = [
        e for e in bundle["entries"] if e["index"] != previous["index"]
    ]

    report = verify_credit_bundle(bundle)

    assert not report.ok
    assert "lacks the previous issuance entry" in report.reason


def test_each_quantification_records_the_digest_of_its_factor_table(
    trading, retired, sealed_log
):
    digest = load_factor_table("v1").digest
    logged = sealed_log.entries_of_kind("credit.quantification")
    shown = trading.get("/v1/quantifications/B1")

    assert {e["statement"]["body"]["factor_table_sha256"] for e in logged} == {digest}
    assert shown.json()["factor_table_sha256"] == digest


@pytest.mark.parametrize(
    "tamper, reason",
    [
        (
            lambda t: t["v1"]["plant.processing"].update(value="0.5"),
            "is not the one the quantification used",
        ),
        (lambda t: t["v1"]["avoided.wood"].update(note="edited"), "SHA-256"),
        (lambda t: t.pop("v1"), "lacks factor table v1"),
    ],
)
def test_a_bundle_with_another_factor_table_fails(trading, retired, tamper, reason):
    bundle = download(trading, retired["serials"][0])

    tamper(bundle["factor_tables"])
    report = verify_credit_bundle(bundle)

    assert not report.ok
    assert reason in report.reason, report.reason
