"""Benchmark of the ledger: appends, proofs and the full audit.

Measures, in one run and beside baselines from the same run:
  * the ceiling: SHA-256 of a leaf plus one Ed25519 verification, per second;
  * signed appends per second on SQLite and PostgreSQL, one per transaction
    through HTTP, batched through the sequencer in-process, and batched
    through HTTP with concurrent clients;
  * at --entries entries (1,000,000 by default), bulk-loaded with the
    service's own tree code: inclusion-proof latency through the real HTTP
    service and the same proofs built by pymerkle on the same leaves, the
    full audit (salvage audit replay) time, and the peak memory of the
    ledger service and of the audit.

Run: python bench/ledger.py --help
"""

import base64
import logging
import multiprocessing
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import httpx
import psutil
import structlog
import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.ledger import service  # noqa: E402
from services.ledger.sequencer import Sequencer  # noqa: E402
from services.ledger.service import LogSigner, Submission  # noqa: E402
from services.ledger.tree import TreeAppender, inclusion_proof  # noqa: E402
from shared.audit import replay  # noqa: E402
from shared.auth import issue_token  # noqa: E402
from shared.canonical import canonical_json  # noqa: E402
from shared.crypto import (  # noqa: E402
    generate_key,
    key_id,
    private_key_to_b64,
    public_key_b64,
    sign_statement,
    verify_statement,
)
from shared.db import is_sqlite, make_engine, make_sessionmaker, migrate  # noqa: E402
from shared.merkle import leaf_hash, verify_inclusion  # noqa: E402
from shared.note import Checkpoint, sign_checkpoint, verifier_key  # noqa: E402
from shared.processes import (  # noqa: E402
    ServiceProcess,
    stop_services,
    uvicorn_command,
    wait_ready,
)

ORIGIN = "bench.salvage/ledger"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
console = Console()
app = typer.Typer(add_completion=False)


# Entries and databases


def issuance(key, worker: int, n: int) -> dict:
    """A signed credit.issuance statement, unique by (worker, n)."""
    statement = {
        "v": 1,
        "kind": "credit.issuance",
        "at": "2026-12-03T08:00:00Z",
        "body": {"serial_start": n, "serial_end": n, "worker": worker},
    }
    return {"statement": statement, "signatures": [sign_statement(key, statement)]}


def fresh_database(backend: str, name: str, folder: Path) -> str:
    """An empty, migrated ledger database on the backend."""
    if backend == "sqlite":
        url = f"sqlite:///{folder / name}.db"
    else:
        admin = make_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    migrate("ledger", url)
    return url


def drop_database(backend: str, name: str) -> None:
    if backend != "postgres":
        return
    admin = make_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def open_log(url: str, log_key, trading_key) -> None:
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        service.open_log(session, signer=LogSigner(ORIGIN, log_key))
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


# The ledger as a process


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def ledger_process(url: str, log_key, auth_key, folder: Path, workers: int = 1):
    """Runs the real ledger service under uvicorn on a free loopback port."""
    port = free_port()
    env = {
        **os.environ,
        "SALVAGE_ENVIRONMENT": "test",
        "SALVAGE_DATA_DIR": str(folder),
        "SALVAGE_LEDGER_DATABASE_URL": url,
        "SALVAGE_LEDGER_SIGNING_KEY": private_key_to_b64(log_key),
        "SALVAGE_AUTH_PRIVATE_KEY": private_key_to_b64(auth_key),
        "SALVAGE_LEDGER_ORIGIN": ORIGIN,
        "SALVAGE_LEDGER_MAX_RANGE": "10000",
        "SALVAGE_LOG_LEVEL": "WARNING",
    }
    log_path = folder / f"ledger-{port}.log"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            uvicorn_command("ledger", "127.0.0.1", port, workers),
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )
    service_process = ServiceProcess("ledger", port, process, log_path)
    try:
        wait_ready([service_process], timeout=120)
        yield service_process
    finally:
        stop_services([service_process])


