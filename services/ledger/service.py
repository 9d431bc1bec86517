"""The ledger's domain logic: party keys, serialized appends with their
checkpoints, automatic batch seals, and the reads behind proofs."""

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.ledger.models import HEAD_ID, Batch, Entry, LogHead, PartyKey
from services.ledger.models import Checkpoint as CheckpointRow
from services.ledger.tree import (
    LogDamaged,
    TreeAppender,
    consistency_proof,
    inclusion_proof,
)
from shared.auth import Principal, Role
from shared.canonical import b64, canonical_json
from shared.crypto import key_id as key_id_of
from shared.crypto import public_key_b64, public_key_from_b64, sign_statement
from shared.db import insert_rows
from shared.merkle import leaf_hash as hash_leaf
from shared.note import (
    Checkpoint,
    NoteError,
    Verifier,
    parse_verifier_key,
    sign_checkpoint,
    sign_note,
    verifier_key,
    verify_checkpoint,
)
from shared.problems import (
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    Problem,
    ServiceUnavailable,
    Unprocessable,
)
from shared.statements import (
    KINDS,
    PARTY_KINDS,
    SEAL,
    KeyInfo,
    LoggedEntry,
    RuleViolation,
    check_chain,
    check_entry_shape,
    check_next,
    check_signatures,
    decode_leaf,
    missing_for_seal,
)
from shared.timeutil import iso_utc, utcnow

log = structlog.get_logger()

LEDGER_PARTY_ID = "ledger"
# The service whose registry vouches for parties' keys.
REGISTRY_CALLER = "service:intake"
# Idempotency keys the ledger uses for its own entries; clients may not.
RESERVED_KEY_PREFIX = "ledger:"
SEAL_KEY_PREFIX = RESERVED_KEY_PREFIX + "seal:"


@dataclass(frozen=True)
class LogSigner:
    """The ledger's Ed25519 key, used for checkpoints and for seals."""

    origin: str
    key: Ed25519PrivateKey

    @property
    def key_id(self) -> str:
        return key_id_of(self.key)

    @property
    def verifier_key(self) -> str:
        return verifier_key(self.origin, self.key)

    @cached_property
    def verifier(self) -> Verifier:
        return parse_verifier_key(self.verifier_key)


@dataclass(frozen=True)
class Submission:
    """One entry a client asks to append, under its idempotency key."""

    key: str
    entry: Any


@dataclass(frozen=True)
class Appended:
    index: int
    leaf_hash: bytes
    size: int
    created: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "leaf_hash": b64(self.leaf_hash),
            "size": self.size,
        }


@dataclass(frozen=True)
class Outcome:
    """What became of one submission: appended (or replayed), or refused."""

    appended: Appended | None = None
    problem: Problem | None = None


@dataclass(frozen=True)
class SealAttempt:
    seal_index: int | None
    refusal: RuleViolation | None = None


class EntryRefused(Unprocessable):
    title = "Entry refused"


# Keys


def key_to_dict(key: PartyKey) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "public_key": key.public_key,
        "party_kind": key.party_kind,
        "party_id": key.party_id,
        "kinds": list(key.kinds),
        "revoked_at": iso_utc(key.revoked_at) if key.revoked_at else None,
        "revoke_reason": key.revoke_reason,
        "revoked_at_size": key.revoked_at_size,
    }


def register_key(
    session: Session,
    *,
    key_id: str,
    public_key: str,
    party_kind: str,
    party_id: str,
    kinds: Sequence[str],
) -> tuple[PartyKey, bool]:
    """Registers a party key; returns it and whether it is new."""
    _check_key_request(key_id, public_key, party_kind, kinds)
    content = (public_key, party_kind, party_id, sorted(set(kinds)))
    existing = session.get(PartyKey, key_id)
    if existing is not None:
        stored = (
            existing.public_key,
            existing.party_kind,
            existing.party_id,
            sorted(existing.kinds),
        )
        if stored != content:
            raise Conflict(
                f"Key {key_id} is already registered with different content.",
                slug="key-conflict",
            )
        return existing, False
    key = PartyKey(
        key_id=key_id,
        public_key=public_key,
        party_kind=party_kind,
        party_id=party_id,
        kinds=content[3],
        created_at=utcnow(),
    )
    session.add(key)
    session.flush()
    log.info("ledger.key_registered", key_id=key_id, party_kind=party_kind)
    return key, True


