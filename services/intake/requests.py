"""Pickup requests: creation with a quote, payment, dispatch, cancellation."""

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.intake import custody, fees
from services.intake.config import IntakeConfig
from services.intake.models import (
    Batch,
    Community,
    Hauler,
    Payment,
    PaymentShare,
    PickupRequest,
    Plant,
    Refund,
    RefundShare,
    RequestEvent,
    Vehicle,
)
from services.intake.registry import check_licence, check_plant, community_by_code
from services.intake.schemas import (
    CancelIn,
    DispatchIn,
    PaymentIn,
    PaymentOut,
    PickupRequestIn,
    ShareOut,
)
from services.intake.service import forbid, get_or_404, is_staff, new_id
from shared.auth import Principal, Role
from shared.problems import Conflict, Unprocessable
from shared.timeutil import as_utc, iso_utc, utcnow

CANCELLABLE = ("requested", "quoted", "paid", "dispatched")
SYSTEM = Principal(sub="intake", role=Role.SERVICE)


def record(
    session: Session,
    request: PickupRequest,
    status: str,
    principal: Principal,
    note: str | None = None,
) -> None:
    """Moves a request to a state and keeps who did it and when."""
    now = utcnow()
    request.status = status
    request.updated_at = now
    session.add(
        RequestEvent(
            request_id=request.id,
            status=status,
            actor_sub=principal.sub,
            actor_role=str(principal.role),
            at=now,
            note=note,
        )
    )


def create_request(
    session: Session,
    *,
    data: PickupRequestIn,
    principal: Principal,
    config: IntakeConfig,
) -> PickupRequest:
    """Creates a resident's request and quotes its fee from the tariff."""
    if data.community_code is not None:
        community = community_by_code(session, data.community_code)
    else:
        community = get_or_404(session, Community, data.community_id, "community")
    quote = fees.quote(
        session,
        config=config,
        community=community,
        materials=data.materials,
        bags=data.bags,
        volume_l=data.volume_l,
    )
    now = utcnow()
    request = PickupRequest(
        id=new_id(),
        community_id=community.id,
        resident_sub=principal.sub,
        unit=data.unit,
        materials=data.materials,
        bags=data.bags,
        volume_l=data.volume_l,
        preferred_start=as_utc(data.preferred_start),
        preferred_end=as_utc(data.preferred_end),
        status="requested",
        created_at=now,
        updated_at=now,
    )
    session.add(request)
    session.flush()
    record(session, request, "requested", principal)
    request.fee = quote.amount
    request.quote = quote.model_dump(mode="json")
    record(session, request, "quoted", SYSTEM, note=f"{quote.amount} {quote.currency}")
    return request


def _visible(query, principal: Principal):
    if principal.role == Role.RESIDENT:
        return query.where(PickupRequest.resident_sub == principal.sub)
    if principal.role == Role.PROPERTY_MANAGER:
        return query.join(Community).where(
            Community.property_manager_id == principal.org
        )
    if principal.role == Role.HAULER:
        return query.where(PickupRequest.hauler_id == principal.org)
    if principal.role == Role.DEVICE:
        return query.join(Vehicle).where(Vehicle.device_id == principal.sub)
    if principal.role == Role.PLANT:
        return query.join(Batch).where(Batch.plant_id == principal.org)
    if is_staff(principal):
        return query
    return query.where(PickupRequest.id.is_(None))


def list_requests(
    session: Session, *, principal: Principal, status: str | None
) -> list[PickupRequest]:
    query = _visible(select(PickupRequest), principal)
    if status is not None:
        query = query.where(PickupRequest.status == status)
    return list(session.scalars(query.order_by(PickupRequest.created_at)))


def get_request(
    session: Session, *, request_id: str, principal: Principal
) -> PickupRequest:
    request = get_or_404(session, PickupRequest, request_id, "pickup-request")
    query = _visible(select(PickupRequest.id), principal)
    if session.scalar(query.where(PickupRequest.id == request.id)) is None:
        raise forbid("pickup request")
    return request


def events_of(session: Session, request_id: str) -> list[RequestEvent]:
    query = select(RequestEvent).where(RequestEvent.request_id == request_id)
    return list(session.scalars(query.order_by(RequestEvent.id)))


def pay(
    session: Session,
    *,
    request_id: str,
    data: PaymentIn,
    principal: Principal,
    config: IntakeConfig,
) -> PaymentOut:
    """Records the resident's payment of the quoted fee and splits it."""
    request = get_request(session, request_id=request_id, principal=principal)
    if principal.role != Role.ADMIN and request.resident_sub != principal.sub:
        raise forbid("pickup request")
    if request.status != "quoted":
        raise Conflict(
            f"A request in state '{request.status}' cannot be paid.",
            slug="invalid-state",
        )
    if data.amount != request.fee:
        raise Unprocessable(
            f"The quoted fee is {request.fee}; the payment is {data.amount}.",
            slug="amount-mismatch",
        )
    community = session.get(Community, request.community_id)
    payment = Payment(
        id=new_id(),
        request_id=request.id,
        payer_sub=principal.sub,
        amount=data.amount,
        currency=config.currency,
        method=data.method,
        reference=data.reference,
        paid_at=utcnow(),
    )
    session.add(payment)
    session.flush()
    parties = {
        "property_manager": community.property_manager_id,
        "hauler": None,
        "plant": request.quote["plant_id"],
    }
    parts = fees.split(data.amount, fees.configured_shares(config))
    shares = [
        PaymentShare(
            payment_id=payment.id, party_kind=kind, party_id=parties[kind], amount=part
        )
        for kind, part in parts.items()
    ]
    session.add_all(shares)
    record(session, request, "paid", principal, note=f"{data.amount} {data.method}")
    return payment_view(payment, shares)


