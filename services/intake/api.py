"""Intake's HTTP API: registry, keys, tokens, pickup requests, batches, custody."""

from datetime import UTC, datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

import httpx
import structlog
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from services.intake import custody, fees, page, qr, registry, tokens
from services.intake import requests as pickup_requests
from services.intake.config import IntakeConfig
from services.intake.models import (
    Community,
    Depot,
    Plant,
    idempotency_keys,
    outbox,
)
from services.intake.schemas import (
    BatchOut,
    BatchStatus,
    CancelIn,
    CommunityIn,
    CommunityOut,
    CustodyEventOut,
    CustodyIn,
    CustodyOut,
    DepotIn,
    DepotOut,
    DiscrepancyOut,
    DispatchIn,
    Geofence,
    GeofenceOut,
    HaulerIn,
    HaulerOut,
    HaulerPatch,
    InvalidLicence,
    KeyIn,
    KeyOut,
    OutboxMessageOut,
    PartyStatementOut,
    PaymentIn,
    PaymentOut,
    PickupRequestIn,
    PickupRequestOut,
    PlantIn,
    PlantOut,
    PlantPatch,
    RequestEventOut,
    RequestStatus,
    RevokeIn,
    RotateIn,
    Signer,
    StatementIn,
    StatementOut,
    TokenIn,
    TokenOut,
    VehicleIn,
    VehicleOut,
)
from services.intake.service import get_or_404, is_staff
from shared.app import create_service_app, get_session
from shared.auth import Principal, Role, current_principal, decode_token, require
from shared.http import service_client
from shared.idempotency import check_key, remember, replay
from shared.outbox import OutboxRelay, failed_messages, retry_failed
from shared.problems import (
    Conflict,
    Forbidden,
    Problem,
    Unauthorized,
    Unprocessable,
    problem_response,
)
from shared.settings import Settings, get_settings
from shared.timeutil import as_utc, utcnow

log = structlog.get_logger()

SessionDep = Annotated[Session, Depends(get_session)]
Anyone = Annotated[Principal, Depends(current_principal)]
Admin = Annotated[Principal, Depends(require())]
Inspector = Annotated[Principal, Depends(require(Role.INSPECTOR))]
PAID_ROLES = frozenset({Role.PROPERTY_MANAGER, Role.HAULER, Role.PLANT})
Resident = Annotated[Principal, Depends(require(Role.RESIDENT))]
Dispatcher = Annotated[Principal, Depends(require(Role.HAULER))]
CustodyParty = Annotated[
    Principal,
    Depends(require(Role.DEVICE, Role.PROPERTY_MANAGER, Role.HAULER, Role.PLANT)),
]

router = APIRouter()
PAGE_COOKIE = "salvage_token"


def get_config(request: Request) -> IntakeConfig:
    return request.app.state.intake_config


ConfigDep = Annotated[IntakeConfig, Depends(get_config)]


def commit(session: Session, request: Request) -> None:
    """Commits; a unique-key race becomes a 409; queued messages go out now."""
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(
            "The change conflicts with a stored record.", slug="duplicate"
        ) from exc
    relay = getattr(request.app.state, "relay", None)
    if relay is not None:
        relay.wake()


def _aware(value: datetime) -> datetime:
    """A query-string time; one without an offset is refused as ambiguous."""
    if value.tzinfo is None:
        raise Problem("Times need a UTC offset.", slug="time-without-offset")
    return as_utc(value)


def community_view(community: Community, config: IntakeConfig) -> CommunityOut:
    view = CommunityOut.model_validate(community)
    view.qr_url = qr.request_url(config.public_url, community.code)
    return view


def request_view(session: Session, request: object) -> PickupRequestOut:
    view = PickupRequestOut.model_validate(request)
    view.events = [
        RequestEventOut.model_validate(event)
        for event in pickup_requests.events_of(session, view.id)
    ]
    return view


