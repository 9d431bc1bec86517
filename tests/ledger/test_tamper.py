"""The tamper sweep: rows of the ledger's database (entries, nodes,
checkpoints) are changed, deleted, swapped and inserted behind its back,
and the full audit catches every one and names the first bad index."""

import json

import pytest
from sqlalchemy import create_engine, text

from shared.audit import (
    AuditReport,
    audit_checkpoint,
    audit_checkpoints,
    replay,
)
from shared.canonical import canonical_json
from shared.crypto import generate_key
from shared.db import normalize_url
from shared.merkle import leaf_hash, root_of
from shared.note import Checkpoint, sign_checkpoint
from tests.ledger.helpers import ORIGIN

BATCHES = ("B1", "B2", "B3")


def full_audit(client, state) -> AuditReport:
    """Replay with signatures and every proof, then every checkpoint."""
    report = replay(client, state_file=state, signatures=True, proofs=True)
    if report.ok:
        report = audit_checkpoints(client, state_file=state)
    return report


def run_sql(url: str, *statements: tuple[str, dict]) -> None:
    engine = create_engine(normalize_url(url))
    with engine.begin() as connection:
        for statement, values in statements:
            connection.execute(text(statement), values)
    engine.dispose()


def fetch(url: str, statement: str, values: dict):
    engine = create_engine(normalize_url(url))
    with engine.connect() as connection:
        row = connection.execute(text(statement), values).one()
    engine.dispose()
    return row


def change_leaf(index: int, *, rehash: bool):
    def tamper(url: str) -> None:
        leaf = fetch(url, 'SELECT leaf FROM entries WHERE "index" = :i', {"i": index})
        entry = json.loads(bytes(leaf[0]))
        entry["statement"]["at"] = "2026-12-04T08:00:00Z"
        forged = canonical_json(entry)
        extra = ", leaf_hash = :h" if rehash else ""
        run_sql(
            url,
            (
                f'UPDATE entries SET leaf = :leaf{extra} WHERE "index" = :i',
                {"i": index, "leaf": forged, "h": leaf_hash(forged)},
            ),
        )

    return tamper


def delete_entry(index: int):
    def tamper(url: str) -> None:
        run_sql(url, ('DELETE FROM entries WHERE "index" = :i', {"i": index}))

    return tamper


def swap_entries(first: int, second: int):
    def tamper(url: str) -> None:
        query = 'SELECT leaf, leaf_hash FROM entries WHERE "index" = :i'
        a, b = fetch(url, query, {"i": first}), fetch(url, query, {"i": second})
        update = 'UPDATE entries SET leaf = :l, leaf_hash = :h WHERE "index" = :i'
        run_sql(
            url,
            (update, {"i": first, "l": b.leaf, "h": b.leaf_hash}),
            (update, {"i": second, "l": a.leaf, "h": a.leaf_hash}),
        )

    return tamper


def insert_entry(at: int, copy_of: int):
    """Shifts entries at and after `at` up by one and slips a copy of a
    genuine, validly signed entry in at `at`."""

    def tamper(url: str) -> None:
        row = fetch(
            url,
            "SELECT leaf, leaf_hash, kind, batch_id, created_at FROM entries "
            'WHERE "index" = :i',
            {"i": copy_of},
        )
        run_sql(
            url,
            (
                'UPDATE entries SET "index" = -"index" - 10 WHERE "index" >= :a',
                {"a": at},
            ),
            ('UPDATE entries SET "index" = -"index" - 9 WHERE "index" < 0', {}),
            (
                'INSERT INTO entries ("index", leaf, leaf_hash, kind, batch_id, '
                "idempotency_key, created_at) VALUES (:i, :l, :h, :k, :b, "
                "'intruder', :c)",
                {
                    "i": at,
                    "l": row.leaf,
                    "h": row.leaf_hash,
                    "k": row.kind,
                    "b": row.batch_id,
                    "c": row.created_at,
                },
            ),
        )

    return tamper


def change_node(level: int, index: int):
    def tamper(url: str) -> None:
        run_sql(
            url,
            (
                'UPDATE nodes SET hash = :h WHERE level = :l AND "index" = :i',
                {"h": leaf_hash(b"forged"), "l": level, "i": index},
            ),
        )

    return tamper


def delete_node(level: int, index: int):
    def tamper(url: str) -> None:
        run_sql(
            url,
            (
                'DELETE FROM nodes WHERE level = :l AND "index" = :i',
                {"l": level, "i": index},
            ),
        )

    return tamper


