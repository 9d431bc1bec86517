"""A durable outbox: cross-service writes stored with the local transaction
and delivered afterwards, with retries and an idempotency key.

A service enqueues a message in the same transaction as the change that
caused it. A relay thread posts due messages to their target service with
the message key as the Idempotency-Key header, so a retry never duplicates.
Messages that share an ordering key are delivered strictly in order: a
message the target rejects (a 4xx other than 408, 425, 429) is parked as
failed and holds back every later message with its key until an operator
fixes the cause and retries it, so no gap opens silently downstream.
"""

import random
import threading
from datetime import timedelta
from typing import Any

import httpx
import structlog
from prometheus_client import Counter, Gauge
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from shared.problems import Conflict, NotFound
from shared.timeutil import as_utc, utcnow

log = structlog.get_logger()

RETRYABLE_STATUSES = {408, 425, 429}
MAX_BACKOFF_SECONDS = 60.0
CLAIM_SECONDS = 30.0
SCAN_LIMIT = 500

REJECTED = Counter(
    "salvage_outbox_rejected_total",
    "Outbox messages the target rejected and that now wait for an operator",
    ["service", "target"],
)
FAILED = Gauge(
    "salvage_outbox_failed_messages",
    "Outbox messages parked as failed, each holding back its ordering key",
    ["service"],
)