def batch_view(session: Session, batch: object) -> BatchOut:
    view = BatchOut.model_validate(batch)
    view.request_ids = [r.id for r in custody.batch_requests(session, view.id)]
    view.events = [
        CustodyEventOut.model_validate(event)
        for event in custody.chain(session, view.id)
    ]
    view.discrepancies = [
        DiscrepancyOut.model_validate(row)
        for row in custody.discrepancies(session, view.id)
    ]
    return view


# Registry -----------------------------------------------------------------


@router.post("/v1/communities", status_code=201, tags=["registry"])
def create_community(
    payload: CommunityIn,
    session: SessionDep,
    _: Admin,
    request: Request,
    config: ConfigDep,
) -> CommunityOut:
    """Registers a community; its place reaches tracking through the outbox."""
    community = registry.create_community(session, data=payload)
    commit(session, request)
    log.info("intake.community_registered", community_id=community.id)
    return community_view(community, config)


@router.get("/v1/communities", tags=["registry"])
def list_communities(
    session: SessionDep, _: Anyone, config: ConfigDep
) -> list[CommunityOut]:
    return [community_view(c, config) for c in registry.list_communities(session)]


@router.get("/v1/communities/{community_id}", tags=["registry"])
def get_community(
    community_id: str, session: SessionDep, _: Anyone, config: ConfigDep
) -> CommunityOut:
    community = get_or_404(session, Community, community_id, "community")
    return community_view(community, config)


@router.get("/v1/communities/{community_id}/qr.png", tags=["registry"])
def community_qr_png(
    community_id: str, session: SessionDep, config: ConfigDep
) -> Response:
    """The community's QR code as PNG; it opens the pickup request page."""
    community = get_or_404(session, Community, community_id, "community")
    url = qr.request_url(config.public_url, community.code)
    return Response(qr.png(url), media_type="image/png")


@router.get("/v1/communities/{community_id}/qr.svg", tags=["registry"])
def community_qr_svg(
    community_id: str, session: SessionDep, config: ConfigDep
) -> Response:
    """The community's QR code as SVG, for print."""
    community = get_or_404(session, Community, community_id, "community")
    url = qr.request_url(config.public_url, community.code)
    return Response(qr.svg(url), media_type="image/svg+xml")


@router.post("/v1/haulers", status_code=201, tags=["registry"])
def create_hauler(
    payload: HaulerIn, session: SessionDep, _: Inspector, request: Request
) -> HaulerOut:
    """Licenses a hauler (inspector or admin)."""
    hauler = registry.create_hauler(session, data=payload)
    commit(session, request)
    log.info("intake.hauler_registered", hauler_id=hauler.id)
    return HaulerOut.model_validate(hauler)


@router.get("/v1/haulers/invalid-licences", tags=["registry"])
def invalid_licences(
    session: SessionDep,
    _: Inspector,
    on: Annotated[datetime | None, Query(description="RFC 3339; default now")] = None,
) -> list[InvalidLicence]:
    """Haulers whose licence is not valid at `on`, with the reason."""
    at = utcnow() if on is None else _aware(on)
    return [
        InvalidLicence(hauler=HaulerOut.model_validate(hauler), reason=reason)
        for hauler, reason in registry.invalid_licences(session, on=at)
    ]


@router.get("/v1/haulers", tags=["registry"])
def list_haulers(session: SessionDep, principal: Anyone) -> list[HaulerOut]:
    haulers = registry.list_haulers(session, principal=principal)
    return [HaulerOut.model_validate(hauler) for hauler in haulers]


@router.get("/v1/haulers/{hauler_id}", tags=["registry"])
def get_hauler(hauler_id: str, session: SessionDep, principal: Anyone) -> HaulerOut:
    hauler = registry.get_hauler(session, hauler_id=hauler_id, principal=principal)
    return HaulerOut.model_validate(hauler)


@router.patch("/v1/haulers/{hauler_id}", tags=["registry"])
def update_hauler(
    hauler_id: str,
    payload: HaulerPatch,
    session: SessionDep,
    _: Inspector,
    request: Request,
) -> HaulerOut:
    """Changes a licence's number, validity or status; tracking is told."""
    hauler = registry.update_hauler(session, hauler_id=hauler_id, data=payload)
    commit(session, request)
    log.info("intake.licence_changed", hauler_id=hauler.id, status=hauler.status)
    return HaulerOut.model_validate(hauler)


