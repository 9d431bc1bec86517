"""Settings of the trading service (SALVAGE_TRADING_...)."""

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TradingConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SALVAGE_TRADING_", extra="ignore")

    # The ledger's verifier key (name+hexkeyid+base64key); pinned from
    # GET /v1/key on first use and stored in trading's database when unset.
    ledger_key: str | None = None
    # The project code in credit serials: letters and digits, no dashes.
    project: str = Field(default="NINGBO", pattern=r"^[A-Z0-9]{2,16}$")
    # The factor table version new calculations use (factors/<version>.csv).
    factor_version: str = "v1"
    # The truck class of Table E.0.1 for a vehicle not in vehicle_truck_classes.
    truck_class: str = "diesel_truck_2t"
    # Truck class per vehicle ID, as JSON: {"truck-7": "diesel_truck_8t"}. The
    # sealed trip names the vehicle but not its class; this map supplies it.
    vehicle_truck_classes: dict[str, str] = Field(default_factory=dict)
    # Telemetry coverage (per mille of the trip) below which data is weak.
    coverage_threshold_permille: int = Field(default=900, ge=0, le=1000)
    # Discount (per mille) when telemetry coverage is below the threshold.
    low_coverage_discount_permille: int = Field(default=100, ge=0, le=1000)
    # Discount (per mille) when the delivered mass was estimated, not weighed.
    estimated_mass_discount_permille: int = Field(default=200, ge=0, le=1000)
    # Share (per mille) of every issuance set aside as buffer credits.
    buffer_permille: int = Field(default=100, ge=0, le=1000)
    # Organisation that holds the buffer account.
    buffer_org: str = "salvage-buffer"
    # Seals fetched per page when discovering sealed batches.
    seal_page_size: int = Field(default=100, ge=1, le=1000)


@lru_cache
def get_config() -> TradingConfig:
    return TradingConfig()
