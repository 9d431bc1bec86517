"""What tracking and the ledger must learn from the registry, via the outbox."""

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.intake.models import Community, Depot, Hauler, PartyKey, Plant, Vehicle
from services.intake.service import new_id, send_to_ledger, send_to_tracking
from shared.timeutil import as_utc, iso_utc


def geometry(place: Community | Plant | Depot) -> dict:
    """The place's geofence as GeoJSON: its polygon, else its centre point."""
    if place.polygon is not None:
        return place.polygon
    return {"type": "Point", "coordinates": [place.lon, place.lat]}


def place_changed(
    session: Session, place: Community | Plant | Depot, *, kind: str
) -> None:
    licensed = place.licensed if isinstance(place, Plant) else True
    body = {
        "kind": kind,
        "name": place.name,
        "geometry": geometry(place),
        "radius_m": place.radius_m or 0,
        "licensed": licensed,
    }
    send_to_tracking(
        session,
        method="PUT",
        path=f"/v1/places/{place.id}",
        body=body,
        key=f"place:{place.id}:{new_id()}",
    )


def licence_window(hauler: Hauler) -> tuple[datetime, datetime]:
    """When the hauler's licence lets its vehicles operate, [start, end): cut
    short when it was suspended or revoked, empty if that was before it began."""
    start, end = as_utc(hauler.valid_from), as_utc(hauler.valid_until)
    if hauler.status != "active":
        end = min(end, as_utc(hauler.status_changed_at))
    return start, max(start, end)


def device_changed(session: Session, vehicle: Vehicle, hauler: Hauler) -> None:
    start, end = licence_window(hauler)
    body = {
        "vehicle_id": vehicle.id,
        "hauler_id": hauler.id,
        "plate": vehicle.plate,
        "licence_valid_from": iso_utc(start),
        "licence_valid_until": iso_utc(end),
    }
    send_to_tracking(
        session,
        method="PUT",
        path=f"/v1/devices/{vehicle.device_id}",
        body=body,
        key=f"device:{vehicle.device_id}:{new_id()}",
    )


def hauler_changed(session: Session, hauler: Hauler) -> None:
    vehicles = session.scalars(select(Vehicle).where(Vehicle.hauler_id == hauler.id))
    for vehicle in vehicles:
        device_changed(session, vehicle, hauler)


def key_registered(session: Session, key: PartyKey) -> None:
    body = {
        "public_key": key.public_key,
        "party_kind": key.party_kind,
        "party_id": key.party_id,
        "kinds": key.kinds,
    }
    send_to_ledger(
        session,
        method="PUT",
        path=f"/v1/keys/{key.key_id}",
        body=body,
        key=f"key:{key.key_id}",
    )


def key_revoked(session: Session, key: PartyKey) -> None:
    send_to_ledger(
        session,
        method="POST",
        path=f"/v1/keys/{key.key_id}/revoke",
        body={"reason": key.revoke_reason},
        key=f"key-revoke:{key.key_id}",
    )
