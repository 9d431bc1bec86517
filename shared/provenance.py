"""Offline verification of a credit serial's provenance bundle.

Trading serves `GET /v1/credits/{serial}/bundle`: every ledger entry behind a
serial (its issuance, each batch's quantification, seal, custody chain and
trip, and any retirement of its tonnes) with an inclusion proof against ONE
signed checkpoint. verify_credit_bundle checks all of it with no network:
the checkpoint's signature, every proof, every seal against its chain (by
shared.audit.verify_bundle), the trading key's signatures, that the seal list
is the one the issuance committed to, that each quantification names its
seal and the figures the seal holds, uses the rows of a factor table whose
digest it recorded, and recomputes to the gram, and that the issuance's own
arithmetic holds: the carry-over from the project's previous issuance, the
whole tonnes, the buffer share and the serial blocks.
"""

import argparse
import json
import re
from collections.abc import Callable, Iterable
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

from shared.audit import (
    AuditFailure,
    AuditReport,
    key_info,
    open_checkpoint,
    verify_bundle,
)
from shared.canonical import b64, canonical_json, sha256, unb64
from shared.crypto import verify_statement
from shared.merkle import leaf_hash, root_of, verify_inclusion
from shared.note import Checkpoint
from shared.statements import SEAL, KeyInfo, LoggedEntry, RuleViolation, decode_leaf

BUNDLE_FORMAT = "salvage-credit-bundle/1"
ISSUANCE = "credit.issuance"
QUANTIFICATION = "credit.quantification"
RETIREMENT = "credit.retirement"
PERMILLE = 1000
GRAMS_PER_TONNE = 1_000_000
ISSUANCE_COUNTS = (
    "carried_in_g",
    "report_total_g",
    "tonnes",
    "buffer_tonnes",
    "carried_out_g",
    "buffer_permille",
)
SERIAL_BLOCK = re.compile(r"^SALV-[A-Z0-9]+-[0-9]{4}-([0-9]+)(?:-([0-9]+))?$")


def seal_ref(batch_id: str, index: int, leaf_hash_b64: str) -> dict[str, Any]:
    """One seal as an issuance lists it."""
    return {"batch_id": batch_id, "index": index, "leaf_hash": leaf_hash_b64}


def seals_root(seals: Iterable[dict[str, Any]]) -> str:
    """RFC 6962 root (base64) over the canonical JSON of each seal, in order."""
    return b64(root_of(leaf_hash(canonical_json(seal)) for seal in seals))


def factor_table_digest(rows: dict[str, dict[str, str]]) -> str:
    """Hex SHA-256 of a whole factor table's rows in canonical JSON."""
    return sha256(canonical_json(rows)).hex()


def verify_credit_bundle(
    bundle: dict[str, Any], *, verifier_key: str | None = None
) -> AuditReport:
    """Verifies a credit bundle offline; pass the log's key to pin it."""

    def run(report: AuditReport) -> None:
        if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
            raise AuditFailure(f"this is not a {BUNDLE_FORMAT} bundle")
        key = verifier_key or bundle.get("verifier_key")
        if not isinstance(key, str):
            raise AuditFailure("the bundle has no verifier key")
        if verifier_key is None:
            report.notes.append("verifier key taken from the bundle itself")
        checkpoint = open_checkpoint(str(bundle.get("checkpoint", "")), key)
        report.size, report.root = checkpoint.size, b64(checkpoint.root)
        entries = _proven_entries(bundle, checkpoint)
        keys = _keys(bundle)
        issuance = _issuance(bundle, entries, keys)
        report.notes.append(_issued_arithmetic(bundle, entries, keys, issuance))
        seals = _committed_seals(bundle, issuance)
        total = sum(
            _verify_batch(bundle, entries, keys, key, seal, issuance.index)
            for seal in seals
        )
        if total != issuance.statement["body"].get("report_total_g"):
            raise AuditFailure(
                f"the batches add up to {total} g, not the issued report total",
                issuance.index,
            )
        report.notes.append(_monitoring_report(issuance))
        report.notes.extend(_retirements(bundle, entries, keys))
        report.checked = len(entries)
        report.notes.append(
            f"{bundle.get('serial')}: {len(seals)} sealed batch(es), {total} g"
        )

    return _report("credit-bundle", run)


