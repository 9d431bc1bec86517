"""Batches and their custody chain: pickups, the weighbridge ticket, sorting.

Intake serves the exact statement each step must sign, then accepts it with
its signatures, checks it against the batch's head and the registry, stores
it and queues its ledger append in the same transaction.
"""

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.intake import requests as pickup_requests
from services.intake.catalog import MATERIALS, unknown_codes
from services.intake.config import IntakeConfig
from services.intake.models import (
    Batch,
    Community,
    CustodyEvent,
    Discrepancy,
    Hauler,
    PartyKey,
    PickupRequest,
    Plant,
    Vehicle,
)
from services.intake.registry import check_accepts, check_licence, check_plant
from services.intake.schemas import CustodyIn, CustodyOut, DiscrepancyOut, SignatureIn
from services.intake.service import (
    forbid,
    get_or_404,
    is_staff,
    new_id,
    send_to_ledger,
    send_to_tracking,
)
from shared.auth import Principal, Role
from shared.canonical import b64, canonical_json
from shared.crypto import public_key_from_b64, verify_bytes
from shared.merkle import leaf_hash
from shared.problems import Conflict, Unprocessable
from shared.timeutil import as_utc, iso_utc, parse_utc, utcnow

PICKUP, DELIVERY, PROCESSING = (
    "custody.pickup",
    "custody.delivery",
    "custody.processing",
)
KINDS = (PICKUP, DELIVERY, PROCESSING)
MAX_KG = 200_000
# Residue leaves the plant for landfill, so its code need not be one the plant
# accepts.
LANDFILL = "residue_landfill"
# The alert kind tracking files each kind of discrepancy under.
ALERT_KINDS = {
    "mass_discrepancy": "mass_discrepancy",
    "output_imbalance": "mass_discrepancy",
    "volume_discrepancy": "volume_discrepancy",
}
Kg = Annotated[int, Field(ge=0, le=MAX_KG)]
Signer = tuple[str, str]


