"""Request and response bodies of the tracking service."""

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from shared.timeutil import as_utc, rfc3339_text

PlaceKind = Literal["community", "plant", "depot", "corridor"]
AlertStatus = Literal["open", "acknowledged", "resolved"]
# Kinds other services may raise; tracking raises its own kinds itself.
ExternalAlertKind = Literal[
    "mass_discrepancy",
    "volume_discrepancy",
    "unlicensed_site",
    "licence_invalid",
]
ID_PATTERN = r"^[A-Za-z0-9._:\-]+$"


def identifier() -> Any:
    return Field(min_length=1, max_length=64, pattern=ID_PATTERN)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Licence times intake sends fall in this span; it refuses any other.
EARLIEST_LICENCE = datetime(1990, 1, 1, tzinfo=UTC)
LATEST_LICENCE = datetime(2100, 1, 1, tzinfo=UTC)


def _licence_instant(value: datetime) -> datetime:
    """The instant in UTC, refused outside the span licences fall in."""
    try:
        value = as_utc(value)
    except OverflowError as exc:
        raise ValueError("time is out of range") from exc
    if not EARLIEST_LICENCE <= value <= LATEST_LICENCE:
        raise ValueError("a licence time must fall between 1990 and 2100")
    return value


LicenceInstant = Annotated[
    AwareDatetime, BeforeValidator(rfc3339_text), AfterValidator(_licence_instant)
]


class PlaceIn(Strict):
    kind: PlaceKind
    name: str = Field(min_length=1, max_length=200)
    geometry: dict[str, Any]
    radius_m: float = Field(default=0.0, ge=0, le=50_000, allow_inf_nan=False)
    licensed: bool = False


class PlaceOut(PlaceIn):
    place_id: str


class DeviceIn(Strict):
    vehicle_id: str = identifier()
    hauler_id: str = identifier()
    plate: str = Field(min_length=1, max_length=32)
    # The licence window, [from, until); an open end is not checked.
    licence_valid_from: LicenceInstant | None = None
    licence_valid_until: LicenceInstant | None = None

    @model_validator(mode="after")
    def _licence_window_in_order(self) -> Self:
        start, end = self.licence_valid_from, self.licence_valid_until
        if start is not None and end is not None and end < start:
            raise ValueError(
                "licence_valid_until must not be before licence_valid_from"
            )
        return self


class DeviceOut(DeviceIn):
    device_id: str


class PositionIn(Strict):
    """One buffered fix of a batch upload. Any finite number is taken, so that
    one bad point does not lose the batch: a position off the globe is counted
    as an `invalid` drop, an implausible reading is set aside."""

    time: AwareDatetime
    lat: float = Field(allow_inf_nan=False)
    lon: float = Field(allow_inf_nan=False)
    speed_mps: float | None = Field(default=None, allow_inf_nan=False)
    course: float | None = Field(default=None, allow_inf_nan=False)
    altitude_m: float | None = Field(default=None, allow_inf_nan=False)
    accuracy_m: float | None = Field(default=None, allow_inf_nan=False)
    hdop: float | None = Field(default=None, allow_inf_nan=False)
    battery: float | None = Field(default=None, allow_inf_nan=False)
    attributes: dict[str, Any] = Field(default_factory=dict)


class PositionBatch(Strict):
    positions: list[PositionIn] = Field(min_length=1)


class IngestOut(BaseModel):
    device_id: str
    received: int
    accepted: int
    dropped: dict[str, int]


class DeviceTripOut(BaseModel):
    id: int
    device_id: str
    start: datetime
    end: datetime
    duration_s: int
    distance_m: int
    point_count: int
    start_lat: float
    start_lon: float
    end_lat: float
    end_lon: float


class DayOut(BaseModel):
    day: date
    distance_m: int
    point_count: int
    trip_count: int


class DaysOut(BaseModel):
    device_id: str
    days: list[DayOut]


class StopOut(BaseModel):
    start: datetime
    end: datetime
    duration_s: int
    lat: float
    lon: float
    place_id: str | None
    place_kind: str | None
    ongoing: bool = False


class DistanceOut(BaseModel):
    device_id: str
    start: datetime
    end: datetime
    distance_m: int
    point_count: int


class DropsOut(BaseModel):
    device_id: str
    dropped: dict[str, int]


class AlertIn(Strict):
    kind: ExternalAlertKind
    message: str = Field(min_length=1, max_length=2000)
    batch_id: str | None = Field(default=None, max_length=64)
    device_id: str | None = Field(default=None, max_length=64)
    vehicle_id: str | None = Field(default=None, max_length=64)
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    lat: float | None = Field(default=None, ge=-90, le=90, allow_inf_nan=False)
    lon: float | None = Field(default=None, ge=-180, le=180, allow_inf_nan=False)
    place_id: str | None = Field(default=None, max_length=64)
    detail: dict[str, Any] = Field(default_factory=dict)


class AlertOut(BaseModel):
    id: str
    kind: str
    status: AlertStatus
    device_id: str | None
    vehicle_id: str | None
    batch_ids: list[str]
    start: datetime
    end: datetime
    duration_s: int
    lat: float | None
    lon: float | None
    place_id: str | None
    message: str
    detail: dict[str, Any]
    raised_by: str
    created_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None


class AlertsOut(BaseModel):
    alerts: list[AlertOut]
    # The cursor of the next page; null on the last.
    next_cursor: str | None = None


class ResolveIn(Strict):
    reason: str = Field(min_length=1, max_length=2000)


class TripIn(Strict):
    device_id: str = Field(min_length=1, max_length=64)
    vehicle_id: str = Field(min_length=1, max_length=64)
    start: AwareDatetime
    end: AwareDatetime


class TripOut(BaseModel):
    batch_id: str
    summary: dict[str, Any]
    entry: dict[str, Any]
    ledger_status: Literal["pending", "delivered", "failed"]