def _report(check: str, run: Callable[[AuditReport], None]) -> AuditReport:
    report = AuditReport(check=check, ok=True)
    try:
        run(report)
    except AuditFailure as failure:
        report.ok, report.reason = False, failure.reason
        report.first_bad_index = failure.index
    return report


def _proven_entries(
    bundle: dict[str, Any], checkpoint: Checkpoint
) -> dict[int, LoggedEntry]:
    """Every bundled entry, once its inclusion in the checkpoint is proven."""
    items = bundle.get("entries")
    if not isinstance(items, list) or not items:
        raise AuditFailure("the bundle has no entries")
    proven: dict[int, LoggedEntry] = {}
    for item in items:
        entry = _proven(item, checkpoint)
        proven[entry.index] = entry
    return proven


def _proven(item: Any, checkpoint: Checkpoint) -> LoggedEntry:
    index = item.get("index") if isinstance(item, dict) else None
    if not isinstance(index, int) or isinstance(index, bool):
        raise AuditFailure("a bundled entry has no index")
    try:
        leaf = unb64(item["leaf"])
        proof = [unb64(value) for value in item["inclusion"]]
        entry = decode_leaf(leaf)
    except (KeyError, TypeError, ValueError) as exc:
        raise AuditFailure("a bundled entry is not readable", index) from exc
    except RuleViolation as exc:
        raise AuditFailure(f"the leaf is not an entry: {exc.detail}", index) from exc
    hashed = leaf_hash(leaf)
    if not verify_inclusion(hashed, index, checkpoint.size, proof, checkpoint.root):
        raise AuditFailure(
            f"the entry is not included in the checkpoint of size {checkpoint.size}",
            index,
        )
    return LoggedEntry(index, hashed, entry["statement"], entry["signatures"])


def _keys(bundle: dict[str, Any]) -> dict[str, KeyInfo | None]:
    records = bundle.get("keys")
    if not isinstance(records, list):
        raise AuditFailure("the bundle lists no signers' keys")
    return {
        record.get("key_id"): key_info(record, None)
        for record in records
        if isinstance(record, dict)
    }


def _signed_by_trading(entry: LoggedEntry, keys: dict[str, KeyInfo | None]) -> None:
    """The entry carries a valid signature of a trading key that was not yet
    revoked when the entry was logged."""
    for signature in entry.signatures:
        info = keys.get(signature.get("key_id"))
        if info is None or info.party_id != "trading" or entry.kind not in info.kinds:
            continue
        if info.revoked_at_size is not None and entry.index >= info.revoked_at_size:
            continue
        if verify_statement(
            info.public_key, entry.statement, str(signature.get("signature"))
        ):
            return
    raise AuditFailure(f"the {entry.kind} is not signed by trading", entry.index)


def _entry(
    entries: dict[int, LoggedEntry], index: Any, kind: str, what: str
) -> LoggedEntry:
    entry = entries.get(index) if isinstance(index, int) else None
    if entry is None:
        raise AuditFailure(f"the bundle lacks the {what}", index)
    if entry.kind != kind:
        raise AuditFailure(f"the {what} is a {entry.kind}, not a {kind}", index)
    return entry


