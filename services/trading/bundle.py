"""The offline provenance bundle of a credit serial.

For a serial it gathers, from the ledger, every entry behind it: the
issuance and the project's issuance before it (whose carry-over it takes),
each batch's quantification, seal, custody chain and trip (the ledger's
per-batch bundles), and the retirements of its tonnes, each with an
inclusion proof against ONE signed checkpoint, plus the signers' keys and
the whole factor tables the quantifications name.
shared.provenance.verify_credit_bundle checks it with no network.
"""

import json
from typing import Any
from urllib.parse import quote

import httpx
import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.trading import registry, sealed
from services.trading.methodology import load_factor_table
from services.trading.models import (
    Block,
    Calculation,
    LedgerPin,
    LedgerReceipt,
    outbox,
)
from services.trading.service import TradingContext, ledger_verifier
from shared.canonical import b64, canonical_json, unb64
from shared.http import problem_detail
from shared.merkle import leaf_hash
from shared.note import Checkpoint, NoteError, verify_checkpoint
from shared.problems import Conflict, NotFound, ServiceUnavailable
from shared.provenance import BUNDLE_FORMAT
from shared.timeutil import utcnow

log = structlog.get_logger()


def credit_bundle(
    session: Session, *, ctx: TradingContext, serial: str
) -> dict[str, Any]:
    """Everything behind a serial, proven against one checkpoint."""
    project, vintage, start, end = registry.parse_serial(serial)
    issuance = registry.issuance_holding(session, project, vintage, start, end)
    issued = logged(session, ctx=ctx, key=f"trading:credit.issuance:{issuance.id}")
    before = registry.previous_issuance(session, issuance)
    prior = (
        logged(session, ctx=ctx, key=f"trading:credit.issuance:{before.id}")
        if before is not None
        else None
    )
    retired = [
        logged(session, ctx=ctx, key=f"trading:credit.retirement:{rid}")
        for rid in _retirement_ids(session, project, start, end)
    ]
    note = _checkpoint_note(ctx.ledger)
    collector = _Collector(ctx.ledger, note, _verified(note, session, ctx))
    seals = registry.seals_of(session, issuance.report_id)
    try:
        for seal in seals:
            collector.add_batch(seal["batch_id"])
        for receipt in [issued, *([prior] if prior else []), *retired]:
            collector.add_index(receipt.index)
    except (KeyError, TypeError, ValueError) as exc:
        raise ServiceUnavailable("The ledger served a malformed proof.") from exc
    log.info("trading.bundle_built", serial=serial, entries=len(collector.entries))
    return {
        "format": BUNDLE_FORMAT,
        "serial": serial,
        "project": project,
        "vintage": vintage,
        "start": start,
        "end": end,
        "verifier_key": ledger_key_text(session, ctx),
        "checkpoint": note,
        "issuance": {"id": issuance.id, "index": issued.index},
        "previous_issuance": (
            {"id": before.id, "index": prior.index} if before and prior else None
        ),
        "retirements": [{"index": r.index} for r in retired],
        "seals": seals,
        "entries": [collector.entries[i] for i in sorted(collector.entries)],
        "keys": collector.key_records(),
        "factor_tables": _factor_tables(session, issuance.report_id),
    }


def _factor_tables(session: Session, report_id: str) -> dict[str, Any]:
    """The whole factor tables the report's calculations used, by version."""
    versions = session.execute(
        select(Calculation.factor_version)
        .where(Calculation.report_id == report_id)
        .distinct()
    ).scalars()
    return {version: load_factor_table(version).rows() for version in sorted(versions)}


def ledger_key_text(session: Session, ctx: TradingContext) -> str:
    """The ledger verifier key trading trusts (configured or pinned)."""
    ledger_verifier(session, ctx=ctx)
    if ctx.config.ledger_key is not None:
        return ctx.config.ledger_key
    return session.get(LedgerPin, 1).verifier_key


def _retirement_ids(session: Session, project: str, start: int, end: int) -> list[str]:
    query = (
        select(Block.retirement_id)
        .where(
            Block.project == project,
            Block.start <= end,
            Block.end >= start,
            Block.retirement_id.is_not(None),
        )
        .distinct()
    )
    return sorted(session.execute(query).scalars())


