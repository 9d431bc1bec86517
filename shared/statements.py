"""The rules of ledger statements, applied by the ledger when it appends or
seals and by auditors when they re-check a sealed chain.

Each rule that fails raises RuleViolation with a slug naming the rule; the
ledger turns it into a problem+json refusal and an auditor into a verdict.
"""

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shared.canonical import b64, canonical_json, unb64
from shared.crypto import verify_statement
from shared.timeutil import parse_utc

PICKUP = "custody.pickup"
DELIVERY = "custody.delivery"
PROCESSING = "custody.processing"
TRIP = "trip.summary"
SEAL = "batch.seal"
CUSTODY_KINDS = (PICKUP, DELIVERY, PROCESSING)
CREDIT_KINDS = (
    "credit.quantification",
    "credit.issuance",
    "credit.transfer",
    "credit.retirement",
)
KINDS = (*CUSTODY_KINDS, TRIP, SEAL, *CREDIT_KINDS)
SEAL_NEEDS = (*CUSTODY_KINDS, TRIP)
BATCH_KINDS = (*CUSTODY_KINDS, TRIP, SEAL, "credit.quantification")
PARTY_KINDS = ("device", "property_manager", "hauler", "plant", "service")
MATERIALS = (
    "concrete_mortar",
    "brick_tile",
    "wood",
    "plastics",
    "glass",
    "metals",
    "gypsum",
    "residue_landfill",
)
MAX_ID_LENGTH = 200