def _check_key_request(
    key_id: str, public_key: str, party_kind: str, kinds: Sequence[str]
) -> None:
    try:
        public = public_key_from_b64(public_key)
    except ValueError as exc:
        raise Unprocessable(
            "public_key is the base64 of a raw 32-byte Ed25519 key.",
            slug="public-key-invalid",
        ) from exc
    if key_id_of(public) != key_id:
        raise Unprocessable(
            f"The key ID of this public key is {key_id_of(public)}, not {key_id}.",
            slug="key-id-mismatch",
        )
    if party_kind not in PARTY_KINDS:
        raise Unprocessable(
            f"party_kind is one of {', '.join(PARTY_KINDS)}.", slug="party-kind-invalid"
        )
    unknown = sorted(set(kinds) - set(KINDS))
    if not kinds or unknown:
        raise Unprocessable(
            f"kinds lists statement kinds from {', '.join(KINDS)}; "
            f"unknown: {', '.join(unknown) or 'none given'}.",
            slug="kinds-invalid",
        )


def check_key_authority(
    caller: Principal, *, party_kind: str, party_id: str, revoking: bool
) -> None:
    """Who may vouch for a key. The registry (intake) registers and revokes
    the keys of parties (devices, managers, plants); a service registers only
    its own key; only an administrator revokes a service's key, and an
    administrator may do anything."""
    if caller.role == Role.ADMIN:
        return
    if party_kind != "service":
        if caller.sub != REGISTRY_CALLER:
            raise Forbidden(
                "Only the registry (intake) vouches for a party's key.",
                slug="key-authority",
            )
    elif revoking:
        raise Forbidden(
            "Only an administrator may revoke a service's key.",
            slug="service-key-admin-only",
        )
    elif caller.sub != f"service:{party_id}":
        raise Forbidden(
            f"Only service {party_id!r} registers its own key.", slug="key-authority"
        )


def revoke_key(
    session: Session, *, key_id: str, reason: str, caller: Principal
) -> PartyKey:
    """Revokes a key so it signs nothing more; revoking twice keeps the first.
    The log size at that moment is kept: entries below it stay valid."""
    head = _lock_head(session)
    key = get_key(session, key_id=key_id)
    if key.party_kind == "service" and key.party_id == LEDGER_PARTY_ID:
        raise Conflict("The ledger's own key is rotated, not revoked.", slug="own-key")
    check_key_authority(
        caller, party_kind=key.party_kind, party_id=key.party_id, revoking=True
    )
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        key.revoke_reason = reason
        key.revoked_at_size = head.size
        session.flush()
        log.info("ledger.key_revoked", key_id=key_id)
    return key


def get_key(session: Session, *, key_id: str) -> PartyKey:
    key = session.get(PartyKey, key_id)
    if key is None:
        raise NotFound(f"Key {key_id} is not registered.", slug="key-not-found")
    return key


def register_own_key(session: Session, *, signer: LogSigner, size: int) -> None:
    """Registers the ledger's key as the one that signs batch seals and
    checkpoints from log size `size` on (a rotation when it is new)."""
    key, created = register_key(
        session,
        key_id=signer.key_id,
        public_key=public_key_b64(signer.key),
        party_kind="service",
        party_id=LEDGER_PARTY_ID,
        kinds=[SEAL],
    )
    if created or key.active_from_size is None:
        key.active_from_size = size
        session.flush()
        log.info("ledger.own_key_active", key_id=signer.key_id, from_size=size)