class Fields(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PickupFields(Fields):
    request_id: str
    declared_volume_l: int = Field(ge=0, le=1_000_000)
    estimated_mass_kg: int = Field(ge=1, le=MAX_KG)
    materials: list[str] | None = Field(default=None, min_length=1, max_length=40)
    photo_sha256: (
        Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None
    ) = None


class DeliveryFields(Fields):
    ticket_no: Annotated[
        str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")
    ]
    gross_kg: Kg
    tare_kg: Kg
    net_kg: Kg | None = None


class Output(Fields):
    material: Literal[tuple(MATERIALS)]
    ewc: str
    kg: Kg


class ProcessingFields(Fields):
    outputs: list[Output] = Field(min_length=1, max_length=50)


FIELDS: dict[str, type[Fields]] = {
    PICKUP: PickupFields,
    DELIVERY: DeliveryFields,
    PROCESSING: ProcessingFields,
}


def open_batch(
    session: Session, *, vehicle: Vehicle, plant: Plant, start: datetime, end: datetime
) -> Batch:
    """The vehicle's open batch to this plant for this window, or a new one."""
    batch = session.scalar(
        select(Batch).where(
            Batch.vehicle_id == vehicle.id,
            Batch.plant_id == plant.id,
            Batch.status == "open",
            Batch.window_start == start,
            Batch.window_end == end,
        )
    )
    if batch is not None:
        return batch
    batch = Batch(
        id=new_id(),
        vehicle_id=vehicle.id,
        hauler_id=vehicle.hauler_id,
        device_id=vehicle.device_id,
        plant_id=plant.id,
        window_start=start,
        window_end=end,
        status="open",
        created_at=utcnow(),
    )
    session.add(batch)
    session.flush()
    return batch


def lock_batch(session: Session, batch_id: str) -> None:
    """Serializes custody writers of one batch (row lock on PostgreSQL; SQLite
    transactions are already exclusive)."""
    session.execute(select(Batch.id).where(Batch.id == batch_id).with_for_update())


def chain(session: Session, batch_id: str) -> list[CustodyEvent]:
    query = select(CustodyEvent).where(CustodyEvent.batch_id == batch_id)
    return list(session.scalars(query.order_by(CustodyEvent.seq)))


def batch_requests(session: Session, batch_id: str) -> list[PickupRequest]:
    query = select(PickupRequest).where(PickupRequest.batch_id == batch_id)
    return list(session.scalars(query.order_by(PickupRequest.created_at)))


def _managers(session: Session, batch_id: str) -> set[str]:
    query = (
        select(Community.property_manager_id)
        .join(PickupRequest, PickupRequest.community_id == Community.id)
        .where(PickupRequest.batch_id == batch_id)
    )
    return set(session.scalars(query))


def may_see(session: Session, principal: Principal, batch: Batch) -> bool:
    if is_staff(principal):
        return True
    if principal.role == Role.DEVICE:
        return principal.sub == batch.device_id
    if principal.role == Role.HAULER:
        return principal.org == batch.hauler_id
    if principal.role == Role.PLANT:
        return principal.org == batch.plant_id
    if principal.role == Role.PROPERTY_MANAGER:
        return principal.org in _managers(session, batch.id)
    return False


def get_batch(session: Session, *, batch_id: str, principal: Principal) -> Batch:
    batch = get_or_404(session, Batch, batch_id, "batch")
    if not may_see(session, principal, batch):
        raise forbid("batch")
    return batch


def list_batches(
    session: Session, *, principal: Principal, status: str | None
) -> list[Batch]:
    query = select(Batch).order_by(Batch.created_at)
    if status is not None:
        query = query.where(Batch.status == status)
    if principal.role == Role.DEVICE:
        query = query.where(Batch.device_id == principal.sub)
    elif principal.role == Role.HAULER:
        query = query.where(Batch.hauler_id == principal.org)
    elif principal.role == Role.PLANT:
        query = query.where(Batch.plant_id == principal.org)
    elif principal.role == Role.PROPERTY_MANAGER:
        managed = (
            select(PickupRequest.batch_id)
            .join(Community, PickupRequest.community_id == Community.id)
            .where(Community.property_manager_id == principal.org)
        )
        query = query.where(Batch.id.in_(managed))
    elif not is_staff(principal):
        return []
    return list(session.scalars(query))


def _fields(kind: str, fields: dict[str, Any]) -> Fields:
    try:
        return FIELDS[kind].model_validate(fields)
    except ValidationError as exc:
        errors = [
            {"location": [str(part) for part in error["loc"]], "message": error["msg"]}
            for error in exc.errors()
        ]
        raise Unprocessable(
            f"The {kind} fields are invalid.", slug="validation-error", errors=errors
        ) from exc


def _check_order(events: list[CustodyEvent], kind: str) -> None:
    kinds = [event.kind for event in events]
    if kind == PICKUP:
        allowed = DELIVERY not in kinds
    elif kind == DELIVERY:
        allowed = PICKUP in kinds and DELIVERY not in kinds
    else:
        allowed = DELIVERY in kinds and PROCESSING not in kinds
    if not allowed:
        raise Conflict(
            f"A {kind} cannot follow {kinds[-1] if kinds else 'nothing'}; custody "
            "runs pickup+, then delivery, then processing.",
            slug="custody-order",
        )


def _check_time(events: list[CustodyEvent], at: datetime, config: IntakeConfig):
    if at > utcnow() + timedelta(seconds=config.clock_skew_seconds):
        raise Unprocessable("The statement is dated in the future.", slug="time-ahead")
    if events and at < as_utc(events[-1].at):
        raise Unprocessable(
            "The statement is dated before the batch's previous custody event.",
            slug="time-order",
        )


def _pickup_body(
    session: Session, batch: Batch, fields: PickupFields, at: datetime
) -> tuple[dict, list[Signer]]:
    """The handover statement; the hauler must hold a valid licence when it
    signs and the batch's plant must take every material it names."""
    check_licence(session.get(Hauler, batch.hauler_id), at)
    request = get_or_404(session, PickupRequest, fields.request_id, "pickup-request")
    if request.batch_id != batch.id:
        raise Conflict(
            f"Request '{request.id}' is not in this batch.", slug="request-not-in-batch"
        )
    if request.status != "dispatched":
        raise Conflict(
            f"Request '{request.id}' is '{request.status}', not awaiting pickup.",
            slug="invalid-state",
        )
    loaded = sum(
        event.statement["body"]["estimated_mass_kg"]
        for event in chain(session, batch.id)
        if event.kind == PICKUP
    )
    capacity = session.get(Vehicle, batch.vehicle_id).capacity_kg
    if loaded + fields.estimated_mass_kg > capacity:
        raise Unprocessable(
            f"The load would exceed the vehicle's capacity of {capacity} kg.",
            slug="over-capacity",
            loaded_kg=loaded,
        )
    materials = fields.materials or list(request.materials)
    if unknown_codes(materials) or len(set(materials)) != len(materials):
        raise Unprocessable(
            "materials must be distinct EWC chapter 17 codes.", slug="ewc-invalid"
        )
    check_plant(session.get(Plant, batch.plant_id), materials)
    community = session.get(Community, request.community_id)
    body = {
        "request_id": request.id,
        "community_id": community.id,
        "property_manager_id": community.property_manager_id,
        "hauler_id": batch.hauler_id,
        "vehicle_id": batch.vehicle_id,
        "device_id": batch.device_id,
        "declared_volume_l": fields.declared_volume_l,
        "estimated_mass_kg": fields.estimated_mass_kg,
        "mass_basis": "estimated",
        "materials": materials,
        "photo_sha256": fields.photo_sha256,
    }
    signers = [
        ("device", batch.device_id),
        ("property_manager", body["property_manager_id"]),
    ]
    return body, signers


def _picked_up(session: Session, batch: Batch) -> list[str]:
    """Every EWC code the batch's pickup statements name."""
    codes = {
        code
        for event in chain(session, batch.id)
        if event.kind == PICKUP
        for code in event.statement["body"]["materials"]
    }
    return sorted(codes)


def _delivery_body(
    session: Session, batch: Batch, fields: DeliveryFields
) -> tuple[dict, list[Signer]]:
    net = fields.gross_kg - fields.tare_kg
    if net <= 0:
        raise Unprocessable("gross_kg must exceed tare_kg.", slug="mass-invalid")
    if fields.net_kg is not None and fields.net_kg != net:
        raise Unprocessable(
            f"net_kg must be gross_kg - tare_kg = {net}.", slug="net-mismatch"
        )
    check_plant(session.get(Plant, batch.plant_id), _picked_up(session, batch))
    duplicate = session.scalar(
        select(CustodyEvent.id).where(
            CustodyEvent.plant_id == batch.plant_id,
            CustodyEvent.ticket_no == fields.ticket_no,
        )
    )
    if duplicate is not None:
        raise Conflict(
            f"Ticket '{fields.ticket_no}' was already used at this plant.",
            slug="duplicate-ticket",
        )
    body = {
        "plant_id": batch.plant_id,
        "ticket_no": fields.ticket_no,
        "vehicle_id": batch.vehicle_id,
        "gross_kg": fields.gross_kg,
        "tare_kg": fields.tare_kg,
        "net_kg": net,
        "mass_basis": "measured",
    }
    return body, [("plant", batch.plant_id)]


def _processing_body(
    session: Session,
    events: list[CustodyEvent],
    batch: Batch,
    fields: ProcessingFields,
) -> tuple[dict, list[Signer]]:
    delivery = next(event for event in events if event.kind == DELIVERY)
    net = delivery.statement["body"]["net_kg"]
    pairs = [(output.material, output.ewc) for output in fields.outputs]
    if len(set(pairs)) != len(pairs):
        raise Unprocessable("An output repeats a material and code.", slug="outputs")
    for output in fields.outputs:
        if output.ewc not in MATERIALS[output.material]:
            raise Unprocessable(
                f"EWC '{output.ewc}' is not a code for {output.material}.",
                slug="ewc-invalid",
            )
    sorted_codes = [
        output.ewc for output in fields.outputs if output.material != LANDFILL
    ]
    check_accepts(session.get(Plant, batch.plant_id), sorted_codes)
    total = sum(output.kg for output in fields.outputs)
    if total > net:
        raise Unprocessable(
            f"Outputs of {total} kg exceed the net input of {net} kg.",
            slug="outputs-imbalance",
            outputs_kg=total,
            input_net_kg=net,
        )
    body = {
        "plant_id": batch.plant_id,
        "input_net_kg": net,
        "outputs": [output.model_dump() for output in fields.outputs],
    }
    return body, [("plant", batch.plant_id)]


def prepare(
    session: Session,
    *,
    batch: Batch,
    kind: str,
    at: datetime,
    fields: dict[str, Any],
    config: IntakeConfig,
) -> tuple[dict, list[Signer]]:
    """The exact statement a custody step must sign, and who must sign it."""
    events = chain(session, batch.id)
    _check_order(events, kind)
    at = as_utc(at)
    _check_time(events, at, config)
    checked = _fields(kind, fields)
    if kind == PICKUP:
        body, signers = _pickup_body(session, batch, checked, at)
    elif kind == DELIVERY:
        body, signers = _delivery_body(session, batch, checked)
    else:
        body, signers = _processing_body(session, events, batch, checked)
    statement = {
        "v": 1,
        "kind": kind,
        "batch_id": batch.id,
        "prev": batch.head,
        "at": iso_utc(at),
        "body": body,
    }
    return statement, signers


CLIENT_FIELDS = {
    PICKUP: ("request_id", "declared_volume_l", "estimated_mass_kg", "materials")
    + ("photo_sha256",),
    DELIVERY: ("ticket_no", "gross_kg", "tare_kg", "net_kg"),
    PROCESSING: ("outputs",),
}


def _envelope(statement: dict[str, Any]) -> tuple[str, datetime, dict[str, Any]]:
    """Reads kind, time and the client's own fields from a posted statement."""
    kind, at, body = statement.get("kind"), statement.get("at"), statement.get("body")
    if kind not in KINDS or not isinstance(at, str) or not isinstance(body, dict):
        raise Unprocessable(
            "statement needs a custody kind, an RFC 3339 'at' and a body object.",
            slug="statement-invalid",
        )
    try:
        when = parse_utc(at)
    except ValueError as exc:
        raise Unprocessable(
            "statement 'at' is not an RFC 3339 time with an offset.",
            slug="statement-invalid",
        ) from exc
    fields = {name: body[name] for name in CLIENT_FIELDS[kind] if name in body}
    return kind, when, fields


def _canonical(value: Any) -> bytes | None:
    try:
        return canonical_json(value)
    except Exception:
        return None


def _check_signatures(
    session: Session,
    statement: dict,
    signatures: list[SignatureIn],
    signers: list[Signer],
) -> None:
    message = canonical_json(statement)
    covered: set[Signer] = set()
    if len({signature.key_id for signature in signatures}) != len(signatures):
        raise Unprocessable("A key signs only once.", slug="signature-duplicate")
    for signature in signatures:
        key = session.get(PartyKey, signature.key_id)
        if key is None:
            raise Unprocessable(
                f"Key '{signature.key_id}' is not registered.", slug="key-unknown"
            )
        if key.revoked_at is not None:
            raise Unprocessable(f"Key '{key.key_id}' is revoked.", slug="key-revoked")
        party = (key.party_kind, key.party_id)
        if party not in signers or statement["kind"] not in key.kinds:
            raise Unprocessable(
                f"Key '{key.key_id}' belongs to {key.party_kind} '{key.party_id}', "
                "who does not sign this statement.",
                slug="wrong-signer",
            )
        if not verify_bytes(
            public_key_from_b64(key.public_key), message, signature.signature
        ):
            raise Unprocessable(
                f"The signature by key '{key.key_id}' does not verify.",
                slug="signature-invalid",
            )
        covered.add(party)
    missing = [
        {"party_kind": k, "party_id": i} for k, i in signers if (k, i) not in covered
    ]
    if missing:
        raise Unprocessable(
            "Required signatures are missing.",
            slug="signature-missing",
            missing=missing,
        )


def _replayed(
    events: list[CustodyEvent], statement: dict, signatures: list[dict]
) -> CustodyEvent | None:
    """The stored event a repeated post of the same entry names, if any."""
    posted = _canonical({"statement": statement, "signatures": signatures})
    for event in events:
        stored = {"statement": event.statement, "signatures": event.signatures}
        if posted is not None and posted == canonical_json(stored):
            return event
    return None


def record(
    session: Session,
    *,
    batch_id: str,
    data: CustodyIn,
    principal: Principal,
    config: IntakeConfig,
) -> tuple[CustodyOut, bool]:
    """Checks and stores a signed custody statement; returns it and if it is new."""
    lock_batch(session, batch_id)
    batch = get_batch(session, batch_id=batch_id, principal=principal)
    signatures = [signature.model_dump() for signature in data.signatures]
    replay = _replayed(chain(session, batch.id), data.statement, signatures)
    if replay is not None:
        return event_view(session, replay), False
    kind, at, fields = _envelope(data.statement)
    expected, signers = prepare(
        session, batch=batch, kind=kind, at=at, fields=fields, config=config
    )
    if data.statement.get("prev") != expected["prev"]:
        raise Conflict(
            "prev is not the batch's current custody head.",
            slug="stale-prev",
            expected_prev=expected["prev"],
        )
    if _canonical(data.statement) != canonical_json(expected):
        raise Unprocessable(
            "The statement differs from the one intake expects for this step.",
            slug="statement-mismatch",
            expected=expected,
        )
    _check_signatures(session, expected, data.signatures, signers)
    event = _store(session, batch, expected, signatures, principal)
    found = _apply(session, batch, event, principal, config)
    return event_view(session, event, found), True


def _store(
    session: Session,
    batch: Batch,
    statement: dict,
    signatures: list[dict],
    principal: Principal,
) -> CustodyEvent:
    entry = {"statement": statement, "signatures": signatures}
    leaf = b64(leaf_hash(canonical_json(entry)))
    body = statement["body"]
    event = CustodyEvent(
        id=new_id(),
        batch_id=batch.id,
        seq=len(chain(session, batch.id)) + 1,
        kind=statement["kind"],
        statement=statement,
        signatures=signatures,
        leaf_hash=leaf,
        at=parse_utc(statement["at"]),
        request_id=body.get("request_id"),
        plant_id=body["plant_id"] if statement["kind"] == DELIVERY else None,
        ticket_no=body.get("ticket_no"),
        recorded_by=principal.sub,
        created_at=utcnow(),
    )
    session.add(event)
    batch.head = leaf
    send_to_ledger(
        session,
        method="POST",
        path="/v1/entries",
        body=entry,
        key=f"custody:{event.id}",
    )
    session.flush()
    return event


def _apply(
    session: Session,
    batch: Batch,
    event: CustodyEvent,
    principal: Principal,
    config: IntakeConfig,
) -> list[Discrepancy]:
    """What a custody event changes: request states, batch state, alerts."""
    if event.kind == PICKUP:
        request = session.get(PickupRequest, event.request_id)
        pickup_requests.record(session, request, "collected", principal)
        return []
    if event.kind == PROCESSING:
        batch.status, batch.processed_at = "processed", event.at
        for request in batch_requests(session, batch.id):
            if request.status == "collected":
                pickup_requests.record(session, request, "completed", principal)
        return _found(_output_check(session, batch, event, config))
    batch.status, batch.delivered_at = "delivered", event.at
    for request in batch_requests(session, batch.id):
        if request.status == "dispatched":
            pickup_requests.undispatch(
                session, request, principal, note="not collected before delivery"
            )
    _request_trip(session, batch, event)
    return _found(
        _mass_check(session, batch, event, config),
        _volume_check(session, batch, event, config),
    )


def _found(*checks: Discrepancy | None) -> list[Discrepancy]:
    return [discrepancy for discrepancy in checks if discrepancy is not None]


def _pickup_total(session: Session, batch: Batch, field: str) -> int:
    """The sum of one body field over the batch's pickup statements."""
    return sum(
        event.statement["body"][field]
        for event in chain(session, batch.id)
        if event.kind == PICKUP
    )


def _request_trip(session: Session, batch: Batch, event: CustodyEvent) -> None:
    body = {
        "device_id": batch.device_id,
        "vehicle_id": batch.vehicle_id,
        "start": iso_utc(batch.window_start),
        "end": iso_utc(event.at),
    }
    send_to_tracking(
        session,
        method="POST",
        path=f"/v1/batches/{batch.id}/trip",
        body=body,
        key=f"trip:{batch.id}",
    )


def _mass_check(
    session: Session, batch: Batch, event: CustodyEvent, config: IntakeConfig
) -> Discrepancy | None:
    """Records and raises a discrepancy when net mass is far off the estimates."""
    estimated = _pickup_total(session, batch, "estimated_mass_kg")
    net = event.statement["body"]["net_kg"]
    if abs(net - estimated) <= config.mass_tolerance * estimated:
        return None
    detail = (
        f"Weighed net {net} kg against {estimated} kg estimated at pickup "
        f"(tolerance {config.mass_tolerance})."
    )
    facts = {
        "check": "weighbridge",
        "estimated_kg": estimated,
        "net_kg": net,
        "ticket_no": event.ticket_no,
        "tolerance": str(config.mass_tolerance),
    }
    return _discrepancy(
        session,
        batch,
        event,
        kind="mass_discrepancy",
        expected_kg=estimated,
        actual_kg=net,
        detail=detail,
        facts=facts,
    )


def _volume_check(
    session: Session, batch: Batch, event: CustodyEvent, config: IntakeConfig
) -> Discrepancy | None:
    """Records and raises a discrepancy when the weighed net mass over the
    volume the pickups declared is a bulk density outside the configured
    range. Mass weighed against no volume declared at all is one too, so that
    declaring 0 litres does not escape the check."""
    litres = _pickup_total(session, batch, "declared_volume_l")
    net = event.statement["body"]["net_kg"]
    low, high = config.volume_density_min_kg_m3, config.volume_density_max_kg_m3
    if low * litres <= net * 1000 <= high * litres:
        return None
    bound = low if net * 1000 < low * litres else high
    density = round(net * 1000 / litres) if litres else None
    facts = {
        "check": "weighbridge_volume",
        "declared_volume_l": litres,
        "net_kg": net,
        "density_kg_m3": density,
        "density_min_kg_m3": low,
        "density_max_kg_m3": high,
        "ticket_no": event.ticket_no,
    }
    return _discrepancy(
        session,
        batch,
        event,
        kind="volume_discrepancy",
        expected_kg=bound * litres // 1000,
        actual_kg=net,
        detail=_volume_detail(net, litres, density, low, high),
        facts=facts,
    )


def _volume_detail(net, litres, density, low, high) -> str:
    if density is None:
        return f"Weighed net {net} kg, but the pickups declared no volume."
    return (
        f"Weighed net {net} kg in the {litres} L declared at pickup is "
        f"{density} kg/m3, outside {low}-{high} kg/m3."
    )


def _output_check(
    session: Session, batch: Batch, event: CustodyEvent, config: IntakeConfig
) -> Discrepancy | None:
    """Records and raises a discrepancy when sorting outputs fall short of the
    net input by more than the tolerance (outputs above it are refused)."""
    body = event.statement["body"]
    net = body["input_net_kg"]
    total = sum(output["kg"] for output in body["outputs"])
    if total >= Decimal(net) * (1 - config.processing_tolerance):
        return None
    detail = (
        f"Sorting outputs of {total} kg fall {net - total} kg short of the "
        f"{net} kg weighed in (tolerance {config.processing_tolerance})."
    )
    facts = {
        "check": "sorting_outputs",
        "input_net_kg": net,
        "outputs_kg": total,
        "shortfall_kg": net - total,
        "tolerance": str(config.processing_tolerance),
    }
    return _discrepancy(
        session,
        batch,
        event,
        kind="output_imbalance",
        expected_kg=net,
        actual_kg=total,
        detail=detail,
        facts=facts,
    )


def _discrepancy(
    session: Session,
    batch: Batch,
    event: CustodyEvent,
    *,
    kind: str,
    expected_kg: int,
    actual_kg: int,
    detail: str,
    facts: dict[str, Any],
) -> Discrepancy:
    """Stores a discrepancy and queues its alert to tracking, both in this
    transaction, under the alert kind ALERT_KINDS names for it."""
    discrepancy = Discrepancy(
        id=new_id(),
        batch_id=batch.id,
        kind=kind,
        expected_kg=expected_kg,
        actual_kg=actual_kg,
        detail=detail,
        at=event.at,
    )
    session.add(discrepancy)
    alert = {
        "kind": ALERT_KINDS[kind],
        "message": detail,
        "batch_id": batch.id,
        "device_id": batch.device_id,
        "vehicle_id": batch.vehicle_id,
        "start": iso_utc(event.at),
        "end": iso_utc(event.at),
        "detail": {**facts, "discrepancy_id": discrepancy.id},
    }
    send_to_tracking(
        session,
        method="POST",
        path="/v1/alerts",
        body=alert,
        key=f"alert:{kind}:{batch.id}",
    )
    return discrepancy


def event_view(
    session: Session, event: CustodyEvent, found: list[Discrepancy] | None = None
) -> CustodyOut:
    """The stored event and the discrepancies recording it raised, if any."""
    views = [DiscrepancyOut.model_validate(row) for row in found or []]
    return CustodyOut(
        event_id=event.id,
        batch_id=event.batch_id,
        seq=event.seq,
        kind=event.kind,
        at=as_utc(event.at),
        leaf_hash=event.leaf_hash,
        discrepancy=views[0] if views else None,
        discrepancies=views,
    )


def discrepancies(session: Session, batch_id: str) -> list[Discrepancy]:
    query = select(Discrepancy).where(Discrepancy.batch_id == batch_id)
    return list(session.scalars(query.order_by(Discrepancy.at, Discrepancy.kind)))
