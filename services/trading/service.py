"""Quantification of sealed batches and the statements trading writes to the ledger.

Reports and issuance live in registry.py, the market in market.py; both use
the context and the ledger writer here.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.trading import sealed
from services.trading.config import TradingConfig
from services.trading.methodology import (
    Policy,
    inputs_from_dict,
    load_factor_table,
    quantify,
)
from services.trading.models import (
    Calculation,
    LedgerPin,
    SealCursor,
    SealRead,
    outbox,
)
from shared.crypto import key_id, public_key_b64, sign_statement
from shared.note import NoteError, Verifier, parse_verifier_key
from shared.outbox import enqueue
from shared.problems import (
    Conflict,
    NotFound,
    Problem,
    ServiceUnavailable,
    Unprocessable,
)
from shared.timeutil import iso_utc, utcnow

log = structlog.get_logger()

LEDGER_ORDERING_KEY = "trading-ledger"
TRADING_KINDS = [
    "credit.quantification",
    "credit.issuance",
    "credit.transfer",
    "credit.retirement",
]


@dataclass
class TradingContext:
    """What the trading functions need besides a session."""

    config: TradingConfig
    signer: Ed25519PrivateKey
    ledger: httpx.Client
    tracking: httpx.Client

    def policy(self, vehicle_id: str | None = None) -> Policy:
        """The policy in force; the truck class is the vehicle's when mapped."""
        mapped = self.config.vehicle_truck_classes.get(vehicle_id or "")
        return Policy(
            truck_class=mapped or self.config.truck_class,
            truck_class_basis=f"vehicle:{vehicle_id}" if mapped else "default",
            coverage_threshold_permille=self.config.coverage_threshold_permille,
            low_coverage_discount_permille=self.config.low_coverage_discount_permille,
            estimated_mass_discount_permille=(
                self.config.estimated_mass_discount_permille
            ),
            buffer_permille=self.config.buffer_permille,
        )


def new_id() -> str:
    return str(uuid.uuid4())


def enqueue_key_registration(session: Session, *, ctx: TradingContext) -> None:
    """Queues PUT /v1/keys/{key_id} at the ledger once per key."""
    kid = key_id(ctx.signer)
    message_key = f"trading:key:{kid}"
    if session.execute(select(outbox.c.id).where(outbox.c.key == message_key)).first():
        return
    enqueue(
        session,
        outbox,
        target="ledger",
        method="PUT",
        path=f"/v1/keys/{kid}",
        body={
            "public_key": public_key_b64(ctx.signer),
            "party_kind": "service",
            "party_id": "trading",
            "kinds": TRADING_KINDS,
        },
        key=message_key,
        ordering_key=LEDGER_ORDERING_KEY,
    )


