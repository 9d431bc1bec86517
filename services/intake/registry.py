"""The registry: communities, haulers, vehicles, plants, depots, party keys."""

import secrets
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.intake import sync
from services.intake.models import Community, Depot, Hauler, PartyKey, Plant, Vehicle
from services.intake.schemas import (
    CommunityIn,
    DepotIn,
    Geofence,
    HaulerIn,
    HaulerPatch,
    KeyIn,
    PlantIn,
    PlantPatch,
    VehicleIn,
)
from services.intake.service import forbid, get_or_404, new_id
from shared.auth import Principal, Role
from shared.crypto import key_id, public_key_bytes, public_key_from_b64
from shared.problems import Conflict, NotFound, Unprocessable
from shared.timeutil import as_utc, utcnow

CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
CODE_LENGTH = 8
KINDS_BY_PARTY = {
    "device": ["custody.pickup"],
    "property_manager": ["custody.pickup"],
    "plant": ["custody.delivery", "custody.processing"],
}


def _taken(session: Session, column, value, what: str) -> None:
    if session.scalar(select(column).where(column == value)) is not None:
        raise Conflict(f"A {what} '{value}' is already registered.", slug="duplicate")


def _new_code(session: Session) -> str:
    while True:
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        if session.scalar(select(Community.id).where(Community.code == code)) is None:
            return code


def create_community(session: Session, *, data: CommunityIn) -> Community:
    community = Community(
        id=new_id(), code=_new_code(session), created_at=utcnow(), **data.model_dump()
    )
    session.add(community)
    session.flush()
    sync.place_changed(session, community, kind="community")
    return community


def community_by_code(session: Session, code: str) -> Community:
    community = session.scalar(select(Community).where(Community.code == code.upper()))
    if community is None:
        raise NotFound(f"No community with code '{code}'.", slug="community-not-found")
    return community


def list_communities(session: Session) -> list[Community]:
    return list(session.scalars(select(Community).order_by(Community.name)))


def create_hauler(session: Session, *, data: HaulerIn) -> Hauler:
    _taken(session, Hauler.licence_no, data.licence_no, "licence number")
    now = utcnow()
    hauler = Hauler(
        id=new_id(),
        name=data.name,
        licence_no=data.licence_no,
        valid_from=as_utc(data.valid_from),
        valid_until=as_utc(data.valid_until),
        status=data.status,
        status_changed_at=now,
        created_at=now,
    )
    session.add(hauler)
    return hauler


def update_hauler(session: Session, *, hauler_id: str, data: HaulerPatch) -> Hauler:
    """Changes a licence; every vehicle of the hauler is re-announced to tracking."""
    hauler = get_or_404(session, Hauler, hauler_id, "hauler")
    if data.licence_no is not None and data.licence_no != hauler.licence_no:
        _taken(session, Hauler.licence_no, data.licence_no, "licence number")
        hauler.licence_no = data.licence_no
    if data.valid_from is not None:
        hauler.valid_from = as_utc(data.valid_from)
    if data.valid_until is not None:
        hauler.valid_until = as_utc(data.valid_until)
    if as_utc(hauler.valid_until) <= as_utc(hauler.valid_from):
        raise Unprocessable(
            "valid_until must be after valid_from.", slug="licence-period-invalid"
        )
    if data.status is not None and data.status != hauler.status:
        hauler.status = data.status
        hauler.status_changed_at = utcnow()
    sync.hauler_changed(session, hauler)
    return hauler


def licence_problem(hauler: Hauler, at: datetime) -> str | None:
    """Why the hauler's licence is not valid at an instant, or None if it is."""
    if hauler.status != "active":
        return hauler.status
    if as_utc(at) < as_utc(hauler.valid_from):
        return "not_yet_valid"
    if as_utc(at) >= as_utc(hauler.valid_until):
        return "expired"
    return None


