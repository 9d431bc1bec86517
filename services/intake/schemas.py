"""Request and response bodies of the intake API."""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    field_validator,
    model_validator,
)
from shapely.geometry import shape

from services.intake.catalog import unknown_codes
from shared.timeutil import as_utc, iso_utc

CENT = Decimal("0.01")
PLAIN_AMOUNT = re.compile(r"[0-9]+(\.[0-9]+)?", re.ASCII)


def _plain_amount(value: Any) -> Any:
    """A written amount uses ASCII digits only (Decimal would read others)."""
    if isinstance(value, str) and not PLAIN_AMOUNT.fullmatch(value):
        raise ValueError("write the amount with ASCII digits, such as 120.50")
    return value


UtcTime = Annotated[datetime, PlainSerializer(iso_utc, return_type=str)]
Money = Annotated[
    Decimal, PlainSerializer(lambda value: str(value.quantize(CENT)), return_type=str)
]


def _plain_text(value: str) -> str:
    """Refuses control characters and lone surrogates, which no store keeps."""
    for char in value:
        code = ord(char)
        if code < 32 or code == 127 or 0xD800 <= code <= 0xDFFF:
            raise ValueError("text must not contain control characters")
    return value


# Times Salvage takes in: licences, pickups and custody all fall in this span.
EARLIEST_TIME = datetime(1990, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2100, 1, 1, tzinfo=UTC)
# A resident's preferred window for one pickup.
MAX_PREFERRED_WINDOW = timedelta(days=31)


def _utc(value: datetime) -> datetime:
    try:
        value = as_utc(value)
    except OverflowError as exc:
        raise ValueError("time is out of range") from exc
    if not EARLIEST_TIME <= value < LATEST_TIME:
        raise ValueError("time must fall between 1990 and 2100")
    return value


UtcInput = Annotated[AwareDatetime, AfterValidator(_utc)]
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1),
    AfterValidator(_plain_text),
]
Short = Annotated[Name, StringConstraints(max_length=100)]
Title = Annotated[Name, StringConstraints(max_length=200)]
Long = Annotated[Name, StringConstraints(max_length=500)]
PartyId = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
]
EwcCodes = Annotated[list[str], Field(min_length=1, max_length=40)]
HaulerStatus = Literal["active", "suspended", "revoked"]
RequestStatus = Literal[
    "requested", "quoted", "paid", "dispatched", "collected", "completed", "cancelled"
]
BatchStatus = Literal["open", "delivered", "processed"]
DiscrepancyKind = Literal["mass_discrepancy", "volume_discrepancy", "output_imbalance"]
PartyKind = Literal["device", "property_manager", "plant"]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


def check_ewc(codes: list[str]) -> list[str]:
    unknown = unknown_codes(codes)
    if unknown:
        raise ValueError(f"not EWC chapter 17 codes: {', '.join(unknown)}")
    if len(set(codes)) != len(codes):
        raise ValueError("EWC codes must not repeat")
    return codes


class Place(Input):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    radius_m: int | None = Field(default=None, ge=1, le=50_000)
    polygon: dict[str, Any] | None = Field(
        default=None, description="A GeoJSON Polygon in lon/lat."
    )

    @field_validator("polygon")
    @classmethod
    def _valid_polygon(cls, value: dict | None) -> dict | None:
        if value is None:
            return None
        if value.get("type") != "Polygon":
            raise ValueError("polygon must be a GeoJSON Polygon")
        try:
            geometry = shape(value)
        except Exception as exc:
            raise ValueError("polygon is not valid GeoJSON") from exc
        if not geometry.is_valid or geometry.is_empty:
            raise ValueError("polygon is not a valid ring")
        min_lon, min_lat, max_lon, max_lat = geometry.bounds
        if not (-180 <= min_lon <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90):
            raise ValueError("polygon coordinates are out of range")
        return {"type": "Polygon", "coordinates": value["coordinates"]}

    @model_validator(mode="after")
    def _has_geofence(self) -> "Place":
        if self.radius_m is None and self.polygon is None:
            raise ValueError("a geofence needs radius_m or polygon")
        return self


class Geofence(Place):
    """A place's new location and bounds, replacing the old ones whole."""


class GeofenceOut(Output):
    id: str
    kind: str
    lat: float
    lon: float
    radius_m: int | None
    polygon: dict | None


class CommunityIn(Place):
    name: Title
    address: Long
    city: Short
    property_manager_id: PartyId