def _issuance(
    bundle: dict[str, Any],
    entries: dict[int, LoggedEntry],
    keys: dict[str, KeyInfo | None],
) -> LoggedEntry:
    """The signed issuance statement, which must hold the bundle's serial."""
    ref = bundle.get("issuance") or {}
    issuance = _entry(entries, ref.get("index"), ISSUANCE, "issuance entry")
    _signed_by_trading(issuance, keys)
    body = issuance.statement.get("body") or {}
    span = (bundle.get("project"), bundle.get("vintage"))
    start, end = bundle.get("start"), bundle.get("end")
    if (
        span != (body.get("project"), body.get("vintage"))
        or not isinstance(start, int)
        or not isinstance(end, int)
        or not isinstance(body.get("serial_start"), int)
        or not body["serial_start"] <= start <= end <= body.get("serial_end", -1)
    ):
        raise AuditFailure(
            f"the issuance does not hold {bundle.get('serial')}", issuance.index
        )
    return issuance


def _issued_arithmetic(
    bundle: dict[str, Any],
    entries: dict[int, LoggedEntry],
    keys: dict[str, KeyInfo | None],
    issuance: LoggedEntry,
) -> str:
    """The issuance's carry-over, tonnes, buffer and serial blocks add up."""
    body = issuance.statement["body"]
    for name in ISSUANCE_COUNTS:
        if not _is_int(body.get(name)):
            raise AuditFailure(
                f"the issuance does not record {name} as an integer", issuance.index
            )
    _check_carried_in(bundle, entries, keys, issuance)
    available = body["carried_in_g"] + body["report_total_g"]
    tonnes = max(available, 0) // GRAMS_PER_TONNE
    if body["tonnes"] != tonnes:
        raise AuditFailure(
            f"the issuance issues {body['tonnes']} t, but {body['carried_in_g']} g "
            f"carried in and {body['report_total_g']} g reported make {tonnes} "
            "whole t",
            issuance.index,
        )
    carried_out = available - tonnes * GRAMS_PER_TONNE
    if body["carried_out_g"] != carried_out:
        raise AuditFailure(
            f"the issuance carries out {body['carried_out_g']} g, not {carried_out} g",
            issuance.index,
        )
    buffer_t = -(-tonnes * body["buffer_permille"] // PERMILLE)
    if body["buffer_tonnes"] != buffer_t:
        raise AuditFailure(
            f"the issuance holds back {body['buffer_tonnes']} buffer t, but "
            f"{body['buffer_permille']} per mille of {tonnes} t, rounded up, "
            f"is {buffer_t} t",
            issuance.index,
        )
    _check_serial_blocks(issuance)
    return (
        f"issued {tonnes} t from {body['carried_in_g']} g carried in and "
        f"{body['report_total_g']} g reported, {buffer_t} t to the buffer, "
        f"{carried_out} g carried out"
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_carried_in(
    bundle: dict[str, Any],
    entries: dict[int, LoggedEntry],
    keys: dict[str, KeyInfo | None],
    issuance: LoggedEntry,
) -> None:
    """The carry-over is what the project's previous issuance carried out; the
    project's first issuance carries in nothing and starts at serial 1."""
    body = issuance.statement["body"]
    previous_id = body.get("previous_issuance_id")
    if previous_id is None:
        if body["carried_in_g"] != 0:
            raise AuditFailure(
                f"the project's first issuance carries in {body['carried_in_g']} g; "
                "a first issuance carries in 0 g",
                issuance.index,
            )
        if body["tonnes"] and body.get("serial_start") != 1:
            raise AuditFailure(
                "the project's first issuance does not start at serial 1",
                issuance.index,
            )
        return
    ref = bundle.get("previous_issuance") or {}
    previous = _entry(entries, ref.get("index"), ISSUANCE, "previous issuance entry")
    _signed_by_trading(previous, keys)
    before = previous.statement.get("body") or {}
    if (
        before.get("issuance_id") != previous_id
        or before.get("project") != body.get("project")
        or previous.index >= issuance.index
    ):
        raise AuditFailure(
            f"the bundled previous issuance is not {previous_id} of the project",
            previous.index,
        )
    if body["carried_in_g"] != before.get("carried_out_g"):
        raise AuditFailure(
            f"the issuance carries in {body['carried_in_g']} g, but the previous "
            f"issuance {previous_id} carried out {before.get('carried_out_g')} g",
            issuance.index,
        )
    last = before.get("serial_end")
    if body["tonnes"] and _is_int(last) and body.get("serial_start") != last + 1:
        raise AuditFailure(
            f"the issuance's serials do not follow the previous issuance's {last}",
            issuance.index,
        )


def _check_serial_blocks(issuance: LoggedEntry) -> None:
    """The serial range holds the tonnes issued, and the blocks tile it with
    the buffer's share in buffer blocks."""
    body = issuance.statement["body"]
    start, end, tonnes = (
        body.get("serial_start"),
        body.get("serial_end"),
        body["tonnes"],
    )
    if tonnes == 0:
        if start is not None or end is not None or body.get("blocks"):
            raise AuditFailure("an issuance of 0 t holds serials", issuance.index)
        return
    if not _is_int(start) or not _is_int(end) or end - start + 1 != tonnes:
        raise AuditFailure(
            f"the serial range {start} to {end} does not hold the {tonnes} t issued",
            issuance.index,
        )
    prefix = f"SALV-{body.get('project')}-{body.get('vintage')}-"
    expected, buffered = start, 0
    for block in body.get("blocks") or []:
        serial = str(block.get("serial")) if isinstance(block, dict) else ""
        match = SERIAL_BLOCK.match(serial)
        first = int(match[1]) if match else None
        last = int(match[2] or match[1]) if match else None
        if (
            match is None
            or not serial.startswith(prefix)
            or first != expected
            or last < first
            or block.get("quantity_t") != last - first + 1
        ):
            raise AuditFailure(
                f"the serial block {serial or '?'} does not continue the issuance's "
                f"range at {expected}",
                issuance.index,
            )
        if block.get("status") == "buffer":
            buffered += last - first + 1
        expected = last + 1
    if expected != end + 1:
        raise AuditFailure(
            f"the serial blocks end at {expected - 1}, not at {end}", issuance.index
        )
    if buffered != body["buffer_tonnes"]:
        raise AuditFailure(
            f"the buffer blocks hold {buffered} t, not the {body['buffer_tonnes']} "
            "buffer t issued",
            issuance.index,
        )


def _monitoring_report(issuance: LoggedEntry) -> str:
    """A note on the monitoring report and verifier the signed issuance names."""
    body = issuance.statement["body"]
    report = body.get("report") or {}
    return (
        f"issued on monitoring report {body.get('report_id')} "
        f"({report.get('period_start')} to {report.get('period_end')}), "
        f"approved by {report.get('verified_by')} at {report.get('verified_at')}"
    )


def _committed_seals(
    bundle: dict[str, Any], issuance: LoggedEntry
) -> list[dict[str, Any]]:
    """The bundle's seal list, once it hashes to the root the issuance signed."""
    seals = bundle.get("seals")
    body = issuance.statement["body"]
    if not isinstance(seals, list) or not seals:
        raise AuditFailure("the bundle lists no seals", issuance.index)
    if seals_root(seals) != body.get("seals_root") or len(seals) != body.get(
        "seal_count"
    ):
        raise AuditFailure(
            "the seal list is not the one the issuance committed to", issuance.index
        )
    return seals


def _verify_batch(
    bundle: dict[str, Any],
    entries: dict[int, LoggedEntry],
    keys: dict[str, KeyInfo | None],
    verifier_key: str,
    seal: dict[str, Any],
    issuance_index: int,
) -> int:
    """Checks one batch's seal, chain and quantification; returns its grams."""
    if not isinstance(seal, dict):
        raise AuditFailure("a listed seal is malformed", issuance_index)
    sealed = _entry(entries, seal.get("index"), SEAL, f"seal of {seal.get('batch_id')}")
    if b64(sealed.leaf_hash) != seal.get("leaf_hash") or sealed.statement.get(
        "batch_id"
    ) != seal.get("batch_id"):
        raise AuditFailure("the seal is not the one the issuance lists", sealed.index)
    batch = [
        e for e in entries.values() if e.statement.get("batch_id") == seal["batch_id"]
    ]
    _check_seal_chain(bundle, batch, verifier_key)
    counted = [e for e in batch if e.kind == QUANTIFICATION]
    if len(counted) != 1:
        raise AuditFailure(
            f"batch {seal['batch_id']} is quantified {len(counted)} times in the "
            "bundle; it must be exactly once",
            sealed.index,
        )
    quantification = counted[0]
    if quantification.index > issuance_index:
        raise AuditFailure(
            "the quantification follows the issuance", quantification.index
        )
    _signed_by_trading(quantification, keys)
    _check_factor_rows(bundle, quantification)
    return check_quantification(quantification, sealed)


def _check_factor_rows(bundle: dict[str, Any], quantification: LoggedEntry) -> None:
    """The factor rows the quantification used are those of the table whose
    digest it recorded, and the bundled table has that digest."""
    body = quantification.statement.get("body") or {}
    version, digest = body.get("factor_version"), body.get("factor_table_sha256")
    if not isinstance(digest, str):
        raise AuditFailure(
            f"the quantification records no digest of factor table {version}",
            quantification.index,
        )
    table = (bundle.get("factor_tables") or {}).get(version)
    if not isinstance(table, dict):
        raise AuditFailure(
            f"the bundle lacks factor table {version}", quantification.index
        )
    if factor_table_digest(table) != digest:
        raise AuditFailure(
            f"the bundled factor table {version} is not the one the quantification "
            f"used (SHA-256 {digest})",
            quantification.index,
        )
    used = (body.get("result") or {}).get("factors") or {}
    for key, row in used.items():
        known = table.get(key) or {}
        if not isinstance(row, dict) or any(
            row.get(name) != known.get(name) for name in ("value", "unit", "source")
        ):
            raise AuditFailure(
                f"the quantification's factor {key} is not the row of table {version}",
                quantification.index,
            )


def _check_seal_chain(
    bundle: dict[str, Any], batch: list[LoggedEntry], verifier_key: str
) -> None:
    """The seal over its custody chain and trip, by the ledger bundle check."""
    items = [
        item
        for item in bundle["entries"]
        if item["index"] in {entry.index for entry in batch}
    ]
    checked = verify_bundle(
        {
            "checkpoint": bundle["checkpoint"],
            "entries": items,
            "keys": bundle.get("keys", []),
        },
        verifier_key=verifier_key,
    )
    if not checked.ok:
        raise AuditFailure(str(checked.reason), checked.first_bad_index)


def check_quantification(quantification: LoggedEntry, seal: LoggedEntry) -> int:
    """The quantification names the seal, uses its figures and recomputes."""
    body = quantification.statement.get("body") or {}
    inputs, result = body.get("inputs") or {}, body.get("result") or {}
    named = body.get("seal") or {}
    if named != {"index": seal.index, "leaf_hash": b64(seal.leaf_hash)}:
        raise AuditFailure(
            "the quantification names another seal", quantification.index
        )
    sealed = seal.statement.get("body") or {}
    for name in ("net_kg", "distance_m", "coverage_permille"):
        if inputs.get(name) != sealed.get(name):
            raise AuditFailure(
                f"the quantification's {name} is not the sealed one",
                quantification.index,
            )
    outputs = {k: v for k, v in (sealed.get("outputs") or {}).items() if v}
    if {k: v for k, v in (inputs.get("outputs") or {}).items() if v} != outputs:
        raise AuditFailure(
            "the quantification's outputs are not the sealed ones",
            quantification.index,
        )
    try:
        grams = recompute(inputs, body.get("policy") or {}, result.get("factors") or {})
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise AuditFailure(
            f"the quantification cannot be recomputed: {exc!r}", quantification.index
        ) from exc
    if grams != (result.get("net_g"), result.get("creditable_g")):
        raise AuditFailure(
            f"the quantification recomputes to {grams[1]} g, not "
            f"{result.get('creditable_g')} g",
            quantification.index,
        )
    return grams[1]


def recompute(
    inputs: dict[str, Any], policy: dict[str, Any], factors: dict[str, Any]
) -> tuple[int, int]:
    """(net_g, creditable_g) from the inputs, policy and factor rows recorded."""

    def factor(key: str) -> Decimal:
        return Decimal(str(factors[key]["value"]))

    def rounded(value: Decimal, mode: str) -> int:
        return int(value.to_integral_value(rounding=mode))

    avoided = sum(
        rounded(Decimal(kg) * factor(f"avoided.{material}"), ROUND_FLOOR)
        for material, kg in inputs["outputs"].items()
    )
    net_kg, distance_m = inputs["net_kg"], inputs["distance_m"]
    transport_factor = factor(f"transport.{policy['truck_class']}")
    deductions = (
        Decimal(distance_m * net_kg) * transport_factor / 1000,
        Decimal(net_kg) * factor("plant.processing"),
        Decimal(max(avoided, 0)) * factor("leakage.share_of_avoided"),
    )
    net = avoided - sum(rounded(term, ROUND_CEILING) for term in deductions)
    discount = 0
    if inputs["coverage_permille"] < policy["coverage_threshold_permille"]:
        discount += policy["low_coverage_discount_permille"]
    if inputs["mass_basis"] != "measured":
        discount += policy["estimated_mass_discount_permille"]
    discount = min(discount, PERMILLE)
    creditable = net * (PERMILLE - discount) // PERMILLE if net > 0 else net
    return net, creditable


def _retirements(
    bundle: dict[str, Any],
    entries: dict[int, LoggedEntry],
    keys: dict[str, KeyInfo | None],
) -> list[str]:
    """A note per signed retirement the bundle carries for the serial."""
    notes = []
    for ref in bundle.get("retirements") or []:
        index = ref.get("index") if isinstance(ref, dict) else None
        retirement = _entry(entries, index, RETIREMENT, "retirement entry")
        _signed_by_trading(retirement, keys)
        body = retirement.statement.get("body") or {}
        if not _overlaps(body.get("serials"), bundle["start"], bundle["end"]):
            raise AuditFailure(
                "the retirement holds none of the serial's tonnes", retirement.index
            )
        notes.append(
            f"retired {body.get('quantity_t')} t for {body.get('beneficiary')!r}: "
            f"{body.get('purpose')} (entry {retirement.index})"
        )
    return notes


def _overlaps(serials: Any, start: int, end: int) -> bool:
    """Whether any serial block in the list shares a tonne with start..end."""
    for serial in serials if isinstance(serials, list) else []:
        match = SERIAL_BLOCK.match(str(serial))
        if match is None:
            continue
        first = int(match[1])
        last = int(match[2]) if match[2] else first
        if first <= end and start <= last:
            return True
    return False


def main(argv: list[str] | None = None) -> int:
    """python -m shared.provenance FILE [--verifier-key KEY]: exit 0 on PASS."""
    parser = argparse.ArgumentParser(
        prog="python -m shared.provenance",
        description="Verify a credit serial's provenance bundle offline.",
    )
    parser.add_argument("bundle", type=Path, help="the downloaded bundle (JSON)")
    parser.add_argument("--verifier-key", help="the log's key, to pin it")
    args = parser.parse_args(argv)
    try:
        bundle = json.loads(args.bundle.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"FAIL  cannot read {args.bundle}: {exc}")
        return 2
    report = verify_credit_bundle(bundle, verifier_key=args.verifier_key)
    print(f"{report.verdict}  credit-bundle {bundle.get('serial', '?')}")
    print(f"      checkpoint size {report.size}, {report.checked} entries proven")
    for note in report.notes:
        print(f"      {note}")
    if not report.ok:
        print(f"      at index {report.first_bad_index}: {report.reason}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
