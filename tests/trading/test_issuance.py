"""Monitoring reports, the verifier's decision, issuance and carry-over."""

import re

import pytest

from services.trading.registry import buffer_share, tonnes_from

SERIAL = re.compile(r"^SALV-TEST-\d{4}-\d+-\d+$")
# 1000 kg of metals over 2 km in a 1100 kg load:
# 1,500,000 - 629.2 -> 630 transport - 743.6 -> 744 plant - 75,000 leakage
ONE_AND_A_HALF = {"metals": 1000, "residue_landfill": 100}
ONE_AND_A_HALF_G = 1_500_000 - 630 - 744 - 75_000


@pytest.fixture
def trading(make_trading):
    with make_trading(buffer_permille=0) as client:
        yield client


def test_carry_over_across_two_issuances_never_rounds_up(sealed_log, desk):
    holder = desk.account("operator")
    sealed_log.write_batch("B1", net_kg=1100, outputs=ONE_AND_A_HALF, distance_m=2000)

    first = desk.issue(holder)["issuance"]

    assert first["report_total_g"] == ONE_AND_A_HALF_G == 1_423_626
    assert first["tonnes"] == 1
    assert first["carried_out_g"] == 423_626
    assert [b["serial"] for b in first["blocks"]] == [
        f"SALV-TEST-{first['vintage']}-1-1"
    ]

    sealed_log.write_batch("B2", net_kg=1100, outputs=ONE_AND_A_HALF, distance_m=2000)
    second = desk.issue(holder)["issuance"]

    assert second["carried_in_g"] == 423_626
    assert second["tonnes"] == 1
    assert second["carried_out_g"] == 423_626 + 1_423_626 - 1_000_000
    assert first["tonnes"] + second["tonnes"] == (2 * ONE_AND_A_HALF_G) // 1_000_000
    assert (second["serial_start"], second["serial_end"]) == (2, 2)


def test_approval_issues_serial_blocks_naming_the_seals(sealed_log, desk, trading):
    holder = desk.account("operator")
    sealed_log.write_batch("B1", net_kg=1100, outputs=ONE_AND_A_HALF, distance_m=2000)
    sealed_log.write_batch("B2", net_kg=1100, outputs=ONE_AND_A_HALF, distance_m=2000)

    report = desk.issue(holder)

    assert report["status"] == "approved"
    assert report["decided_by"] == "verifier-1"
    assert report["batch_ids"] == ["B1", "B2"]
    issuance = report["issuance"]
    assert issuance["tonnes"] == 2
    assert [s["batch_id"] for s in issuance["seals"]] == ["B1", "B2"]
    assert all(SERIAL.match(b["serial"]) for b in issuance["blocks"])
    account = trading.get(f"/v1/accounts/{holder}", headers=desk.header("admin")).json()
    assert account["balances"]["held"] == 2


def test_buffer_tonnes_are_set_aside(make_trading, sealed_log, desk_for):
    with make_trading(buffer_permille=100) as trading:
        desk = desk_for(trading)
        holder = desk.account("operator")
        for n in range(8):
            sealed_log.write_batch(
                f"B{n}", net_kg=1100, outputs=ONE_AND_A_HALF, distance_m=2000
            )

        issuance = desk.issue(holder)["issuance"]

    # 8 x 1,423,626 g = 11.39 t -> 11 t, of which ceil(1.1) = 2 t to the buffer
    assert issuance["tonnes"] == 11
    assert issuance["buffer_tonnes"] == 2
    statuses = {b["status"]: b["quantity_t"] for b in issuance["blocks"]}
    assert statuses == {"held": 9, "buffer": 2}


def test_a_rejected_report_issues_nothing_and_frees_its_batches(sealed_log, desk):
    holder = desk.account("operator")
    sealed_log.write_batch("B1", net_kg=1100, outputs=ONE_AND_A_HALF, distance_m=2000)
    report = desk.report(holder).json()

    rejected = desk.decide(report["id"], "reject")

    assert rejected.json()["status"] == "rejected"
    assert rejected.json()["issuance"] is None
    again = desk.report(holder)
    assert again.status_code == 201
    assert again.json()["batch_ids"] == ["B1"]


@pytest.mark.parametrize("comments", ["", "   "])
def test_a_rejection_without_comments_is_refused_and_changes_nothing(
    sealed_log, desk, trading, auth_header, comments
):
    holder = desk.account("operator")
    sealed_log.write_batch("B1", net_kg=1100, outputs=ONE_AND_A_HALF, distance_m=2000)
    report = desk.report(holder).json()

    refused = trading.post(
        f"/v1/reports/{report['id']}/decision",
        json={"decision": "reject", "comments": comments},
        headers=auth_header("verifier", sub="verifier-1"),
    )

    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "urn:salvage:problem:comments-required"
    stored = trading.get(f"/v1/reports/{report['id']}").json()
    assert stored["status"] == "submitted"
    assert stored["decided_by"] is None and stored["comments"] is None
    assert desk.decide(report["id"], "reject").json()["status"] == "rejected"