class CommunityOut(Output):
    id: str
    code: str
    name: str
    address: str
    city: str
    lat: float
    lon: float
    radius_m: int | None
    polygon: dict | None
    property_manager_id: str
    qr_url: str = ""
    created_at: UtcTime


class HaulerIn(Input):
    name: Title
    licence_no: Short
    valid_from: UtcInput
    valid_until: UtcInput
    status: HaulerStatus = "active"

    @model_validator(mode="after")
    def _ordered(self) -> "HaulerIn":
        if self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self


class HaulerPatch(Input):
    licence_no: Short | None = None
    valid_from: UtcInput | None = None
    valid_until: UtcInput | None = None
    status: HaulerStatus | None = None


class HaulerOut(Output):
    id: str
    name: str
    licence_no: str
    valid_from: UtcTime
    valid_until: UtcTime
    status: str
    status_changed_at: UtcTime
    created_at: UtcTime


class InvalidLicence(BaseModel):
    hauler: HaulerOut
    reason: Literal["expired", "not_yet_valid", "suspended", "revoked"]


class VehicleIn(Input):
    plate: Annotated[Name, StringConstraints(max_length=32)]
    capacity_kg: int = Field(gt=0, le=100_000)
    hauler_id: Short
    device_id: PartyId


class VehicleOut(Output):
    id: str
    plate: str
    capacity_kg: int
    hauler_id: str
    device_id: str
    created_at: UtcTime


class PlantIn(Place):
    name: Title
    permit_no: Short
    accepted_ewc: EwcCodes
    licensed: bool = True

    _codes = field_validator("accepted_ewc")(check_ewc)