@router.post("/v1/vehicles", status_code=201, tags=["registry"])
def create_vehicle(
    payload: VehicleIn, session: SessionDep, _: Admin, request: Request
) -> VehicleOut:
    """Registers a vehicle and its telemetry device; tracking is told."""
    vehicle = registry.create_vehicle(session, data=payload)
    commit(session, request)
    log.info("intake.vehicle_registered", vehicle_id=vehicle.id)
    return VehicleOut.model_validate(vehicle)


@router.get("/v1/vehicles", tags=["registry"])
def list_vehicles(session: SessionDep, principal: Anyone) -> list[VehicleOut]:
    vehicles = registry.visible_vehicles(session, principal=principal)
    return [VehicleOut.model_validate(vehicle) for vehicle in vehicles]


@router.get("/v1/vehicles/{vehicle_id}", tags=["registry"])
def get_vehicle(vehicle_id: str, session: SessionDep, principal: Anyone) -> VehicleOut:
    vehicle = registry.get_vehicle(session, vehicle_id=vehicle_id, principal=principal)
    return VehicleOut.model_validate(vehicle)


@router.post("/v1/plants", status_code=201, tags=["registry"])
def create_plant(
    payload: PlantIn, session: SessionDep, _: Admin, request: Request
) -> PlantOut:
    """Registers a treatment plant with its geofence and accepted EWC codes."""
    plant = registry.create_plant(session, data=payload)
    commit(session, request)
    log.info("intake.plant_registered", plant_id=plant.id)
    return PlantOut.model_validate(plant)


@router.patch("/v1/plants/{plant_id}", tags=["registry"])
def update_plant(
    plant_id: str,
    payload: PlantPatch,
    session: SessionDep,
    _: Inspector,
    request: Request,
) -> PlantOut:
    """Changes a plant's licence or accepted codes; tracking is told."""
    plant = registry.update_plant(session, plant_id=plant_id, data=payload)
    commit(session, request)
    return PlantOut.model_validate(plant)


@router.get("/v1/plants", tags=["registry"])
def list_plants(session: SessionDep, _: Anyone) -> list[PlantOut]:
    return [PlantOut.model_validate(plant) for plant in registry.list_plants(session)]


@router.get("/v1/plants/{plant_id}", tags=["registry"])
def get_plant(plant_id: str, session: SessionDep, _: Anyone) -> PlantOut:
    return PlantOut.model_validate(get_or_404(session, Plant, plant_id, "plant"))


@router.post("/v1/depots", status_code=201, tags=["registry"])
def create_depot(
    payload: DepotIn, session: SessionDep, _: Admin, request: Request
) -> DepotOut:
    depot = registry.create_depot(session, data=payload)
    commit(session, request)
    return DepotOut.model_validate(depot)


@router.get("/v1/depots", tags=["registry"])
def list_depots(session: SessionDep, _: Anyone) -> list[DepotOut]:
    return [DepotOut.model_validate(depot) for depot in registry.list_depots(session)]


@router.get("/v1/depots/{depot_id}", tags=["registry"])
def get_depot(depot_id: str, session: SessionDep, _: Anyone) -> DepotOut:
    return DepotOut.model_validate(get_or_404(session, Depot, depot_id, "depot"))


@router.put("/v1/{collection}/{place_id}/geofence", tags=["registry"])
def move_geofence(
    collection: Literal["communities", "plants", "depots"],
    place_id: str,
    payload: Geofence,
    session: SessionDep,
    _: Admin,
    request: Request,
) -> GeofenceOut:
    """Replaces a community's, plant's or depot's location and geofence;
    tracking receives the new geofence through the outbox."""
    kind, place = registry.move_geofence(
        session, collection=collection, place_id=place_id, data=payload
    )
    commit(session, request)
    log.info("intake.geofence_moved", place_id=place_id, kind=kind)
    return GeofenceOut(
        id=place.id,
        kind=kind,
        lat=place.lat,
        lon=place.lon,
        radius_m=place.radius_m,
        polygon=place.polygon,
    )


