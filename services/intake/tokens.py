"""Bearer tokens for registered principals; intake is the token issuer."""

from datetime import timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.intake.models import Hauler, Plant, Vehicle
from services.intake.registry import party_exists
from services.intake.schemas import TokenIn, TokenOut
from shared.auth import issue_token
from shared.problems import NotFound, Unprocessable
from shared.timeutil import utcnow


def _principal_org(session: Session, data: TokenIn) -> str | None:
    """Checks the principal is registered; returns the organisation it acts for."""
    if data.role == "device":
        hauler_id = session.scalar(
            select(Vehicle.hauler_id).where(Vehicle.device_id == data.sub)
        )
        if hauler_id is None:
            raise NotFound(f"No device '{data.sub}'.", slug="principal-not-found")
        if data.org is not None and data.org != hauler_id:
            raise Unprocessable(
                "A device acts for its vehicle's hauler.", slug="org-mismatch"
            )
        return hauler_id
    needs = {"hauler": Hauler, "plant": Plant}
    if data.role in needs and (
        data.org is None or session.get(needs[data.role], data.org) is None
    ):
        raise NotFound(
            f"A {data.role} token needs org set to a registered {data.role}.",
            slug="principal-not-found",
        )
    if data.role == "property_manager" and (
        data.org is None
        or not party_exists(session, party_kind="property_manager", party_id=data.org)
    ):
        raise NotFound(
            "A property_manager token needs org set to a community's manager id.",
            slug="principal-not-found",
        )
    return data.org


def mint_token(
    session: Session, *, data: TokenIn, signing_key: Ed25519PrivateKey
) -> TokenOut:
    org = _principal_org(session, data)
    token = issue_token(
        signing_key, sub=data.sub, role=data.role, org=org, ttl_seconds=data.ttl_seconds
    )
    return TokenOut(
        token=token,
        role=data.role,
        sub=data.sub,
        org=org,
        expires_at=utcnow() + timedelta(seconds=data.ttl_seconds),
    )
