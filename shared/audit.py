"""The auditor's checks of the ledger, trusting nothing but its key.

Every check ends in an AuditReport: a verdict and, on failure, the first
bad index and the reason. Checks that go over the network read only the
auditor's paths of the design brief (plus /v1/keys/{key_id} for the
signers' public keys); verify_bundle needs no network at all. Like a
witness, an auditor remembers the last checkpoint it accepted in a local
JSON state file and insists every later one is consistent with it.
"""

import copy
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shared.canonical import b64, unb64
from shared.crypto import key_id as key_id_of
from shared.crypto import public_key_from_b64, verify_statement
from shared.merkle import (
    StreamingRoot,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from shared.note import (
    Checkpoint,
    NoteError,
    open_note,
    parse_verifier_key,
    verify_checkpoint,
)
from shared.note import verifier_key as verifier_key_string
from shared.statements import (
    SEAL,
    KeyInfo,
    LoggedEntry,
    RuleViolation,
    check_chain,
    check_logged_before_revocation,
    check_signatures,
    decode_leaf,
)

PAGE_SIZE = 1000
KEY_HISTORY_FORMAT = "salvage-log-keys/1"


@dataclass
class AuditReport:
    """The outcome of one check."""

    check: str
    ok: bool
    size: int | None = None
    root: str | None = None
    first_bad_index: int | None = None
    reason: str | None = None
    checked: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return "PASS" if self.ok else "FAIL"


class AuditFailure(Exception):
    """A check that failed, with the first bad index when there is one."""

    def __init__(self, reason: str, index: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.index = index


@dataclass
class WitnessState:
    """What an auditor remembers between runs: the key and last checkpoint."""

    verifier_key: str
    size: int
    root: str
    note: str


def load_state(path: Path | None) -> WitnessState | None:
    if path is None or not path.exists():
        return None
    try:
        return WitnessState(**json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise AuditFailure(f"state file {path} is unreadable: {exc}") from exc


def save_state(path: Path | None, state: WitnessState) -> None:
    """Writes the state atomically, so a crash never leaves half a file."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.write_text(json.dumps(asdict(state), indent=2) + "\n")
    os.replace(staging, path)


@dataclass(frozen=True)
class _Body:
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class LedgerReader:
    """Reads the ledger's public paths; any failure becomes an AuditFailure."""

    def __init__(self, ledger: str | httpx.Client, timeout: float = 30.0) -> None:
        if isinstance(ledger, httpx.Client):
            self.client = ledger
        else:
            self.client = httpx.Client(base_url=ledger.rstrip("/"), timeout=timeout)

    def _get(self, path: str, params: dict[str, Any] | None = None) -> "_Body":
        """GETs a path. The body is read by streaming, so that no httpx response
        (a reference cycle, freed only by the cyclic collector) keeps a copy of
        a page alive while the audit moves on."""
        try:
            with self.client.stream("GET", path, params=params) as response:
                status = response.status_code
                content = b"".join(response.iter_bytes())
        except httpx.HTTPError as exc:
            raise AuditFailure(f"cannot reach the ledger at {path}: {exc}") from exc
        body = _Body(content)
        if status == 404:
            raise LookupError(path)
        if not 200 <= status < 300:
            raise AuditFailure(
                f"the ledger answered {status} to {path}: {body.text[:300]}"
            )
        return body

    def _json(
        self, path: str, about: int | None = None, params: dict | None = None
    ) -> Any:
        """GETs JSON; failures name the entry index `about` when given."""
        try:
            return self._get(path, params).json()
        except AuditFailure as failure:
            raise AuditFailure(failure.reason, about) from failure
        except LookupError as exc:
            raise AuditFailure(f"the ledger has nothing at {path}", about) from exc
        except ValueError as exc:
            raise AuditFailure(f"the ledger sent bad JSON for {path}", about) from exc

    def checkpoint_note(self) -> str:
        return self._get("/v1/checkpoint").text

    def verifier_key(self) -> str:
        return self._get("/v1/key").text.strip()

    def entry(self, index: int) -> dict[str, Any]:
        return self._json(f"/v1/entries/{index}", index)

    def entries(self, start: int, end: int) -> list[dict[str, Any]]:
        return self._json("/v1/entries", start, {"start": start, "end": end})["entries"]

    def inclusion(self, index: int, size: int) -> list[bytes]:
        body = self._json("/v1/proof/inclusion", index, {"index": index, "size": size})
        return _hashes(body, index)

    def consistency(self, old: int, size: int) -> list[bytes]:
        body = self._json("/v1/proof/consistency", None, {"old": old, "size": size})
        return _hashes(body, None)

    def party_key(self, key_id: str) -> dict[str, Any] | None:
        try:
            return self._get(f"/v1/keys/{key_id}").json()
        except LookupError:
            return None

    def checkpoints(self, after: int) -> list[dict[str, Any]]:
        body = self._json("/v1/checkpoints", None, {"after": after})
        items = body.get("checkpoints") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise AuditFailure("the ledger's checkpoint list is malformed")
        return items

    def key_history(self) -> str:
        try:
            return self._get("/v1/log-keys").text
        except LookupError as exc:
            raise AuditFailure("the ledger serves no key history") from exc

    def batch(self, batch_id: str) -> dict[str, Any]:
        return self._json(f"/v1/batches/{batch_id}")

    def bundle(self, batch_id: str) -> dict[str, Any]:
        return self._json(f"/v1/batches/{batch_id}/bundle")


def _hashes(body: Any, index: int | None) -> list[bytes]:
    try:
        return [unb64(item) for item in body["hashes"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise AuditFailure("the proof's hashes are not base64", index) from exc


# Checkpoints


def open_checkpoint(note: str, verifier_key: str) -> Checkpoint:
    """Verifies a checkpoint note's signature against a verifier key."""
    try:
        verifier = parse_verifier_key(verifier_key)
        return verify_checkpoint(note, verifier, origin=verifier.name)
    except NoteError as exc:
        raise AuditFailure(f"checkpoint signature does not verify: {exc}") from exc


def trusted_checkpoint(
    reader: LedgerReader,
    *,
    state_file: Path | None = None,
    verifier_key: str | None = None,
) -> tuple[Checkpoint, str]:
    """The ledger's latest checkpoint once its signature and its consistency
    with the remembered one check out; the state file then remembers it."""
    state = load_state(state_file)
    key = verifier_key or (state.verifier_key if state else reader.verifier_key())
    if state is not None and state.verifier_key != key:
        _check_rotation(reader, state.verifier_key, key)
    note = reader.checkpoint_note()
    try:
        checkpoint = open_checkpoint(note, key)
        if state is not None:
            _check_consistent(reader, state, checkpoint)
    except AuditFailure as failure:
        first = state.size if state is not None else 0
        index = failure.index if failure.index is not None else first
        raise AuditFailure(failure.reason, index) from failure
    save_state(
        state_file, WitnessState(key, checkpoint.size, b64(checkpoint.root), note)
    )
    return checkpoint, key


def _check_rotation(reader: LedgerReader, old_key: str, new_key: str) -> None:
    """Accepts a newly pinned log key only if its key history names the
    remembered key as an earlier key of the same log."""
    old, new = parse_verifier_key(old_key), parse_verifier_key(new_key)
    if old.name != new.name:
        raise AuditFailure(
            f"the pinned key is for log {new.name}, the remembered one for {old.name}"
        )
    history = log_key_history(reader.key_history(), new_key)
    if key_id_of(old.public_key) not in {item.key_id for item in history[:-1]}:
        raise AuditFailure(
            "the pinned verifier key differs from the remembered one, and the "
            "log's key history does not name the remembered key as an earlier key"
        )


def _check_consistent(
    reader: LedgerReader, state: WitnessState, checkpoint: Checkpoint
) -> None:
    old_root = unb64(state.root)
    if checkpoint.size < state.size:
        raise AuditFailure(
            f"the log shrank: it shows size {checkpoint.size}, but size "
            f"{state.size} was seen before",
            checkpoint.size,
        )
    proof = reader.consistency(state.size, checkpoint.size) if state.size else []
    if not verify_consistency(
        state.size, checkpoint.size, old_root, checkpoint.root, proof
    ):
        raise AuditFailure(
            f"checkpoint {checkpoint.size} is not consistent with the "
            f"remembered checkpoint {state.size}: the log was forked or rewritten"
        )


@dataclass(frozen=True)
class LogKey:
    """One of the ledger's keys and the log size from which it signs."""

    key_id: str
    public_key: Ed25519PublicKey
    from_size: int
    origin: str = ""


def log_key_history(note: str, verifier_key: str) -> list[LogKey]:
    """The ledger's key history from its signed note, oldest first, once the
    note verifies with the pinned key and that key is the last listed."""
    verifier = parse_verifier_key(verifier_key)
    try:
        text = open_note(note, verifier)
    except NoteError as exc:
        raise AuditFailure(f"the key history does not verify: {exc}") from exc
    lines = text.rstrip("\n").split("\n")
    if lines[:2] != [KEY_HISTORY_FORMAT, verifier.name] or len(lines) < 3:
        raise AuditFailure("the key history is not for this log")
    history = [_log_key(line, verifier.name) for line in lines[2:]]
    sizes = [item.from_size for item in history]
    if sizes != sorted(sizes):
        raise AuditFailure("the key history is out of order")
    if history[-1].key_id != key_id_of(verifier.public_key):
        raise AuditFailure("the key history does not end with the pinned key")
    return history


def _log_key(line: str, origin: str) -> LogKey:
    try:
        key_id, public, from_size = line.split(" ")
        key = LogKey(key_id, public_key_from_b64(public), int(from_size), origin)
    except ValueError as exc:
        raise AuditFailure(f"a key history line is malformed: {line!r}") from exc
    if key_id_of(key.public_key) != key_id:
        raise AuditFailure(f"key {key_id} in the key history has a wrong ID")
    return key


def seal_key_at(history: Sequence[LogKey], index: int) -> LogKey:
    """The ledger key that was signing when the log had `index` entries."""
    active = [item for item in history if item.from_size <= index]
    return active[-1] if active else history[0]


def _report(check: str, run: Callable[[AuditReport], None]) -> AuditReport:
    report = AuditReport(check=check, ok=True)
    try:
        run(report)
    except AuditFailure as failure:
        report.ok = False
        report.first_bad_index = failure.index
        report.reason = failure.reason
    return report


def _note_checkpoint(report: AuditReport, checkpoint: Checkpoint) -> None:
    report.size = checkpoint.size
    report.root = b64(checkpoint.root)


def audit_checkpoint(
    ledger: str | httpx.Client,
    *,
    state_file: Path | None = None,
    verifier_key: str | None = None,
) -> AuditReport:
    """Checks the latest checkpoint's signature and its consistency with the
    checkpoint remembered in the state file."""

    def run(report: AuditReport) -> None:
        reader = LedgerReader(ledger)
        checkpoint, _ = trusted_checkpoint(
            reader, state_file=state_file, verifier_key=verifier_key
        )
        _note_checkpoint(report, checkpoint)

    return _report("checkpoint", run)


def audit_checkpoints(
    ledger: str | httpx.Client,
    *,
    state_file: Path | None = None,
    verifier_key: str | None = None,
) -> AuditReport:
    """Checks every past checkpoint the log lists: each is signed by the log
    key of its time, its listed size and root are the signed ones, each is
    consistent with the one before, the last is the head, and the one this
    auditor remembers is still there, unchanged."""

    def run(report: AuditReport) -> None:
        reader = LedgerReader(ledger)
        remembered = load_state(state_file)
        head, key = trusted_checkpoint(
            reader, state_file=state_file, verifier_key=verifier_key
        )
        _note_checkpoint(report, head)
        history = log_key_history(reader.key_history(), key)
        seen: dict[int, bytes] = {}
        previous: Checkpoint | None = None
        for item in _all_checkpoints(reader):
            checkpoint = _listed_checkpoint(item, history, previous)
            if previous is not None:
                _consecutive(reader, previous, checkpoint)
            seen[checkpoint.size], previous = checkpoint.root, checkpoint
            report.checked += 1
        if previous is None or (previous.size, previous.root) != (head.size, head.root):
            raise AuditFailure("the last listed checkpoint is not the head", head.size)
        if remembered is not None and seen.get(remembered.size) != unb64(
            remembered.root
        ):
            raise AuditFailure(
                f"the remembered checkpoint of size {remembered.size} is no longer "
                "listed as it was",
                remembered.size,
            )

    return _report("checkpoints", run)


def _all_checkpoints(reader: LedgerReader) -> Iterable[dict[str, Any]]:
    after = -1
    while True:
        page = reader.checkpoints(after)
        if not page:
            return
        yield from page
        size = page[-1].get("size") if isinstance(page[-1], dict) else None
        if not isinstance(size, int) or size <= after:
            raise AuditFailure("the ledger's checkpoint list does not advance")
        after = size


def _listed_checkpoint(
    item: Any, history: Sequence[LogKey], previous: Checkpoint | None
) -> Checkpoint:
    """One listed checkpoint, verified with the key signing at its size;
    failures name the first entry it commits to beyond the previous one."""
    first = previous.size if previous else 0
    if not isinstance(item, dict) or not isinstance(item.get("size"), int):
        raise AuditFailure("a listed checkpoint is malformed", first)
    size = item["size"]
    signer = seal_key_at(history, size)
    verifier = parse_verifier_key(history_verifier(history, signer))
    try:
        checkpoint = verify_checkpoint(
            str(item.get("note")), verifier, origin=verifier.name
        )
    except NoteError as exc:
        raise AuditFailure(
            f"checkpoint of size {size} does not verify with key "
            f"{signer.key_id}: {exc}",
            first,
        ) from exc
    if checkpoint.size != size or b64(checkpoint.root) != item.get("root"):
        raise AuditFailure(
            f"checkpoint listed as size {size} signs size {checkpoint.size} and "
            "another root",
            first,
        )
    if previous is not None and size <= previous.size:
        raise AuditFailure(f"checkpoint of size {size} is out of order", first)
    return checkpoint


def history_verifier(history: Sequence[LogKey], key: LogKey) -> str:
    """The verifier key string of one of the log's keys."""
    return verifier_key_string(history[0].origin, key.public_key)


def _consecutive(reader: LedgerReader, old: Checkpoint, new: Checkpoint) -> None:
    proof = reader.consistency(old.size, new.size) if old.size else []
    if not verify_consistency(old.size, new.size, old.root, new.root, proof):
        raise AuditFailure(
            f"checkpoint {new.size} is not consistent with checkpoint {old.size}",
            old.size,
        )


# Entries and seals


def included_entry(
    reader: LedgerReader, index: int, checkpoint: Checkpoint
) -> LoggedEntry:
    """Fetches an entry and proves it is in the tree the checkpoint signs."""
    served = reader.entry(index)
    try:
        leaf = unb64(served["leaf"])
    except (KeyError, TypeError, ValueError) as exc:
        raise AuditFailure("the served leaf is not base64", index) from exc
    hashed = leaf_hash(leaf)
    if b64(hashed) != served.get("leaf_hash"):
        raise AuditFailure("the leaf bytes do not hash to the served leaf_hash", index)
    proof = reader.inclusion(index, checkpoint.size)
    if not verify_inclusion(hashed, index, checkpoint.size, proof, checkpoint.root):
        raise AuditFailure(
            f"the entry is not included in the checkpoint of size {checkpoint.size}",
            index,
        )
    return _decoded(index, hashed, leaf)


def _decoded(index: int, hashed: bytes, leaf: bytes) -> LoggedEntry:
    try:
        entry = decode_leaf(leaf)
    except RuleViolation as exc:
        raise AuditFailure(
            f"the leaf is not a valid entry: {exc.detail}", index
        ) from exc
    return LoggedEntry(index, hashed, entry["statement"], entry["signatures"])


def audit_entries(
    ledger: str | httpx.Client,
    indices: Iterable[int],
    *,
    state_file: Path | None = None,
    verifier_key: str | None = None,
) -> AuditReport:
    """Proves each named entry is included under a trusted checkpoint."""

    def run(report: AuditReport) -> None:
        reader = LedgerReader(ledger)
        checkpoint, _ = trusted_checkpoint(
            reader, state_file=state_file, verifier_key=verifier_key
        )
        _note_checkpoint(report, checkpoint)
        for index in indices:
            included_entry(reader, index, checkpoint)
            report.checked += 1

    return _report("entries", run)


def audit_seals(
    ledger_url: str | httpx.Client,
    seal_indices: Iterable[int],
    state_file: Path | None = None,
    *,
    verifier_key: str | None = None,
) -> AuditReport:
    """For each seal: its inclusion, the ledger's signature on it, and the
    inclusion, signatures and rules of every chain entry it names."""
    refs = [{"index": index} for index in seal_indices]
    return _audit_seal_refs(
        "seals", LedgerReader(ledger_url), refs, state_file, verifier_key
    )


def _audit_seal_refs(
    check: str,
    reader: LedgerReader,
    refs: Iterable[dict[str, Any]],
    state_file: Path | None,
    verifier_key: str | None,
) -> AuditReport:
    """Audits seals named by index, each optionally with the leaf hash and
    batch ID its referrer (a credit's provenance) says it has."""

    def run(report: AuditReport) -> None:
        checkpoint, key = trusted_checkpoint(
            reader, state_file=state_file, verifier_key=verifier_key
        )
        _note_checkpoint(report, checkpoint)
        keys = _RemoteKeys(reader)
        history = log_key_history(reader.key_history(), key)
        for ref in refs:
            seal = included_entry(reader, ref["index"], checkpoint)
            _matches_ref(seal, ref)
            chain = [
                included_entry(reader, item["index"], checkpoint)
                for item in _seal_refs(seal)
            ]
            verify_seal(seal, chain, history, keys.lookup(seal, *chain))
            report.checked += 1

    return _report(check, run)


def _matches_ref(seal: LoggedEntry, ref: dict[str, Any]) -> None:
    if "leaf_hash" in ref and ref["leaf_hash"] != b64(seal.leaf_hash):
        raise AuditFailure(
            "the logged seal is not the one the credit names", seal.index
        )
    if "batch_id" in ref and ref["batch_id"] != seal.statement.get("batch_id"):
        raise AuditFailure(
            f"the seal is of batch {seal.statement.get('batch_id')}, "
            f"not {ref['batch_id']}",
            seal.index,
        )


def audit_serials(
    ledger: str | httpx.Client,
    trading: str | httpx.Client,
    serials: Iterable[str],
    *,
    state_file: Path | None = None,
    verifier_key: str | None = None,
) -> AuditReport:
    """Audits every seal behind each credit serial, as trading's public
    provenance names them (batch, index, leaf hash)."""
    refs: list[dict[str, Any]] = []
    try:
        for serial in serials:
            refs.extend(_provenance_seals(trading, serial))
    except AuditFailure as failure:
        return AuditReport("serials", False, reason=failure.reason)
    return _audit_seal_refs(
        "serials", LedgerReader(ledger), refs, state_file, verifier_key
    )


def _provenance_seals(trading: str | httpx.Client, serial: str) -> list[dict]:
    reader = LedgerReader(trading)
    body = reader._json(f"/v1/credits/{serial}/provenance")
    seals = body.get("seals") if isinstance(body, dict) else None
    if not isinstance(seals, list) or not seals:
        raise AuditFailure(f"trading names no seals behind {serial}")
    for seal in seals:
        if not isinstance(seal, dict) or not isinstance(seal.get("index"), int):
            raise AuditFailure(f"trading's provenance of {serial} is malformed")
    return [
        {key: seal[key] for key in ("index", "leaf_hash", "batch_id") if key in seal}
        for seal in seals
    ]


def audit_batches(
    ledger: str | httpx.Client,
    batch_ids: Iterable[str],
    *,
    state_file: Path | None = None,
    verifier_key: str | None = None,
) -> AuditReport:
    """Audits the seal of each named batch; an unsealed batch fails."""
    reader = LedgerReader(ledger)
    refs = []
    for batch_id in batch_ids:
        try:
            seal_index = reader.batch(batch_id).get("seal_index")
        except AuditFailure as failure:
            return AuditReport("batches", False, reason=failure.reason)
        if seal_index is None:
            return AuditReport(
                "batches", False, reason=f"batch {batch_id} is not sealed"
            )
        refs.append({"index": seal_index, "batch_id": batch_id})
    return _audit_seal_refs("batches", reader, refs, state_file, verifier_key)


class _RemoteKeys:
    """Signers' keys fetched from /v1/keys/{key_id}, each checked to match
    the key ID it is filed under."""

    def __init__(self, reader: LedgerReader) -> None:
        self.reader = reader
        self.cache: dict[str, KeyInfo | None] = {}

    def lookup(self, *entries: LoggedEntry) -> dict[str, KeyInfo | None]:
        for entry in entries:
            for signature in entry.signatures:
                key_id = signature["key_id"]
                if key_id not in self.cache:
                    record = self.reader.party_key(key_id)
                    self.cache[key_id] = key_info(record, entry.index)
        return self.cache

    def check(self, entry: LoggedEntry) -> None:
        """Re-verifies an entry's signatures: a key revoked after the entry
        was logged still vouches for it; one revoked before does not."""
        keys = self.lookup(entry)
        try:
            check_logged_before_revocation(entry, keys)
            check_signatures(
                entry.statement, entry.signatures, keys, allow_revoked=True
            )
        except RuleViolation as exc:
            raise AuditFailure(f"{exc.rule}: {exc.detail}", entry.index) from exc


def key_info(record: dict[str, Any] | None, index: int | None) -> KeyInfo | None:
    """A key record as KeyInfo, refusing one whose ID is not its key's."""
    if record is None:
        return None
    try:
        public = public_key_from_b64(record["public_key"])
        info = KeyInfo(
            key_id=record["key_id"],
            public_key=public,
            party_kind=record["party_kind"],
            party_id=record["party_id"],
            kinds=tuple(record["kinds"]),
            revoked_at_size=_size_or_none(record.get("revoked_at_size")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise AuditFailure("a signer's key record is malformed", index) from exc
    if key_id_of(public) != info.key_id:
        raise AuditFailure(f"key {info.key_id} is filed under a wrong ID", index)
    return info


def _size_or_none(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("revoked_at_size is not a log size")
    return value


def _seal_refs(seal: LoggedEntry) -> list[dict[str, Any]]:
    if seal.kind != SEAL:
        raise AuditFailure(f"entry is a {seal.kind}, not a batch.seal", seal.index)
    try:
        body = seal.statement["body"]
        refs = [*body["chain"], body["trip"]]
        well_formed = all(
            isinstance(ref["index"], int) and isinstance(ref["leaf_hash"], str)
            for ref in refs
        )
    except (KeyError, TypeError) as exc:
        raise AuditFailure("the seal's chain is malformed", seal.index) from exc
    if not well_formed:
        raise AuditFailure("the seal's chain is malformed", seal.index)
    return sorted(refs, key=lambda ref: ref["index"])


def verify_seal(
    seal: LoggedEntry,
    chain: Sequence[LoggedEntry],
    history: Sequence[LogKey],
    keys: dict[str, KeyInfo | None],
) -> None:
    """Checks the ledger's signature on a seal (by the key that was signing
    at the seal's index, per the key history) and re-derives the seal body
    from the chain entries it names: links, order, signatures and masses."""
    ledger = seal_key_at(history, seal.index)
    signatures = [s for s in seal.signatures if s["key_id"] == ledger.key_id]
    if not signatures or not verify_statement(
        ledger.public_key, seal.statement, signatures[0]["signature"]
    ):
        raise AuditFailure(
            f"the seal is not signed by the log's key {ledger.key_id}, which "
            f"was signing from size {ledger.from_size}",
            seal.index,
        )
    for ref, entry in zip(_seal_refs(seal), chain, strict=True):
        if ref["leaf_hash"] != b64(entry.leaf_hash):
            raise AuditFailure(
                f"entry {entry.index} is not the one seal {seal.index} names",
                entry.index,
            )
    batch_id = seal.statement.get("batch_id")
    for entry in chain:
        if entry.statement.get("batch_id") != batch_id:
            raise AuditFailure(f"entry is not of batch {batch_id}", entry.index)
    try:
        body = check_chain(list(chain), keys)
    except RuleViolation as exc:
        raise AuditFailure(
            f"the sealed chain breaks {exc.rule}: {exc.detail}",
            _index_in(exc.detail, chain, seal.index),
        ) from exc
    if body != seal.statement["body"]:
        raise AuditFailure("the seal's body does not match its chain", seal.index)


def _index_in(detail: str, chain: Sequence[LoggedEntry], default: int) -> int:
    for entry in chain:
        if detail.startswith(f"Entry {entry.index}:"):
            return entry.index
    return default


# Offline bundles


def verify_bundle(
    bundle: dict[str, Any], *, verifier_key: str | None = None
) -> AuditReport:
    """Verifies an exported proof bundle with no network: the checkpoint's
    signature, every entry's inclusion, and the seal over its chain."""

    def run(report: AuditReport) -> None:
        key = verifier_key or bundle.get("verifier_key")
        if not isinstance(key, str):
            raise AuditFailure("the bundle has no verifier key")
        if verifier_key is None:
            report.notes.append("verifier key taken from the bundle itself")
        checkpoint = open_checkpoint(str(bundle.get("checkpoint", "")), key)
        _note_checkpoint(report, checkpoint)
        history = _bundled_history(bundle, key, report)
        entries = [_bundled_entry(item, checkpoint) for item in _items(bundle)]
        report.checked = len(entries)
        keys = {
            record.get("key_id"): key_info(record, None)
            for record in bundle.get("keys", [])
            if isinstance(record, dict)
        }
        by_index = {entry.index: entry for entry in entries}
        seals = [entry for entry in entries if entry.kind == SEAL]
        if not seals:
            raise AuditFailure("the bundle holds no seal: the batch is not sealed")
        named = {"batch_id": bundle["batch_id"]} if "batch_id" in bundle else {}
        for seal in seals:
            _matches_ref(seal, named)
        for seal in seals:
            chain = []
            for ref in _seal_refs(seal):
                if ref["index"] not in by_index:
                    raise AuditFailure(
                        f"the bundle lacks entry {ref['index']}", ref["index"]
                    )
                chain.append(by_index[ref["index"]])
            verify_seal(seal, chain, history, keys)

    return _report("bundle", run)


def _bundled_history(
    bundle: dict[str, Any], key: str, report: AuditReport
) -> list[LogKey]:
    """The bundle's signed key history; without one, the pinned key alone."""
    note = bundle.get("key_history")
    if isinstance(note, str):
        return log_key_history(note, key)
    report.notes.append("no key history in the bundle: seals need the pinned key")
    verifier = parse_verifier_key(key)
    public = verifier.public_key
    return [LogKey(key_id_of(public), public, 0, verifier.name)]


def _items(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    items = bundle.get("entries")
    if not isinstance(items, list) or not items:
        raise AuditFailure("the bundle has no entries")
    return items


def _bundled_entry(item: Any, checkpoint: Checkpoint) -> LoggedEntry:
    index = item.get("index") if isinstance(item, dict) else None
    if not isinstance(index, int):
        raise AuditFailure("a bundled entry has no index")
    try:
        leaf = unb64(item["leaf"])
        proof = [unb64(value) for value in item["inclusion"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise AuditFailure("the bundled entry is not base64", index) from exc
    hashed = leaf_hash(leaf)
    if not verify_inclusion(hashed, index, checkpoint.size, proof, checkpoint.root):
        raise AuditFailure(
            f"the entry is not included in the checkpoint of size {checkpoint.size}",
            index,
        )
    return _decoded(index, hashed, leaf)


# Full replay


def replay(
    ledger: str | httpx.Client,
    *,
    state_file: Path | None = None,
    verifier_key: str | None = None,
    page_size: int = PAGE_SIZE,
    progress: Callable[[int, int], None] | None = None,
    signatures: bool = False,
    proofs: bool = False,
) -> AuditReport:
    """Streams every entry, recomputes the root in O(log n) memory and
    compares it with the signed checkpoint. Each page's prefix is checked
    with a consistency proof, so a bad entry is found and named by index.
    With signatures, every leaf is also decoded as a valid entry and its
    signatures re-verified; with proofs, every entry's served inclusion
    proof is checked too (O(n log n) work)."""

    def run(report: AuditReport) -> None:
        reader = LedgerReader(ledger)
        checkpoint, _ = trusted_checkpoint(
            reader, state_file=state_file, verifier_key=verifier_key
        )
        _note_checkpoint(report, checkpoint)
        check = _RemoteKeys(reader).check if signatures else None
        stream = StreamingRoot()
        prefetch = not isinstance(ledger, httpx.Client)
        for start, end, rows in _pages(reader, checkpoint.size, page_size, prefetch):
            before = copy.deepcopy(stream)
            hashes = _page_hashes(rows, start, end, check)
            for hashed in hashes:
                stream.push(hashed)
            if not _prefix_consistent(reader, stream, end, checkpoint):
                bad = _locate(reader, before, hashes, checkpoint)
                raise AuditFailure(
                    "the entry differs from the one the signed checkpoint commits to",
                    bad,
                )
            if proofs:
                _check_paths(reader, hashes, start, checkpoint)
            report.checked = end
            if progress is not None:
                progress(end, checkpoint.size)

    return _report("replay", run)


def _pages(
    reader: LedgerReader, size: int, page_size: int, prefetch: bool
) -> Iterator[tuple[int, int, list[dict[str, Any]]]]:
    """The log's entries page by page; with prefetch, the next page is read
    while the caller checks this one (two pages in memory at most)."""
    bounds = [(s, min(s + page_size, size)) for s in range(0, size, page_size)]
    if not prefetch:
        for start, end in bounds:
            yield start, end, reader.entries(start, end)
        return
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(reader.entries, *bounds[0]) if bounds else None
        for number, (start, end) in enumerate(bounds):
            rows = pending.result()
            if number + 1 < len(bounds):
                pending = pool.submit(reader.entries, *bounds[number + 1])
            yield start, end, rows


def _check_paths(
    reader: LedgerReader, hashes: list[bytes], start: int, checkpoint: Checkpoint
) -> None:
    """Each entry's served inclusion proof, for leaves already known good."""
    for index, hashed in enumerate(hashes, start=start):
        proof = reader.inclusion(index, checkpoint.size)
        if not verify_inclusion(hashed, index, checkpoint.size, proof, checkpoint.root):
            raise AuditFailure(
                "the served inclusion proof does not verify, though the leaf is "
                "the one the signed root commits to: the log's stored tree "
                "nodes are damaged",
                index,
            )


def _page_hashes(
    rows: list[dict[str, Any]],
    start: int,
    end: int,
    check: Callable[[LoggedEntry], None] | None = None,
) -> list[bytes]:
    hashes = []
    for expected, row in zip(range(start, end), [*rows, None], strict=False):
        if row is None or row.get("index") != expected:
            raise AuditFailure("the entry is missing from the log", expected)
        try:
            leaf = unb64(row["leaf"])
        except (KeyError, TypeError, ValueError) as exc:
            raise AuditFailure("the served leaf is not base64", expected) from exc
        hashed = leaf_hash(leaf)
        if b64(hashed) != row.get("leaf_hash"):
            raise AuditFailure(
                "the leaf bytes do not hash to the served leaf_hash", expected
            )
        if check is not None:
            check(_decoded(expected, hashed, leaf))
        hashes.append(hashed)
    if len(rows) != end - start:
        raise AuditFailure("the log serves extra entries", end)
    return hashes


def _prefix_consistent(
    reader: LedgerReader, stream: StreamingRoot, size: int, checkpoint: Checkpoint
) -> bool:
    if size == checkpoint.size:
        return stream.root() == checkpoint.root
    proof = reader.consistency(size, checkpoint.size)
    return verify_consistency(
        size, checkpoint.size, stream.root(), checkpoint.root, proof
    )


def _locate(
    reader: LedgerReader,
    before: StreamingRoot,
    hashes: list[bytes],
    checkpoint: Checkpoint,
) -> int:
    """Bisects a page for the first entry whose prefix is inconsistent."""
    low, high = before.size, before.size + len(hashes)
    while high - low > 1:
        middle = (low + high) // 2
        prefix = copy.deepcopy(before)
        for hashed in hashes[: middle - before.size]:
            prefix.push(hashed)
        if _prefix_consistent(reader, prefix, middle, checkpoint):
            low = middle
        else:
            high = middle
    return high - 1
