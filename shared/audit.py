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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from shared.canonical import b64, unb64
from shared.crypto import key_id as key_id_of
from shared.crypto import public_key_from_b64, verify_statement
from shared.merkle import (
    StreamingRoot,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from shared.note import Checkpoint, NoteError, parse_verifier_key, verify_checkpoint
from shared.statements import (
    SEAL,
    KeyInfo,
    LoggedEntry,
    RuleViolation,
    check_chain,
    decode_leaf,
)

PAGE_SIZE = 1000


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


class LedgerReader:
    """Reads the ledger's public paths; any failure becomes an AuditFailure."""

    def __init__(self, ledger: str | httpx.Client, timeout: float = 30.0) -> None:
        if isinstance(ledger, httpx.Client):
            self.client = ledger
        else:
            self.client = httpx.Client(base_url=ledger.rstrip("/"), timeout=timeout)

    def _get(self, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
        try:
            response = self.client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise AuditFailure(f"cannot reach the ledger at {path}: {exc}") from exc
        if response.status_code == 404:
            raise LookupError(path)
        if not response.is_success:
            raise AuditFailure(
                f"the ledger answered {response.status_code} to {path}: "
                f"{response.text[:300]}"
            )
        return response

    def _json(
        self, path: str, about: int | None = None, params: dict | None = None
    ) -> Any:
        """GETs JSON; failures name the entry index `about` when given."""
        try:
            return self._get(path, params).json()
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
        raise AuditFailure("the pinned verifier key differs from the remembered one")
    note = reader.checkpoint_note()
    checkpoint = open_checkpoint(note, key)
    if state is not None:
        _check_consistent(reader, state, checkpoint)
    save_state(
        state_file, WitnessState(key, checkpoint.size, b64(checkpoint.root), note)
    )
    return checkpoint, key


def _check_consistent(
    reader: LedgerReader, state: WitnessState, checkpoint: Checkpoint
) -> None:
    old_root = unb64(state.root)
    if checkpoint.size < state.size:
        raise AuditFailure(
            f"the log shrank: it shows size {checkpoint.size}, but size "
            f"{state.size} was seen before"
        )
    proof = reader.consistency(state.size, checkpoint.size) if state.size else []
    if not verify_consistency(
        state.size, checkpoint.size, old_root, checkpoint.root, proof
    ):
        raise AuditFailure(
            f"checkpoint {checkpoint.size} is not consistent with the "
            f"remembered checkpoint {state.size}: the log was forked or rewritten"
        )


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

    def run(report: AuditReport) -> None:
        reader = LedgerReader(ledger_url)
        checkpoint, key = trusted_checkpoint(
            reader, state_file=state_file, verifier_key=verifier_key
        )
        _note_checkpoint(report, checkpoint)
        keys = _RemoteKeys(reader)
        for index in seal_indices:
            seal = included_entry(reader, index, checkpoint)
            chain = [
                included_entry(reader, item["index"], checkpoint)
                for item in _seal_refs(seal)
            ]
            verify_seal(seal, chain, key, keys.lookup(seal, *chain))
            report.checked += 1

    return _report("seals", run)


def audit_batches(
    ledger: str | httpx.Client,
    batch_ids: Iterable[str],
    *,
    state_file: Path | None = None,
    verifier_key: str | None = None,
) -> AuditReport:
    """Audits the seal of each named batch; an unsealed batch fails."""
    reader = LedgerReader(ledger)
    indices = []
    for batch_id in batch_ids:
        try:
            seal_index = reader.batch(batch_id).get("seal_index")
        except AuditFailure as failure:
            return AuditReport("batches", False, reason=failure.reason)
        if seal_index is None:
            return AuditReport(
                "batches", False, reason=f"batch {batch_id} is not sealed"
            )
        indices.append(seal_index)
    report = audit_seals(reader.client, indices, state_file, verifier_key=verifier_key)
    report.check = "batches"
    return report


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
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise AuditFailure("a signer's key record is malformed", index) from exc
    if key_id_of(public) != info.key_id:
        raise AuditFailure(f"key {info.key_id} is filed under a wrong ID", index)
    return info


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
    verifier_key: str,
    keys: dict[str, KeyInfo | None],
) -> None:
    """Checks the ledger's signature on a seal and re-derives the seal body
    from the chain entries it names: links, order, signatures and masses."""
    ledger_public = parse_verifier_key(verifier_key).public_key
    ledger_id = key_id_of(ledger_public)
    signatures = [s for s in seal.signatures if s["key_id"] == ledger_id]
    if not signatures or not verify_statement(
        ledger_public, seal.statement, signatures[0]["signature"]
    ):
        raise AuditFailure("the seal is not signed by the log's key", seal.index)
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
        for seal in seals:
            chain = []
            for ref in _seal_refs(seal):
                if ref["index"] not in by_index:
                    raise AuditFailure(
                        f"the bundle lacks entry {ref['index']}", ref["index"]
                    )
                chain.append(by_index[ref["index"]])
            verify_seal(seal, chain, key, keys)

    return _report("bundle", run)


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
) -> AuditReport:
    """Streams every entry, recomputes the root in O(log n) memory and
    compares it with the signed checkpoint. Each page's prefix is checked
    with a consistency proof, so a bad entry is found and named by index."""

    def run(report: AuditReport) -> None:
        reader = LedgerReader(ledger)
        checkpoint, _ = trusted_checkpoint(
            reader, state_file=state_file, verifier_key=verifier_key
        )
        _note_checkpoint(report, checkpoint)
        stream = StreamingRoot()
        for start in range(0, checkpoint.size, page_size):
            end = min(start + page_size, checkpoint.size)
            before = copy.deepcopy(stream)
            hashes = _page_hashes(reader.entries(start, end), start, end)
            for hashed in hashes:
                stream.push(hashed)
            if not _prefix_consistent(reader, stream, end, checkpoint):
                bad = _locate(reader, before, hashes, checkpoint)
                raise AuditFailure(
                    "the entry differs from the one the signed checkpoint commits to",
                    bad,
                )
            report.checked = end
            if progress is not None:
                progress(end, checkpoint.size)

    return _report("replay", run)


def _page_hashes(rows: list[dict[str, Any]], start: int, end: int) -> list[bytes]:
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
        _decoded(expected, hashed, leaf)
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