def check_licence(hauler: Hauler, start: datetime, end: datetime | None = None) -> None:
    """Refuses a hauler whose licence is not valid from start through end."""
    reason = licence_problem(hauler, start)
    if reason is None and end is not None and as_utc(end) > as_utc(hauler.valid_until):
        reason = "expires_in_window"
    if reason is not None:
        raise Conflict(
            f"Hauler '{hauler.id}' has no valid licence for this window ({reason}).",
            slug="licence-invalid",
            reason=reason,
        )


def check_plant(plant: Plant, materials: Iterable[str]) -> None:
    """Refuses a plant that is unlicensed or does not accept every material."""
    if not plant.licensed:
        raise Conflict(f"Plant '{plant.id}' is not licensed.", slug="plant-unlicensed")
    check_accepts(plant, materials)


def check_accepts(plant: Plant, materials: Iterable[str]) -> None:
    """Refuses materials outside the EWC codes a plant accepts."""
    missing = sorted(set(materials) - set(plant.accepted_ewc or []))
    if missing:
        raise Conflict(
            f"Plant '{plant.id}' does not accept {', '.join(missing)}.",
            slug="plant-refuses-material",
            missing=missing,
        )


def list_haulers(session: Session, *, principal: Principal) -> list[Hauler]:
    query = select(Hauler).order_by(Hauler.name)
    if principal.role == Role.HAULER:
        query = query.where(Hauler.id == principal.org)
    return list(session.scalars(query))


def invalid_licences(session: Session, *, on: datetime) -> list[tuple[Hauler, str]]:
    """Haulers whose licence is not valid at the given instant, with the reason."""
    haulers = session.scalars(select(Hauler).order_by(Hauler.name))
    found = [(hauler, licence_problem(hauler, on)) for hauler in haulers]
    return [(hauler, reason) for hauler, reason in found if reason is not None]


def get_hauler(session: Session, *, hauler_id: str, principal: Principal) -> Hauler:
    hauler = get_or_404(session, Hauler, hauler_id, "hauler")
    if principal.role == Role.HAULER and principal.org != hauler.id:
        raise forbid("hauler")
    return hauler


def create_vehicle(session: Session, *, data: VehicleIn) -> Vehicle:
    hauler = get_or_404(session, Hauler, data.hauler_id, "hauler")
    _taken(session, Vehicle.plate, data.plate, "plate")
    _taken(session, Vehicle.device_id, data.device_id, "device")
    vehicle = Vehicle(id=new_id(), created_at=utcnow(), **data.model_dump())
    session.add(vehicle)
    session.flush()
    sync.device_changed(session, vehicle, hauler)
    return vehicle


def visible_vehicles(session: Session, *, principal: Principal) -> list[Vehicle]:
    query = select(Vehicle).order_by(Vehicle.plate)
    if principal.role == Role.HAULER:
        query = query.where(Vehicle.hauler_id == principal.org)
    elif principal.role == Role.DEVICE:
        query = query.where(Vehicle.device_id == principal.sub)
    elif principal.role not in (Role.ADMIN, Role.SERVICE, Role.INSPECTOR):
        return []
    return list(session.scalars(query))


def get_vehicle(session: Session, *, vehicle_id: str, principal: Principal) -> Vehicle:
    vehicle = get_or_404(session, Vehicle, vehicle_id, "vehicle")
    if vehicle not in visible_vehicles(session, principal=principal):
        raise forbid("vehicle")
    return vehicle


def create_plant(session: Session, *, data: PlantIn) -> Plant:
    _taken(session, Plant.permit_no, data.permit_no, "permit number")
    plant = Plant(id=new_id(), created_at=utcnow(), **data.model_dump())
    session.add(plant)
    session.flush()
    sync.place_changed(session, plant, kind="plant")
    return plant


def update_plant(session: Session, *, plant_id: str, data: PlantPatch) -> Plant:
    plant = get_or_404(session, Plant, plant_id, "plant")
    if data.licensed is not None:
        plant.licensed = data.licensed
    if data.accepted_ewc is not None:
        plant.accepted_ewc = data.accepted_ewc
    sync.place_changed(session, plant, kind="plant")
    return plant