def own_keys(session: Session) -> list[PartyKey]:
    """The ledger's keys, oldest first: its key history."""
    return list(
        session.scalars(
            select(PartyKey)
            .where(
                PartyKey.party_kind == "service",
                PartyKey.party_id == LEDGER_PARTY_ID,
            )
            .order_by(PartyKey.active_from_size, PartyKey.created_at)
        )
    )


KEY_HISTORY_FORMAT = "salvage-log-keys/1"


def key_history_note(session: Session, *, signer: LogSigner) -> str:
    """The ledger's key history as a signed note the current key vouches
    for: one line per key, "<key id> <base64 public key> <from size>"."""
    lines = [KEY_HISTORY_FORMAT, signer.origin]
    for key in own_keys(session):
        lines.append(f"{key.key_id} {key.public_key} {key.active_from_size or 0}")
    return sign_note("\n".join(lines) + "\n", signer.origin, signer.key)


def _key_infos(session: Session, key_ids: Iterable[str]) -> dict[str, KeyInfo]:
    wanted = set(key_ids)
    if not wanted:
        return {}
    rows = session.scalars(select(PartyKey).where(PartyKey.key_id.in_(wanted)))
    return {
        row.key_id: KeyInfo(
            key_id=row.key_id,
            public_key=public_key_from_b64(row.public_key),
            party_kind=row.party_kind,
            party_id=row.party_id,
            kinds=tuple(row.kinds),
            revoked=row.revoked_at is not None,
            revoked_at_size=row.revoked_at_size,
        )
        for row in rows
    }


# Appends


def _lock_head(session: Session) -> LogHead:
    """Takes the append lock: a row lock on PostgreSQL; on SQLite the
    transaction already holds the write lock (BEGIN IMMEDIATE)."""
    return session.execute(
        select(LogHead).where(LogHead.id == HEAD_ID).with_for_update()
    ).scalar_one()


def _lock_for_signing(session: Session, signer: LogSigner) -> LogHead:
    """Takes the append lock, refusing to sign with a key that a rotation
    has replaced (a worker still running with the old key)."""
    head = _lock_head(session)
    newest = session.scalar(
        select(PartyKey.key_id)
        .where(PartyKey.party_kind == "service", PartyKey.party_id == LEDGER_PARTY_ID)
        .order_by(
            PartyKey.active_from_size.desc().nulls_last(),
            PartyKey.created_at.desc(),
        )
        .limit(1)
    )
    if newest != signer.key_id:
        log.error("ledger.key_superseded", key_id=signer.key_id, newest=newest)
        raise ServiceUnavailable(
            f"This worker's log key {signer.key_id} was rotated out for {newest}; "
            "it signs nothing more until restarted with the new key.",
            slug="log-key-superseded",
        )
    return head


def prepare_leaf(entry: Any, *, max_bytes: int) -> bytes:
    """Checks an entry's shape and returns its canonical leaf bytes."""
    try:
        check_entry_shape(entry)
        leaf = canonical_json(entry)
    except RuleViolation as exc:
        raise EntryRefused(exc.detail, slug=exc.rule) from exc
    except ValueError as exc:
        raise EntryRefused(
            "The entry has a number JSON canonicalization cannot represent "
            "(integers beyond 2**53, NaN or infinity).",
            slug="not-canonicalizable",
        ) from exc
    if len(leaf) > max_bytes:
        raise PayloadTooLarge(
            f"The entry is {len(leaf)} bytes; the ledger takes up to {max_bytes}.",
            slug="entry-too-large",
        )
    return leaf