# Keys and tokens ------------------------------------------------------------


@router.post("/v1/parties/keys", status_code=201, tags=["keys"])
def register_key(
    payload: KeyIn,
    session: SessionDep,
    _: Admin,
    request: Request,
    response: Response,
) -> KeyOut:
    """Registers a party's Ed25519 key; the ledger learns it via the outbox.

    The same key for the same party again answers 200 with the stored key.
    """
    key, created = registry.register_key(session, data=payload)
    commit(session, request)
    if not created:
        response.status_code = 200
    log.info("intake.key_registered", key_id=key.key_id, party_id=key.party_id)
    return KeyOut.model_validate(key)


@router.get("/v1/parties/keys", tags=["keys"])
def list_keys(
    session: SessionDep, _: Anyone, party_id: str | None = None
) -> list[KeyOut]:
    keys = registry.list_keys(session, party_id=party_id)
    return [KeyOut.model_validate(key) for key in keys]


@router.post("/v1/parties/keys/{key_id}/revoke", tags=["keys"])
def revoke_key(
    key_id: str, payload: RevokeIn, session: SessionDep, _: Admin, request: Request
) -> KeyOut:
    """Revokes a key; intake and the ledger refuse its signatures from now on."""
    key = registry.revoke_key(session, key_id_=key_id, reason=payload.reason)
    commit(session, request)
    log.info("intake.key_revoked", key_id=key.key_id)
    return KeyOut.model_validate(key)


@router.post("/v1/parties/keys/{key_id}/rotate", status_code=201, tags=["keys"])
def rotate_key(
    key_id: str, payload: RotateIn, session: SessionDep, _: Admin, request: Request
) -> KeyOut:
    """Registers a new key for the same party and revokes this one."""
    key = registry.rotate_key(
        session, key_id_=key_id, public_key=payload.public_key, reason=payload.reason
    )
    commit(session, request)
    log.info("intake.key_rotated", old_key_id=key_id, key_id=key.key_id)
    return KeyOut.model_validate(key)


@router.post("/v1/tokens", status_code=201, tags=["tokens"])
def mint_token(
    payload: TokenIn, session: SessionDep, _: Admin, request: Request
) -> TokenOut:
    """Mints a bearer token for a registered principal."""
    signing_key = request.app.state.settings.auth_key()
    token = tokens.mint_token(session, data=payload, signing_key=signing_key)
    log.info("intake.token_issued", sub=token.sub, role=token.role, org=token.org)
    return token


# Pickup requests --------------------------------------------------------------


@router.post("/v1/pickup-requests", status_code=201, tags=["requests"])
def create_pickup_request(
    payload: PickupRequestIn,
    session: SessionDep,
    principal: Resident,
    request: Request,
    config: ConfigDep,
) -> PickupRequestOut:
    """Creates a pickup request for a community (by id or QR code) and quotes it."""
    created = pickup_requests.create_request(
        session, data=payload, principal=principal, config=config
    )
    commit(session, request)
    log.info("intake.request_created", request_id=created.id, fee=str(created.fee))
    return request_view(session, created)


@router.get("/v1/pickup-requests", tags=["requests"])
def list_pickup_requests(
    session: SessionDep, principal: Anyone, status: RequestStatus | None = None
) -> list[PickupRequestOut]:
    """The requests the caller may see: a resident's own, a hauler's dispatches."""
    found = pickup_requests.list_requests(session, principal=principal, status=status)
    return [request_view(session, item) for item in found]


@router.get("/v1/pickup-requests/{request_id}", tags=["requests"])
def get_pickup_request(
    request_id: str, session: SessionDep, principal: Anyone
) -> PickupRequestOut:
    found = pickup_requests.get_request(
        session, request_id=request_id, principal=principal
    )
    return request_view(session, found)