def list_plants(session: Session) -> list[Plant]:
    return list(session.scalars(select(Plant).order_by(Plant.name)))


def create_depot(session: Session, *, data: DepotIn) -> Depot:
    depot = Depot(id=new_id(), created_at=utcnow(), **data.model_dump())
    session.add(depot)
    session.flush()
    sync.place_changed(session, depot, kind="depot")
    return depot


def list_depots(session: Session) -> list[Depot]:
    return list(session.scalars(select(Depot).order_by(Depot.name)))


def party_exists(session: Session, *, party_kind: str, party_id: str) -> bool:
    if party_kind == "device":
        column = Vehicle.device_id
    elif party_kind == "plant":
        column = Plant.id
    else:
        column = Community.property_manager_id
    return session.scalar(select(column).where(column == party_id).limit(1)) is not None


def register_key(session: Session, *, data: KeyIn) -> tuple[PartyKey, bool]:
    """Registers a party key; returns it and whether it is new."""
    try:
        public = public_key_from_b64(data.public_key)
    except ValueError as exc:
        raise Unprocessable(
            "public_key must be the base64 of a raw 32-byte Ed25519 key.",
            slug="public-key-invalid",
        ) from exc
    if not party_exists(session, party_kind=data.party_kind, party_id=data.party_id):
        raise NotFound(
            f"No {data.party_kind} '{data.party_id}' is registered.",
            slug="party-not-found",
        )
    ident = key_id(public_key_bytes(public))
    existing = session.get(PartyKey, ident)
    if existing is not None:
        same = (existing.party_kind, existing.party_id) == (
            data.party_kind,
            data.party_id,
        )
        if not same or existing.revoked_at is not None:
            raise Conflict(
                "This key is registered to another party or revoked.",
                slug="key-conflict",
                key_id=ident,
            )
        return existing, False
    key = PartyKey(
        key_id=ident,
        party_kind=data.party_kind,
        party_id=data.party_id,
        public_key=data.public_key,
        kinds=KINDS_BY_PARTY[data.party_kind],
        created_at=utcnow(),
    )
    session.add(key)
    session.flush()
    sync.key_registered(session, key)
    return key, True


def revoke_key(session: Session, *, key_id_: str, reason: str) -> PartyKey:
    key = get_or_404(session, PartyKey, key_id_, "key")
    if key.revoked_at is not None:
        raise Conflict("This key is already revoked.", slug="key-revoked")
    key.revoked_at = utcnow()
    key.revoke_reason = reason
    sync.key_revoked(session, key)
    return key


def rotate_key(
    session: Session, *, key_id_: str, public_key: str, reason: str
) -> PartyKey:
    """Registers a new key for the same party and revokes the old one."""
    old = get_or_404(session, PartyKey, key_id_, "key")
    data = KeyIn(
        party_kind=old.party_kind, party_id=old.party_id, public_key=public_key
    )
    new, created = register_key(session, data=data)
    if not created:
        raise Conflict("The new key is already registered.", slug="key-conflict")
    revoke_key(session, key_id_=old.key_id, reason=reason)
    return new


def list_keys(session: Session, *, party_id: str | None) -> list[PartyKey]:
    query = select(PartyKey).order_by(PartyKey.created_at)
    if party_id is not None:
        query = query.where(PartyKey.party_id == party_id)
    return list(session.scalars(query))


PLACE_KINDS = {"communities": ("community", Community), "plants": ("plant", Plant)}
PLACE_KINDS["depots"] = ("depot", Depot)


def move_geofence(
    session: Session, *, collection: str, place_id: str, data: Geofence
) -> tuple[str, Community | Plant | Depot]:
    """Replaces a place's location and bounds; tracking gets the new geofence."""
    kind, model = PLACE_KINDS[collection]
    place = get_or_404(session, model, place_id, kind)
    place.lat, place.lon = data.lat, data.lon
    place.radius_m, place.polygon = data.radius_m, data.polygon
    sync.place_changed(session, place, kind=kind)
    return kind, place