def payment_view(payment: Payment, shares: list[PaymentShare]) -> PaymentOut:
    return PaymentOut(
        payment_id=payment.id,
        request_id=payment.request_id,
        amount=payment.amount,
        currency=payment.currency,
        method=payment.method,
        reference=payment.reference,
        paid_at=as_utc(payment.paid_at),
        shares=[ShareOut.model_validate(share) for share in shares],
    )


def _dispatch_plant(session: Session, request: PickupRequest, plant_id: str) -> Plant:
    plant = get_or_404(session, Plant, plant_id, "plant")
    check_plant(plant, request.materials)
    return plant


def _check_window(request: PickupRequest, start: datetime, end: datetime) -> None:
    """Refuses a dispatch window that shares no time with the resident's."""
    preferred_start = as_utc(request.preferred_start)
    preferred_end = as_utc(request.preferred_end)
    if start < preferred_end and end > preferred_start:
        return
    raise Conflict(
        "The dispatch window does not overlap the resident's preferred window.",
        slug="window-outside-preference",
        preferred_start=iso_utc(preferred_start),
        preferred_end=iso_utc(preferred_end),
    )


def dispatch(
    session: Session, *, request_id: str, data: DispatchIn, principal: Principal
) -> PickupRequest:
    """Assigns a paid request to a licensed hauler's vehicle and its batch."""
    if principal.role == Role.HAULER and principal.org != data.hauler_id:
        raise forbid("hauler")
    session.execute(
        select(Vehicle.id).where(Vehicle.id == data.vehicle_id).with_for_update()
    )
    request = get_or_404(
        session, PickupRequest, request_id, "pickup-request", lock=True
    )
    if request.status != "paid":
        raise Conflict(
            f"A request in state '{request.status}' cannot be dispatched.",
            slug="invalid-state",
        )
    hauler = get_or_404(session, Hauler, data.hauler_id, "hauler")
    vehicle = get_or_404(session, Vehicle, data.vehicle_id, "vehicle")
    start, end = as_utc(data.window_start), as_utc(data.window_end)
    _check_window(request, start, end)
    check_licence(hauler, start, end)
    if vehicle.hauler_id != hauler.id:
        raise Conflict(
            f"Vehicle '{vehicle.id}' does not belong to hauler '{hauler.id}'.",
            slug="vehicle-not-hauler",
        )
    plant = _dispatch_plant(
        session, request, data.plant_id or request.quote["plant_id"]
    )
    batch = custody.open_batch(
        session, vehicle=vehicle, plant=plant, start=start, end=end
    )
    request.hauler_id, request.vehicle_id, request.batch_id = (
        hauler.id,
        vehicle.id,
        batch.id,
    )
    _assign_shares(session, request, hauler_id=hauler.id, plant_id=plant.id)
    record(session, request, "dispatched", principal, note=f"batch {batch.id}")
    return request


def _payment_of(session: Session, request: PickupRequest) -> Payment | None:
    return session.scalar(select(Payment).where(Payment.request_id == request.id))


def _shares_of(session: Session, payment: Payment) -> list[PaymentShare]:
    query = select(PaymentShare).where(PaymentShare.payment_id == payment.id)
    return list(session.scalars(query.order_by(PaymentShare.id)))


def _assign_shares(
    session: Session, request: PickupRequest, *, hauler_id: str | None, plant_id: str
) -> None:
    for share in _shares_of(session, _payment_of(session, request)):
        if share.party_kind == "hauler":
            share.party_id = hauler_id
        elif share.party_kind == "plant":
            share.party_id = plant_id


def undispatch(
    session: Session, request: PickupRequest, principal: Principal, note: str
) -> None:
    """Returns a dispatched request to paid: off its batch and vehicle, and its
    hauler's share waiting again for whoever is dispatched next."""
    request.batch_id = request.hauler_id = request.vehicle_id = None
    _assign_shares(session, request, hauler_id=None, plant_id=request.quote["plant_id"])
    record(session, request, "paid", principal, note=note)


def _refund(
    session: Session, request: PickupRequest, principal: Principal, reason: str
) -> None:
    """Gives a paid fee back: each party returns exactly the share it got."""
    payment = _payment_of(session, request)
    if payment is None:
        return
    refund = Refund(
        id=new_id(),
        payment_id=payment.id,
        request_id=request.id,
        amount=payment.amount,
        currency=payment.currency,
        reason=reason,
        refunded_by=principal.sub,
        refunded_at=utcnow(),
    )
    session.add(refund)
    session.flush()
    session.add_all(
        RefundShare(
            refund_id=refund.id,
            party_kind=share.party_kind,
            party_id=share.party_id,
            amount=-share.amount,
        )
        for share in _shares_of(session, payment)
    )


def cancel(
    session: Session, *, request_id: str, data: CancelIn, principal: Principal
) -> PickupRequest:
    request = get_request(session, request_id=request_id, principal=principal)
    own = principal.role == Role.RESIDENT and request.resident_sub == principal.sub
    if not (own or principal.role == Role.ADMIN):
        raise forbid("pickup request")
    if request.status not in CANCELLABLE:
        raise Conflict(
            f"A request in state '{request.status}' cannot be cancelled.",
            slug="invalid-state",
        )
    _refund(session, request, principal, data.reason)
    record(session, request, "cancelled", principal, note=data.reason)
    return request