class PeakMemory:
    """Samples the RSS of a process tree in a thread; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                tree = [self.process, *self.process.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass
            self._stop.wait(0.05)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()


# The ceiling


def ceiling(seconds: float) -> float:
    """SHA-256 of a typical leaf plus one Ed25519 verification, per second."""
    key = generate_key()
    entry = issuance(key, 0, 0)
    leaf = canonical_json(entry)
    public = key.public_key()
    signature = entry["signatures"][0]["signature"]
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(200):
            leaf_hash(leaf)
            verify_statement(public, entry["statement"], signature)
        done += 200
    return done / (time.perf_counter() - started)


# Appends


def appends_single_http(base: str, token: str, trading_key, count: int) -> float:
    """One client, one request at a time: one transaction and one checkpoint
    per entry."""
    entries = [issuance(trading_key, 1, n) for n in range(count)]
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
        started = time.perf_counter()
        for n, entry in enumerate(entries):
            response = http.post(
                "/v1/entries", json=entry, headers={"Idempotency-Key": f"s-{n}"}
            )
            response.raise_for_status()
        return count / (time.perf_counter() - started)


def appends_batched_http(
    base: str, token: str, trading_key, count: int, clients: int
) -> float:
    """Many concurrent clients; the service batches what arrives together."""
    entries = [issuance(trading_key, 2, n) for n in range(count)]
    headers = {"Authorization": f"Bearer {token}"}
    local = threading.local()

    def post(n: int) -> None:
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=base, headers=headers, timeout=120)
        response = local.http.post(
            "/v1/entries", json=entries[n], headers={"Idempotency-Key": f"h-{n}"}
        )
        response.raise_for_status()

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(post, range(count)))
    return count / (time.perf_counter() - started)


def appends_batch_http(
    base: str, token: str, trading_key, count: int, per: int, clients: int
) -> float:
    """POST /v1/entries/batch, `per` entries a request, from `clients`
    concurrent clients (so that one worker parses while another appends)."""
    entries = [issuance(trading_key, 5, n) for n in range(count)]
    headers = {"Authorization": f"Bearer {token}"}
    local = threading.local()

    def post(first: int) -> None:
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=base, headers=headers, timeout=120)
        items = [
            {"key": f"b-{n}", "entry": entries[n]}
            for n in range(first, min(count, first + per))
        ]
        response = local.http.post("/v1/entries/batch", json={"items": items})
        response.raise_for_status()
        assert all(r["status"] == 201 for r in response.json()["results"])

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(post, range(0, count, per)))
    return count / (time.perf_counter() - started)


def appends_direct(url: str, log_key, trading_key, count: int, per: int) -> float:
    """What one sequencer batch costs without the threads that fill it:
    `per` entries per transaction through service.append_entries."""
    entries = [issuance(trading_key, 4, n) for n in range(count)]
    signer = LogSigner(ORIGIN, log_key)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    started = time.perf_counter()
    for first in range(0, count, per):
        last = min(count, first + per)
        chunk = [Submission(f"d-{n}", entries[n]) for n in range(first, last)]
        with sessions() as session:
            outcomes = service.append_entries(
                session, submissions=chunk, signer=signer, max_bytes=65536
            )
            assert all(o.appended for o in outcomes)
            session.commit()
    rate = count / (time.perf_counter() - started)
    engine.dispose()
    return rate


def appends_sequencer(url: str, log_key, trading_key, count: int, threads: int):
    """In-process: threads submit one entry each through the sequencer, as
    the HTTP handlers do, without the HTTP cost. Returns (rate, batches)."""
    entries = [issuance(trading_key, 3, n) for n in range(count)]
    signer = LogSigner(ORIGIN, log_key)
    engine = make_engine(url)
    batches = []

    def append(session, submissions):
        batches.append(len(submissions))
        return service.append_entries(
            session, submissions=submissions, signer=signer, max_bytes=65536
        )

    sequencer = Sequencer(make_sessionmaker(engine), append, max_batch=2000)

    def submit(n: int) -> None:
        outcome = sequencer.submit(Submission(f"q-{n}", entries[n]))
        assert outcome.appended is not None, outcome.problem

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(submit, range(count)))
    rate = count / (time.perf_counter() - started)
    engine.dispose()
    return rate, statistics.mean(batches)


def append_figures(backend: str, folder: Path, options: dict) -> dict:
    log_key, trading_key, auth_key = generate_key(), generate_key(), generate_key()
    name = f"bench_ledger_appends_{os.getpid()}"
    url = fresh_database(backend, name, folder)
    try:
        open_log(url, log_key, trading_key)
        figures = {"sequencer": []}
        figures["direct"] = appends_direct(
            url, log_key, trading_key, options["batched"], 1000
        )
        for threads in options["threads"]:
            rate, mean_batch = appends_sequencer(
                url, log_key, trading_key, options["batched"], threads
            )
            figures["sequencer"].append((threads, rate, mean_batch))
        token = issue_token(auth_key, sub="service:trading", role="service")
        with ledger_process(url, log_key, auth_key, folder, options["workers"]) as svc:
            figures["single"] = appends_single_http(
                svc.url, token, trading_key, options["single"]
            )
            figures["http_batched"] = appends_batched_http(
                svc.url, token, trading_key, options["batched"], options["clients"]
            )
            figures["http_batch_endpoint"] = appends_batch_http(
                svc.url, token, trading_key, options["batched"], 1000, 2
            )
        return figures
    finally:
        drop_database(backend, name)


# A big log, bulk-loaded with the service's own tree code


def build_leaves(count: int, trading_key) -> list[bytes]:
    """Canonical leaves of genuinely signed issuance entries."""
    return [canonical_json(issuance(trading_key, 9, n)) for n in range(count)]


def bulk_load(url: str, leaves: list[bytes], log_key) -> None:
    """Writes entries and tree nodes straight into the database, computing
    the nodes with TreeAppender, then signs one checkpoint for the size."""
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        tree = TreeAppender(session, 0)
        chunk = 50_000
        for start in range(0, len(leaves), chunk):
            rows = []
            for n, leaf in enumerate(leaves[start : start + chunk], start=start):
                hashed = leaf_hash(leaf)
                tree.append(hashed)
                rows.append((n, leaf, hashed, f"bulk-{n}"))
            write_rows(session, rows, tree.pending)
            tree.pending = []
        signer = LogSigner(ORIGIN, log_key)
        root = tree.root()
        note = sign_checkpoint(Checkpoint(ORIGIN, tree.size, root), ORIGIN, log_key)
        session.execute(
            text(
                "INSERT INTO checkpoints (size, root, note, created_at) "
                "VALUES (:s, :r, :n, CURRENT_TIMESTAMP)"
            ),
            {"s": tree.size, "r": root, "n": note},
        )
        session.execute(
            text("UPDATE log_head SET size = :s, root = :r WHERE id = 1"),
            {"s": tree.size, "r": root},
        )
        service.register_own_key(session, signer=signer, size=0)
        session.commit()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql("ANALYZE")  # as autovacuum would, before any timing
    engine.dispose()


def write_rows(session, rows: list[tuple], nodes: list[dict]) -> None:
    """COPY on PostgreSQL, executemany on SQLite."""
    connection = session.connection()
    if is_sqlite(connection.engine):
        connection.exec_driver_sql(
            'INSERT INTO entries ("index", leaf, leaf_hash, kind, batch_id, '
            "idempotency_key, created_at) VALUES (?, ?, ?, 'credit.issuance', "
            "NULL, ?, CURRENT_TIMESTAMP)",
            rows,
        )
        connection.exec_driver_sql(
            'INSERT INTO nodes (level, "index", hash) VALUES (?, ?, ?)',
            [(n["level"], n["index"], n["hash"]) for n in nodes],
        )
        return
    cursor = connection.connection.driver_connection.cursor()
    with cursor.copy(
        'COPY entries ("index", leaf, leaf_hash, kind, idempotency_key, '
        "created_at) FROM STDIN"
    ) as copy:
        for n, leaf, hashed, key in rows:
            copy.write_row((n, leaf, hashed, "credit.issuance", key, "now"))
    with cursor.copy('COPY nodes (level, "index", hash) FROM STDIN') as copy:
        for node in nodes:
            copy.write_row((node["level"], node["index"], node["hash"]))


def proof_latencies(base: str, size: int, indices: list[int], leaves) -> list[float]:
    """Milliseconds per GET /v1/proof/inclusion; each proof is then verified
    against the signed checkpoint's root (outside the timing)."""
    timings = []
    with httpx.Client(base_url=base, timeout=30) as http:
        root = base64.b64decode(http.get("/v1/checkpoint").text.split("\n")[2])
        for index in indices:
            started = time.perf_counter()
            response = http.get(
                "/v1/proof/inclusion", params={"index": index, "size": size}
            )
            timings.append((time.perf_counter() - started) * 1000)
            path = [base64.b64decode(h) for h in response.json()["hashes"]]
            hashed = leaf_hash(leaves[index])
            assert verify_inclusion(hashed, index, size, path, root), index
    return timings


