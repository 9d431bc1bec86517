"""Idempotency keys for writes: a repeated request gets the first answer.

The first request with a key stores a digest of its body and its response in
the same transaction as its effect. A repeat with the same body gets the
stored response; a repeat with a different body is refused. Two requests
with one key that run at once both pass replay(); the second to store its
answer is refused with 409 and its transaction, effect included, is rolled
back by the caller.
"""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.canonical import digest_of
from shared.problems import Conflict, Unprocessable

MAX_KEY_LENGTH = 200


def idempotency_columns() -> list[Column]:
    return [
        Column("key", String(MAX_KEY_LENGTH), primary_key=True),
        Column("principal", String(200), primary_key=True),
        Column("request_digest", String(64), nullable=False),
        Column("status_code", Integer, nullable=False),
        Column("response", JSON, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
    ]


def idempotency_table(metadata: MetaData) -> Table:
    return Table("idempotency_keys", metadata, *idempotency_columns())


def check_key(key: str | None, *, required: bool = True) -> str | None:
    if key is None:
        if required:
            raise Unprocessable(
                "This write needs an Idempotency-Key header.",
                slug="idempotency-key-missing",
            )
        return None
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise Unprocessable(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters.",
            slug="idempotency-key-invalid",
        )
    return key


def replay(
    session: Session, table: Table, *, key: str, principal: str, request: Any
) -> tuple[int, Any] | None:
    """The stored (status, response) for a repeated key, or None the first time."""
    row = session.execute(
        select(table).where(table.c.key == key, table.c.principal == principal)
    ).first()
    if row is None:
        return None
    if row.request_digest != digest_of(request):
        raise Conflict(
            "This Idempotency-Key was used with a different request.",
            slug="idempotency-key-reused",
        )
    return row.status_code, row.response


def remember(
    session: Session,
    table: Table,
    *,
    key: str,
    principal: str,
    request: Any,
    status_code: int,
    response: Any,
) -> None:
    """Stores the answer in the caller's transaction; the caller commits.

    A rival request that stored an answer under the key first wins: this one
    raises Conflict, so that its caller rolls its own effect back.
    """
    digest = digest_of(request)
    try:
        with session.begin_nested():
            session.execute(
                insert(table).values(
                    key=key,
                    principal=principal,
                    request_digest=digest,
                    status_code=status_code,
                    response=response,
                    created_at=datetime.now(UTC),
                )
            )
    except IntegrityError as exc:
        raise _rival(
            session, table, key=key, principal=principal, digest=digest
        ) from exc


def _rival(
    session: Session, table: Table, *, key: str, principal: str, digest: str
) -> Conflict:
    """The refusal for a request that lost the race for its key."""
    row = session.execute(
        select(table.c.request_digest).where(
            table.c.key == key, table.c.principal == principal
        )
    ).first()
    if row is not None and row.request_digest == digest:
        return Conflict(
            "A request with this Idempotency-Key and body was completed at the "
            "same time; send it again to get that answer.",
            slug="idempotency-key-in-flight",
        )
    return Conflict(
        "This Idempotency-Key was used with a different request.",
        slug="idempotency-key-reused",
    )