@router.post(
    "/v1/pickup-requests/{request_id}/payment",
    status_code=201,
    response_model=PaymentOut,
    tags=["requests"],
)
def pay_pickup_request(
    request_id: str,
    payload: PaymentIn,
    session: SessionDep,
    principal: Resident,
    request: Request,
    config: ConfigDep,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Pays the quoted fee (Idempotency-Key required) and splits it by shares."""
    key = check_key(idempotency_key)
    who = f"{principal.role}:{principal.sub}"
    fingerprint = {"path": request.url.path, "body": payload.model_dump(mode="json")}
    stored = replay(
        session, idempotency_keys, key=key, principal=who, request=fingerprint
    )
    if stored is not None:
        return JSONResponse(stored[1], status_code=200)
    payment = pickup_requests.pay(
        session, request_id=request_id, data=payload, principal=principal, config=config
    )
    body = payment.model_dump(mode="json")
    remember(
        session,
        idempotency_keys,
        key=key,
        principal=who,
        request=fingerprint,
        status_code=201,
        response=body,
    )
    commit(session, request)
    log.info("intake.payment_recorded", request_id=request_id, amount=body["amount"])
    return JSONResponse(body, status_code=201)


@router.post("/v1/pickup-requests/{request_id}/dispatch", tags=["requests"])
def dispatch_pickup_request(
    request_id: str,
    payload: DispatchIn,
    session: SessionDep,
    principal: Dispatcher,
    request: Request,
) -> PickupRequestOut:
    """Dispatches a paid request to a licensed hauler's vehicle and its batch."""
    dispatched = pickup_requests.dispatch(
        session, request_id=request_id, data=payload, principal=principal
    )
    commit(session, request)
    log.info(
        "intake.request_dispatched",
        request_id=request_id,
        batch_id=dispatched.batch_id,
    )
    return request_view(session, dispatched)


@router.post("/v1/pickup-requests/{request_id}/cancel", tags=["requests"])
def cancel_pickup_request(
    request_id: str,
    payload: CancelIn,
    session: SessionDep,
    principal: Resident,
    request: Request,
) -> PickupRequestOut:
    cancelled = pickup_requests.cancel(
        session, request_id=request_id, data=payload, principal=principal
    )
    commit(session, request)
    log.info("intake.request_cancelled", request_id=request_id)
    return request_view(session, cancelled)


# Batches and custody ------------------------------------------------------------


@router.get("/v1/batches", tags=["custody"])
def list_batches(
    session: SessionDep, principal: Anyone, status: BatchStatus | None = None
) -> list[BatchOut]:
    found = custody.list_batches(session, principal=principal, status=status)
    return [batch_view(session, batch) for batch in found]


@router.get("/v1/batches/{batch_id}", tags=["custody"])
def get_batch(batch_id: str, session: SessionDep, principal: Anyone) -> BatchOut:
    batch = custody.get_batch(session, batch_id=batch_id, principal=principal)
    return batch_view(session, batch)


@router.post("/v1/batches/{batch_id}/statements", tags=["custody"])
def prepare_statement(
    batch_id: str,
    payload: StatementIn,
    session: SessionDep,
    principal: CustodyParty,
    config: ConfigDep,
) -> StatementOut:
    """The exact statement the next custody step signs, and who must sign it.

    Sign the RFC 8785 canonical JSON of `statement` with Ed25519 and post it
    with the signatures to `/v1/batches/{batch_id}/custody`.
    """
    batch = custody.get_batch(session, batch_id=batch_id, principal=principal)
    statement, signers = custody.prepare(
        session,
        batch=batch,
        kind=payload.kind,
        at=payload.at,
        fields=payload.body,
        config=config,
    )
    return StatementOut(
        statement=statement,
        signers=[Signer(party_kind=kind, party_id=party) for kind, party in signers],
    )


@router.post("/v1/batches/{batch_id}/custody", status_code=201, tags=["custody"])
def record_custody(
    batch_id: str,
    payload: CustodyIn,
    session: SessionDep,
    principal: CustodyParty,
    request: Request,
    response: Response,
    config: ConfigDep,
) -> CustodyOut:
    """Records a signed custody statement and queues its ledger append.

    Posting the same statement and signatures again answers 200 with the
    stored event.
    """
    event, created = custody.record(
        session, batch_id=batch_id, data=payload, principal=principal, config=config
    )
    commit(session, request)
    if not created:
        response.status_code = 200
    log.info("intake.custody_recorded", batch_id=batch_id, kind=event.kind)
    for found in event.discrepancies:
        log.warning(
            "intake.discrepancy_raised",
            batch_id=batch_id,
            kind=found.kind,
            discrepancy_id=found.id,
        )
    return event


# Statements ------------------------------------------------------------------------


@router.get("/v1/statements", tags=["fees"])
def party_statement(
    session: SessionDep,
    principal: Anyone,
    config: ConfigDep,
    party_id: str,
    start: datetime,
    end: datetime,
) -> PartyStatementOut:
    """A party's shares of payments made in [start, end), less the shares it
    gave back for requests cancelled in that period."""
    own = principal.role in PAID_ROLES and principal.org == party_id
    if not (is_staff(principal) or own):
        raise Forbidden("A party sees only its own statement.", slug="not-yours")
    start, end = _aware(start), _aware(end)
    if end <= start:
        raise Unprocessable("end must be after start.", slug="period-invalid")
    return fees.party_statement(
        session, party_id=party_id, start=start, end=end, currency=config.currency
    )


# Operations ----------------------------------------------------------------------


@router.get("/v1/outbox/failed", tags=["operations"])
def list_failed_messages(session: SessionDep, _: Admin) -> list[OutboxMessageOut]:
    """Messages the ledger or tracking rejected, oldest first, with the answer.

    Each one holds back every later message with its ordering key until it
    is retried.
    """
    return [
        OutboxMessageOut.model_validate(row) for row in failed_messages(session, outbox)
    ]


@router.post("/v1/outbox/{message_id}/retry", tags=["operations"])
def retry_failed_message(
    message_id: int, session: SessionDep, principal: Admin, request: Request
) -> OutboxMessageOut:
    """Puts a failed message back in line once the cause is fixed; the
    messages it held back follow it in order."""
    row = retry_failed(session, outbox, message_id=message_id)
    commit(session, request)
    log.info("intake.outbox_retried", message_id=message_id, actor=principal.sub)
    return OutboxMessageOut.model_validate(row)


# The QR page --------------------------------------------------------------------


@router.get("/r/{code}", response_class=HTMLResponse, tags=["page"])
def request_page(
    code: str,
    request: Request,
    session: SessionDep,
    config: ConfigDep,
    token: str | None = None,
) -> HTMLResponse:
    """The pickup request page a community's QR code opens."""
    try:
        community = registry.community_by_code(session, code)
    except Problem as problem:
        return HTMLResponse(page.error(problem.status, problem.detail), problem.status)
    html = page.request_form(
        community,
        token=token,
        signed_in=PAGE_COOKIE in request.cookies,
        timezone=config.local_timezone,
    )
    return HTMLResponse(html)


@router.post("/r/{code}", response_class=HTMLResponse, tags=["page"])
async def submit_request_page(code: str, request: Request) -> HTMLResponse:
    """Creates a pickup request from the page's form."""
    form = await request.form()
    fields = {key: form.getlist(key) for key in form}
    return await run_in_threadpool(_submit_form, request, code, fields)


def _submit_form(request: Request, code: str, fields: dict) -> HTMLResponse:
    config: IntakeConfig = request.app.state.intake_config
    try:
        token = _form_token(request, fields)
        principal = _form_principal(request, token)
        payload = _form_payload(code, fields, config)
        with request.app.state.sessions() as session:
            created = pickup_requests.create_request(
                session, data=payload, principal=principal, config=config
            )
            commit(session, request)
            log.info("intake.request_created", request_id=created.id, via="page")
            response = HTMLResponse(page.request_created(created), 201)
    except ValidationError as exc:
        messages = [error["msg"] for error in exc.errors()]
        return HTMLResponse(page.error(422, "Check the form.", messages), 422)
    except Problem as problem:
        failed = HTMLResponse(
            page.error(problem.status, problem.detail), problem.status
        )
        if problem.status == 401:
            failed.delete_cookie(PAGE_COOKIE, path="/r/")
        return failed
    _remember_token(response, request, token, config)
    return response


def _form_token(request: Request, fields: dict) -> str:
    header = request.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else None
    token = token or _first(fields, "token") or request.cookies.get(PAGE_COOKIE)
    if not token:
        raise Unauthorized("Sign in to request a pickup.")
    return token


def _form_principal(request: Request, token: str) -> Principal:
    principal = decode_token(request.app.state.auth_public_key, token)
    if principal.role not in (Role.RESIDENT, Role.ADMIN):
        raise Forbidden("Only residents request pickups.")
    return principal


def _remember_token(
    response: HTMLResponse, request: Request, token: str, config: IntakeConfig
) -> None:
    """Keeps the resident signed in on this phone for the next QR scan; the
    cookie goes only to the page, and never with another site's form post."""
    if request.cookies.get(PAGE_COOKIE) == token:
        return
    response.set_cookie(
        PAGE_COOKIE,
        token,
        path="/r/",
        httponly=True,
        samesite="lax",
        secure=config.public_url.startswith("https://"),
    )


def _first(fields: dict, name: str) -> str | None:
    values = fields.get(name) or [None]
    return values[0]


def _local_time(text: str | None, config: IntakeConfig) -> datetime | str | None:
    if not text:
        return text
    try:
        value = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return text
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(config.local_timezone))
    return value.astimezone(UTC)