class PlantPatch(Input):
    licensed: bool | None = None
    accepted_ewc: EwcCodes | None = None

    @field_validator("accepted_ewc")
    @classmethod
    def _codes(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_ewc(value)


class PlantOut(Output):
    id: str
    name: str
    permit_no: str
    lat: float
    lon: float
    radius_m: int | None
    polygon: dict | None
    accepted_ewc: list[str]
    licensed: bool
    created_at: UtcTime


class DepotIn(Place):
    name: Title


class DepotOut(Output):
    id: str
    name: str
    lat: float
    lon: float
    radius_m: int | None
    polygon: dict | None
    created_at: UtcTime


class KeyIn(Input):
    party_kind: PartyKind
    party_id: PartyId
    public_key: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class RevokeIn(Input):
    reason: Annotated[Name, StringConstraints(max_length=500)]


class RotateIn(Input):
    public_key: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    reason: Annotated[Name, StringConstraints(max_length=500)] = "rotated"


class KeyOut(Output):
    key_id: str
    party_kind: str
    party_id: str
    public_key: str
    kinds: list[str]
    created_at: UtcTime
    revoked_at: UtcTime | None
    revoke_reason: str | None


class TokenIn(Input):
    role: Literal[
        "device",
        "resident",
        "property_manager",
        "hauler",
        "plant",
        "inspector",
        "verifier",
        "buyer",
        "auditor",
        "admin",
        "service",
    ]
    sub: PartyId
    org: PartyId | None = None
    ttl_seconds: int = Field(default=12 * 3600, ge=60, le=90 * 24 * 3600)


class TokenOut(BaseModel):
    token: str
    token_type: str = "bearer"
    role: str
    sub: str
    org: str | None
    expires_at: UtcTime


class PickupRequestIn(Input):
    community_id: Short | None = None
    community_code: Annotated[str, StringConstraints(max_length=16)] | None = None
    unit: Short
    materials: EwcCodes
    bags: int | None = Field(default=None, ge=1, le=500)
    volume_l: int | None = Field(default=None, ge=1, le=100_000)
    preferred_start: UtcInput
    preferred_end: UtcInput

    _codes = field_validator("materials")(check_ewc)

    @model_validator(mode="after")
    def _consistent(self) -> "PickupRequestIn":
        if (self.community_id is None) == (self.community_code is None):
            raise ValueError("give exactly one of community_id and community_code")
        if (self.bags is None) == (self.volume_l is None):
            raise ValueError("give exactly one of bags and volume_l")
        if self.preferred_end <= self.preferred_start:
            raise ValueError("preferred_end must be after preferred_start")
        if self.preferred_end - self.preferred_start > MAX_PREFERRED_WINDOW:
            raise ValueError("a preferred window spans at most 31 days")
        return self


class Quote(BaseModel):
    amount: Money
    currency: str
    basis: Literal["bags", "volume"]
    quantity: Decimal
    unit_price: Money
    distance_km: float
    band: int
    plant_id: str


class RequestEventOut(Output):
    status: str
    actor_sub: str
    actor_role: str
    at: UtcTime
    note: str | None


class PickupRequestOut(Output):
    id: str
    community_id: str
    resident_sub: str
    unit: str
    materials: list[str]
    bags: int | None
    volume_l: int | None
    preferred_start: UtcTime
    preferred_end: UtcTime
    status: str
    quote: dict | None
    hauler_id: str | None
    vehicle_id: str | None
    batch_id: str | None
    created_at: UtcTime
    updated_at: UtcTime
    events: list[RequestEventOut] = []


class PaymentIn(Input):
    amount: Annotated[
        Decimal,
        BeforeValidator(_plain_amount),
        Field(gt=0, max_digits=12, decimal_places=2),
    ]
    method: Literal["wechat", "alipay", "card", "cash", "bank"]
    reference: Annotated[Name, StringConstraints(max_length=200)] | None = None


class ShareOut(Output):
    party_kind: str
    party_id: str | None
    amount: Money


class PaymentOut(BaseModel):
    payment_id: str
    request_id: str
    amount: Money
    currency: str
    method: str
    reference: str | None
    paid_at: UtcTime
    shares: list[ShareOut]


# A dispatch covers one collection run of one truck.
MAX_DISPATCH_WINDOW = timedelta(hours=24)


class DispatchIn(Input):
    hauler_id: Short
    vehicle_id: Short
    window_start: UtcInput
    window_end: UtcInput
    plant_id: Short | None = None

    @model_validator(mode="after")
    def _ordered(self) -> "DispatchIn":
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        if self.window_end - self.window_start > MAX_DISPATCH_WINDOW:
            raise ValueError("a dispatch window is one truck run: at most 24 hours")
        return self


class CancelIn(Input):
    reason: Annotated[Name, StringConstraints(max_length=500)]


class StatementIn(Input):
    kind: Literal["custody.pickup", "custody.delivery", "custody.processing"]
    at: UtcInput
    body: dict[str, Any]


class Signer(BaseModel):
    party_kind: str
    party_id: str


class StatementOut(BaseModel):
    statement: dict[str, Any]
    signers: list[Signer]


class SignatureIn(Input):
    key_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
    signature: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class CustodyIn(Input):
    statement: dict[str, Any]
    signatures: list[SignatureIn] = Field(min_length=1, max_length=8)


class DiscrepancyOut(Output):
    """A check a custody step failed: `mass_discrepancy` (net mass against the
    pickup estimates), `volume_discrepancy` (net mass against the declared
    volume; `expected_kg` is that volume's mass at the nearer end of the
    density range) or `output_imbalance` (sorting outputs short of the input)."""

    id: str
    kind: DiscrepancyKind
    expected_kg: int
    actual_kg: int
    detail: str
    at: UtcTime


class CustodyOut(BaseModel):
    event_id: str
    batch_id: str
    seq: int
    kind: str
    at: UtcTime
    leaf_hash: str
    # The first of `discrepancies`, for clients that read only one.
    discrepancy: DiscrepancyOut | None = None
    discrepancies: list[DiscrepancyOut] = []


class CustodyEventOut(Output):
    event_id: str = Field(validation_alias="id")
    seq: int
    kind: str
    at: UtcTime
    leaf_hash: str


class BatchOut(Output):
    id: str
    vehicle_id: str
    hauler_id: str
    device_id: str
    plant_id: str
    window_start: UtcTime
    window_end: UtcTime
    status: str
    head: str | None
    created_at: UtcTime
    delivered_at: UtcTime | None
    processed_at: UtcTime | None
    request_ids: list[str] = []
    events: list[CustodyEventOut] = []
    discrepancies: list[DiscrepancyOut] = []


class StatementLine(BaseModel):
    """A party's share of a payment, or (kind refund, a negative amount) what
    it gives back when the request is cancelled; `at` places it in a period."""

    kind: Literal["payment", "refund"] = "payment"
    payment_id: str
    refund_id: str | None = None
    request_id: str
    party_kind: str
    amount: Money
    paid_at: UtcTime
    at: UtcTime


class PartyStatementOut(BaseModel):
    party_id: str
    start: UtcTime
    end: UtcTime
    currency: str
    total: Money
    lines: list[StatementLine]


class OutboxMessageOut(Output):
    """A message to the ledger or tracking and where its delivery stands."""

    id: int
    key: str
    target: str
    method: str
    path: str
    ordering_key: str | None
    attempts: int
    created_at: UtcTime
    next_attempt_at: UtcTime
    failed_at: UtcTime | None
    last_error: str | None