def outbox_columns() -> list[Column]:
    """Fresh column objects for the outbox table (models and migrations)."""
    return [
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("key", String(200), nullable=False, unique=True),
        Column("target", String(32), nullable=False),
        Column("method", String(8), nullable=False),
        Column("path", String(500), nullable=False),
        Column("body", JSON, nullable=False),
        Column("ordering_key", String(200), nullable=True, index=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("attempts", Integer, nullable=False, default=0),
        Column("next_attempt_at", DateTime(timezone=True), nullable=False),
        Column("delivered_at", DateTime(timezone=True), nullable=True, index=True),
        Column("failed_at", DateTime(timezone=True), nullable=True),
        Column("last_error", Text, nullable=True),
    ]


def outbox_table(metadata: MetaData) -> Table:
    return Table("outbox", metadata, *outbox_columns())


def enqueue(
    session: Session,
    table: Table,
    *,
    target: str,
    path: str,
    body: dict[str, Any],
    key: str,
    ordering_key: str | None = None,
    method: str = "POST",
) -> None:
    """Adds a message to the caller's transaction; the caller commits."""
    now = utcnow()
    session.execute(
        insert(table).values(
            key=key,
            target=target,
            method=method,
            path=path,
            body=body,
            ordering_key=ordering_key,
            created_at=now,
            attempts=0,
            next_attempt_at=now,
        )
    )


def _failed(table: Table):
    return table.c.delivered_at.is_(None) & table.c.failed_at.is_not(None)


def failed_messages(session: Session, table: Table, *, limit: int = SCAN_LIMIT):
    """Messages parked as failed, oldest first, with their last error."""
    query = select(table).where(_failed(table)).order_by(table.c.id).limit(limit)
    return list(session.execute(query).all())


def retry_failed(session: Session, table: Table, *, message_id: int):
    """Puts a failed message back in line for delivery; the caller commits."""
    row = session.execute(select(table).where(table.c.id == message_id)).first()
    if row is None:
        raise NotFound(
            f"No outbox message with id {message_id}.", slug="outbox-message-not-found"
        )
    if row.delivered_at is not None or row.failed_at is None:
        raise Conflict(
            f"Outbox message {message_id} has not failed.", slug="outbox-not-failed"
        )
    session.execute(
        update(table)
        .where(table.c.id == message_id, _failed(table))
        .values(failed_at=None, next_attempt_at=utcnow())
    )
    log.info(
        "outbox.retry_requested",
        message_id=message_id,
        key=row.key,
        target=row.target,
        ordering_key=row.ordering_key,
        last_error=row.last_error,
    )
    return session.execute(select(table).where(table.c.id == message_id)).one()


class OutboxRelay:
    """Delivers outbox messages from a background thread."""

    def __init__(
        self,
        *,
        engine: Engine,
        table: Table,
        clients: dict[str, httpx.Client],
        poll_seconds: float = 0.5,
        service: str | None = None,
    ) -> None:
        self.engine = engine
        self.table = table
        self.clients = clients
        self.poll_seconds = poll_seconds
        self.service = service or table.name
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for client in self.clients.values():
            client.close()

    def wake(self) -> None:
        """Asks for a delivery pass now rather than at the next poll."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_due()
            except Exception:
                log.exception("outbox.pass_failed")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def pending_count(self) -> int:
        query = select(self.table.c.id).where(
            self.table.c.delivered_at.is_(None), self.table.c.failed_at.is_(None)
        )
        with self.engine.connect() as connection:
            return len(connection.execute(query).all())

    def failed_count(self) -> int:
        """Messages parked as failed; also sets the failed-messages gauge."""
        query = select(func.count()).select_from(self.table).where(_failed(self.table))
        with self.engine.connect() as connection:
            count = connection.execute(query).scalar_one()
        FAILED.labels(self.service).set(count)
        return count

    def deliver_due(self) -> int:
        """Runs one pass over pending messages; returns how many were delivered."""
        delivered = 0
        blocked: set[str] = set()
        now = utcnow()
        for row in self._pending():
            if row.ordering_key is not None and row.ordering_key in blocked:
                continue
            due = as_utc(row.next_attempt_at) <= now
            if due and self._claim(row) and self._deliver(row):
                delivered += 1
            elif row.ordering_key is not None:
                blocked.add(row.ordering_key)
        self.failed_count()
        return delivered

    def _pending(self) -> list:
        """Undelivered messages whose ordering key no failed message holds back,
        read in one statement so that a failure cannot slip between two reads."""
        table = self.table
        held = select(table.c.ordering_key).where(
            _failed(table), table.c.ordering_key.is_not(None)
        )
        query = (
            select(table)
            .where(
                table.c.delivered_at.is_(None),
                table.c.failed_at.is_(None),
                or_(table.c.ordering_key.is_(None), table.c.ordering_key.not_in(held)),
            )
            .order_by(table.c.id)
            .limit(SCAN_LIMIT)
        )
        with self.engine.connect() as connection:
            return list(connection.execute(query).all())

    def _claim(self, row) -> bool:
        """Pushes the row's next attempt out so that other relays skip it."""
        lease = utcnow() + timedelta(seconds=CLAIM_SECONDS)
        statement = (
            update(self.table)
            .where(
                self.table.c.id == row.id,
                self.table.c.next_attempt_at == row.next_attempt_at,
                self.table.c.delivered_at.is_(None),
            )
            .values(next_attempt_at=lease)
        )
        with self.engine.begin() as connection:
            return connection.execute(statement).rowcount == 1

    def _deliver(self, row) -> bool:
        client = self.clients.get(row.target)
        if client is None:
            self._fail(row, f"no client for target {row.target}")
            return False
        try:
            response = client.request(
                row.method,
                row.path,
                json=row.body,
                headers={"Idempotency-Key": row.key},
            )
        except httpx.HTTPError as exc:
            self._retry(row, f"{type(exc).__name__}: {exc}")
            return False
        if response.is_success:
            self._mark(row, delivered_at=utcnow(), last_error=None)
            log.info("outbox.delivered", key=row.key, target=row.target, path=row.path)
            return True
        error = f"HTTP {response.status_code}: {response.text[:1000]}"
        if response.status_code >= 500 or response.status_code in RETRYABLE_STATUSES:
            self._retry(row, error)
        else:
            self._fail(row, error)
        return False

    def _retry(self, row, error: str) -> None:
        attempts = row.attempts + 1
        backoff = min(MAX_BACKOFF_SECONDS, 0.25 * 2**attempts) * random.uniform(
            0.8, 1.2
        )
        log.warning(
            "outbox.retry_scheduled", key=row.key, attempts=attempts, error=error
        )
        self._mark(
            row,
            attempts=attempts,
            next_attempt_at=utcnow() + timedelta(seconds=backoff),
            last_error=error,
        )

    def _fail(self, row, error: str) -> None:
        """Parks a message the target will not take; its ordering key waits."""
        log.error(
            "outbox.delivery_rejected",
            message_id=row.id,
            key=row.key,
            target=row.target,
            path=row.path,
            ordering_key=row.ordering_key,
            error=error,
        )
        REJECTED.labels(self.service, row.target).inc()
        self._mark(row, attempts=row.attempts + 1, failed_at=utcnow(), last_error=error)

    def _mark(self, row, **values: Any) -> None:
        statement = update(self.table).where(self.table.c.id == row.id).values(**values)
        with self.engine.begin() as connection:
            connection.execute(statement)
