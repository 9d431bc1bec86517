"""Many processes appending to one PostgreSQL log at once, directly and
through several HTTP workers that batch concurrent requests: the log stays
gap-free and fork-free, and every checkpoint is consistent with the last."""

import multiprocessing
import os
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import select

from services.ledger import service
from services.ledger.models import Checkpoint, Entry
from services.ledger.sequencer import Sequencer
from services.ledger.service import LogSigner, Submission
from services.ledger.tree import consistency_proof
from shared.audit import audit_checkpoints, open_checkpoint, replay
from shared.auth import issue_token
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
from tests.ledger.server import ledger_process

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


# Through HTTP: several uvicorn workers, each batching concurrent requests.

HTTP_CLIENTS = 8
HTTP_THREADS = 6
HTTP_ENTRIES = 20


def post_many(base: str, token: str, trading_seed: str, worker: int) -> list[int]:
    """One client process: threads posting issuances at once, plus one retry
    of each, which must answer with the same index."""
    trading_key = private_key_from_b64(trading_seed)
    headers = {"Authorization": f"Bearer {token}"}

    def post(n: int) -> int:
        entry = _issuance(trading_key, worker, n)
        key = {"Idempotency-Key": f"http-{worker}-{n}"}
        with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
            first = http.post("/v1/entries", json=entry, headers=key)
            again = http.post("/v1/entries", json=entry, headers=key)
        assert first.status_code == 201, first.text
        assert again.status_code == 200 and again.json() == first.json()
        assert first.json()["size"] > first.json()["index"]
        return first.json()["index"]

    with ThreadPoolExecutor(HTTP_THREADS) as pool:
        return list(pool.map(post, range(HTTP_ENTRIES)))


def test_eight_clients_through_two_http_workers_batch_without_gap_or_fork(
    ledger_url, tmp_path
):
    log_key, auth_key, trading_key = generate_key(), generate_key(), generate_key()
    token = issue_token(auth_key, sub="service:trading", role="service")
    with ledger_process(
        ledger_url, workers=2, log_key=log_key, auth_key=auth_key, folder=tmp_path
    ) as base:
        registered = httpx.put(
            f"{base}/v1/keys/{key_id(trading_key)}",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "public_key": public_key_b64(trading_key),
                "party_kind": "service",
                "party_id": "trading",
                "kinds": ["credit.issuance"],
            },
        )
        assert registered.status_code == 201, registered.text
        seed = private_key_to_b64(trading_key)
        with multiprocessing.get_context("fork").Pool(HTTP_CLIENTS) as pool:
            results = pool.starmap(
                post_many, [(base, token, seed, w) for w in range(HTTP_CLIENTS)]
            )
        total = HTTP_CLIENTS * HTTP_ENTRIES
        assert sorted(i for result in results for i in result) == list(range(total))

        with httpx.Client(base_url=base) as reader:
            report = replay(reader, verifier_key=verifier_key(ORIGIN, log_key))
            assert report.ok and report.size == total, report.reason
            assert audit_checkpoints(reader).ok
            listed = reader.get("/v1/checkpoints").json()["checkpoints"]
    assert len(listed) < total, "concurrent appends were never batched"


def test_the_sequencer_batches_concurrent_appends_and_answers_each(ledger_url):
    trading_key = generate_key()
    signer = LogSigner(ORIGIN, generate_key())
    engine = make_engine(ledger_url)
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        service.open_log(session, signer=signer)
        _register_trading(session, trading_key)
        session.commit()

    def append(session, submissions):
        return service.append_entries(
            session, submissions=submissions, signer=signer, max_bytes=MAX_BYTES
        )

    sequencer = Sequencer(sessions, append, max_batch=16)
    entries = [_issuance(trading_key, 0, n) for n in range(64)]
    entries[10]["signatures"][0]["signature"] = entries[11]["signatures"][0][
        "signature"
    ]
    with ThreadPoolExecutor(16) as pool:
        outcomes = list(
            pool.map(
                lambda n: sequencer.submit(Submission(f"s-{n}", entries[n])),
                range(64),
            )
        )

    assert outcomes[10].problem is not None
    assert outcomes[10].problem.slug == "signature-invalid"
    good = [o.appended for n, o in enumerate(outcomes) if n != 10]
    assert sorted(a.index for a in good) == list(range(63))
    with sessions() as session:
        checkpoints = session.scalars(select(Checkpoint.size)).all()
        stored = {
            row.idempotency_key: row.index
            for row in session.execute(select(Entry.idempotency_key, Entry.index))
        }
    assert len(checkpoints) - 1 < 63, "nothing was batched"
    for n, outcome in enumerate(outcomes):
        if n != 10:
            assert stored[f"s-{n}"] == outcome.appended.index
            assert outcome.appended.size in checkpoints
            assert outcome.appended.size > outcome.appended.index
    engine.dispose()


def test_a_failed_batch_fails_every_caller_in_it_and_the_next_batch_runs(
    ledger_url,
):
    calls = []

    def append(session, submissions):
        calls.append(len(submissions))
        if len(calls) == 1:
            raise RuntimeError("database went away")
        return [service.Outcome() for _ in submissions]

    engine = make_engine(ledger_url)
    sequencer = Sequencer(make_sessionmaker(engine), append)
    with pytest.raises(RuntimeError):
        sequencer.submit(Submission("a", {}))
    assert sequencer.submit(Submission("b", {})) == service.Outcome()
    assert calls == [1, 1]
    engine.dispose()


def _register_trading(session, trading_key) -> None:
    service.register_key(
        session,
        key_id=key_id(trading_key),
        public_key=public_key_b64(trading_key),
        party_kind="service",
        party_id="trading",
        kinds=["credit.issuance"],
    )
