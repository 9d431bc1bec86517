"""Reads sealed batches from the ledger and verifies them before they count.

Nothing here trusts the ledger's word: the checkpoint's signed note is
checked against the pinned verifier key, the seal and every entry it names
are proven included in that checkpoint's tree, and the seal's own Ed25519
signature is checked. Only then are masses, distance and coverage read.
"""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from services.trading.methodology import BatchInputs
from shared.canonical import b64, canonical_json, unb64
from shared.crypto import key_id, verify_statement
from shared.http import problem_detail
from shared.merkle import leaf_hash, verify_inclusion
from shared.note import Checkpoint, NoteError, Verifier, verify_checkpoint
from shared.problems import ServiceUnavailable, Unprocessable
from shared.timeutil import parse_utc

SEAL_KIND = "batch.seal"
DELIVERY_KIND = "custody.delivery"
PROCESSING_KIND = "custody.processing"
TRIP_KIND = "trip.summary"
# Alerts asked for a page (tracking's most), and pages read before giving up.
ALERT_PAGE_SIZE = 1000
MAX_ALERT_PAGES = 1000


class SealUnverified(Unprocessable):
    slug, title = "seal-unverified", "The sealed data does not verify"


class NotSealed(Unprocessable):
    slug, title = "not-sealed", "The batch is not sealed"


class OpenAlerts(Unprocessable):
    slug, title = "open-alerts", "The batch has alerts not resolved"


@dataclass(frozen=True)
class SealRef:
    batch_id: str
    index: int


@dataclass(frozen=True)
class SealedBatch:
    """A batch whose seal and custody chain verified against one checkpoint."""

    inputs: BatchInputs
    seal_index: int
    seal_leaf_hash: str
    sealed_at: datetime
    processed_at: datetime
    checkpoint_size: int
    checkpoint_root: str
    chain: list[dict[str, Any]]
    trip: dict[str, Any]
    alert_ids: list[str]

    def seal_ref(self) -> dict[str, Any]:
        return {
            "batch_id": self.inputs.batch_id,
            "index": self.seal_index,
            "leaf_hash": self.seal_leaf_hash,
        }


def _get(client: httpx.Client, path: str, **params: Any) -> httpx.Response:
    try:
        return client.get(path, params=params or None)
    except httpx.HTTPError as exc:
        raise ServiceUnavailable(
            f"Could not reach {client.base_url}: {type(exc).__name__}."
        ) from exc


def _json(response: httpx.Response, what: str) -> Any:
    if response.status_code >= 500:
        raise ServiceUnavailable(f"The ledger failed to serve {what}.")
    if not response.is_success:
        raise SealUnverified(
            f"The ledger refused {what}.", upstream=problem_detail(response)
        )
    try:
        return response.json()
    except ValueError as exc:
        raise SealUnverified(f"The ledger served {what} that is not JSON.") from exc


def fetch(client: httpx.Client, path: str, **params: Any) -> httpx.Response:
    """A GET to another service; unreachable is a 503 problem."""
    return _get(client, path, **params)


def fetch_json(client: httpx.Client, path: str, **params: Any) -> Any:
    """A GET whose JSON answer must be a success."""
    return _json(_get(client, path, **params), path)


def fetch_verifier_key(ledger: httpx.Client) -> str:
    """The ledger's verifier key as it serves it (GET /v1/key)."""
    response = _get(ledger, "/v1/key")
    if not response.is_success:
        raise ServiceUnavailable("The ledger did not serve its verifier key.")
    return response.text.strip()


def list_seals(ledger: httpx.Client, *, after: int | None, limit: int) -> list[SealRef]:
    """One page of seals in log order after a log index."""
    params: dict[str, Any] = {"limit": limit}
    if after is not None:
        params["after"] = after
    body = _json(_get(ledger, "/v1/seals", **params), "the seal list")
    items = _items(body, "seals")
    try:
        return [SealRef(str(item["batch_id"]), int(item["index"])) for item in items]
    except (KeyError, TypeError, ValueError) as exc:
        raise SealUnverified("The ledger's seal list is malformed.") from exc


