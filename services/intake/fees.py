"""User-pays fees: quotes from the tariff, payment splits, party statements."""

import math
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.intake.config import IntakeConfig
from services.intake.models import (
    Community,
    Payment,
    PaymentShare,
    Plant,
    Refund,
    RefundShare,
)
from services.intake.schemas import CENT, PartyStatementOut, Quote, StatementLine
from shared.problems import Conflict
from shared.timeutil import as_utc

EARTH_RADIUS_M = 6_371_008.8
PARTIES = ("property_manager", "hauler", "plant")


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlambda = phi2 - phi1, math.radians(lon2 - lon1)
    a = (
        math.sin(dphi / 2) ** 2
        + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, a)))


def nearest_plant(
    session: Session, community: Community, materials: list[str]
) -> tuple[Plant, float]:
    """The closest licensed plant accepting every material, and its distance."""
    plants = session.scalars(select(Plant).where(Plant.licensed.is_(True)))
    fitting = [
        plant for plant in plants if set(materials) <= set(plant.accepted_ewc or [])
    ]
    if not fitting:
        raise Conflict(
            "No licensed plant accepts these materials.", slug="no-plant-accepts"
        )
    distances = [
        (haversine_m(community.lat, community.lon, plant.lat, plant.lon), plant.id)
        for plant in fitting
    ]
    distance_m, plant_id = min(distances)
    plant = next(plant for plant in fitting if plant.id == plant_id)
    return plant, distance_m


def quote(
    session: Session,
    *,
    config: IntakeConfig,
    community: Community,
    materials: list[str],
    bags: int | None,
    volume_l: int | None,
) -> Quote:
    plant, distance_m = nearest_plant(session, community, materials)
    distance_km = round(distance_m / 1000, 3)
    band_number, band = config.band_for(distance_km)
    if bags is not None:
        basis, quantity, unit_price = "bags", Decimal(bags), band.per_bag
    else:
        basis, unit_price = "volume", band.per_m3
        quantity = Decimal(volume_l or 0) / Decimal(1000)
    amount = (quantity * unit_price).quantize(CENT, rounding=ROUND_HALF_UP)
    return Quote(
        amount=max(amount, config.minimum_fee.quantize(CENT)),
        currency=config.currency,
        basis=basis,
        quantity=quantity,
        unit_price=unit_price,
        distance_km=distance_km,
        band=band_number,
        plant_id=plant.id,
    )


def split(amount: Decimal, shares: dict[str, Decimal]) -> dict[str, Decimal]:
    """Splits an amount to the cent; the parts always sum to the whole.

    Each party first gets its share rounded down to the cent; the cents
    left over go one each to the largest remainders, ties broken by the
    order of `shares`, so the same inputs always give the same split.
    """
    total_cents = int((amount / CENT).to_integral_value(rounding=ROUND_HALF_UP))
    exact = {party: Decimal(total_cents) * share for party, share in shares.items()}
    floors = {
        party: int(value.to_integral_value(rounding=ROUND_DOWN))
        for party, value in exact.items()
    }
    left = total_cents - sum(floors.values())
    order = sorted(
        shares,
        key=lambda party: (-(exact[party] - floors[party]), list(shares).index(party)),
    )
    for party in order[:left]:
        floors[party] += 1
    return {party: Decimal(cents) * CENT for party, cents in floors.items()}


def configured_shares(config: IntakeConfig) -> dict[str, Decimal]:
    return {party: getattr(config.fee_shares, party) for party in PARTIES}


def _payment_lines(
    session: Session, party_id: str, start: datetime, end: datetime
) -> list[StatementLine]:
    rows = session.execute(
        select(PaymentShare, Payment)
        .join(Payment, Payment.id == PaymentShare.payment_id)
        .where(
            PaymentShare.party_id == party_id,
            Payment.paid_at >= start,
            Payment.paid_at < end,
        )
    ).all()
    return [
        StatementLine(
            payment_id=payment.id,
            request_id=payment.request_id,
            party_kind=share.party_kind,
            amount=share.amount,
            paid_at=as_utc(payment.paid_at),
            at=as_utc(payment.paid_at),
        )
        for share, payment in rows
    ]


def _refund_lines(
    session: Session, party_id: str, start: datetime, end: datetime
) -> list[StatementLine]:
    rows = session.execute(
        select(RefundShare, Refund, Payment)
        .join(Refund, Refund.id == RefundShare.refund_id)
        .join(Payment, Payment.id == Refund.payment_id)
        .where(
            RefundShare.party_id == party_id,
            Refund.refunded_at >= start,
            Refund.refunded_at < end,
        )
    ).all()
    return [
        StatementLine(
            kind="refund",
            payment_id=payment.id,
            refund_id=refund.id,
            request_id=refund.request_id,
            party_kind=share.party_kind,
            amount=share.amount,
            paid_at=as_utc(payment.paid_at),
            at=as_utc(refund.refunded_at),
        )
        for share, refund, payment in rows
    ]


def party_statement(
    session: Session, *, party_id: str, start: datetime, end: datetime, currency: str
) -> PartyStatementOut:
    """A party's payment shares and refunds dated in [start, end), in time order."""
    lines = sorted(
        _payment_lines(session, party_id, start, end)
        + _refund_lines(session, party_id, start, end),
        key=lambda line: (line.at, line.payment_id, line.kind),
    )
    return PartyStatementOut(
        party_id=party_id,
        start=start,
        end=end,
        currency=currency,
        total=sum((line.amount for line in lines), Decimal("0.00")),
        lines=lines,
    )