def append_entries(
    session: Session,
    *,
    submissions: Sequence[Submission],
    signer: LogSigner,
    max_bytes: int,
) -> list[Outcome]:
    """Appends entries under the log lock, seals batches they complete and
    signs one checkpoint for the new size. The caller commits."""
    head = _lock_for_signing(session, signer)
    work = _AppendBatch(session, LogWriter(session, head, signer), submissions)
    outcomes: list[Outcome] = []
    touched: list[str] = []
    for submission in submissions:
        try:
            leaf = prepare_leaf(submission.entry, max_bytes=max_bytes)
            outcome = work.append(submission.key, leaf)
        except Problem as problem:
            log.info("ledger.entry_refused", rule=problem.slug, key=submission.key)
            outcomes.append(Outcome(problem=problem))
            continue
        outcomes.append(outcome)
        batch_id = submission.entry["statement"].get("batch_id")
        if outcome.appended.created and batch_id and batch_id not in touched:
            touched.append(batch_id)
    for batch_id in touched:
        _seal_if_ready(session, writer=work.writer, batch_id=batch_id, signer=signer)
    _commit_tree(session, head=head, writer=work.writer, signer=signer)
    return [_with_size(session, o, work.writer.size) for o in outcomes]


class _AppendBatch:
    """One transaction's appends: idempotency keys and signers' keys are
    fetched for the whole batch in two queries, and new rows are written
    together when the session next flushes."""

    def __init__(
        self,
        session: Session,
        writer: "LogWriter",
        submissions: Sequence[Submission],
    ) -> None:
        self.session, self.writer = session, writer
        keys = {submission.key for submission in submissions}
        rows = session.execute(
            select(Entry.idempotency_key, Entry.index, Entry.leaf).where(
                Entry.idempotency_key.in_(keys)
            )
        )
        self.seen = {row.idempotency_key: (row.index, row.leaf) for row in rows}
        self.keys = _key_infos(session, _signer_ids(submissions))

    def append(self, key: str, leaf: bytes) -> Outcome:
        if key in self.seen:
            index, stored = self.seen[key]
            if stored != leaf:
                raise Conflict(
                    "This Idempotency-Key was used with a different entry.",
                    slug="idempotency-key-reused",
                )
            return Outcome(Appended(index, hash_leaf(leaf), 0, created=False))
        entry = json.loads(leaf)  # canonical and shape-checked by prepare_leaf
        statement = entry["statement"]
        if statement["kind"] == SEAL:
            raise EntryRefused(
                "Only the ledger appends batch.seal statements.", slug="kind-reserved"
            )
        try:
            check_signatures(statement, entry["signatures"], self.keys)
            if statement.get("batch_id") is not None:
                self.writer.flush()
                history = batch_history(self.session, statement["batch_id"])
                check_next(statement, history)
        except RuleViolation as exc:
            raise EntryRefused(exc.detail, slug=exc.rule) from exc
        index = self.writer.add(leaf, statement, key)
        self.seen[key] = (index, leaf)
        return Outcome(Appended(index, hash_leaf(leaf), 0, created=True))


def _signer_ids(submissions: Sequence[Submission]) -> set[str]:
    """Key IDs named by the submissions' signatures, however malformed."""
    found = set()
    for submission in submissions:
        entry = submission.entry
        signatures = entry.get("signatures") if isinstance(entry, dict) else None
        for signature in signatures if isinstance(signatures, list) else []:
            key_id = signature.get("key_id") if isinstance(signature, dict) else None
            if isinstance(key_id, str):
                found.add(key_id)
    return found


class LogWriter:
    """The entries and tree nodes one transaction adds, buffered and written
    together (one multi-row insert each) when flushed. It extends only a
    tree whose stored frontier gives the root the log signed for its head."""

    def __init__(self, session: Session, head: LogHead, signer: LogSigner) -> None:
        self.session = session
        self.tree = TreeAppender(session, head.size)
        _check_frontier(session, head=head, tree=self.tree, signer=signer)
        self.rows: list[dict[str, Any]] = []

    @property
    def size(self) -> int:
        return self.tree.size

    def add(self, leaf: bytes, statement: dict[str, Any], key: str) -> int:
        """Appends a leaf to the tree and buffers its row; returns its index."""
        leaf_hash = hash_leaf(leaf)
        index = self.tree.append(leaf_hash)
        self.rows.append(
            {
                "index": index,
                "leaf": leaf,
                "leaf_hash": leaf_hash,
                "kind": statement["kind"],
                "batch_id": statement.get("batch_id"),
                "idempotency_key": key,
                "created_at": utcnow(),
            }
        )
        log.debug(
            "ledger.entry_appended",
            index=index,
            kind=statement["kind"],
            batch_id=statement.get("batch_id"),
        )
        return index

    def flush(self) -> None:
        """Writes what is buffered, so that queries in this transaction see it."""
        if self.rows:
            insert_rows(self.session, Entry.__table__, self.rows)
            self.rows = []
        self.tree.flush()