def test_an_approval_needs_no_comments(sealed_log, desk, trading, auth_header):
    holder = desk.account("operator")
    sealed_log.write_batch("B1", net_kg=1100, outputs=ONE_AND_A_HALF, distance_m=2000)
    report = desk.report(holder).json()

    approved = trading.post(
        f"/v1/reports/{report['id']}/decision",
        json={"decision": "approve"},
        headers=auth_header("verifier", sub="verifier-1"),
    )

    assert approved.status_code == 200, approved.text
    assert approved.json()["issuance"]["tonnes"] == 1


def test_only_a_verifier_decides_and_only_once(sealed_log, desk, trading):
    holder = desk.account("operator")
    sealed_log.write_batch("B1", net_kg=1100, outputs=ONE_AND_A_HALF, distance_m=2000)
    report = desk.report(holder).json()

    by_buyer = trading.post(
        f"/v1/reports/{report['id']}/decision",
        json={"decision": "approve"},
        headers=desk.header("buyer", org="someone"),
    )
    assert by_buyer.status_code == 403
    assert desk.decide(report["id"]).status_code == 200
    twice = desk.decide(report["id"])
    assert twice.status_code == 409
    assert twice.json()["type"] == "urn:salvage:problem:report-decided"


def test_a_period_without_eligible_batches_is_refused(sealed_log, desk, alerts):
    holder = desk.account("operator")
    sealed_log.write_batch(
        "B1", net_kg=1100, outputs=ONE_AND_A_HALF, distance_m=2000, alert_ids=("A1",)
    )
    alerts.raise_alert("B1", "A1")

    refused = desk.report(holder)

    assert refused.status_code == 422
    assert refused.json()["type"] == "urn:salvage:problem:no-eligible-batches"
    assert refused.json()["refused"][0]["reason"] == "open-alerts"


@pytest.mark.parametrize(
    ("available_g", "tonnes", "rest"),
    [
        (0, 0, 0),
        (999_999, 0, 999_999),
        (1_000_000, 1, 0),
        (-5, 0, -5),
        (2_999_999, 2, 999_999),
    ],
)
def test_whole_tonnes_are_rounded_down(available_g, tonnes, rest):
    assert tonnes_from(available_g) == (tonnes, rest)


def test_the_buffer_share_is_rounded_up():
    assert [buffer_share(t, 100) for t in (0, 1, 10, 11, 20)] == [0, 1, 1, 2, 2]


def test_a_report_holds_the_batches_processed_in_its_period(sealed_log, desk):
    holder = desk.account("operator")
    sealed_log.write_batch(
        "JAN",
        net_kg=1100,
        outputs=ONE_AND_A_HALF,
        distance_m=2000,
        at="2026-01-15T09:30:00Z",
    )
    sealed_log.write_batch("NOW", net_kg=1100, outputs=ONE_AND_A_HALF, distance_m=2000)

    january = desk.report(holder, ("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"))
    today = desk.report(holder)

    assert january.json()["batch_ids"] == ["JAN"]
    assert january.json()["vintage"] == 2026
    assert today.json()["batch_ids"] == ["NOW"]


def test_an_alert_on_a_later_page_raised_after_counting_blocks_approval(
    sealed_log, desk, alerts
):
    holder = desk.account("operator")
    sealed_log.write_batch("B1", net_kg=1100, outputs=ONE_AND_A_HALF, distance_m=2000)
    report = desk.report(holder).json()
    alerts.page_size = 1
    alerts.raise_alert("B1", "A-seen", status="resolved")
    alerts.raise_alert("B1", "A-volume", kind="volume_discrepancy")

    refused = desk.decide(report["id"])

    assert refused.status_code == 422, refused.text
    assert refused.json()["type"] == "urn:salvage:problem:open-alerts"
    assert refused.json()["alert_ids"] == ["A-volume"]


def test_an_alert_raised_after_counting_blocks_approval_until_resolved(
    sealed_log, desk, alerts, trading
):
    holder = desk.account("operator")
    sealed_log.write_batch("B1", net_kg=1100, outputs=ONE_AND_A_HALF, distance_m=2000)
    report = desk.report(holder).json()
    alerts.raise_alert("B1", "A-late")

    refused = desk.decide(report["id"])

    assert refused.status_code == 422, refused.text
    assert refused.json()["type"] == "urn:salvage:problem:open-alerts"
    assert refused.json()["alert_ids"] == ["A-late"]
    assert trading.get(f"/v1/reports/{report['id']}").json()["status"] == "submitted"
    alerts.resolve("A-late")
    approved = desk.decide(report["id"])
    assert approved.status_code == 200, approved.text
    assert approved.json()["issuance"]["tonnes"] == 1
