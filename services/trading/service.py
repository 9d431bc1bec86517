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
from services.trading.methodology import Policy, load_factor_table, quantify
from services.trading.models import Calculation, LedgerPin, outbox
from shared.crypto import key_id, public_key_b64, sign_statement
from shared.note import NoteError, Verifier, parse_verifier_key
from shared.outbox import enqueue
from shared.problems import Conflict, NotFound, ServiceUnavailable, Unprocessable
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

    def policy(self) -> Policy:
        return Policy(
            truck_class=self.config.truck_class,
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
    session: Session,
    *,
    ctx: TradingContext,
    verifier: Verifier,
    batch_id: str,
    period: tuple[datetime, datetime] | None = None,
) -> Calculation | None:
    """Verifies a sealed batch and stores its calculation.

    With a period, a batch processed outside it is verified but not stored
    (None): the period is when the plant processed the batch.
    """
    if _calculation_of(session, batch_id) is not None:
        raise Conflict(f"Batch {batch_id} is already counted.", slug="already-counted")
    batch = sealed.read_sealed_batch(ctx.ledger, verifier, batch_id)
    if period is not None and not period[0] <= batch.processed_at < period[1]:
        return None
    open_ids = sealed.unresolved_alerts(ctx.tracking, batch_id, batch.alert_ids)
    if open_ids:
        raise sealed.OpenAlerts(
            f"Batch {batch_id} has {len(open_ids)} alert(s) not resolved.",
            alert_ids=open_ids,
        )
    calculation = _store_calculation(session, ctx=ctx, batch=batch)
    log.info(
        "trading.batch_quantified",
        batch_id=batch_id,
        seal_index=batch.seal_index,
        creditable_g=calculation.creditable_g,
    )
    return calculation


def _calculation_of(session: Session, batch_id: str) -> Calculation | None:
    query = select(Calculation).where(Calculation.batch_id == batch_id)
    return session.execute(query).scalar_one_or_none()


def _store_calculation(
    session: Session,
    *,
    ctx: TradingContext,
    batch: sealed.SealedBatch,
) -> Calculation:
    table = load_factor_table(ctx.config.factor_version)
    policy = ctx.policy()
    result = quantify(batch.inputs, table, policy)
    calculation = Calculation(
        id=new_id(),
        batch_id=batch.inputs.batch_id,
        seal_index=batch.seal_index,
        seal_leaf_hash=batch.seal_leaf_hash,
        sealed_at=batch.sealed_at,
        processed_at=batch.processed_at,
        checkpoint_size=batch.checkpoint_size,
        factor_version=table.version,
        inputs=batch.inputs.as_dict(),
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
            f"Batch {batch.inputs.batch_id} is already counted.", slug="already-counted"
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
        "inputs": calculation.inputs,
        "policy": calculation.policy,
        "result": calculation.result,
    }


def discover_and_quantify(
    session: Session, *, ctx: TradingContext, period: tuple[datetime, datetime]
) -> list[dict[str, Any]]:
    """Quantifies every new sealed batch of the period; returns those refused."""
    verifier = ledger_verifier(session, ctx=ctx)
    counted = set(session.execute(select(Calculation.batch_id)).scalars())
    refused: list[dict[str, Any]] = []
    after: int | None = None
    while True:
        page = sealed.list_seals(
            ctx.ledger, after=after, limit=ctx.config.seal_page_size
        )
        for ref in page:
            if ref.batch_id in counted:
                continue
            reason = _try_quantify(
                session, ctx=ctx, verifier=verifier, ref=ref, period=period
            )
            if reason is not None:
                refused.append(reason)
        if len(page) < ctx.config.seal_page_size:
            return refused
        after = page[-1].index


def _try_quantify(
    session: Session,
    *,
    ctx: TradingContext,
    verifier: Verifier,
    ref: sealed.SealRef,
    period: tuple[datetime, datetime],
) -> dict[str, Any] | None:
    try:
        quantify_batch(
            session, ctx=ctx, verifier=verifier, batch_id=ref.batch_id, period=period
        )
    except (Unprocessable, Conflict) as problem:
        log.warning("trading.batch_refused", batch_id=ref.batch_id, reason=problem.slug)
        return {
            "batch_id": ref.batch_id,
            "index": ref.index,
            "reason": problem.slug,
            "detail": problem.detail,
        }
    return None


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
