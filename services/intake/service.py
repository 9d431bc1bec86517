"""Helpers every intake module uses: ids, lookups, ownership, outbox sends."""

import uuid
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from services.intake.models import Base, outbox
from shared.auth import Principal, Role
from shared.outbox import enqueue
from shared.problems import Forbidden, NotFound

Model = TypeVar("Model", bound=Base)

LEDGER_ORDER = "ledger"
TRACKING_ORDER = "tracking"


def new_id() -> str:
    return str(uuid.uuid4())


def get_or_404(
    session: Session, model: type[Model], ident: str, what: str, *, lock: bool = False
) -> Model:
    """Loads a row by primary key (locked for update if asked) or raises a 404
    naming what was missing."""
    found = isinstance(ident, str)
    row = session.get(model, ident, with_for_update=lock) if found else None
    if row is None:
        raise NotFound(f"No {what} with id '{ident}'.", slug=f"{what}-not-found")
    return row


def is_staff(principal: Principal) -> bool:
    return principal.role in (Role.ADMIN, Role.SERVICE, Role.INSPECTOR)


def forbid(what: str) -> Forbidden:
    return Forbidden(f"This {what} belongs to someone else.", slug="not-yours")


def send_to_ledger(
    session: Session, *, method: str, path: str, body: dict[str, Any], key: str
) -> None:
    """Queues a ledger write in the caller's transaction, in log order."""
    enqueue(
        session,
        outbox,
        target="ledger",
        method=method,
        path=path,
        body=body,
        key=key,
        ordering_key=LEDGER_ORDER,
    )


def send_to_tracking(
    session: Session, *, method: str, path: str, body: dict[str, Any], key: str
) -> None:
    """Queues a tracking write in the caller's transaction, in order."""
    enqueue(
        session,
        outbox,
        target="tracking",
        method=method,
        path=path,
        body=body,
        key=key,
        ordering_key=TRACKING_ORDER,
    )