def swap_nodes(level: int, first: int, second: int):
    def tamper(url: str) -> None:
        query = 'SELECT hash FROM nodes WHERE level = :l AND "index" = :i'
        a = fetch(url, query, {"l": level, "i": first}).hash
        b = fetch(url, query, {"l": level, "i": second}).hash
        update = 'UPDATE nodes SET hash = :h WHERE level = :l AND "index" = :i'
        run_sql(
            url,
            (update, {"h": b, "l": level, "i": first}),
            (update, {"h": a, "l": level, "i": second}),
        )

    return tamper


def change_checkpoint_note(size: int):
    def tamper(url: str) -> None:
        note = fetch(url, "SELECT note FROM checkpoints WHERE size = :s", {"s": size})
        lines = note.note.split("\n")
        lines[1] = str(size + 1)
        run_sql(
            url,
            (
                "UPDATE checkpoints SET note = :n WHERE size = :s",
                {"n": "\n".join(lines), "s": size},
            ),
        )

    return tamper


def change_checkpoint_root(size: int):
    def tamper(url: str) -> None:
        run_sql(
            url,
            (
                "UPDATE checkpoints SET root = :r WHERE size = :s",
                {"r": leaf_hash(b"forged"), "s": size},
            ),
        )

    return tamper


def delete_checkpoint(size: int):
    def tamper(url: str) -> None:
        run_sql(url, ("DELETE FROM checkpoints WHERE size = :s", {"s": size}))

    return tamper


def swap_checkpoints(first: int, second: int):
    def tamper(url: str) -> None:
        query = "SELECT note FROM checkpoints WHERE size = :s"
        a = fetch(url, query, {"s": first}).note
        b = fetch(url, query, {"s": second}).note
        update = "UPDATE checkpoints SET note = :n WHERE size = :s"
        run_sql(url, (update, {"n": b, "s": first}), (update, {"n": a, "s": second}))

    return tamper


def insert_checkpoint(size: int):
    """A checkpoint for a bigger log, signed by a key that is not the log's."""

    def tamper(url: str) -> None:
        root = leaf_hash(b"forged")
        note = sign_checkpoint(Checkpoint(ORIGIN, size, root), ORIGIN, generate_key())
        created = fetch(url, "SELECT created_at FROM checkpoints WHERE size = 0", {})
        run_sql(
            url,
            (
                "INSERT INTO checkpoints (size, root, note, created_at) "
                "VALUES (:s, :r, :n, :c)",
                {"s": size, "r": root, "n": note, "c": created.created_at},
            ),
        )

    return tamper


# Entries 0-5 are batch B1 (5 = its seal), 6-11 B2, 12-17 B3; the listed
# checkpoints are 0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 18.
SWEEP = {
    "entry changed": (change_leaf(7, rehash=False), 7, "hash"),
    "entry changed and rehashed": (change_leaf(7, rehash=True), 7, "signature"),
    "entry deleted": (delete_entry(7), 7, "missing"),
    "entries swapped": (swap_entries(4, 9), 4, "differs"),
    "entry inserted": (insert_entry(7, 3), 7, "differs"),
    "seal changed": (change_leaf(11, rehash=True), 11, "signature-invalid"),
    "leaf node changed": (change_node(0, 5), 4, "tree nodes are damaged"),
    "inner node changed": (change_node(2, 1), 0, "tree nodes are damaged"),
    "node deleted": (delete_node(1, 3), 4, "503"),
    "nodes swapped": (swap_nodes(0, 2, 3), 2, "tree nodes are damaged"),
    "head checkpoint note changed": (change_checkpoint_note(18), 18, "signature"),
    "past checkpoint root changed": (change_checkpoint_root(9), 8, "another root"),
    "head checkpoint deleted": (delete_checkpoint(18), 16, "shrank"),
    "checkpoints swapped": (swap_checkpoints(6, 12), 4, "signs size"),
    "checkpoint inserted": (insert_checkpoint(25), 18, "signature"),
}


@pytest.mark.parametrize("case", list(SWEEP), ids=list(SWEEP))
def test_the_full_audit_catches_and_names_every_tampering(
    case, client, chain_for, ledger_url, tmp_path
):
    for batch_id in BATCHES:
        chain_for(batch_id).complete()
    state = tmp_path / "witness.json"
    honest = full_audit(client, state)
    assert honest.ok and honest.size == 18, honest.reason

    tamper, first_bad, reason = SWEEP[case]
    tamper(ledger_url)
    report = full_audit(client, state)

    assert not report.ok
    assert report.first_bad_index == first_bad, report.reason
    assert reason in report.reason, report.reason