def _form_payload(code: str, fields: dict, config: IntakeConfig) -> PickupRequestIn:
    quantity_unit = _first(fields, "quantity_unit") or "bags"
    quantity = _first(fields, "quantity")
    return PickupRequestIn(
        community_code=code,
        unit=_first(fields, "unit") or "",
        materials=fields.get("materials", []),
        bags=quantity if quantity_unit == "bags" else None,
        volume_l=quantity if quantity_unit == "litres" else None,
        preferred_start=_local_time(_first(fields, "preferred_start"), config),
        preferred_end=_local_time(_first(fields, "preferred_end"), config),
    )


# The app ---------------------------------------------------------------------------


def _start_relay(app: FastAPI, clients: dict[str, httpx.Client] | None) -> None:
    settings: Settings = app.state.settings
    if clients is None:
        clients = {
            target: service_client(settings, caller="intake", target=target)
            for target in ("ledger", "tracking")
        }
    app.state.relay = OutboxRelay(
        engine=app.state.engine,
        table=outbox,
        clients=clients,
        poll_seconds=settings.outbox_poll_seconds,
        service="intake",
    )
    app.state.relay.start()


def _stop_relay(app: FastAPI) -> None:
    relay = getattr(app.state, "relay", None)
    if relay is not None:
        relay.stop()


