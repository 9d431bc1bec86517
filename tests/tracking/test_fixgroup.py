"""Single fixes from concurrent OsmAnd requests, stored in one transaction."""

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from services.tracking import fixgroup, partitions
from services.tracking import ingest as ingestion
from services.tracking.config import TrackingConfig
from services.tracking.fixgroup import DeviceFix, write_group
from services.tracking.models import MotionState
from services.tracking.osmand import RawFix
from services.tracking.service import UnknownDevice
from shared.groupcommit import GroupCommit
from shared.timeutil import as_utc
from tests.conftest import BACKEND

from .conftest import (
    HOME,
    at,
    offset,
    position_count,
    register_device,
    stored_positions,
)

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def device_fix(device_id: str, seconds: float, east_m: float = 0.0) -> DeviceFix:
    lat, lon = offset(*HOME, east_m=east_m)
    return DeviceFix(device_id, RawFix(time=at(seconds), lat=lat, lon=lon), NOW)


def fix_times(client, device_id: str) -> list[datetime]:
    return [as_utc(p.fix_time) for p in stored_positions(client, device_id)]


@pytest.fixture
def devices(client, service_auth) -> list[str]:
    names = [f"dev-{n}" for n in range(5)]
    for name in names:
        register_device(client, service_auth, name, vehicle=f"veh-{name}")
    return names


def test_a_group_stores_each_devices_fix_and_answers_each_alone(client, devices):
    items = [device_fix(name, 0) for name in devices]
    items.append(device_fix("dev-ghost", 0))

    outcomes = write_group(client.app.state.sessions, TrackingConfig(), items)

    assert [o.accepted for o in outcomes[:5]] == [1] * 5
    assert isinstance(outcomes[5], UnknownDevice)
    for name in devices:
        assert fix_times(client, name) == [at(0)]
    with client.app.state.sessions() as session:
        states = session.scalars(select(MotionState)).all()
        assert {s.device_id: as_utc(s.last_time) for s in states} == {
            name: at(0) for name in devices
        }


def test_one_device_twice_in_a_group_keeps_arrival_order_and_drops_a_repeat(
    client, devices
):
    name = devices[0]
    items = [
        device_fix(name, 0),
        device_fix(name, 10, east_m=50),
        device_fix(name, 10, east_m=50),
        device_fix(name, 5, east_m=25),
    ]

    outcomes = write_group(client.app.state.sessions, TrackingConfig(), items)

    assert [o.accepted for o in outcomes] == [1, 1, 0, 1]
    assert outcomes[2].dropped == {"duplicate": 1}
    assert fix_times(client, name) == [at(0), at(5), at(10)]


def test_a_failing_fix_is_split_off_and_costs_only_its_own_request(
    client, devices, monkeypatch
):
    real_ingest = ingestion.ingest

    def ingest(session, *, target, **kwargs):
        if target.device.device_id == devices[2]:
            raise RuntimeError("this device's fix breaks the transaction")
        return real_ingest(session, target=target, **kwargs)

    monkeypatch.setattr(fixgroup.ingestion, "ingest", ingest)
    items = [device_fix(name, 0) for name in devices]

    outcomes = write_group(client.app.state.sessions, TrackingConfig(), items)

    assert isinstance(outcomes[2], RuntimeError)
    assert [outcomes[n].accepted for n in (0, 1, 3, 4)] == [1, 1, 1, 1]
    assert position_count(client) == 4
    assert stored_positions(client, devices[2]) == []


def test_concurrent_requests_share_transactions(client, devices):
    sizes: list[int] = []
    sessions, config = client.app.state.sessions, TrackingConfig()

    def write(items):
        sizes.append(len(items))
        return write_group(sessions, config, items)

    writer = GroupCommit(write, max_batch=50)
    items = [device_fix(name, s, east_m=s) for s in range(40) for name in devices]

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(writer.submit, items))

    assert sum(o.received for o in outcomes) == 200
    assert sum(sizes) == 200
    assert len(sizes) < 200, "no two requests shared a transaction"
    assert position_count(client) == sum(o.accepted for o in outcomes)
    for name in devices:
        times = fix_times(client, name)
        assert times == sorted(set(times))


def test_the_osmand_endpoint_answers_through_the_group_writer(
    client, devices, token_for
):
    lat, lon = HOME
    params = {"id": devices[0], "lat": lat, "lon": lon, "timestamp": "1764579600"}
    headers = {"Authorization": f"Bearer {token_for('device', devices[0])}"}

    first = client.post("/", params=params, headers=headers)
    again = client.post("/", params=params, headers=headers)

    assert first.status_code == again.status_code == 200
    assert first.json()["accepted"] == 1
    assert again.json() == {**first.json(), "accepted": 0, "dropped": {"duplicate": 1}}
    assert len(stored_positions(client, devices[0])) == 1


def test_a_fix_on_a_new_past_day_after_a_late_fix_does_not_stall_its_group(
    client, devices
):
    """A late fix reads positions inside the group's transaction; a later fix
    of the group needing a new partition must not wait for that transaction."""
    sessions, config = client.app.state.sessions, TrackingConfig()
    write_group(sessions, config, [device_fix(devices[0], 100)])
    old_day = DeviceFix(
        devices[1],
        RawFix(time=datetime(2010, 5, 2, 12, tzinfo=UTC), lat=HOME[0], lon=HOME[1]),
        NOW,
    )

    with capture_logs() as logs:
        outcomes = write_group(sessions, config, [device_fix(devices[0], 50), old_day])

    assert [o.accepted for o in outcomes] == [1, 1]
    assert "tracking.fix_group_split" not in [e["event"] for e in logs]
    assert fix_times(client, devices[1]) == [old_day.fix.time]


def test_a_malformed_device_id_in_a_json_body_is_refused_before_the_database(
    client, devices, token_for
):
    body = (
        '{"device_id": "truck\\ud800", "location": {"timestamp": 1764579600, '
        '"coords": {"latitude": 52.66, "longitude": -8.63}}}'
    )
    response = client.post(
        "/",
        content=body,
        headers={
            "Authorization": f"Bearer {token_for('admin', 'admin')}",
            "Content-Type": "application/json",
        },
    )

    assert response.status_code == 422, response.text
    assert response.json()["type"].endswith("invalid-fix")


@pytest.mark.skipif(BACKEND != "postgres", reason="PostgreSQL only")
def test_an_unregistered_device_creates_no_partition(client, devices):
    old_day = datetime(2011, 1, 1, 12, tzinfo=UTC)
    ghost = DeviceFix("dev-ghost", RawFix(old_day, *HOME), NOW)
    with client.app.state.engine.connect() as connection:
        before = partitions.existing_days(connection)

    [outcome] = write_group(client.app.state.sessions, TrackingConfig(), [ghost])

    assert isinstance(outcome, UnknownDevice)
    with client.app.state.engine.connect() as connection:
        assert partitions.existing_days(connection) == before
