"""Creates the tracking tables: registry copies, positions, motion, alerts, trips.

Revision ID: 0001
Revises:
Create Date: 2026-12-03 16:35:42
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.idempotency import idempotency_columns
from shared.outbox import outbox_columns

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(64)
TIME = sa.DateTime(timezone=True)
COUNTER = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table("outbox", *outbox_columns())
    op.create_table("idempotency_keys", *idempotency_columns())
    _registry()
    _telemetry()
    _alerts_and_trips()


def _registry() -> None:
    op.create_table(
        "places",
        sa.Column("place_id", ID, primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("geometry", sa.JSON(), nullable=False),
        sa.Column("radius_m", sa.Float(), nullable=False),
        sa.Column("licensed", sa.Boolean(), nullable=False),
        sa.Column("min_lat", sa.Float(), nullable=False),
        sa.Column("max_lat", sa.Float(), nullable=False),
        sa.Column("min_lon", sa.Float(), nullable=False),
        sa.Column("max_lon", sa.Float(), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
    )
    op.create_index("ix_places_min_lat", "places", ["min_lat"])
    op.create_table(
        "devices",
        sa.Column("device_id", ID, primary_key=True),
        sa.Column("vehicle_id", ID, nullable=False),
        sa.Column("hauler_id", ID, nullable=False),
        sa.Column("plate", sa.String(32), nullable=False),
        sa.Column("licence_valid_until", sa.Date(), nullable=True),
        sa.Column("updated_at", TIME, nullable=False),
    )


def _telemetry() -> None:
    op.create_table(
        "motion_state",
        sa.Column(
            "device_id", ID, sa.ForeignKey("devices.device_id"), primary_key=True
        ),
        sa.Column("last_time", TIME, nullable=True),
        sa.Column("last_lat", sa.Float(), nullable=True),
        sa.Column("last_lon", sa.Float(), nullable=True),
        sa.Column("jump_time", TIME, nullable=True),
        sa.Column("jump_lat", sa.Float(), nullable=True),
        sa.Column("jump_lon", sa.Float(), nullable=True),
        sa.Column("cluster_start", TIME, nullable=True),
        sa.Column("cluster_end", TIME, nullable=True),
        sa.Column("cluster_count", sa.Integer(), nullable=False),
        sa.Column("cluster_lat_sum", sa.Float(), nullable=False),
        sa.Column("cluster_lon_sum", sa.Float(), nullable=False),
        sa.Column("cluster_checked", sa.Boolean(), nullable=False),
        sa.Column("cluster_alert_id", sa.String(32), nullable=True),
    )
    op.create_table(
        "positions",
        sa.Column("device_id", ID, primary_key=True),
        sa.Column("fix_time", TIME, primary_key=True),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("speed_mps", sa.Float(), nullable=True),
        sa.Column("course", sa.Float(), nullable=True),
        sa.Column("altitude_m", sa.Float(), nullable=True),
        sa.Column("accuracy_m", sa.Float(), nullable=True),
        sa.Column("hdop", sa.Float(), nullable=True),
        sa.Column("battery", sa.Float(), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=True),
        sa.Column("received_at", TIME, nullable=False),
    )
    op.create_table(
        "drops",
        sa.Column("device_id", ID, primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("reason", sa.String(32), primary_key=True),
        sa.Column("count", COUNTER, nullable=False),
    )
    op.create_table(
        "stops",
        sa.Column("id", COUNTER, primary_key=True, autoincrement=True),
        sa.Column("device_id", ID, nullable=False),
        sa.Column("start", TIME, nullable=False),
        sa.Column("end", TIME, nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("point_count", sa.Integer(), nullable=False),
        sa.Column("place_id", ID, nullable=True),
        sa.Column("place_kind", sa.String(16), nullable=True),
        sa.UniqueConstraint("device_id", "start", name="uq_stops_device_start"),
    )
    op.create_index("ix_stops_device_end", "stops", ["device_id", "end"])


def _alerts_and_trips() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("dedup_key", sa.String(300), nullable=False, unique=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("device_id", ID, nullable=True),
        sa.Column("vehicle_id", ID, nullable=True),
        sa.Column("start", TIME, nullable=False),
        sa.Column("end", TIME, nullable=False),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("place_id", ID, nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("raised_by", sa.String(200), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("acknowledged_at", TIME, nullable=True),
        sa.Column("acknowledged_by", sa.String(200), nullable=True),
        sa.Column("resolved_at", TIME, nullable=True),
        sa.Column("resolved_by", sa.String(200), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
    )
    op.create_index("ix_alerts_device_start", "alerts", ["device_id", "start"])
    op.create_index("ix_alerts_kind", "alerts", ["kind"])
    op.create_index("ix_alerts_start", "alerts", ["start"])
    op.create_index("ix_alerts_status", "alerts", ["status"])
    op.create_table(
        "alert_batches",
        sa.Column(
            "alert_id", sa.String(32), sa.ForeignKey("alerts.id"), primary_key=True
        ),
        sa.Column("batch_id", ID, primary_key=True),
    )
    op.create_index("ix_alert_batches_batch_id", "alert_batches", ["batch_id"])
    op.create_table(
        "trips",
        sa.Column("batch_id", ID, primary_key=True),
        sa.Column("device_id", ID, nullable=False),
        sa.Column("vehicle_id", ID, nullable=False),
        sa.Column("start", TIME, nullable=False),
        sa.Column("end", TIME, nullable=False),
        sa.Column("request_digest", sa.String(64), nullable=False),
        sa.Column("entry", sa.JSON(), nullable=False),
        sa.Column("outbox_key", sa.String(200), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
    )
    op.create_index("ix_trips_device_id", "trips", ["device_id"])


def downgrade() -> None:
    for table in (
        "trips",
        "alert_batches",
        "alerts",
        "stops",
        "drops",
        "positions",
        "motion_state",
        "devices",
        "places",
        "idempotency_keys",
        "outbox",
    ):
        op.drop_table(table)
