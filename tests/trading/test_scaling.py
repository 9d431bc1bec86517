"""Truck class per vehicle, seals read once, and issuances of many batches."""

import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from services.trading import registry
from services.trading.config import TradingConfig
from services.trading.models import Calculation, Project, Report, outbox
from services.trading.service import TradingContext
from shared.canonical import b64, canonical_json
from shared.crypto import generate_key
from shared.db import make_engine, make_sessionmaker
from shared.timeutil import utcnow

OUTPUTS = {"concrete_mortar": 1200, "metals": 100, "residue_landfill": 500}
SMALL = {"metals": 1000, "residue_landfill": 100}
LEDGER_ENTRY_LIMIT = 64 * 1024


def quantify(client, desk, batch_id):
    return client.post(
        "/v1/quantifications",
        json={"batch_id": batch_id},
        headers=desk.header("service", sub="service:demo"),
    )


def test_the_truck_class_comes_from_the_vehicle_and_is_recorded(
    make_trading, sealed_log, desk_for
):
    sealed_log.write_batch("B1", net_kg=2000, outputs=OUTPUTS, distance_m=12000)
    classes = {"truck-1": "diesel_truck_8t"}

    with make_trading(vehicle_truck_classes=classes) as client:
        body = quantify(client, desk_for(client), "B1").json()

    # 12 km x 2 t x 0.179 kgCO2e/(t km) = 4296 g, exactly.
    assert body["terms"]["transport_g"] == 4296
    assert body["inputs"]["vehicle_id"] == "truck-1"
    assert body["policy"]["truck_class"] == "diesel_truck_8t"
    assert body["policy"]["truck_class_basis"] == "vehicle:truck-1"
    assert body["factors"]["transport.diesel_truck_8t"]["value"] == "0.179"


def test_a_vehicle_not_in_the_map_uses_the_default_class(
    make_trading, sealed_log, desk_for
):
    sealed_log.write_batch("B1", net_kg=2000, outputs=OUTPUTS, distance_m=12000)

    with make_trading(vehicle_truck_classes={"truck-9": "diesel_truck_8t"}) as client:
        body = quantify(client, desk_for(client), "B1").json()

    assert body["terms"]["transport_g"] == 6864
    assert body["policy"]["truck_class"] == "diesel_truck_2t"
    assert body["policy"]["truck_class_basis"] == "default"


def test_a_class_missing_from_the_factor_table_is_refused_and_nothing_stored(
    make_trading, sealed_log, desk_for
):
    sealed_log.write_batch("B1", net_kg=2000, outputs=OUTPUTS, distance_m=12000)

    with make_trading(vehicle_truck_classes={"truck-1": "hovercraft"}) as client:
        refused = quantify(client, desk_for(client), "B1")
        listed = client.get("/v1/quantifications").json()["items"]

    assert refused.status_code == 422
    assert refused.json()["type"] == "urn:salvage:problem:factor-missing"
    assert listed == []


@pytest.fixture
def seal_reads(ledger, make_trading):
    """The trading app with a ledger client that counts seal fetches."""
    fetched: list[str] = []

    class Counting(TestClient):
        def get(self, url, **kwargs):
            if str(url).endswith("/seal"):
                fetched.append(str(url).split("/")[3])
            return super().get(url, **kwargs)

    client = Counting(
        ledger.app, base_url="http://ledger", headers=dict(ledger.headers)
    )
    with make_trading(ledger_client=client) as trading:
        yield trading, fetched


def test_each_seal_is_read_and_verified_once_across_reports(
    seal_reads, sealed_log, desk_for
):
    trading, fetched = seal_reads
    desk = desk_for(trading)
    holder = desk.account("operator")
    sealed_log.write_batch(
        "JAN", net_kg=1100, outputs=SMALL, distance_m=2000, at="2026-01-15T09:30:00Z"
    )
    sealed_log.write_batch("NOW1", net_kg=1100, outputs=SMALL, distance_m=2000)

    today = desk.report(holder)
    assert today.status_code == 201, today.text
    assert sorted(fetched) == ["JAN", "NOW1"]
    january = desk.report(holder, ("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"))
    assert sorted(fetched) == ["JAN", "NOW1"]
    sealed_log.write_batch("NOW2", net_kg=1100, outputs=SMALL, distance_m=2000)
    start = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    later = desk.report(holder, (zulu(start), zulu(start + timedelta(days=1))))

    assert today.json()["batch_ids"] == ["NOW1"]
    assert january.json()["batch_ids"] == ["JAN"]
    assert later.json()["batch_ids"] == ["NOW2"]
    assert sorted(fetched) == ["JAN", "NOW1", "NOW2"]


def zulu(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_seal_refused_once_is_reported_and_not_read_again(
    seal_reads, sealed_log, desk_for, alerts
):
    trading, fetched = seal_reads
    desk = desk_for(trading)
    holder = desk.account("operator")
    sealed_log.write_batch("B1", net_kg=1100, outputs=SMALL, distance_m=2000,
                           alert_ids=("A1",))  # fmt: skip
    alerts.raise_alert("B1", "A1")

    first = desk.report(holder)
    alerts.resolve("A1")
    second = desk.report(holder)

    assert first.status_code == 422
    assert first.json()["refused"][0]["reason"] == "open-alerts"
    assert second.status_code == 201, second.text
    assert second.json()["batch_ids"] == ["B1"]
    assert fetched == ["B1"]


@pytest.fixture
def sessions(databases):
    engine = make_engine(databases.url("trading"))
    yield make_sessionmaker(engine)
    engine.dispose()


def many_batches(session, ctx, count: int) -> Report:
    """An approved-to-be report over count calculated batches."""
    account = registry.create_account(session, org_id="operator", name="a")
    session.add(Project(code=ctx.config.project, next_serial=1, carry_g=0))
    now = utcnow()
    report = Report(
        id=str(uuid.uuid4()),
        project=ctx.config.project,
        vintage=2026,
        period_start=now,
        period_end=now,
        account_id=account.id,
        status="approved",
        total_g=count * 150_000,
        batch_ids=[],
        buffer_permille=0,
        created_by="service",
        created_at=now,
    )
    session.add(report)
    session.flush()
    for n in range(count):
        session.add(
            Calculation(
                id=str(uuid.uuid4()),
                batch_id=f"batch-{n:05d}-{uuid.uuid4()}",
                seal_index=10 * n + 4,
                seal_leaf_hash=b64(bytes(32)),
                sealed_at=now,
                processed_at=now,
                checkpoint_size=10 * n + 5,
                factor_version="v1",
                inputs={},
                policy={},
                result={},
                net_g=150_000,
                creditable_g=150_000,
                report_id=report.id,
                created_at=now,
            )  # fmt: skip
        )
    session.flush()
    return report


def test_an_issuance_of_two_thousand_batches_fits_one_ledger_entry(sessions):
    ctx = TradingContext(
        config=TradingConfig(project="BIG"),
        signer=generate_key(),
        ledger=None,
        tracking=None,
    )
    with sessions() as session:
        report = many_batches(session, ctx, 2000)

        issuance = registry.issue(session, ctx=ctx, report=report)
        [entry] = session.execute(
            select(outbox.c.body).where(
                outbox.c.key == f"trading:credit.issuance:{issuance.id}"
            )
        ).scalars()
        seals = registry.seals_of(session, report.id)
        session.rollback()

    assert len(canonical_json(seals)) > 3 * LEDGER_ENTRY_LIMIT
    assert len(canonical_json(entry)) < 2048
    assert entry["statement"]["body"]["seal_count"] == 2000