def _check_frontier(
    session: Session, *, head: LogHead, tree: TreeAppender, signer: LogSigner
) -> None:
    """Refuses to build on stored nodes, or a head, that no longer give the
    root of the head's signed checkpoint: O(log n) hashes, one signature."""
    note = session.scalar(
        select(CheckpointRow.note).where(CheckpointRow.size == head.size)
    )
    signed = _signed_root(note, size=head.size, signer=signer)
    computed = tree.root()
    if signed is None:
        problem = (
            f"The checkpoint of the log's head, size {head.size}, is missing or "
            "does not verify with the log's key"
        )
    elif computed != signed:
        problem = (
            f"The stored tree nodes at size {head.size} give root "
            f"{b64(computed)}, not the signed root {b64(signed)}"
        )
    elif head.root != signed:
        problem = (
            f"The log head's root at size {head.size} is {b64(head.root)}, "
            f"not the signed root {b64(signed)}"
        )
    else:
        return
    log.error("ledger.log_damaged", size=head.size, problem=problem)
    raise LogDamaged(
        problem + "; the log signs nothing more until its storage is repaired.",
        size=head.size,
    )


def _signed_root(note: str | None, *, size: int, signer: LogSigner) -> bytes | None:
    """The root a checkpoint note signs for this size, if it verifies."""
    if note is None:
        return None
    try:
        checkpoint = verify_checkpoint(note, signer.verifier, signer.origin)
    except NoteError:
        return None
    return checkpoint.root if checkpoint.size == size else None


def _commit_tree(
    session: Session, *, head: LogHead, writer: LogWriter, signer: LogSigner
) -> None:
    writer.flush()
    if writer.size == head.size:
        return
    root = writer.tree.root()
    _sign_checkpoint(session, size=writer.size, root=root, signer=signer)
    head.size, head.root, head.updated_at = writer.size, root, utcnow()
    session.flush()


def _sign_checkpoint(
    session: Session, *, size: int, root: bytes, signer: LogSigner
) -> CheckpointRow:
    note = sign_checkpoint(
        Checkpoint(signer.origin, size, root), signer.origin, signer.key
    )
    row = CheckpointRow(size=size, root=root, note=note, created_at=utcnow())
    session.add(row)
    session.flush()
    log.info("ledger.checkpoint_signed", size=size, root=b64(root))
    return row


def _with_size(session: Session, outcome: Outcome, new_size: int) -> Outcome:
    """Fills in the size of the first checkpoint that covers the entry: the
    one just signed for a new entry, an earlier one for a replay."""
    if outcome.appended is None:
        return outcome
    a = outcome.appended
    size = new_size
    if not a.created:
        size = session.scalar(
            select(func.min(CheckpointRow.size)).where(CheckpointRow.size > a.index)
        )
    return Outcome(Appended(a.index, a.leaf_hash, size, a.created))


def open_log(session: Session, *, signer: LogSigner) -> None:
    """At startup, under the append lock: registers the ledger's own key,
    signs a checkpoint for the current size if there is none (a fresh log),
    and re-signs the head checkpoint, same size and root, after a key
    rotation so that /v1/checkpoint verifies with /v1/key."""
    head = _lock_head(session)
    register_own_key(session, signer=signer, size=head.size)
    current = session.get(CheckpointRow, head.size)
    if current is None:
        _sign_checkpoint(session, size=head.size, root=head.root, signer=signer)
    elif not _signed_by(current.note, signer):
        current.note = _cosigned(current.note, head.size, head.root, signer)
        log.info("ledger.checkpoint_cosigned", size=head.size, key_id=signer.key_id)
    session.flush()


