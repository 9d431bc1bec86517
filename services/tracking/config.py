"""Settings of the tracking service, read from SALVAGE_TRACKING_* variables."""

from datetime import UTC, datetime
from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TrackingConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SALVAGE_TRACKING_", extra="ignore")

    # Fixes whose stated accuracy (metres) is worse than this are dropped.
    max_accuracy_m: float = 100.0
    # Fixes whose HDOP is worse than this are dropped.
    max_hdop: float = 10.0
    # Fixes further ahead of the server clock than this are dropped.
    max_future_s: float = 600.0
    # Fixes older than this (relative to now) are dropped; unset admits the
    # replay of archived traces such as the 2019 demo run.
    max_age_s: float | None = None
    # Fixes before this instant are always dropped as too old.
    earliest_fix_time: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    # Speed between consecutive fixes above this (m/s) is impossible.
    max_speed_mps: float = 55.0
    # A stop: the device stays within this radius of the stop's centre ...
    stop_radius_m: float = 15.0
    # ... for at least this long.
    min_stop_s: float = 20.0
    # A stop longer than this outside every registered place suggests dumping.
    dumping_after_s: float = 600.0
    # Silence longer than this is a telemetry gap during a trip, and at any time
    # if the device reappears beyond the stop radius; in a batch window always.
    telemetry_gap_s: float = 300.0
    # Silence at least this long ends the trip (switched off), unless the device
    # reappears at the stop it fell silent at: then the stop goes on.
    trip_break_s: float = 3600.0
    # Movement between stops shorter than this (metres) is not a trip.
    min_trip_distance_m: float = 500.0
    # Movement between stops shorter than this (seconds) is not a trip.
    min_trip_s: float = 120.0
    # A stop at least this long at an unlicensed plant is a delivery there.
    delivery_min_s: float = 120.0
    # Fixes further apart than this do not count towards trip coverage.
    coverage_gap_s: float = 120.0
    # Most fixes a batch upload may carry.
    max_batch_points: int = 20_000
    # Largest GPX upload, in bytes.
    max_gpx_bytes: int = 10 * 1024 * 1024
    # On PostgreSQL, drop position partitions older than this many days; unset
    # keeps every partition. Fixes older than this are dropped as too old.
    retention_days: int | None = Field(default=None, ge=1)
    # On PostgreSQL, daily position partitions created ahead of time.
    partitions_ahead_days: int = 7
    # On PostgreSQL, most days without a partition one upload may bring: a
    # batch spread over years would otherwise create a table per day.
    max_new_partition_days: int = Field(default=31, ge=1)
    # Most single fixes (OsmAnd requests) one worker stores in one transaction.
    fix_group_max: int = Field(default=200, ge=1)
    # On PostgreSQL, most partitions for days before yesterday that uploads may
    # create in one UTC day, across all devices: a truck's buffer from last
    # week is normal, one table for every day of a decade is not.
    max_backfill_partitions_per_day: int = Field(default=31, ge=0)
    # Seconds the corridors are cached per process before being read again.
    corridor_cache_s: float = 10.0
    # Database connections each worker keeps open, and may open beyond them;
    # on PostgreSQL the worker runs at most their sum less two requests at once,
    # so a request waits for a thread rather than failing for a connection.
    pool_size: int = Field(default=10, ge=1)
    pool_overflow: int = Field(default=20, ge=0)


@lru_cache
def get_config() -> TrackingConfig:
    return TrackingConfig()