def floor_latencies(base: str, count: int) -> list[float]:
    """Milliseconds per GET /healthz on the same service and client: what any
    request costs here before the proof itself (the baseline of the above)."""
    timings = []
    with httpx.Client(base_url=base, timeout=30) as http:
        for _ in range(count):
            started = time.perf_counter()
            http.get("/healthz").raise_for_status()
            timings.append((time.perf_counter() - started) * 1000)
    return timings


def stored_proof_latencies(url: str, size: int, indices: list[int]) -> list[float]:
    """Milliseconds per proof read from the stored nodes, no HTTP."""
    engine = make_engine(url)
    timings = []
    with make_sessionmaker(engine)() as session:
        for index in indices:
            started = time.perf_counter()
            inclusion_proof(session, index, size)
            timings.append((time.perf_counter() - started) * 1000)
    engine.dispose()
    return timings


def pymerkle_figures(leaves: list[bytes], indices: list[int], ours) -> dict:
    """Builds pymerkle's in-memory tree on the same leaves; times its proofs
    and checks they equal ours."""
    from pymerkle import InmemoryTree

    started = time.perf_counter()
    tree = InmemoryTree(algorithm="sha256")
    for leaf in leaves:
        tree.append_entry(leaf)
    build = time.perf_counter() - started
    size = tree.get_size()
    timings, agree = [], True
    for index in indices:
        started = time.perf_counter()
        proof = tree.prove_inclusion(index + 1, size)
        timings.append((time.perf_counter() - started) * 1000)
        agree = agree and list(proof.path[1:]) == ours(index)
    root = tree.get_root(size)
    return {"build": build, "timings": timings, "agree": agree, "root": root}