def _cosigned(note: str, size: int, root: bytes, signer: LogSigner) -> str:
    """Adds the new key's signature to a checkpoint note, keeping the old
    ones: the same size and root, now verifiable with either key."""
    fresh = sign_checkpoint(
        Checkpoint(signer.origin, size, root), signer.origin, signer.key
    )
    body, _, signature = fresh.rpartition("\n\n")
    if not note.startswith(body + "\n\n"):
        raise LogDamaged(f"The head checkpoint's body is not that of size {size}.")
    return note + signature


def _signed_by(note: str, signer: LogSigner) -> bool:
    try:
        verify_checkpoint(note, signer.verifier, signer.origin)
    except NoteError:
        return False
    return True


# Batches and seals


def batch_history(session: Session, batch_id: str) -> list[LoggedEntry]:
    """The batch's entries in log order, decoded from their stored leaves."""
    rows = session.scalars(
        select(Entry).where(Entry.batch_id == batch_id).order_by(Entry.index)
    )
    history = []
    for row in rows:
        try:
            entry = decode_leaf(row.leaf)
        except RuleViolation as exc:
            raise LogDamaged(
                f"Entry {row.index} does not decode: {exc.detail}"
            ) from exc
        history.append(
            LoggedEntry(
                row.index, row.leaf_hash, entry["statement"], entry["signatures"]
            )
        )
    return history


def _seal_if_ready(
    session: Session, *, writer: LogWriter, batch_id: str, signer: LogSigner
) -> SealAttempt:
    writer.flush()
    history = batch_history(session, batch_id)
    sealed = [entry.index for entry in history if entry.kind == SEAL]
    if sealed:
        return SealAttempt(sealed[0])
    if missing_for_seal(entry.kind for entry in history):
        return SealAttempt(None)
    keys = _key_infos(
        session, (s["key_id"] for entry in history for s in entry.signatures)
    )
    try:
        body = check_chain(history, keys)
    except RuleViolation as refusal:
        _record_batch(session, batch_id, refusal=refusal)
        log.warning("ledger.seal_refused", batch_id=batch_id, rule=refusal.rule)
        return SealAttempt(None, refusal)
    statement = {
        "v": 1,
        "kind": SEAL,
        "batch_id": batch_id,
        "at": iso_utc(utcnow()),
        "body": body,
    }
    entry = {
        "statement": statement,
        "signatures": [sign_statement(signer.key, statement)],
    }
    index = writer.add(canonical_json(entry), statement, SEAL_KEY_PREFIX + batch_id)
    _record_batch(session, batch_id, seal_index=index)
    log.info("ledger.batch_sealed", batch_id=batch_id, index=index)
    return SealAttempt(index)


def _record_batch(
    session: Session,
    batch_id: str,
    *,
    seal_index: int | None = None,
    refusal: RuleViolation | None = None,
) -> None:
    batch = session.get(Batch, batch_id)
    if batch is None:
        batch = Batch(batch_id=batch_id)
        session.add(batch)
    batch.seal_index = seal_index
    batch.refusal_rule = refusal.rule if refusal else None
    batch.refusal_detail = refusal.detail if refusal else None
    batch.updated_at = utcnow()
    session.flush()


def seal_batch(session: Session, *, batch_id: str, signer: LogSigner) -> SealAttempt:
    """Tries to seal a batch now; the caller commits, refusal or not."""
    head = _lock_for_signing(session, signer)
    history = batch_history(session, batch_id)
    if not history:
        raise NotFound(f"Batch {batch_id} has no entries.", slug="batch-not-found")
    kinds = [entry.kind for entry in history]
    missing = missing_for_seal(kinds)
    if missing and SEAL not in kinds:
        raise Conflict(
            f"Batch {batch_id} cannot be sealed yet: it lacks {', '.join(missing)}.",
            slug="not-ready",
            missing=missing,
        )
    writer = LogWriter(session, head, signer)
    attempt = _seal_if_ready(session, writer=writer, batch_id=batch_id, signer=signer)
    _commit_tree(session, head=head, writer=writer, signer=signer)
    return attempt


