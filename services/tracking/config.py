"""Settings of the tracking service, read from SALVAGE_TRACKING_* variables."""

from datetime import UTC, datetime
from functools import lru_cache

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
    # Silence longer than this while the device moved is a telemetry gap.
    telemetry_gap_s: float = 300.0
    # Fixes further apart than this do not count towards trip coverage.
    coverage_gap_s: float = 120.0
    # Most fixes a batch upload may carry.
    max_batch_points: int = 20_000


@lru_cache
def get_config() -> TrackingConfig:
    return TrackingConfig()
