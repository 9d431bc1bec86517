"""Request bodies of the trading API; responses are plain JSON views."""

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from shared.timeutil import as_utc

MAX_TONNES = 1_000_000_000

Tonnes = Annotated[int, Field(strict=True, ge=1, le=MAX_TONNES)]
Identifier = Annotated[
    str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$")
]
Text = Annotated[str, Field(min_length=1, max_length=500)]


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("a timestamp needs a UTC offset")
    return as_utc(value)


UtcTime = Annotated[datetime, AfterValidator(_aware)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QuantificationRequest(Strict):
    batch_id: Identifier


class ReportRequest(Strict):
    period_start: UtcTime
    period_end: UtcTime
    account_id: Identifier


class DecisionRequest(Strict):
    decision: Literal["approve", "reject"]
    comments: Annotated[str, Field(max_length=5000)] = ""


class AccountRequest(Strict):
    org_id: Identifier
    name: Text


class ListingRequest(Strict):
    account_id: Identifier
    quantity_t: Tonnes
    price_cny: Annotated[
        Decimal, Field(gt=0, max_digits=14, decimal_places=2, allow_inf_nan=False)
    ]


class QuoteRequest(Strict):
    listing_id: Identifier
    quantity_t: Tonnes


class PurchaseRequest(Strict):
    listing_id: Identifier
    quantity_t: Tonnes
    account_id: Identifier | None = None


class TransferRequest(Strict):
    from_account_id: Identifier
    to_account_id: Identifier
    quantity_t: Tonnes


class RetirementRequest(Strict):
    account_id: Identifier
    quantity_t: Tonnes
    beneficiary: Annotated[str, Field(min_length=1, max_length=200)]
    purpose: Text


class CancellationRequest(Strict):
    account_id: Identifier
    quantity_t: Tonnes
    reason: Text


class OrderRequest(Strict):
    """Buy from a listing and retire for a beneficiary at once."""

    listing_id: Identifier
    quantity_t: Tonnes
    beneficiary: Annotated[str, Field(min_length=1, max_length=200)]
    purpose: Text
    account_id: Identifier | None = None
