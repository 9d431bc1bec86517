"""Quantifying sealed batches read from the real ledger, and refusing the rest."""

import json
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from services.trading import methodology
from services.trading.models import Calculation
from shared.canonical import b64, canonical_json, unb64
from shared.crypto import generate_key, public_key_from_b64, verify_statement
from shared.db import make_engine
from shared.note import verifier_key

OUTPUTS = {"concrete_mortar": 1200, "metals": 100, "residue_landfill": 500}


def quantify(trading, auth_header, batch_id):
    return trading.post(
        "/v1/quantifications",
        json={"batch_id": batch_id},
        headers=auth_header("service", sub="service:demo"),
    )


def count_calculations(trading_url) -> int:
    engine = make_engine(trading_url)
    with engine.connect() as connection:
        count = connection.execute(select(func.count()).select_from(Calculation))
        value = count.scalar_one()
    engine.dispose()
    return value


def test_a_sealed_batch_is_quantified_to_the_gram(trading, sealed_log, auth_header):
    sealed_log.write_batch("B1", net_kg=2000, outputs=OUTPUTS, distance_m=12000)

    response = quantify(trading, auth_header, "B1")

    assert response.status_code == 201, response.text
    body = response.json()
    # concrete 1200 x 2.18 + metals 100 x 1500; transport 12 km x 2 t x 0.286;
    # plant 2 t x 0.676; leakage 5 % of 152616 = 7630.8, rounded up.
    assert body["terms"] == {
        "avoided_g": {"concrete_mortar": 2616, "metals": 150000, "residue_landfill": 0},
        "avoided_total_g": 152616,
        "transport_g": 6864,
        "plant_g": 1352,
        "leakage_g": 7631,
    }
    assert body["creditable_g"] == body["net_g"] == 136769
    assert body["factor_version"] == "v1"
    assert body["inputs"]["mass_basis"] == "measured"
    assert body["seal"]["index"] == 4
    assert trading.get("/v1/quantifications/B1").json() == body


def test_the_calculation_goes_to_the_ledger_signed_by_trading(
    trading, sealed_log, auth_header, ledger
):
    sealed_log.write_batch("B1", net_kg=2000, outputs=OUTPUTS, distance_m=12000)
    assert quantify(trading, auth_header, "B1").status_code == 201

    trading.app.state.relay.deliver_due()

    [entry] = sealed_log.entries_of_kind("credit.quantification")
    statement = entry["statement"]
    assert statement["batch_id"] == "B1"
    assert statement["body"]["result"]["creditable_g"] == 136769
    assert statement["body"]["factor_version"] == "v1"
    signer = trading.get("/v1/signing-key").json()
    assert entry["signatures"][0]["key_id"] == signer["key_id"]
    public = public_key_from_b64(signer["public_key"])
    assert verify_statement(public, statement, entry["signatures"][0]["signature"])
    key = ledger.get(f"/v1/keys/{signer['key_id']}").json()
    assert key["party_id"] == "trading"
    assert "credit.retirement" in key["kinds"]


def test_a_batch_with_an_open_alert_is_refused_until_resolved(
    trading, sealed_log, alerts, auth_header, trading_url
):
    sealed_log.write_batch(
        "B1", net_kg=2000, outputs=OUTPUTS, distance_m=12000, alert_ids=("A1",)
    )
    alerts.raise_alert("B1", "A1")

    refused = quantify(trading, auth_header, "B1")

    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "urn:salvage:problem:open-alerts"
    assert refused.json()["alert_ids"] == ["A1"]
    assert count_calculations(trading_url) == 0

    alerts.resolve("A1")
    assert quantify(trading, auth_header, "B1").status_code == 201


@pytest.mark.parametrize("kind", ["mass_discrepancy", "volume_discrepancy"])
def test_an_open_discrepancy_alert_is_refused(
    trading, sealed_log, alerts, auth_header, trading_url, kind
):
    sealed_log.write_batch("B1", net_kg=2000, outputs=OUTPUTS, distance_m=12000)
    alerts.raise_alert("B1", "D1", kind=kind)

    refused = quantify(trading, auth_header, "B1")

    assert refused.status_code == 422
    assert refused.json()["type"] == "urn:salvage:problem:open-alerts"
    assert refused.json()["alert_ids"] == ["D1"]
    assert count_calculations(trading_url) == 0


def test_an_open_alert_on_a_later_page_of_trackings_list_is_refused(
    trading, sealed_log, alerts, auth_header
):
    sealed_log.write_batch("B1", net_kg=2000, outputs=OUTPUTS, distance_m=12000)
    alerts.page_size = 2
    alerts.raise_alert("B1", "A1", status="resolved")
    alerts.raise_alert("B1", "A2", status="resolved")
    alerts.raise_alert("B1", "A3", kind="volume_discrepancy")

    refused = quantify(trading, auth_header, "B1")

    assert refused.status_code == 422, refused.text
    assert refused.json()["alert_ids"] == ["A3"]
    assert [r.get("cursor") for r in alerts.requests] == [None, "2"]
    assert {r["batch_id"] for r in alerts.requests} == {"B1"}
    alerts.resolve("A3")
    assert quantify(trading, auth_header, "B1").status_code == 201


def test_an_alert_named_by_the_trip_but_unknown_to_tracking_is_refused(
    trading, sealed_log, auth_header
):
    sealed_log.write_batch(
        "B1", net_kg=2000, outputs=OUTPUTS, distance_m=12000, alert_ids=("A9",)
    )

    refused = quantify(trading, auth_header, "B1")

    assert refused.status_code == 422
    assert refused.json()["alert_ids"] == ["A9"]