def audit_child(base: str, key: str, queue) -> None:
    """The full audit, in a fresh interpreter that samples its own RSS (the
    kernel's ru_maxrss would include the parent's pages from before exec)."""
    with PeakMemory(os.getpid()) as memory:
        started = time.perf_counter()
        page = int(os.environ.get("AUDIT_PAGE", "10000"))
        report = replay(base, verifier_key=key, page_size=page)
        elapsed = time.perf_counter() - started
    queue.put((report.ok, report.reason, report.checked, elapsed, memory.peak))


def full_audit(base: str, key: str) -> tuple:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=audit_child, args=(base, key, queue))
    child.start()
    result = queue.get()
    child.join()
    return result


def big_log_figures(backend: str, count: int, folder: Path, samples: int) -> dict:
    log_key, trading_key, auth_key = generate_key(), generate_key(), generate_key()
    name = f"bench_ledger_big_{os.getpid()}"
    url = fresh_database(backend, name, folder)
    try:
        started = time.perf_counter()
        leaves = build_leaves(count, trading_key)
        bulk_load(url, leaves, log_key)
        load_time = time.perf_counter() - started
        indices = random.Random(7).sample(range(count), min(samples, count))
        figures = {"load": load_time}
        with ledger_process(url, log_key, auth_key, folder) as svc:
            with PeakMemory(svc.process.pid) as memory:
                figures["http"] = proof_latencies(svc.url, count, indices, leaves)
                figures["floor"] = floor_latencies(svc.url, len(indices))
                figures["audit"] = full_audit(svc.url, verifier_key(ORIGIN, log_key))
            figures["service_peak"] = memory.peak
        figures["stored"] = stored_proof_latencies(url, count, indices)
        figures["pymerkle"] = pymerkle_figures(
            leaves, indices[:200], _our_proofs(url, count)
        )
        return figures
    finally:
        drop_database(backend, name)


def _our_proofs(url: str, size: int):
    engine = make_engine(url)
    session = make_sessionmaker(engine)()

    def prove(index: int) -> list[bytes]:
        return inclusion_proof(session, index, size)

    return prove


# Output


def median(values: list[float]) -> float:
    return statistics.median(values)


def p99(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.99) - 1] if values else 0.0


def append_table(results: dict[str, dict], ceiling_rate: float) -> Table:
    table = Table(title="Signed appends per second (higher is better)")
    table.add_column("backend")
    table.add_column("path")
    table.add_column("entries/s", justify="right")
    table.add_column("vs ceiling", justify="right")
    for backend, figures in results.items():
        rows = [
            ("single: 1 HTTP client, 1 entry per transaction", figures["single"]),
            *(
                (
                    f"batched: sequencer in-process, {threads} submitters "
                    f"(mean {mean_batch:.0f}/transaction)",
                    rate,
                )
                for threads, rate, mean_batch in figures["sequencer"]
            ),
            ("batched: 1,000 per transaction, no threads", figures["direct"]),
            ("batched: HTTP, concurrent clients", figures["http_batched"]),
            (
                "batched: HTTP /v1/entries/batch, 1,000 a request, 2 clients",
                figures["http_batch_endpoint"],
            ),
        ]
        for label, rate in rows:
            table.add_row(backend, label, f"{rate:,.0f}", f"{rate / ceiling_rate:.1%}")
    table.add_row(
        "", "ceiling: SHA-256 + Ed25519 verify, 1 core", f"{ceiling_rate:,.0f}"
    )
    return table