def batch_view(session: Session, *, batch_id: str) -> dict[str, Any]:
    rows = session.execute(
        select(Entry.index, Entry.kind, Entry.leaf_hash)
        .where(Entry.batch_id == batch_id)
        .order_by(Entry.index)
    ).all()
    if not rows:
        raise NotFound(f"Batch {batch_id} has no entries.", slug="batch-not-found")
    batch = session.get(Batch, batch_id)
    seals = [row.index for row in rows if row.kind == SEAL]
    kinds = {row.kind for row in rows}
    missing = missing_for_seal(kinds) if not seals else []
    refusal = None
    if batch is not None and batch.refusal_rule and not seals:
        refusal = {"rule": batch.refusal_rule, "detail": batch.refusal_detail}
    return {
        "batch_id": batch_id,
        "entries": [
            {"index": r.index, "kind": r.kind, "leaf_hash": b64(r.leaf_hash)}
            for r in rows
        ],
        "seal_index": seals[0] if seals else None,
        "missing": missing,
        "refusal": refusal,
    }


def seal_view(session: Session, *, batch_id: str) -> dict[str, Any]:
    """The seal entry with its inclusion proof against the latest checkpoint."""
    view = batch_view(session, batch_id=batch_id)
    if view["seal_index"] is None:
        raise _not_sealed(view)
    checkpoint = latest_checkpoint(session)
    entry = entry_at(session, index=view["seal_index"])
    proof = inclusion_proof(session, entry["index"], checkpoint.size)
    return {
        "batch_id": batch_id,
        **entry,
        "inclusion": {
            "index": entry["index"],
            "size": checkpoint.size,
            "hashes": [b64(h) for h in proof],
        },
        "checkpoint": checkpoint.note,
    }


def _not_sealed(view: dict[str, Any]) -> Problem:
    batch_id = view["batch_id"]
    if view["refusal"]:
        reason = f"sealing was refused ({view['refusal']['rule']}): "
        reason += view["refusal"]["detail"]
    else:
        reason = "it lacks " + ", ".join(view["missing"]) + "."
    problem = NotFound(
        f"Batch {batch_id} is not sealed: {reason}",
        slug="not-sealed",
        missing=view["missing"],
        refusal=view["refusal"],
    )
    return problem


def list_seals(session: Session, *, after: int, limit: int) -> dict[str, Any]:
    rows = session.execute(
        select(Entry.index, Entry.batch_id)
        .where(Entry.kind == SEAL, Entry.index > after)
        .order_by(Entry.index)
        .limit(limit)
    ).all()
    return {
        "seals": [{"batch_id": row.batch_id, "index": row.index} for row in rows],
        "next_after": rows[-1].index if rows else None,
    }


def bundle(session: Session, *, batch_id: str, signer: LogSigner) -> dict[str, Any]:
    """Every entry of a batch with its inclusion proof against one signed
    checkpoint, the keys that signed them and the log's verifier key."""
    history = batch_history(session, batch_id)
    if not history:
        raise NotFound(f"Batch {batch_id} has no entries.", slug="batch-not-found")
    checkpoint = latest_checkpoint(session)
    rows = {
        row.index: row
        for row in session.scalars(select(Entry).where(Entry.batch_id == batch_id))
    }
    entries = [
        {
            "index": item.index,
            "leaf": b64(rows[item.index].leaf),
            "inclusion": [
                b64(h) for h in inclusion_proof(session, item.index, checkpoint.size)
            ],
        }
        for item in history
    ]
    key_ids = {s["key_id"] for item in history for s in item.signatures}
    keys = session.scalars(select(PartyKey).where(PartyKey.key_id.in_(key_ids)))
    return {
        "format": "salvage-proof-bundle/1",
        "batch_id": batch_id,
        "verifier_key": signer.verifier_key,
        "checkpoint": checkpoint.note,
        "key_history": key_history_note(session, signer=signer),
        "entries": entries,
        "keys": sorted((key_to_dict(key) for key in keys), key=lambda k: k["key_id"]),
    }