def test_a_checkpoint_check_alone_sees_a_rewritten_head(client, chain_for, ledger_url):
    chain_for("B1").complete()
    change_checkpoint_note(6)(ledger_url)
    report = audit_checkpoint(client)
    assert not report.ok and report.first_bad_index == 0


# The append path refuses to build on a tree that no longer gives the root
# it signed: entries 0-2 are B1's pickups and delivery (size 3, whose
# frontier is nodes (1, 0) and (0, 2)).


def change_head_root(url: str) -> None:
    run_sql(url, ("UPDATE log_head SET root = :r", {"r": leaf_hash(b"forged")}))


FRONTIER_DAMAGE = {
    "frontier node changed": (change_node(1, 0), "not the signed root"),
    "frontier leaf changed": (change_node(0, 2), "not the signed root"),
    "head root changed": (change_head_root, "head's root"),
    "head checkpoint note changed": (change_checkpoint_note(3), "does not verify"),
    "head checkpoint deleted": (delete_checkpoint(3), "missing"),
}


def three_entries(chain_for):
    chain = chain_for("B1")
    steps = (
        chain.pickup_entry,
        lambda: chain.pickup_entry(request_id="req2-B1"),
        chain.delivery_entry,
    )
    for build in steps:
        assert chain.post(build()).status_code == 201
    return chain


def stored_log(url: str) -> tuple:
    """Everything an append would change: entries, nodes and checkpoints."""
    return tuple(
        fetch(url, statement, {})
        for statement in (
            "SELECT count(*) FROM entries",
            "SELECT count(*) FROM nodes",
            "SELECT count(*), max(size) FROM checkpoints",
            "SELECT size, root FROM log_head",
        )
    )


def true_root(url: str) -> bytes:
    """The root recomputed from the stored leaves, ignoring stored nodes."""
    engine = create_engine(normalize_url(url))
    with engine.connect() as connection:
        leaves = connection.execute(
            text('SELECT leaf FROM entries ORDER BY "index"')
        ).scalars()
        root = root_of(leaf_hash(bytes(leaf)) for leaf in leaves)
    engine.dispose()
    return root


@pytest.mark.parametrize("case", list(FRONTIER_DAMAGE), ids=list(FRONTIER_DAMAGE))
def test_an_append_on_a_damaged_frontier_is_refused_and_signs_nothing(
    case, client, chain_for, ledger_url
):
    chain = three_entries(chain_for)
    tamper, reason = FRONTIER_DAMAGE[case]
    tamper(ledger_url)
    before = stored_log(ledger_url)

    response = chain.post(chain.processing_entry())

    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith("log-damaged")
    assert problem["title"] == "The log's storage is damaged"
    assert reason in problem["detail"] and problem["size"] == 3
    assert stored_log(ledger_url) == before


def test_a_seal_request_on_a_damaged_frontier_is_refused(client, chain_for, ledger_url):
    chain_for("B1").complete()
    change_node(1, 2)(ledger_url)
    before = stored_log(ledger_url)

    response = client.post("/v1/batches/B1/seal")

    assert response.status_code == 503, response.text
    assert response.json()["type"].endswith("log-damaged")
    assert stored_log(ledger_url) == before


def test_an_untampered_log_appends_and_signs_the_true_root(
    client, chain_for, ledger_url
):
    chain = three_entries(chain_for)

    assert chain.post(chain.processing_entry()).status_code == 201
    assert chain.post(chain.trip_entry()).status_code == 201

    head = fetch(ledger_url, "SELECT size, root FROM log_head", {})
    assert head.size == 6  # the trip summary completed B1: its seal is entry 5
    assert bytes(head.root) == true_root(ledger_url)
    assert full_audit(client, None).ok


def test_damage_off_the_frontier_leaves_the_signed_root_true(
    client, chain_for, ledger_url
):
    chain = three_entries(chain_for)
    change_node(0, 0)(ledger_url)

    assert chain.post(chain.processing_entry()).status_code == 201

    checkpoint = fetch(
        ledger_url, "SELECT size, root FROM checkpoints ORDER BY size DESC LIMIT 1", {}
    )
    assert checkpoint.size == 4
    assert bytes(checkpoint.root) == true_root(ledger_url)
