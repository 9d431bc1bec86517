"""Cancellation, the PDF certificate and the public registry view."""

import shutil
import subprocess

import pytest

METALS = {"metals": 4000, "concrete_mortar": 3000, "residue_landfill": 500}

ADMIN_SUB = "admin-1"


@pytest.fixture
def trading(make_trading):
    with make_trading(buffer_permille=100) as client:
        yield client


@pytest.fixture
def issued(trading, desk, sealed_log) -> dict:
    owner = desk.account("operator")
    sealed_log.write_batch("B1", net_kg=8000, outputs=METALS, distance_m=12000)
    report = desk.issue(owner)
    return {"owner": owner, "report": report}


def balances(trading, desk, account_id):
    account = trading.get(f"/v1/accounts/{account_id}", headers=desk.header("admin"))
    return account.json()["balances"]


def cancel(trading, headers, account_id, quantity, **extra):
    return trading.post(
        "/v1/cancellations",
        json={"account_id": account_id, "quantity_t": quantity, **extra},
        headers=headers,
    )


def test_an_admin_cancels_held_tonnes_and_the_ledger_hears_of_it(
    trading, desk, issued, sealed_log
):
    owner = issued["owner"]
    before = balances(trading, desk, owner)

    done = cancel(
        trading, desk.header("admin", sub=ADMIN_SUB), owner, 2, reason="Double claim"
    )

    assert done.status_code == 201, done.text
    after = balances(trading, desk, owner)
    assert after["cancelled"] == 2
    assert after["held"] == before["held"] - 2
    public = trading.get("/v1/registry/cancellations").json()["items"]
    assert [(c["quantity_t"], c["reason"]) for c in public] == [(2, "Double claim")]
    trading.app.state.relay.deliver_due()
    bodies = [
        e["statement"]["body"] for e in sealed_log.entries_of_kind("credit.transfer")
    ]
    assert [(b["reason"], b["status_to"], b["quantity_t"]) for b in bodies] == [
        ("cancellation", "cancelled", 2)
    ]


def test_cancelling_is_for_admins_and_bad_requests_change_nothing(
    trading, desk, issued
):
    owner = issued["owner"]
    before = balances(trading, desk, owner)
    operator = desk.header("service", sub="service:operator")
    refused = [
        cancel(trading, operator, owner, 1, reason="x"),
        cancel(trading, desk.header("buyer", org="operator"), owner, 1, reason="x"),
        cancel(trading, desk.header("admin"), owner, 10_000, reason="x"),
        cancel(trading, desk.header("admin"), owner, 0, reason="x"),
        cancel(trading, desk.header("admin"), owner, 1),
        cancel(trading, desk.header("admin"), "no-such", 1, reason="x"),
    ]

    assert [r.status_code for r in refused] == [403, 403, 409, 422, 422, 404]
    assert all(r.headers["content-type"] == "application/problem+json" for r in refused)
    assert balances(trading, desk, owner) == before


def test_buffer_tonnes_can_be_cancelled_to_cover_a_reversal(trading, desk, issued):
    buffer_t = issued["report"]["issuance"]["buffer_tonnes"]
    [pool] = [
        a
        for a in trading.get("/v1/accounts", headers=desk.header("admin")).json()[
            "items"
        ]
        if a["kind"] == "buffer"
    ]

    done = cancel(trading, desk.header("admin"), pool["id"], 1, reason="Reversal")

    assert done.status_code == 201, done.text
    assert balances(trading, desk, pool["id"])["buffer"] == buffer_t - 1
    assert balances(trading, desk, pool["id"])["cancelled"] == 1


@pytest.fixture
def retirement(trading, desk, issued, auth_header) -> dict:
    buyer = auth_header("buyer", sub="ins-user", org="insurer")
    mine = desk.account("insurer")
    moved = trading.post(
        "/v1/transfers",
        json={"from_account_id": issued["owner"], "to_account_id": mine,
              "quantity_t": 4},
        headers=desk.header("admin"),
    )  # fmt: skip
    assert moved.status_code == 201, moved.text
    retired = trading.post(
        "/v1/retirements",
        json={"account_id": mine, "quantity_t": 4, "beneficiary": "Insurer Co",
              "purpose": "Exhibition 2026, carbon neutral"},
        headers=buyer,
    )  # fmt: skip
    assert retired.status_code == 201, retired.text
    return retired.json()