# Reads behind the auditor's paths


def latest_checkpoint(session: Session) -> CheckpointRow:
    row = session.scalar(
        select(CheckpointRow).order_by(CheckpointRow.size.desc()).limit(1)
    )
    if row is None:
        raise LogDamaged("The log has no signed checkpoint.")
    return row


def list_checkpoints(session: Session, *, after: int, limit: int) -> dict[str, Any]:
    rows = session.scalars(
        select(CheckpointRow)
        .where(CheckpointRow.size > after)
        .order_by(CheckpointRow.size)
        .limit(limit)
    ).all()
    return {
        "checkpoints": [
            {"size": row.size, "root": b64(row.root), "note": row.note} for row in rows
        ]
    }


def entry_at(session: Session, *, index: int) -> dict[str, Any]:
    row = session.get(Entry, index)
    if row is None or index >= latest_checkpoint(session).size:
        raise NotFound(f"There is no entry {index} in the log.", slug="entry-not-found")
    return {**_entry_dict(row), "entry": _decoded_or_none(row.leaf)}


def _entry_dict(row: Entry) -> dict[str, Any]:
    return {"index": row.index, "leaf": b64(row.leaf), "leaf_hash": b64(row.leaf_hash)}


def _decoded_or_none(leaf: bytes) -> dict[str, Any] | None:
    try:
        return decode_leaf(leaf)
    except RuleViolation:
        return None


def entries_range(session: Session, *, start: int, end: int) -> dict[str, Any]:
    """Entries [start, end) as stored, for auditors streaming the log."""
    size = latest_checkpoint(session).size
    if end > size:
        raise Unprocessable(
            f"end {end} is beyond the log's checkpointed size {size}.",
            slug="range-beyond-log",
        )
    rows = session.execute(
        select(Entry.index, Entry.leaf, Entry.leaf_hash)
        .where(Entry.index >= start, Entry.index < end)
        .order_by(Entry.index)
    )
    return {"start": start, "end": end, "entries": [_entry_dict(row) for row in rows]}


def _checkpointed(session: Session, size: int | None) -> CheckpointRow:
    latest = latest_checkpoint(session)
    if size is None:
        return latest
    if size > latest.size:
        raise Unprocessable(
            f"size {size} is beyond the latest checkpoint, {latest.size}.",
            slug="size-beyond-log",
        )
    row = session.get(CheckpointRow, size)
    if row is None:
        raise Unprocessable(
            f"No signed checkpoint covers size {size}; see /v1/checkpoints.",
            slug="size-not-checkpointed",
        )
    return row


def _checkpointed_size(session: Session, size: int | None) -> int:
    """The asked size if a checkpoint covers it (default: the latest), read
    with one narrow query on the common path."""
    if size is None:
        return latest_checkpoint(session).size
    found = select(CheckpointRow.size).where(CheckpointRow.size == size)
    if session.scalar(found) is not None:
        return size
    return _checkpointed(session, size).size


def inclusion(session: Session, *, index: int, size: int | None) -> dict[str, Any]:
    size = _checkpointed_size(session, size)
    if index >= size:
        raise Unprocessable(
            f"index {index} is not below size {size}.", slug="index-beyond-size"
        )
    proof = inclusion_proof(session, index, size)
    return {"index": index, "size": size, "hashes": [b64(h) for h in proof]}


def consistency(session: Session, *, old: int, size: int | None) -> dict[str, Any]:
    size = _checkpointed_size(session, size)
    if old > size:
        raise Unprocessable(f"old {old} is beyond size {size}.", slug="old-beyond-size")
    proof = consistency_proof(session, old, size) if old else []
    return {"old": old, "size": size, "hashes": [b64(h) for h in proof]}