class RuleViolation(ValueError):
    """A statement, signature or chain that breaks a named rule."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(detail)
        self.rule = rule
        self.detail = detail


@dataclass(frozen=True)
class Signer:
    """A signature a kind requires: a party kind and whose party it must be."""

    party_kind: str
    body_field: str | None = None
    party_id: str | None = None

    def expected_party(self, body: Mapping[str, Any]) -> Any:
        return body.get(self.body_field) if self.body_field else self.party_id


REQUIRED_SIGNERS: dict[str, tuple[Signer, ...]] = {
    PICKUP: (
        Signer("device", body_field="device_id"),
        Signer("property_manager", body_field="property_manager_id"),
    ),
    DELIVERY: (Signer("plant", body_field="plant_id"),),
    PROCESSING: (Signer("plant", body_field="plant_id"),),
    TRIP: (Signer("service", party_id="tracking"),),
    SEAL: (Signer("service", party_id="ledger"),),
    **{kind: (Signer("service", party_id="trading"),) for kind in CREDIT_KINDS},
}

BODY_FIELDS: dict[str, tuple[str, ...]] = {
    PICKUP: (
        "request_id",
        "community_id",
        "property_manager_id",
        "hauler_id",
        "vehicle_id",
        "device_id",
        "declared_volume_l",
        "estimated_mass_kg",
        "mass_basis",
        "materials",
        "photo_sha256",
    ),
    DELIVERY: (
        "plant_id",
        "ticket_no",
        "vehicle_id",
        "gross_kg",
        "tare_kg",
        "net_kg",
        "mass_basis",
    ),
    PROCESSING: ("plant_id", "input_net_kg", "outputs"),
    TRIP: (
        "device_id",
        "vehicle_id",
        "start",
        "end",
        "distance_m",
        "duration_s",
        "point_count",
        "coverage_permille",
        "points_sha256",
        "stops",
        "alert_ids",
    ),
    SEAL: ("chain", "trip", "net_kg", "outputs", "distance_m", "coverage_permille"),
}

COUNT_FIELDS: dict[str, tuple[str, ...]] = {
    PICKUP: ("declared_volume_l", "estimated_mass_kg"),
    DELIVERY: ("gross_kg", "tare_kg", "net_kg"),
    PROCESSING: ("input_net_kg",),
    TRIP: ("distance_m", "duration_s", "point_count", "coverage_permille"),
    SEAL: ("net_kg", "distance_m", "coverage_permille"),
}

MASS_BASIS = {PICKUP: "estimated", DELIVERY: "measured"}


@dataclass(frozen=True)
class KeyInfo:
    """What the ledger knows about a party key."""

    key_id: str
    public_key: Ed25519PublicKey
    party_kind: str
    party_id: str
    kinds: tuple[str, ...]
    revoked: bool = False
    # The log size when the key was revoked: it vouches for entries below it.
    revoked_at_size: int | None = None


@dataclass(frozen=True)
class LoggedEntry:
    """An entry as it sits in the log: its index, leaf hash and content."""

    index: int
    leaf_hash: bytes
    statement: dict[str, Any]
    signatures: list[dict[str, Any]]

    @property
    def kind(self) -> str:
        return self.statement["kind"]


def is_count(value: Any) -> bool:
    """A non-negative integer (booleans are not counts)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def decode_leaf(leaf: bytes) -> dict[str, Any]:
    """Parses leaf bytes as an entry; they must be its canonical JSON."""
    try:
        entry = json.loads(leaf.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RuleViolation("leaf-not-json", "The leaf is not UTF-8 JSON.") from exc
    if not isinstance(entry, dict) or canonical_json(entry) != leaf:
        raise RuleViolation(
            "leaf-not-canonical", "The leaf is not the canonical JSON of an entry."
        )
    check_entry_shape(entry)
    return entry


def check_entry_shape(entry: Any) -> None:
    """An entry is exactly {statement, signatures} with a valid statement."""
    if not isinstance(entry, dict) or set(entry) != {"statement", "signatures"}:
        raise RuleViolation(
            "entry-malformed", "An entry has exactly 'statement' and 'signatures'."
        )
    signatures = entry["signatures"]
    if not isinstance(signatures, list) or not all(
        isinstance(item, dict)
        and set(item) == {"key_id", "signature"}
        and all(isinstance(value, str) for value in item.values())
        for item in signatures
    ):
        raise RuleViolation(
            "entry-malformed",
            "'signatures' is a list of {key_id, signature} string pairs.",
        )
    check_statement(entry["statement"])


def check_statement(statement: Any) -> None:
    """Checks the common fields of a statement and the body of its kind."""
    if not isinstance(statement, dict):
        raise RuleViolation("statement-malformed", "The statement is not an object.")
    if statement.get("v") != 1 or isinstance(statement.get("v"), bool):
        raise RuleViolation("statement-version", "The statement's 'v' must be 1.")
    kind = statement.get("kind")
    if kind not in KINDS:
        raise RuleViolation("unknown-kind", f"Statement kind {kind!r} is unknown.")
    _check_batch_id(kind, statement.get("batch_id"))
    _check_at(statement.get("at"))
    _check_prev(kind, statement)
    body = statement.get("body")
    if not isinstance(body, dict):
        raise RuleViolation("body-malformed", "The statement's 'body' is an object.")
    check_body(kind, body)


def _check_batch_id(kind: str, batch_id: Any) -> None:
    if batch_id is None and kind not in BATCH_KINDS:
        return
    if not isinstance(batch_id, str) or not 1 <= len(batch_id) <= MAX_ID_LENGTH:
        raise RuleViolation(
            "batch-id-invalid",
            f"A {kind} statement names its batch in 'batch_id' "
            f"(1 to {MAX_ID_LENGTH} characters).",
        )


def _check_at(at: Any) -> None:
    try:
        parse_utc(at)
    except (TypeError, ValueError, AttributeError) as exc:
        raise RuleViolation(
            "time-invalid", "'at' must be an RFC 3339 time with a UTC offset."
        ) from exc


def _check_prev(kind: str, statement: dict[str, Any]) -> None:
    prev = statement.get("prev")
    if kind not in CUSTODY_KINDS:
        if prev is not None:
            raise RuleViolation(
                "prev-not-allowed", f"A {kind} statement carries no 'prev' link."
            )
        return
    if "prev" not in statement:
        raise RuleViolation(
            "prev-missing", "A custody statement carries 'prev' (null for the first)."
        )
    if prev is not None and not _is_hash_b64(prev):
        raise RuleViolation("prev-invalid", "'prev' is the base64 of a SHA-256 hash.")


def _is_hash_b64(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return len(unb64(value)) == 32
    except ValueError:
        return False


def check_body(kind: str, body: dict[str, Any]) -> None:
    """Checks the fields the contract names for a kind's body."""
    missing = [name for name in BODY_FIELDS.get(kind, ()) if name not in body]
    if missing:
        raise RuleViolation(
            "body-field-missing",
            f"A {kind} body needs {', '.join(missing)}.",
        )
    for name in COUNT_FIELDS.get(kind, ()):
        if not is_count(body[name]):
            raise RuleViolation(
                "body-field-invalid", f"'{name}' is a non-negative integer."
            )
    basis = MASS_BASIS.get(kind)
    if basis is not None and body["mass_basis"] != basis:
        raise RuleViolation(
            "body-field-invalid", f"A {kind} body has mass_basis '{basis}'."
        )
    if kind == DELIVERY and body["net_kg"] != body["gross_kg"] - body["tare_kg"]:
        raise RuleViolation(
            "net-mass-mismatch",
            f"net_kg {body['net_kg']} is not gross_kg {body['gross_kg']} "
            f"minus tare_kg {body['tare_kg']}.",
        )
    if kind == PROCESSING:
        _check_outputs(body["outputs"])


def _check_outputs(outputs: Any) -> None:
    if not isinstance(outputs, list) or not outputs:
        raise RuleViolation(
            "outputs-invalid", "'outputs' is a non-empty list of {material, ewc, kg}."
        )
    for output in outputs:
        if not isinstance(output, dict) or not {"material", "kg"} <= set(output):
            raise RuleViolation(
                "outputs-invalid", "Each output has 'material', 'ewc' and 'kg'."
            )
        if output["material"] not in MATERIALS:
            raise RuleViolation(
                "outputs-invalid", f"Material {output['material']!r} is not known."
            )
        if not is_count(output["kg"]):
            raise RuleViolation("outputs-invalid", "An output's 'kg' is an integer.")


def check_logged_before_revocation(
    entry: "LoggedEntry", keys: Mapping[str, KeyInfo | None]
) -> None:
    """A key revoked when the log had N entries vouches only for entries
    logged below index N."""
    for signature in entry.signatures:
        key = keys.get(signature.get("key_id")) if isinstance(signature, dict) else None
        limit = key.revoked_at_size if key is not None else None
        if limit is not None and entry.index >= limit:
            raise RuleViolation(
                "key-revoked",
                f"Key {key.key_id} signs entry {entry.index} but was revoked "
                f"when the log had {limit} entries.",
            )


def check_signatures(
    statement: dict[str, Any],
    signatures: Sequence[Mapping[str, Any]],
    keys: Mapping[str, KeyInfo | None],
    *,
    allow_revoked: bool = False,
) -> None:
    """Every signature is valid and by a key allowed to sign this kind, and
    each party the kind requires has signed. Revoked keys are refused unless
    allow_revoked (re-checking entries logged before the revocation)."""
    kind = statement["kind"]
    if not signatures:
        raise RuleViolation("signature-missing", "The entry carries no signature.")
    seen: set[str] = set()
    signers: list[KeyInfo] = []
    for signature in signatures:
        key_id = signature["key_id"]
        if key_id in seen:
            raise RuleViolation(
                "signature-duplicate", f"Key {key_id} signs the entry twice."
            )
        seen.add(key_id)
        signers.append(
            _check_one(statement, signature, keys.get(key_id), allow_revoked)
        )
    _check_required_signers(kind, statement["body"], signers)


def _check_one(
    statement: dict[str, Any],
    signature: Mapping[str, Any],
    key: KeyInfo | None,
    allow_revoked: bool,
) -> KeyInfo:
    key_id, kind = signature["key_id"], statement["kind"]
    if key is None:
        raise RuleViolation("unknown-key", f"Key {key_id} is not registered.")
    if key.revoked and not allow_revoked:
        raise RuleViolation("key-revoked", f"Key {key_id} has been revoked.")
    if kind not in key.kinds:
        raise RuleViolation(
            "kind-not-allowed", f"Key {key_id} may not sign {kind} statements."
        )
    if not verify_statement(key.public_key, statement, signature["signature"]):
        raise RuleViolation(
            "signature-invalid", f"The signature by key {key_id} does not verify."
        )
    return key


def _check_required_signers(
    kind: str, body: Mapping[str, Any], signers: Sequence[KeyInfo]
) -> None:
    for required in REQUIRED_SIGNERS.get(kind, ()):
        expected = required.expected_party(body)
        of_kind = [key for key in signers if key.party_kind == required.party_kind]
        if not of_kind:
            raise RuleViolation(
                "signer-missing",
                f"A {kind} statement needs a signature by a {required.party_kind} key.",
            )
        if not any(key.party_id == expected for key in of_kind):
            where = f"body.{required.body_field}" if required.body_field else "it"
            raise RuleViolation(
                "party-mismatch",
                f"The {required.party_kind} key that signed belongs to "
                f"{of_kind[0].party_id!r}, but {where} names {expected!r}.",
            )


def check_next(statement: dict[str, Any], history: Sequence[LoggedEntry]) -> None:
    """Checks a statement against the batch's entries already in the log:
    the custody link and order, one trip summary, nothing after the seal."""
    kind = statement["kind"]
    kinds = [entry.kind for entry in history]
    if SEAL in kinds and kind != SEAL and kind not in CREDIT_KINDS:
        raise RuleViolation("batch-sealed", "The batch is already sealed.")
    if kind == TRIP and TRIP in kinds:
        raise RuleViolation(
            "trip-duplicate", "The batch already has a trip summary in the log."
        )
    if kind not in CUSTODY_KINDS:
        return
    custody = [entry for entry in history if entry.kind in CUSTODY_KINDS]
    expected_prev = b64(custody[-1].leaf_hash) if custody else None
    if statement["prev"] != expected_prev:
        raise RuleViolation(
            "prev-mismatch",
            f"'prev' must be {expected_prev!r}, the leaf hash of the batch's "
            "previous custody entry"
            + (f" (index {custody[-1].index})." if custody else "."),
        )
    _check_order(kind, [entry.kind for entry in custody])


def _check_order(kind: str, before: Sequence[str]) -> None:
    if kind == PICKUP and (DELIVERY in before or PROCESSING in before):
        raise RuleViolation(
            "order-violation", "A pickup cannot follow the batch's delivery."
        )
    if kind == DELIVERY and (PICKUP not in before or DELIVERY in before):
        raise RuleViolation(
            "order-violation",
            "A delivery follows at least one pickup, and comes once.",
        )
    if kind == PROCESSING and (DELIVERY not in before or PROCESSING in before):
        raise RuleViolation(
            "order-violation",
            "A processing result follows the delivery, and comes once.",
        )


def missing_for_seal(kinds: Iterable[str]) -> list[str]:
    """What a batch with entries of these kinds lacks before its seal."""
    present = set(kinds)
    return [kind for kind in SEAL_NEEDS if kind not in present]


def check_chain(
    history: Sequence[LoggedEntry], keys: Mapping[str, KeyInfo | None]
) -> dict[str, Any]:
    """Re-checks a batch's whole chain and returns the seal body it earns."""
    missing = missing_for_seal(entry.kind for entry in history)
    if missing:
        raise RuleViolation(
            "chain-incomplete", f"The batch lacks {', '.join(missing)}."
        )
    checked: list[LoggedEntry] = []
    for entry in history:
        if entry.kind == SEAL:
            continue
        check_statement(entry.statement)
        try:
            check_logged_before_revocation(entry, keys)
            check_signatures(
                entry.statement, entry.signatures, keys, allow_revoked=True
            )
            check_next(entry.statement, checked)
        except RuleViolation as exc:
            exc.detail = f"Entry {entry.index}: {exc.detail}"
            raise
        checked.append(entry)
    return _seal_body(checked)


def _seal_body(history: Sequence[LoggedEntry]) -> dict[str, Any]:
    custody = [entry for entry in history if entry.kind in CUSTODY_KINDS]
    trip = next(entry for entry in history if entry.kind == TRIP)
    delivery = next(entry for entry in custody if entry.kind == DELIVERY)
    processing = next(entry for entry in custody if entry.kind == PROCESSING)
    net_kg = delivery.statement["body"]["net_kg"]
    input_kg = processing.statement["body"]["input_net_kg"]
    if input_kg != net_kg:
        raise RuleViolation(
            "input-mismatch",
            f"Processing input_net_kg {input_kg} is not the weighed net_kg "
            f"{net_kg} (entry {processing.index}).",
        )
    outputs: dict[str, int] = {}
    for output in processing.statement["body"]["outputs"]:
        outputs[output["material"]] = outputs.get(output["material"], 0) + output["kg"]
    if sum(outputs.values()) > net_kg:
        raise RuleViolation(
            "outputs-exceed-net",
            f"Outputs total {sum(outputs.values())} kg, more than the weighed "
            f"net {net_kg} kg (entry {processing.index}).",
        )
    trip_body = trip.statement["body"]
    return {
        "chain": [
            {"index": e.index, "leaf_hash": b64(e.leaf_hash), "kind": e.kind}
            for e in custody
        ],
        "trip": {"index": trip.index, "leaf_hash": b64(trip.leaf_hash)},
        "net_kg": net_kg,
        "outputs": dict(sorted(outputs.items())),
        "distance_m": trip_body["distance_m"],
        "coverage_permille": trip_body["coverage_permille"],
    }