def test_the_certificate_is_a_pdf_that_restates_the_signed_json(
    trading, retirement, tmp_path
):
    pdf = trading.get(f"/v1/retirements/{retirement['id']}/certificate.pdf")

    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")
    path = tmp_path / "certificate.pdf"
    path.write_bytes(pdf.content)
    if shutil.which("pdftotext"):
        text = subprocess.run(
            ["pdftotext", str(path), "-"], capture_output=True, text=True, check=True
        ).stdout
        assert "Insurer Co" in text
        assert retirement["serials"][0] in text
        assert retirement["certificate"]["signatures"][0]["key_id"] in text
    again = trading.get(f"/v1/retirements/{retirement['id']}/certificate.pdf")
    assert again.content == pdf.content
    missing = trading.get("/v1/retirements/nope/certificate.pdf")
    assert missing.status_code == 404


def test_the_public_registry_shows_what_verra_shows(trading, retirement, issued):
    [issuance] = trading.get("/v1/registry/issuances").json()["items"]
    [retired] = trading.get("/v1/registry/retirements").json()["items"]

    report = issued["report"]
    assert issuance["project"] == "TEST"
    assert issuance["vintage"] == report["vintage"]
    assert issuance["monitoring_period"] == {
        "start": report["period_start"],
        "end": report["period_end"],
    }
    assert issuance["methodology"] == ["salvage-v1"]
    assert issuance["verified_by"] == "verifier-1"
    assert issuance["blocks"][0]["serial"].startswith("SALV-TEST-")
    assert issuance["issued_at"]
    assert retired["beneficiary"] == "Insurer Co"
    assert retired["purpose"] == "Exhibition 2026, carbon neutral"
    assert retired["retired_by"] == "insurer"
    assert retired["project"] == ["TEST"]
    assert retired["vintage"] == [report["vintage"]]
    assert retired["serials"] == retirement["serials"]
    assert retired["retired_at"]


def test_an_order_buys_and_retires_for_a_beneficiary_in_one_step(
    trading, desk, issued, auth_header
):
    listing = trading.post(
        "/v1/listings",
        json={"account_id": issued["owner"], "quantity_t": 4, "price_cny": "70.00"},
        headers=desk.header("admin"),
    ).json()
    mine = desk.account("pens")
    buyer = {
        **auth_header("buyer", sub="pens-user", org="pens"),
        "Idempotency-Key": "o1",
    }
    order = {
        "listing_id": listing["id"],
        "quantity_t": 3,
        "beneficiary": "Pens Ltd",
        "purpose": "Carbon-neutral pens",
    }

    placed = trading.post("/v1/orders", json=order, headers=buyer)
    replayed = trading.post("/v1/orders", json=order, headers=buyer)
    too_many = trading.post(
        "/v1/orders",
        json={**order, "quantity_t": 3},
        headers={**buyer, "Idempotency-Key": "o2"},
    )

    assert placed.status_code == 201, placed.text
    body = placed.json()
    assert (body["state"], body["quantity_t"], body["total_cny"]) == (
        "retired",
        3,
        "210.00",
    )
    assert replayed.json() == body
    assert too_many.status_code == 409
    assert balances(trading, desk, mine) | {"buffer": 0} == {
        "held": 0,
        "listed": 0,
        "retired": 3,
        "cancelled": 0,
        "buffer": 0,
    }
    assert body["retirement"]["serials"] == body["purchase"]["serials"]
    certificate = trading.get(body["certificate_url"]).json()
    assert certificate["statement"]["body"]["beneficiary"] == "Pens Ltd"
    assert trading.get(body["certificate_pdf_url"]).status_code == 200
