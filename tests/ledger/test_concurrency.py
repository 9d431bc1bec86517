"""Many processes appending to one PostgreSQL log at once: the log stays
gap-free and fork-free, and every checkpoint is consistent with the last."""

import multiprocessing
import os

import pytest
from sqlalchemy import select

from services.ledger import service
from services.ledger.models import Checkpoint, Entry
from services.ledger.service import LogSigner, Submission
from services.ledger.tree import consistency_proof
from shared.audit import open_checkpoint
from shared.crypto import (
    generate_key,
    key_id,
    private_key_from_b64,
    private_key_to_b64,
    public_key_b64,
    sign_statement,
)
from shared.db import make_engine, make_sessionmaker
from shared.merkle import root_of, verify_consistency
from shared.note import verifier_key
from tests.conftest import BACKEND
from tests.ledger.helpers import ORIGIN

WORKERS = 8
ROUNDS = 20
MAX_BYTES = 64 * 1024


def _issuance(trading_key, worker: int, n: int) -> dict:
    statement = {
        "v": 1,
        "kind": "credit.issuance",
        "at": "2026-12-03T08:00:00Z",
        "body": {"worker": worker, "n": n},
    }
    return {
        "statement": statement,
        "signatures": [sign_statement(trading_key, statement)],
    }


def append_many(url: str, log_seed: str, trading_seed: str, worker: int) -> list[int]:
    """One writer process: rounds of one or three entries, each a transaction."""
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    signer = LogSigner(ORIGIN, private_key_from_b64(log_seed))
    trading_key = private_key_from_b64(trading_seed)
    indices = []
    for n in range(ROUNDS):
        batch = 3 if n % 4 == 0 else 1
        submissions = [
            Submission(f"w{worker}-{n}-{k}", _issuance(trading_key, worker, n * 10 + k))
            for k in range(batch)
        ]
        with sessions() as session:
            outcomes = service.append_entries(
                session, submissions=submissions, signer=signer, max_bytes=MAX_BYTES
            )
            session.commit()
        indices += [outcome.appended.index for outcome in outcomes]
    engine.dispose()
    return indices


def die_mid_append(url: str, log_seed: str, trading_seed: str) -> None:
    """A writer killed after writing its rows but before committing."""
    sessions = make_sessionmaker(make_engine(url))
    signer = LogSigner(ORIGIN, private_key_from_b64(log_seed))
    entry = _issuance(private_key_from_b64(trading_seed), 99, 0)
    session = sessions()
    service.append_entries(
        session,
        submissions=[Submission("doomed", entry)],
        signer=signer,
        max_bytes=MAX_BYTES,
    )
    session.flush()
    os._exit(1)


@pytest.mark.postgres_only
@pytest.mark.skipif(BACKEND != "postgres", reason="needs PostgreSQL")
def test_eight_processes_append_to_postgresql_without_gap_fork_or_duplicate(
    ledger_url,
):
    run_concurrent_appends(ledger_url, WORKERS)


@pytest.mark.skipif(BACKEND != "sqlite", reason="the SQLite twin of the above")
def test_four_processes_append_to_sqlite_without_gap_fork_or_duplicate(ledger_url):
    run_concurrent_appends(ledger_url, 4)


def run_concurrent_appends(ledger_url: str, workers: int) -> None:
    log_key, trading_key = generate_key(), generate_key()
    signer = LogSigner(ORIGIN, log_key)
    engine = make_engine(ledger_url)
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        service.open_log(session, signer=signer)
        service.register_key(
            session,
            key_id=key_id(trading_key),
            public_key=public_key_b64(trading_key),
            party_kind="service",
            party_id="trading",
            kinds=["credit.issuance"],
        )
        session.commit()
    engine.dispose()

    seeds = (private_key_to_b64(log_key), private_key_to_b64(trading_key))
    context = multiprocessing.get_context("fork")
    killed = context.Process(target=die_mid_append, args=(ledger_url, *seeds))
    killed.start()
    with context.Pool(workers) as pool:
        results = pool.starmap(
            append_many, [(ledger_url, *seeds, worker) for worker in range(workers)]
        )
    killed.join()
    assert killed.exitcode == 1

    indices = sorted(index for result in results for index in result)
    total = workers * (ROUNDS + ROUNDS // 4 * 2)
    assert indices == list(range(total))

    with sessions() as session:
        rows = session.execute(
            select(Entry.index, Entry.leaf_hash).order_by(Entry.index)
        ).all()
        assert [row.index for row in rows] == list(range(total))
        assert (
            session.scalar(select(Entry).where(Entry.idempotency_key == "doomed"))
            is None
        )
        checkpoints = session.scalars(
            select(Checkpoint).order_by(Checkpoint.size)
        ).all()
        final = checkpoints[-1]
        assert final.size == total
        assert final.root == root_of(row.leaf_hash for row in rows)
        key = verifier_key(ORIGIN, log_key)
        for checkpoint in checkpoints:
            assert open_checkpoint(checkpoint.note, key).root == checkpoint.root
            if checkpoint.size:
                proof = consistency_proof(session, checkpoint.size, final.size)
                assert verify_consistency(
                    checkpoint.size, final.size, checkpoint.root, final.root, proof
                )
    engine.dispose()