def create_app(
    settings: Settings | None = None,
    *,
    clients: dict[str, httpx.Client] | None = None,
    config: IntakeConfig | None = None,
) -> FastAPI:
    """Builds the intake app; `clients` replaces its ledger and tracking clients."""
    settings = settings or get_settings()
    app = create_service_app(
        "intake",
        settings,
        title="Salvage intake",
        description="Registry, QR pickup requests, user-pays fees, signed custody.",
        on_startup=(lambda app: _start_relay(app, clients),),
        on_shutdown=(_stop_relay,),
    )
    app.state.intake_config = config or IntakeConfig()
    app.include_router(router)
    _install_database_handlers(app)
    return app


def _install_database_handlers(app: FastAPI) -> None:
    """A write that loses a race on a unique key gets a 409, and a value the
    database cannot hold a 422, rather than a 500."""

    @app.exception_handler(IntegrityError)
    async def on_integrity_error(request: Request, exc: IntegrityError):
        log.warning("intake.write_conflict", path=request.url.path)
        conflict = Conflict(
            "The change conflicts with a stored record.", slug="duplicate"
        )
        return problem_response(conflict, request)

    @app.exception_handler(DataError)
    @app.exception_handler(UnicodeEncodeError)
    async def on_unstorable_value(request: Request, exc: Exception):
        log.warning("intake.value_refused", path=request.url.path)
        problem = Unprocessable(
            "A value in the request cannot be stored.", slug="invalid-value"
        )
        return problem_response(problem, request)
