"""Positions partitioned by fix day on PostgreSQL, with retention; one plain
table on SQLite."""

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text

from services.tracking import partitions
from tests.conftest import BACKEND
from tests.tracking.conftest import DEVICE, HOME, fix, post_batch, stored_positions

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
postgres_only = pytest.mark.skipif(BACKEND != "postgres", reason="PostgreSQL only")


def relkind(client) -> str:
    with client.app.state.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            return "sqlite"
        return connection.execute(
            text("SELECT relkind FROM pg_class WHERE relname = 'positions'")
        ).scalar_one()


def days(client) -> set[date]:
    with client.app.state.engine.connect() as connection:
        return partitions.existing_days(connection)


@postgres_only
def test_positions_are_partitioned_by_day_and_made_ahead(client):
    assert relkind(client) == "p"
    today = datetime.now(UTC).date()
    assert {today + timedelta(days=n) for n in range(8)} <= days(client)


@postgres_only
def test_a_fix_on_a_new_day_gets_its_partition(client, device, device_token):
    response = post_batch(client, device_token, [fix(0, *HOME), fix(86_400, *HOME)])

    assert response.json()["accepted"] == 2
    assert {date(2026, 12, 1), date(2026, 12, 2)} <= days(client)
    assert len(stored_positions(client)) == 2


@postgres_only
def test_retention_drops_only_expired_partitions(client, device, device_token):
    old = [fix(-40 * 86_400, *HOME)]
    recent = [fix(0, *HOME)]
    post_batch(client, device_token, old + recent)
    engine = client.app.state.engine

    dropped = partitions.drop_expired(engine, now=NOW, retention_days=30)

    assert date(2026, 10, 22) in dropped
    assert date(2026, 12, 1) in days(client)
    assert [p.lat for p in stored_positions(client)] == [HOME[0]]
    assert partitions.drop_expired(engine, now=NOW, retention_days=30) == []


def test_fixes_older_than_the_retention_are_dropped_as_too_old(
    make_client, token_for, auth_header
):
    client = make_client(retention_days=1)
    headers = auth_header("service", "service:intake")
    client.put(
        f"/v1/devices/{DEVICE}",
        json={"vehicle_id": "v", "hauler_id": "h", "plate": "P"},
        headers=headers,
    )
    now = datetime.now(UTC)
    body = {
        "positions": [
            {"time": (now - timedelta(days=3)).isoformat(), "lat": 52.66, "lon": -8.63},
            {"time": now.isoformat(), "lat": 52.66, "lon": -8.63},
        ]
    }

    response = client.post(
        f"/v1/devices/{DEVICE}/positions",
        json=body,
        headers={"Authorization": f"Bearer {token_for('device', DEVICE)}"},
    )

    assert response.json()["dropped"] == {"too_old": 1}


def test_sqlite_keeps_a_plain_table(client):
    if BACKEND == "postgres":
        pytest.skip("SQLite only")
    assert relkind(client) == "sqlite"
    assert (
        partitions.maintain(
            client.app.state.engine, client.app.state.tracking_config, NOW
        )
        == []
    )


@postgres_only
def test_a_batch_spread_over_too_many_new_days_is_refused_whole(
    client, device, device_token
):
    before = days(client)
    spread = [fix(-n * 86_400 * 9, *HOME) for n in range(40, 80)]

    refused = post_batch(client, device_token, spread)

    assert refused.status_code == 422, refused.text
    assert refused.json()["type"].endswith("too-many-new-days")
    assert refused.json()["new_days"] == 40
    assert days(client) == before
    assert stored_positions(client) == []
    accepted = post_batch(client, device_token, spread[:3])
    assert accepted.json()["accepted"] == 3


@postgres_only
def test_past_days_created_by_uploads_are_capped_per_day_across_uploads(
    make_client, token_for, auth_header
):
    client = make_client(max_backfill_partitions_per_day=2)
    headers = auth_header("service", "service:intake")
    client.put(
        f"/v1/devices/{DEVICE}",
        json={"vehicle_id": "v", "hauler_id": "h", "plate": "P"},
        headers=headers,
    )
    before = days(client)
    base = datetime(2015, 3, 1, 12, tzinfo=UTC)

    def upload(*offsets_days):
        points = [
            {
                "time": (base + timedelta(days=n)).isoformat(),
                "lat": HOME[0],
                "lon": HOME[1] + n / 1000,
            }
            for n in offsets_days
        ]
        return client.post(
            f"/v1/devices/{DEVICE}/positions",
            json={"positions": points},
            headers={"Authorization": f"Bearer {token_for('device', DEVICE)}"},
        )

    refused = upload(0, 1, 2)
    assert refused.status_code == 429, refused.text
    assert refused.json()["type"].endswith("backfill-limit")
    assert 0 < int(refused.headers["Retry-After"]) <= 86_400
    assert days(client) == before

    assert upload(0).json()["accepted"] == 1
    assert upload(1).json()["accepted"] == 1
    assert upload(0, 1).json()["dropped"] == {"duplicate": 2}
    assert upload(2).status_code == 429
    assert days(client) - before == {date(2015, 3, 1), date(2015, 3, 2)}