def _items(body: Any, name: str) -> list:
    if isinstance(body, dict):
        body = body.get(name, body.get("items"))
    if not isinstance(body, list):
        raise SealUnverified(f"The {name} list is malformed.")
    return body


def read_sealed_batch(
    ledger: httpx.Client, verifier: Verifier, batch_id: str
) -> SealedBatch:
    """Fetches a batch's seal and chain and verifies all of it."""
    response = _get(ledger, f"/v1/batches/{quote(batch_id, safe='')}/seal")
    if response.status_code == 404:
        raise NotSealed(
            f"Batch {batch_id} has no seal in the ledger.",
            upstream=problem_detail(response),
        )
    body = _json(response, "the seal")
    checkpoint, index, path = _seal_proof(body, verifier)
    seal = _verified_entry(ledger, index, checkpoint, path)
    statement = seal["statement"]
    if statement.get("kind") != SEAL_KIND or statement.get("batch_id") != batch_id:
        raise SealUnverified(f"Entry {index} is not the seal of batch {batch_id}.")
    _check_ledger_signature(seal, verifier, index)
    return _read_chain(ledger, checkpoint, batch_id, index, seal)


def _seal_proof(body: Any, verifier: Verifier) -> tuple[Checkpoint, int, list[bytes]]:
    if not isinstance(body, dict):
        raise SealUnverified("The seal response is not an object.")
    note = body.get("checkpoint")
    if isinstance(note, dict):
        note = note.get("note")
    proof = body.get("proof", body.get("inclusion", {}))
    hashes = proof.get("hashes") if isinstance(proof, dict) else proof
    try:
        checkpoint = verify_checkpoint(str(note), verifier)
        index = int(body["index"])
        path = [unb64(value) for value in hashes]
    except (NoteError, KeyError, TypeError, ValueError) as exc:
        raise SealUnverified(
            f"The seal's checkpoint or proof is invalid: {exc}"
        ) from exc
    size = proof.get("size", checkpoint.size) if isinstance(proof, dict) else None
    if size not in (None, checkpoint.size):
        raise SealUnverified("The seal's proof is not for the checkpoint served.")
    return checkpoint, index, path


def _fetch_entry(ledger: httpx.Client, index: int) -> tuple[bytes, dict]:
    body = _json(_get(ledger, f"/v1/entries/{index}"), f"entry {index}")
    try:
        leaf = unb64(body["leaf"])
        entry = json.loads(leaf)
    except (KeyError, TypeError, ValueError) as exc:
        raise SealUnverified(f"Entry {index} has no readable leaf.") from exc
    if not isinstance(entry, dict) or canonical_json(entry) != leaf:
        raise SealUnverified(f"Entry {index} is not canonical JSON.")
    if not isinstance(entry.get("statement"), dict):
        raise SealUnverified(f"Entry {index} has no statement.")
    return leaf, entry


def _verified_entry(
    ledger: httpx.Client,
    index: int,
    checkpoint: Checkpoint,
    path: list[bytes] | None = None,
    expected_hash: str | None = None,
) -> dict:
    """An entry whose leaf is proven included in the checkpoint's tree."""
    leaf, entry = _fetch_entry(ledger, index)
    hashed = leaf_hash(leaf)
    if expected_hash is not None and b64(hashed) != expected_hash:
        raise SealUnverified(f"Entry {index} is not the entry the seal names.")
    if path is None:
        path = _inclusion_path(ledger, index, checkpoint.size)
    if not verify_inclusion(hashed, index, checkpoint.size, path, checkpoint.root):
        raise SealUnverified(
            f"Entry {index} is not included in the checkpoint of size "
            f"{checkpoint.size}.",
            index=index,
        )
    return entry


