"""Tracking's migrations on a database that already holds devices."""

from datetime import UTC, date, datetime

import sqlalchemy as sa
from alembic import command

from services.tracking import service
from services.tracking.models import Device
from shared.db import alembic_config, make_engine, make_sessionmaker

BEFORE_WINDOWS = "0002"
# The devices table as it was when a licence was a last valid day.
DAY_DEVICES = sa.table(
    "devices",
    sa.column("device_id", sa.String()),
    sa.column("vehicle_id", sa.String()),
    sa.column("hauler_id", sa.String()),
    sa.column("plate", sa.String()),
    sa.column("licence_valid_until", sa.Date()),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)


def device_row(device_id: str, last_day: date | None) -> dict:
    return {
        "device_id": device_id,
        "vehicle_id": "veh-1",
        "hauler_id": "hauler-1",
        "plate": device_id.upper(),
        "licence_valid_until": last_day,
        "updated_at": datetime(2026, 12, 1, tzinfo=UTC),
    }


def run_sql(url: str, statement) -> list:
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            result = connection.execute(statement)
            return result.all() if result.returns_rows else []
    finally:
        engine.dispose()


def windows(url: str) -> dict:
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            devices = session.scalars(sa.select(Device))
            return {d.device_id: service.licence_window(d) for d in devices}
    finally:
        engine.dispose()


def database_with_day_licences(databases) -> str:
    url = databases.empty_url("tracking")
    command.upgrade(alembic_config("tracking", url), BEFORE_WINDOWS)
    rows = [device_row("truck-1", date(2026, 11, 30)), device_row("truck-2", None)]
    run_sql(url, DAY_DEVICES.insert().values(rows))
    return url


def test_a_last_licence_day_becomes_an_end_at_the_next_midnight(databases):
    url = database_with_day_licences(databases)

    command.upgrade(alembic_config("tracking", url), "head")

    assert windows(url) == {
        "truck-1": (None, datetime(2026, 12, 1, tzinfo=UTC)),
        "truck-2": (None, None),
    }


def test_the_downgrade_gives_back_the_last_day(databases):
    url = database_with_day_licences(databases)
    config = alembic_config("tracking", url)
    command.upgrade(config, "head")

    command.downgrade(config, BEFORE_WINDOWS)

    selected = sa.select(DAY_DEVICES.c.device_id, DAY_DEVICES.c.licence_valid_until)
    assert sorted(run_sql(url, selected)) == [
        ("truck-1", date(2026, 11, 30)),
        ("truck-2", None),
    ]