def test_a_batch_without_a_seal_is_refused(
    trading, sealed_log, auth_header, trading_url
):
    sealed_log.write_batch(
        "B1", net_kg=2000, outputs=OUTPUTS, distance_m=12000, with_processing=False
    )

    for batch_id in ("B1", "never-seen"):
        refused = quantify(trading, auth_header, batch_id)
        assert refused.status_code == 422
        assert refused.json()["type"] == "urn:salvage:problem:not-sealed"
    assert count_calculations(trading_url) == 0


def test_a_batch_is_never_counted_twice(trading, sealed_log, auth_header, trading_url):
    sealed_log.write_batch("B1", net_kg=2000, outputs=OUTPUTS, distance_m=12000)
    assert quantify(trading, auth_header, "B1").status_code == 201

    again = quantify(trading, auth_header, "B1")

    assert again.status_code == 409
    assert again.json()["type"] == "urn:salvage:problem:already-counted"
    assert count_calculations(trading_url) == 1


def test_the_database_itself_refuses_a_second_calculation_of_a_batch(trading_url):
    engine = make_engine(trading_url)
    now = datetime.now(UTC)
    row = {
        "batch_id": "B1",
        "seal_index": 4,
        "seal_leaf_hash": "x",
        "sealed_at": now,
        "processed_at": now,
        "checkpoint_size": 5,
        "factor_version": "v1",
        "inputs": {},
        "policy": {},
        "result": {},
        "net_g": 0,
        "creditable_g": 0,
        "created_at": now,
    }
    with engine.begin() as connection:
        connection.execute(insert(Calculation).values(id="first", **row))

    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(insert(Calculation).values(id="second", **row))

    engine.dispose()
    assert count_calculations(trading_url) == 1


def test_a_seal_checked_against_another_ledger_key_is_refused(
    make_trading, sealed_log, auth_header
):
    sealed_log.write_batch("B1", net_kg=2000, outputs=OUTPUTS, distance_m=12000)
    impostor = verifier_key("test.salvage/ledger", generate_key())

    with make_trading(ledger_key=impostor) as trading:
        refused = quantify(trading, auth_header, "B1")

    assert refused.status_code == 422
    assert refused.json()["type"] == "urn:salvage:problem:seal-unverified"


def tampering_client(ledger, index: int) -> httpx.Client:
    """Serves the real ledger, except that entry index has its mass inflated."""

    def handler(request: httpx.Request) -> httpx.Response:
        response = ledger.get(request.url.path, params=request.url.params)
        if request.url.path != f"/v1/entries/{index}":
            return httpx.Response(
                response.status_code, content=response.content, headers=response.headers
            )
        body = response.json()
        entry = json.loads(unb64(body["leaf"]))
        for output in entry["statement"]["body"]["outputs"]:
            output["kg"] *= 10
        body["leaf"] = b64(canonical_json(entry))
        body["entry"] = entry
        return httpx.Response(200, json=body)

    return httpx.Client(transport=httpx.MockTransport(handler), base_url="http://l")


def test_an_entry_altered_on_the_way_is_refused(
    make_trading, sealed_log, ledger, auth_header, trading_url
):
    sealed_log.write_batch("B1", net_kg=2000, outputs=OUTPUTS, distance_m=12000)

    with make_trading(ledger_client=tampering_client(ledger, 2)) as trading:
        refused = quantify(trading, auth_header, "B1")

    assert refused.status_code == 422
    assert refused.json()["type"] == "urn:salvage:problem:seal-unverified"
    assert count_calculations(trading_url) == 0


def test_the_ledger_key_is_pinned_on_first_use(
    make_trading, sealed_log, ledger, auth_header
):
    sealed_log.write_batch("B1", net_kg=2000, outputs=OUTPUTS, distance_m=12000)
    sealed_log.write_batch("B2", net_kg=2000, outputs=OUTPUTS, distance_m=12000)
    with make_trading() as trading:
        assert quantify(trading, auth_header, "B1").status_code == 201

    def swapped_key(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/key":
            other = verifier_key("test.salvage/ledger", generate_key())
            return httpx.Response(200, text=other)
        response = ledger.get(request.url.path, params=request.url.params)
        return httpx.Response(
            response.status_code, content=response.content, headers=response.headers
        )

    client = httpx.Client(
        transport=httpx.MockTransport(swapped_key), base_url="http://l"
    )
    with make_trading(ledger_client=client) as trading:
        assert quantify(trading, auth_header, "B2").status_code == 201


def test_a_new_factor_version_never_changes_stored_calculations(
    make_trading, sealed_log, auth_header, tmp_path, monkeypatch
):
    original = methodology.FACTORS_DIR / "v1.csv"
    (tmp_path / "v1.csv").write_text(original.read_text(encoding="utf-8"))
    (tmp_path / "v2.csv").write_text(
        original.read_text(encoding="utf-8").replace(
            "avoided.metals,1500,", "avoided.metals,1000,"
        )
    )
    monkeypatch.setattr(methodology, "FACTORS_DIR", tmp_path)
    methodology.load_factor_table.cache_clear()
    sealed_log.write_batch("B1", net_kg=2000, outputs=OUTPUTS, distance_m=12000)
    sealed_log.write_batch("B2", net_kg=2000, outputs=OUTPUTS, distance_m=12000)
    with make_trading() as trading:
        before = quantify(trading, auth_header, "B1").json()

    with make_trading(factor_version="v2") as trading:
        second = quantify(trading, auth_header, "B2").json()
        after = trading.get("/v1/quantifications/B1").json()
        versions = trading.get("/v1/methodology").json()["versions"]

    methodology.load_factor_table.cache_clear()
    assert after == before
    assert after["factors"]["avoided.metals"]["value"] == "1500"
    assert second["factor_version"] == "v2"
    assert second["terms"]["avoided_g"]["metals"] == 100000
    assert versions == ["v1", "v2"]