def big_table(backend: str, count: int, figures: dict) -> Table:
    table = Table(title=f"At {count:,} entries on {backend} (bulk-loaded)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target / baseline", justify="right")
    http, stored = figures["http"], figures["stored"]
    pm = figures["pymerkle"]
    ok, reason, checked, elapsed, peak = figures["audit"]
    table.add_row("bulk load (sign, hash, tree, COPY)", f"{figures['load']:.1f} s", "")
    table.add_row(
        "inclusion proof via HTTP, median", f"{median(http):.2f} ms", "< 2 ms"
    )
    table.add_row("inclusion proof via HTTP, p99", f"{p99(http):.2f} ms", "")
    table.add_row(
        "baseline: GET /healthz via HTTP, median",
        f"{median(figures['floor']):.2f} ms",
        "same service and client",
    )
    table.add_row(
        "inclusion proof from stored nodes, median", f"{median(stored):.2f} ms", ""
    )
    table.add_row(
        "pymerkle InmemoryTree proof, median",
        f"{median(pm['timings']):.2f} ms",
        f"paths equal ours: {pm['agree']}",
    )
    table.add_row("pymerkle tree build (in memory)", f"{pm['build']:.1f} s", "")
    verdict = "PASS" if ok else f"FAIL: {reason}"
    table.add_row(
        f"full audit (replay, {checked:,} entries) {verdict}",
        f"{elapsed:.1f} s",
        "< 20 s",
    )
    table.add_row("full audit peak RSS", f"{peak / 2**20:.0f} MB", "< 300 MB")
    table.add_row(
        "ledger service peak RSS", f"{figures['service_peak'] / 2**20:.0f} MB", ""
    )
    return table


def machine_load() -> str:
    one, five, _ = os.getloadavg()
    return (
        f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"
    )


@app.command()
def main(
    backends: Annotated[
        str, typer.Option(help="Comma-separated: sqlite, postgres.")
    ] = "sqlite,postgres",
    entries: Annotated[
        int, typer.Option(help="Size of the bulk-loaded log for proofs and audit.")
    ] = 1_000_000,
    big_backend: Annotated[
        str, typer.Option(help="Backend of the big log.")
    ] = "postgres",
    single: Annotated[int, typer.Option(help="Entries appended one by one.")] = 300,
    batched: Annotated[int, typer.Option(help="Entries appended batched.")] = 6000,
    threads: Annotated[
        str, typer.Option(help="Sequencer submitter threads, comma-separated.")
    ] = "64,256",
    clients: Annotated[int, typer.Option(help="Concurrent HTTP clients.")] = 32,
    workers: Annotated[int, typer.Option(help="uvicorn workers for appends.")] = 2,
    samples: Annotated[int, typer.Option(help="Proofs timed at the big size.")] = 1000,
) -> None:
    """Measure the ledger and print the figures beside their baselines."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING)
    )
    console.print(f"machine: {machine_load()}")
    options = {
        "single": single,
        "batched": batched,
        "threads": [int(t) for t in threads.split(",") if t.strip()],
        "clients": clients,
        "workers": workers,
    }
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as tmp:
        folder = Path(tmp)
        ceiling_rate = ceiling(2.0)
        results = {}
        for backend in [b.strip() for b in backends.split(",") if b.strip()]:
            console.print(f"appends on {backend} …")
            results[backend] = append_figures(backend, folder, options)
        console.print(append_table(results, ceiling_rate))
        if entries:
            console.print(
                f"bulk-loading {entries:,} signed entries into {big_backend} "
                "with the service's own tree code (TreeAppender), then "
                "measuring through the real HTTP service …"
            )
            figures = big_log_figures(big_backend, entries, folder, samples)
            console.print(big_table(big_backend, entries, figures))
    console.print(f"machine after: {machine_load()}")


if __name__ == "__main__":
    app()