def _inclusion_path(ledger: httpx.Client, index: int, size: int) -> list[bytes]:
    response = _get(ledger, "/v1/proof/inclusion", index=index, size=size)
    body = _json(response, f"the inclusion proof of entry {index}")
    try:
        return [unb64(value) for value in body["hashes"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise SealUnverified(f"The inclusion proof of {index} is malformed.") from exc


def _check_ledger_signature(entry: dict, verifier: Verifier, index: int) -> None:
    wanted = key_id(verifier.public_key)
    for signature in entry.get("signatures") or []:
        if not isinstance(signature, dict) or signature.get("key_id") != wanted:
            continue
        if verify_statement(
            verifier.public_key, entry["statement"], str(signature.get("signature"))
        ):
            return
    raise SealUnverified(f"The seal at {index} is not signed by the ledger key.")


def _read_chain(
    ledger: httpx.Client, checkpoint: Checkpoint, batch_id: str, index: int, seal: dict
) -> SealedBatch:
    statement = seal["statement"]
    body = statement.get("body") or {}
    try:
        chain = [
            {
                "index": int(link["index"]),
                "leaf_hash": str(link["leaf_hash"]),
                "kind": str(link["kind"]),
            }
            for link in body["chain"]
        ]
        trip = {
            "index": int(body["trip"]["index"]),
            "leaf_hash": str(body["trip"]["leaf_hash"]),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise SealUnverified(f"The seal at {index} does not name its chain.") from exc
    by_kind: dict[str, list[dict]] = {}
    for link in [*chain, {**trip, "kind": TRIP_KIND}]:
        entry = _verified_entry(
            ledger, link["index"], checkpoint, expected_hash=link["leaf_hash"]
        )
        named = entry["statement"]
        if named.get("kind") != link["kind"] or named.get("batch_id") != batch_id:
            raise SealUnverified(f"Entry {link['index']} is not of batch {batch_id}.")
        by_kind.setdefault(link["kind"], []).append(named)
    inputs, alert_ids = _inputs(batch_id, by_kind, body, index)
    return SealedBatch(
        inputs=inputs,
        seal_index=index,
        seal_leaf_hash=b64(leaf_hash(canonical_json(seal))),
        sealed_at=_time_of(statement, index),
        processed_at=_time_of(by_kind[PROCESSING_KIND][0], index),
        checkpoint_size=checkpoint.size,
        checkpoint_root=b64(checkpoint.root),
        chain=chain,
        trip=trip,
        alert_ids=alert_ids,
    )


def _time_of(statement: dict, index: int) -> datetime:
    try:
        return parse_utc(str(statement.get("at")))
    except ValueError as exc:
        raise SealUnverified(
            f"A statement behind the seal at {index} has no UTC time."
        ) from exc


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SealUnverified(f"{what} is not a non-negative integer.")
    return value


def _inputs(
    batch_id: str, by_kind: dict[str, list[dict]], seal_body: dict, index: int
) -> tuple[BatchInputs, list[str]]:
    """Masses from delivery and processing, distance and coverage from the trip."""
    for kind in (DELIVERY_KIND, PROCESSING_KIND, TRIP_KIND):
        if len(by_kind.get(kind, [])) != 1:
            raise SealUnverified(f"The seal at {index} needs exactly one {kind}.")
    delivery, processing, trip = (
        by_kind[kind][0].get("body") or {}
        for kind in (DELIVERY_KIND, PROCESSING_KIND, TRIP_KIND)
    )
    outputs: dict[str, int] = {}
    for output in processing.get("outputs") or []:
        material = str(output.get("material"))
        outputs[material] = outputs.get(material, 0) + _count(
            output.get("kg"), f"output {material}"
        )
    inputs = BatchInputs(
        batch_id=batch_id,
        net_kg=_count(delivery.get("net_kg"), "delivery net_kg"),
        outputs=outputs,
        distance_m=_count(trip.get("distance_m"), "trip distance_m"),
        coverage_permille=_count(trip.get("coverage_permille"), "coverage_permille"),
        mass_measured=delivery.get("mass_basis") == "measured",
        vehicle_id=_vehicle_of(trip, delivery),
    )
    _match_seal(inputs, seal_body, index)
    return inputs, [str(value) for value in trip.get("alert_ids") or []]


def _vehicle_of(trip: dict, delivery: dict) -> str | None:
    """The vehicle that drove the sealed trip (the weighbridge's if unnamed)."""
    vehicle = trip.get("vehicle_id") or delivery.get("vehicle_id")
    return str(vehicle) if vehicle is not None else None


def _match_seal(inputs: BatchInputs, seal_body: dict, index: int) -> None:
    """The figures the ledger sealed must be the ones the entries carry."""
    sealed = {
        "net_kg": seal_body.get("net_kg"),
        "distance_m": seal_body.get("distance_m"),
        "coverage_permille": seal_body.get("coverage_permille"),
    }
    read = {
        "net_kg": inputs.net_kg,
        "distance_m": inputs.distance_m,
        "coverage_permille": inputs.coverage_permille,
    }
    sealed_outputs = seal_body.get("outputs")
    if isinstance(sealed_outputs, dict):
        sealed_outputs = {k: v for k, v in sealed_outputs.items() if v}
        read_outputs = {k: v for k, v in inputs.outputs.items() if v}
        if sealed_outputs != read_outputs:
            sealed["outputs"], read["outputs"] = sealed_outputs, read_outputs
    if sealed != read:
        raise SealUnverified(
            f"The seal at {index} disagrees with the entries it names."
        )
    if sum(inputs.outputs.values()) > inputs.net_kg:
        raise SealUnverified(f"The outputs of the seal at {index} exceed net mass.")


def unresolved_alerts(
    tracking: httpx.Client, batch_id: str, expected: list[str]
) -> list[str]:
    """IDs of the batch's alerts that are not resolved (tracking's word)."""
    statuses = alert_statuses(tracking, batch_id)
    open_ids = [key for key, status in statuses.items() if status != "resolved"]
    open_ids += [key for key in expected if key not in statuses]
    return sorted(set(open_ids))


def alert_statuses(tracking: httpx.Client, batch_id: str) -> dict[str, str]:
    """The status of every alert tracking lists for the batch, page by page."""
    statuses: dict[str, str] = {}
    cursor = None
    for _ in range(MAX_ALERT_PAGES):
        page, cursor = _alerts_page(tracking, batch_id, cursor)
        statuses.update(page)
        if cursor is None:
            return statuses
    raise ServiceUnavailable("The tracking service's alert pages did not end.")


def _alerts_page(
    tracking: httpx.Client, batch_id: str, cursor: str | None
) -> tuple[dict[str, str], str | None]:
    """One page of the batch's alert statuses and the cursor of the next."""
    params: dict[str, Any] = {"batch_id": batch_id, "limit": ALERT_PAGE_SIZE}
    if cursor is not None:
        params["cursor"] = cursor
    response = _get(tracking, "/v1/alerts", **params)
    if not response.is_success:
        raise ServiceUnavailable(
            "The tracking service did not list the batch's alerts.",
            upstream=problem_detail(response),
        )
    try:
        body = response.json()
        alerts = _items(body, "alerts")
        statuses = {str(alert["id"]): str(alert["status"]) for alert in alerts}
        following = body.get("next_cursor") if isinstance(body, dict) else None
        if following is not None and not isinstance(following, str):
            raise TypeError("next_cursor is not text")
    except (KeyError, TypeError, ValueError, SealUnverified) as exc:
        raise ServiceUnavailable(
            "The tracking service's alerts are malformed."
        ) from exc
    return statuses, following
