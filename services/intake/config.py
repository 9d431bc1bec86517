"""Settings of the intake service: public URL, tariff, fee shares, tolerances."""

from decimal import Decimal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class DistanceBand(BaseModel):
    """Prices for requests whose community is up to `up_to_km` from a plant."""

    up_to_km: float | None = Field(default=None, gt=0)
    per_bag: Decimal = Field(ge=0)
    per_m3: Decimal = Field(ge=0)


class FeeShares(BaseModel):
    property_manager: Decimal = Field(ge=0, le=1)
    hauler: Decimal = Field(ge=0, le=1)
    plant: Decimal = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> "FeeShares":
        if self.property_manager + self.hauler + self.plant != 1:
            raise ValueError("fee shares must sum to 1")
        return self


DEFAULT_BANDS = [
    DistanceBand(up_to_km=10, per_bag=Decimal("5.00"), per_m3=Decimal("40.00")),
    DistanceBand(up_to_km=30, per_bag=Decimal("8.00"), per_m3=Decimal("60.00")),
    DistanceBand(up_to_km=None, per_bag=Decimal("12.00"), per_m3=Decimal("90.00")),
]


class IntakeConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SALVAGE_INTAKE_", extra="ignore")

    # Base URL residents reach intake at; QR codes encode {public_url}/r/{code}.
    public_url: str = "http://127.0.0.1:8001"
    # Currency of every fee.
    currency: str = "CNY"
    # Tariff by distance from the community to the nearest licensed plant,
    # ordered by up_to_km; the last band (up_to_km null) takes the rest.
    tariff_bands: list[DistanceBand] = Field(default_factory=lambda: DEFAULT_BANDS)
    # Smallest fee charged for a request.
    minimum_fee: Decimal = Field(default=Decimal("10.00"), ge=0)
    # Shares of each payment for the property manager, hauler and plant.
    fee_shares: FeeShares = FeeShares(
        property_manager=Decimal("0.10"), hauler=Decimal("0.60"), plant=Decimal("0.30")
    )
    # Relative gap between weighed net mass and declared estimates that is
    # recorded as a discrepancy and raised as an alert.
    mass_tolerance: Decimal = Field(default=Decimal("0.25"), ge=0)
    # Share of the net input that sorting outputs may fall short of it
    # (moisture, dust); a larger shortfall is recorded as a discrepancy and
    # raised as an alert. Outputs above the net input are refused.
    processing_tolerance: Decimal = Field(default=Decimal("0.02"), ge=0, le=1)
    # Apparent bulk density of a batch (weighed net kg over the cubic metres its
    # pickups declared) outside which it is recorded as a volume discrepancy and
    # raised as an alert. The defaults span loose C&D debris from its lightest
    # to its heaviest kind in CalRecycle, "Solid Waste Cleanup Program Weights
    # and Volumes for Project Estimates"
    # (calrecycle.ca.gov/SWFacilities/CDI/Tools/Calculations.htm): construction
    # debris, wood, uncompacted, 400 lb/yd3 (237 kg/m3), to construction debris,
    # asphalt or concrete, loose, 2,400 lb/yd3 (1,424 kg/m3).
    volume_density_min_kg_m3: int = Field(default=237, gt=0)
    volume_density_max_kg_m3: int = Field(default=1424, gt=0)
    # Time zone of the times residents type on the pickup request page.
    local_timezone: str = "Asia/Shanghai"
    # How far ahead of the server's clock a device may date a statement.
    clock_skew_seconds: int = Field(default=300, ge=0)

    @model_validator(mode="after")
    def _density_range_in_order(self) -> "IntakeConfig":
        if self.volume_density_min_kg_m3 >= self.volume_density_max_kg_m3:
            raise ValueError(
                "volume_density_min_kg_m3 must be below volume_density_max_kg_m3"
            )
        return self

    def band_for(self, distance_km: float) -> tuple[int, DistanceBand]:
        for number, band in enumerate(self.tariff_bands):
            if band.up_to_km is None or distance_km <= band.up_to_km:
                return number, band
        return len(self.tariff_bands) - 1, self.tariff_bands[-1]
