"""Bearer tokens with roles: EdDSA-signed JWTs checked by every service."""

import time
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Annotated

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.problems import Forbidden, Unauthorized

ISSUER = "salvage"
DEFAULT_TTL_SECONDS = 12 * 3600


class Role(StrEnum):
    DEVICE = "device"
    RESIDENT = "resident"
    PROPERTY_MANAGER = "property_manager"
    HAULER = "hauler"
    PLANT = "plant"
    INSPECTOR = "inspector"
    VERIFIER = "verifier"
    BUYER = "buyer"
    AUDITOR = "auditor"
    ADMIN = "admin"
    SERVICE = "service"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a subject id, its role and the organisation it acts for."""

    sub: str
    role: Role
    org: str | None = None

    def owns(self, org_id: str | None) -> bool:
        """True for the organisation itself and for admins and services."""
        if self.role in (Role.ADMIN, Role.SERVICE):
            return True
        return org_id is not None and org_id == self.org


def issue_token(
    key: Ed25519PrivateKey,
    *,
    sub: str,
    role: Role | str,
    org: str | None = None,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": sub, "role": str(Role(role)), "iat": now}
    claims["exp"] = now + ttl_seconds
    if org is not None:
        claims["org"] = org
    return jwt.encode(claims, key, algorithm="EdDSA")


def decode_token(public_key: Ed25519PublicKey, token: str) -> Principal:
    """The token's principal; a token already verified with this key is not
    verified again until it expires (a truck sends the same one every fix)."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    principal, expires = _verified(raw, token)
    if expires <= time.time():
        raise Unauthorized("The bearer token is invalid or expired.")
    return principal


@lru_cache(maxsize=16_384)
def _verified(public_key: bytes, token: str) -> tuple[Principal, int]:
    """Checks the signature and claims once; a refusal is not remembered."""
    try:
        claims = jwt.decode(
            token,
            Ed25519PublicKey.from_public_bytes(public_key),
            algorithms=["EdDSA"],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "iss"]},
        )
        principal = Principal(
            sub=claims["sub"], role=Role(claims["role"]), org=claims.get("org")
        )
        return principal, int(claims["exp"])
    except (jwt.PyJWTError, KeyError, ValueError, TypeError) as exc:
        raise Unauthorized("The bearer token is invalid or expired.") from exc


_bearer = HTTPBearer(auto_error=False)


def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Reads the bearer token; the app keeps the verifier key in app.state."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("This endpoint needs a bearer token.")
    return decode_token(request.app.state.auth_public_key, credentials.credentials)


def require(*roles: Role):
    """A dependency that admits the given roles, and admins, and returns who."""
    allowed = {Role(role) for role in roles} | {Role.ADMIN}

    def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if principal.role not in allowed:
            raise Forbidden(
                f"Role '{principal.role}' may not do this.",
                allowed_roles=sorted(str(role) for role in allowed),
            )
        return principal

    return check