def append_statement(
    session: Session,
    *,
    ctx: TradingContext,
    kind: str,
    subject_id: str,
    body: dict[str, Any],
    batch_id: str | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """Signs a statement with the trading key and queues it for the ledger."""
    statement: dict[str, Any] = {"v": 1, "kind": kind}
    if batch_id is not None:
        statement["batch_id"] = batch_id
    statement.update(at=iso_utc(at or utcnow()), body=body)
    entry = {
        "statement": statement,
        "signatures": [sign_statement(ctx.signer, statement)],
    }
    enqueue(
        session,
        outbox,
        target="ledger",
        path="/v1/entries",
        body=entry,
        key=f"trading:{kind}:{subject_id}",
        ordering_key=LEDGER_ORDERING_KEY,
    )
    return entry


def ledger_verifier(session: Session, *, ctx: TradingContext) -> Verifier:
    """The ledger's verifier key: configured, pinned, or pinned now on first use."""
    text = ctx.config.ledger_key
    if text is None:
        pin = session.get(LedgerPin, 1)
        text = pin.verifier_key if pin else _pin(session, ctx=ctx)
    return _parse_key(text)


def _pin(session: Session, *, ctx: TradingContext) -> str:
    """Trusts the key the ledger serves now, for good; a racing pin wins."""
    text = sealed.fetch_verifier_key(ctx.ledger)
    _parse_key(text)
    try:
        with session.begin_nested():
            session.add(LedgerPin(id=1, verifier_key=text, pinned_at=utcnow()))
    except IntegrityError:
        return session.get(LedgerPin, 1, populate_existing=True).verifier_key
    log.info("trading.ledger_key_pinned", verifier_key=text)
    return text


def _parse_key(text: str) -> Verifier:
    try:
        return parse_verifier_key(text)
    except NoteError as exc:
        raise ServiceUnavailable(f"The ledger verifier key is unusable: {exc}") from exc


def quantify_batch(
    session: Session, *, ctx: TradingContext, verifier: Verifier, batch_id: str
) -> Calculation:
    """Reads and verifies a sealed batch from the ledger and stores its calculation."""
    if _calculation_of(session, batch_id) is not None:
        raise Conflict(f"Batch {batch_id} is already counted.", slug="already-counted")
    read = record_read(
        session, batch=sealed.read_sealed_batch(ctx.ledger, verifier, batch_id)
    )
    return _count_read(session, ctx=ctx, read=read)


def _count_read(
    session: Session, *, ctx: TradingContext, read: SealRead
) -> Calculation:
    """Stores the calculation of a verified seal whose alerts are all resolved."""
    open_ids = sealed.unresolved_alerts(
        ctx.tracking, read.batch_id, list(read.alert_ids or [])
    )
    if open_ids:
        raise sealed.OpenAlerts(
            f"Batch {read.batch_id} has {len(open_ids)} alert(s) not resolved.",
            alert_ids=open_ids,
        )
    calculation = _store_calculation(session, ctx=ctx, read=read)
    log.info(
        "trading.batch_quantified",
        batch_id=read.batch_id,
        seal_index=read.seal_index,
        creditable_g=calculation.creditable_g,
    )
    return calculation


def record_read(session: Session, *, batch: sealed.SealedBatch) -> SealRead:
    """Remembers a verified seal with the inputs read from its entries."""
    read = session.get(SealRead, batch.inputs.batch_id)
    if read is None:
        read = _new_read(session, batch.inputs.batch_id, batch.seal_index)
    read.seal_index, read.status = batch.seal_index, "verified"
    read.seal_leaf_hash, read.sealed_at = batch.seal_leaf_hash, batch.sealed_at
    read.processed_at, read.checkpoint_size = batch.processed_at, batch.checkpoint_size
    read.inputs, read.alert_ids = batch.inputs.as_dict(), batch.alert_ids
    read.reason = read.detail = None
    read.read_at = utcnow()
    session.add(read)
    session.flush()
    return read


def _new_read(session: Session, batch_id: str, seal_index: int) -> SealRead:
    """An empty seal read, or the one a concurrent request just stored."""
    read = SealRead(
        batch_id=batch_id, seal_index=seal_index, status="verified", read_at=utcnow()
    )
    try:
        with session.begin_nested():
            session.add(read)
    except IntegrityError:
        return session.get(SealRead, batch_id, populate_existing=True)
    return read


def _calculation_of(session: Session, batch_id: str) -> Calculation | None:
    query = select(Calculation).where(Calculation.batch_id == batch_id)
    return session.execute(query).scalar_one_or_none()


def _store_calculation(
    session: Session, *, ctx: TradingContext, read: SealRead
) -> Calculation:
    inputs = inputs_from_dict(read.inputs or {})
    table = load_factor_table(ctx.config.factor_version)
    policy = ctx.policy(inputs.vehicle_id)
    result = quantify(inputs, table, policy)
    calculation = Calculation(
        id=new_id(),
        batch_id=read.batch_id,
        seal_index=read.seal_index,
        seal_leaf_hash=read.seal_leaf_hash,
        sealed_at=read.sealed_at,
        processed_at=read.processed_at,
        checkpoint_size=read.checkpoint_size,
        factor_version=table.version,
        inputs=inputs.as_dict(),
        policy=policy.as_dict(),
        result=result,
        net_g=result["net_g"],
        creditable_g=result["creditable_g"],
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(calculation)
    except IntegrityError as exc:
        raise Conflict(
            f"Batch {read.batch_id} is already counted.", slug="already-counted"
        ) from exc
    append_statement(
        session,
        ctx=ctx,
        kind="credit.quantification",
        subject_id=calculation.batch_id,
        batch_id=calculation.batch_id,
        body=quantification_body(calculation),
    )
    return calculation


def quantification_body(calculation: Calculation) -> dict[str, Any]:
    """Everything needed to recompute the calculation, as the ledger keeps it."""
    return {
        "calculation_id": calculation.id,
        "seal": {
            "index": calculation.seal_index,
            "leaf_hash": calculation.seal_leaf_hash,
        },
        "checkpoint_size": calculation.checkpoint_size,
        "factor_version": calculation.factor_version,
        "factor_table_sha256": calculation.result.get("factor_table_sha256"),
        "inputs": calculation.inputs,
        "policy": calculation.policy,
        "result": calculation.result,
    }


def discover_and_quantify(
    session: Session, *, ctx: TradingContext, period: tuple[datetime, datetime]
) -> list[dict[str, Any]]:
    """Reads the seals new since the last report, then quantifies the period's.

    Each seal is fetched and verified once: the cursor remembers the last seal
    index read and seal_reads what each one held, so a report costs the new
    seals plus one alert check per uncounted batch of its period.
    """
    refused = read_new_seals(session, ctx=ctx)
    for read in _uncounted_reads(session, period):
        try:
            with session.begin_nested():
                _count_read(session, ctx=ctx, read=read)
        except (Unprocessable, Conflict) as problem:
            log.warning(
                "trading.batch_refused", batch_id=read.batch_id, reason=problem.slug
            )
            refused.append(_refusal(read.batch_id, read.seal_index, problem))
    return refused


def _refusal(batch_id: str, index: int, problem: Problem) -> dict[str, Any]:
    return {
        "batch_id": batch_id,
        "index": index,
        "reason": problem.slug,
        "detail": problem.detail,
    }


def read_new_seals(session: Session, *, ctx: TradingContext) -> list[dict[str, Any]]:
    """Reads and verifies every seal after the cursor; returns those refused."""
    cursor = _locked_cursor(session)
    verifier = ledger_verifier(session, ctx=ctx)
    refused: list[dict[str, Any]] = []
    while True:
        page = sealed.list_seals(
            ctx.ledger, after=cursor.last_index, limit=ctx.config.seal_page_size
        )
        for ref in page:
            problem = _read_one(session, ctx=ctx, verifier=verifier, ref=ref)
            if problem is not None:
                refused.append(_refusal(ref.batch_id, ref.index, problem))
        if page:
            cursor.last_index = max(cursor.last_index, page[-1].index)
        if len(page) < ctx.config.seal_page_size:
            session.flush()
            return refused


def _read_one(
    session: Session, *, ctx: TradingContext, verifier: Verifier, ref: sealed.SealRef
) -> Problem | None:
    if session.get(SealRead, ref.batch_id) is not None:
        return None
    try:
        batch = sealed.read_sealed_batch(ctx.ledger, verifier, ref.batch_id)
    except Unprocessable as problem:
        log.warning("trading.seal_refused", batch_id=ref.batch_id, reason=problem.slug)
        read = _new_read(session, ref.batch_id, ref.index)
        read.status, read.reason, read.detail = "refused", problem.slug, problem.detail
        return problem
    record_read(session, batch=batch)
    return None


def _locked_cursor(session: Session) -> SealCursor:
    """The seal cursor, locked so two reports do not read the same seals."""
    query = (
        select(SealCursor)
        .where(SealCursor.id == 1)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    cursor = session.execute(query).scalar_one_or_none()
    if cursor is not None:
        return cursor
    try:
        with session.begin_nested():
            session.add(SealCursor(id=1, last_index=-1))
    except IntegrityError:
        pass
    return session.execute(query).scalar_one()


def _uncounted_reads(
    session: Session, period: tuple[datetime, datetime]
) -> list[SealRead]:
    counted = select(Calculation.batch_id)
    query = (
        select(SealRead)
        .where(
            SealRead.status == "verified",
            SealRead.processed_at >= period[0],
            SealRead.processed_at < period[1],
            SealRead.batch_id.not_in(counted),
        )
        .order_by(SealRead.seal_index)
    )
    return list(session.execute(query).scalars())


def get_calculation(session: Session, *, batch_id: str) -> Calculation:
    calculation = _calculation_of(session, batch_id)
    if calculation is None:
        raise NotFound(f"Batch {batch_id} has not been quantified.")
    return calculation


def list_calculations(session: Session, *, report_id: str | None) -> list[Calculation]:
    query = select(Calculation).order_by(Calculation.seal_index)
    if report_id is not None:
        query = query.where(Calculation.report_id == report_id)
    return list(session.execute(query).scalars())


def calculation_view(calculation: Calculation) -> dict[str, Any]:
    result = calculation.result
    return {
        "id": calculation.id,
        "batch_id": calculation.batch_id,
        "seal": {
            "batch_id": calculation.batch_id,
            "index": calculation.seal_index,
            "leaf_hash": calculation.seal_leaf_hash,
        },
        "sealed_at": iso_utc(calculation.sealed_at),
        "processed_at": iso_utc(calculation.processed_at),
        "checkpoint_size": calculation.checkpoint_size,
        "factor_version": calculation.factor_version,
        "factor_table_sha256": result.get("factor_table_sha256"),
        "inputs": calculation.inputs,
        "policy": calculation.policy,
        "terms": result["terms"],
        "net_g": calculation.net_g,
        "discount_permille": result["discount_permille"],
        "discount_reasons": result["discount_reasons"],
        "creditable_g": calculation.creditable_g,
        "factors": result["factors"],
        "report_id": calculation.report_id,
        "created_at": iso_utc(calculation.created_at),
    }
