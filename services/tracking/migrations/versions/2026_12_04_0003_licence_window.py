"""Keeps each device's licence as a window of instants instead of a last day.

A stored date D meant "valid through day D", so it becomes the instant
D+1 00:00 UTC, the window's exclusive end; licence_valid_from is new and
stays empty until intake announces the device again. Columns are renamed,
added and dropped in place (SQLite 3.35 or later), never by copying the
table, which motion_state's foreign key points at.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 09:00:00
"""

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from alembic import op

from shared.timeutil import as_utc

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)
OLD = "licence_valid_through"


def upgrade() -> None:
    op.alter_column("devices", "licence_valid_until", new_column_name=OLD)
    op.add_column("devices", sa.Column("licence_valid_from", TIME, nullable=True))
    op.add_column("devices", sa.Column("licence_valid_until", TIME, nullable=True))
    through, until = sa.column(OLD, sa.Date()), sa.column("licence_valid_until", TIME)
    _copy(through, until, _end_of_day)
    op.drop_column("devices", OLD)


def downgrade() -> None:
    op.alter_column("devices", "licence_valid_until", new_column_name="licence_end")
    op.add_column("devices", sa.Column(OLD, sa.Date(), nullable=True))
    _copy(sa.column("licence_end", TIME), sa.column(OLD, sa.Date()), _last_day)
    op.drop_column("devices", "licence_end")
    op.drop_column("devices", "licence_valid_from")
    op.alter_column("devices", OLD, new_column_name="licence_valid_until")


def _end_of_day(day: date) -> datetime:
    """The exclusive end of a licence valid through a day: next midnight UTC."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)


def _last_day(end: datetime) -> date:
    """The last day a licence ending at an instant is valid on, as before."""
    return (as_utc(end) - timedelta(microseconds=1)).date()


def _copy(source: sa.ColumnClause, target: sa.ColumnClause, convert) -> None:
    """Fills a column of every device from another, converted in Python so that
    each backend reads and writes its own date and time forms."""
    devices = sa.table("devices", sa.column("device_id", sa.String()), source, target)
    bind = op.get_bind()
    found = bind.execute(
        sa.select(devices.c.device_id, source).where(source.is_not(None))
    ).all()
    if not found:
        return
    bind.execute(
        devices.update()
        .where(devices.c.device_id == sa.bindparam("device"))
        .values({target.name: sa.bindparam("value")}),
        [{"device": device, "value": convert(value)} for device, value in found],
    )