def logged(session: Session, *, ctx: TradingContext, key: str) -> LedgerReceipt:
    """Where a statement trading queued under key sits in the ledger.

    Once the outbox has delivered it, the same entry is offered again with
    the same Idempotency-Key; the ledger answers with the index it already
    has and appends nothing. The answer is kept, so this happens once.
    """
    receipt = session.get(LedgerReceipt, key)
    if receipt is not None:
        return receipt
    row = session.execute(select(outbox).where(outbox.c.key == key)).first()
    if row is None:
        raise NotFound(f"Trading wrote no statement {key}.", slug="no-statement")
    if row.delivered_at is None:
        raise Conflict(
            "The statement is not in the ledger yet; ask again shortly.",
            slug="not-yet-logged",
        )
    receipt = _ask_ledger(ctx.ledger, key, row.body)
    try:
        with session.begin_nested():
            session.add(receipt)
    except IntegrityError:
        receipt = session.get(LedgerReceipt, key, populate_existing=True)
    return receipt


def _ask_ledger(ledger: httpx.Client, key: str, entry: dict) -> LedgerReceipt:
    try:
        response = ledger.post(
            "/v1/entries", json=entry, headers={"Idempotency-Key": key}
        )
    except httpx.HTTPError as exc:
        raise ServiceUnavailable("Could not reach the ledger.") from exc
    if response.status_code not in (200, 201):
        raise ServiceUnavailable(
            "The ledger did not say where the statement is.",
            upstream=problem_detail(response),
        )
    answer = response.json()
    if answer.get("leaf_hash") != b64(leaf_hash(canonical_json(entry))):
        raise ServiceUnavailable("The ledger holds another entry under this key.")
    return LedgerReceipt(
        key=key,
        index=int(answer["index"]),
        leaf_hash=answer["leaf_hash"],
        recorded_at=utcnow(),
    )


def _checkpoint_note(ledger: httpx.Client) -> str:
    response = sealed.fetch(ledger, "/v1/checkpoint")
    if not response.is_success:
        raise ServiceUnavailable("The ledger did not serve its checkpoint.")
    return response.text


def _verified(note: str, session: Session, ctx: TradingContext) -> Checkpoint:
    try:
        return verify_checkpoint(note, ledger_verifier(session, ctx=ctx))
    except NoteError as exc:
        raise ServiceUnavailable(
            f"The ledger's checkpoint does not verify: {exc}"
        ) from exc


class _Collector:
    """Entries with proofs against one checkpoint, and the keys that signed them."""

    def __init__(self, ledger: httpx.Client, note: str, checkpoint: Checkpoint):
        self.ledger, self.note, self.checkpoint = ledger, note, checkpoint
        self.entries: dict[int, dict[str, Any]] = {}
        self.keys: dict[str, dict[str, Any]] = {}

    def add_batch(self, batch_id: str) -> None:
        """The ledger's bundle of a batch, its proofs re-anchored if need be."""
        path = f"/v1/batches/{quote(batch_id, safe='')}/bundle"
        body = sealed.fetch_json(self.ledger, path)
        same = body.get("checkpoint") == self.note
        for item in body.get("entries") or []:
            if item["index"] >= self.checkpoint.size:
                continue
            proof = item["inclusion"] if same else self._proof(item["index"])
            self.entries[item["index"]] = {**item, "inclusion": proof}
        for record in body.get("keys") or []:
            self.keys[record["key_id"]] = record

    def add_index(self, index: int) -> None:
        """One entry by index (an issuance or a retirement) with its proof."""
        if index in self.entries:
            return
        body = sealed.fetch_json(self.ledger, f"/v1/entries/{index}")
        self.entries[index] = {
            "index": index,
            "leaf": body["leaf"],
            "inclusion": self._proof(index),
        }
        for signature in _signatures(body["leaf"]):
            self._key(signature.get("key_id"))

    def _proof(self, index: int) -> list[str]:
        body = sealed.fetch_json(
            self.ledger,
            "/v1/proof/inclusion",
            index=index,
            size=self.checkpoint.size,
        )
        return list(body["hashes"])

    def _key(self, kid: Any) -> None:
        if isinstance(kid, str) and kid not in self.keys:
            self.keys[kid] = sealed.fetch_json(self.ledger, f"/v1/keys/{kid}")

    def key_records(self) -> list[dict[str, Any]]:
        return [self.keys[kid] for kid in sorted(self.keys)]


def _signatures(leaf: str) -> list[dict[str, Any]]:
    entry = json.loads(unb64(leaf))
    return [s for s in entry.get("signatures") or [] if isinstance(s, dict)]
