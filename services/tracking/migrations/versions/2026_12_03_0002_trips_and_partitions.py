"""Adds motion trips and, on PostgreSQL, partitions positions by fix day.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 17:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.tracking import partitions

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(64)
TIME = sa.DateTime(timezone=True)
COUNTER = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("motion_state") as table:
        table.add_column(sa.Column("trip_start_time", TIME, nullable=True))
        table.add_column(sa.Column("trip_start_lat", sa.Float(), nullable=True))
        table.add_column(sa.Column("trip_start_lon", sa.Float(), nullable=True))
        table.add_column(sa.Column("trip_distance_m", sa.Float(), nullable=True))
        table.add_column(sa.Column("trip_points", sa.Integer(), nullable=True))
        table.add_column(
            sa.Column("cluster_trip_distance_m", sa.Float(), nullable=True)
        )
        table.add_column(sa.Column("cluster_trip_points", sa.Integer(), nullable=True))
    op.create_table(
        "device_trips",
        sa.Column("id", COUNTER, primary_key=True, autoincrement=True),
        sa.Column("device_id", ID, nullable=False),
        sa.Column("start", TIME, nullable=False),
        sa.Column("end", TIME, nullable=False),
        sa.Column("start_lat", sa.Float(), nullable=False),
        sa.Column("start_lon", sa.Float(), nullable=False),
        sa.Column("end_lat", sa.Float(), nullable=False),
        sa.Column("end_lon", sa.Float(), nullable=False),
        sa.Column("distance_m", sa.Float(), nullable=False),
        sa.Column("point_count", sa.Integer(), nullable=False),
        sa.UniqueConstraint("device_id", "start", name="uq_device_trips_start"),
    )
    op.create_index("ix_device_trips_device_end", "device_trips", ["device_id", "end"])
    if op.get_bind().dialect.name == "postgresql":
        partitions.partition_positions(op.get_bind())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        partitions.unpartition_positions(op.get_bind())
    op.drop_table("device_trips")
    with op.batch_alter_table("motion_state") as table:
        table.drop_column("cluster_trip_points")
        table.drop_column("cluster_trip_distance_m")
        table.drop_column("trip_points")
        table.drop_column("trip_distance_m")
        table.drop_column("trip_start_lon")
        table.drop_column("trip_start_lat")
        table.drop_column("trip_start_time")
