"""Benchmark of the trading market on PostgreSQL: many buyers, one listing.

A real trading process (uvicorn, several workers) serves a throwaway
PostgreSQL database on a free loopback port. One listing is offered and
--buyers buyers, each with its own account and token, race to buy from it
over real HTTP, asking for more tonnes in all than are listed. The table
shows purchases per second and the tonnes sold, which must equal the tonnes
listed and never exceed them, beside a baseline measured in the same run:
the same number of purchases made one after another by a single buyer
against a second listing of the same size.

The credits are issued straight into the database (no ledger is needed to
sell them); the ledger statements they queue stay in trading's outbox.
"""

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import structlog
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.trading import market, registry  # noqa: E402
from services.trading.config import TradingConfig  # noqa: E402
from services.trading.models import Block, Listing, Project, Purchase, Report  # noqa: E402
from services.trading.service import TradingContext  # noqa: E402
from shared.auth import Principal, Role, issue_token  # noqa: E402
from shared.crypto import generate_key  # noqa: E402
from shared.db import make_engine, make_sessionmaker, migrate  # noqa: E402
from shared.processes import uvicorn_command  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.timeutil import utcnow  # noqa: E402

PROJECT = "BENCH"
ADMIN = Principal(sub="bench-admin", role=Role.ADMIN)
console = Console(width=132)
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))


@dataclass
class Run:
    """What one purchasing run saw from the client side."""

    label: str
    listed_t: int
    attempts: int = 0
    sold_t: int = 0
    refused: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def bought(self) -> int:
        return len(self.latencies) - self.refused - self.errors

    def per_second(self) -> float:
        return self.bought / self.seconds if self.seconds else 0.0

    def percentile(self, share: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def create_database(admin_url: str) -> str:
    name = f"salvage_bench_trading_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_url(admin_url: str, name: str) -> str:
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def issue(session, ctx: TradingContext, account_id: str, tonnes: int) -> None:
    """Issues tonnes to an account on an approved report of no batches."""
    session.add(Project(code=PROJECT, next_serial=1, carry_g=0))
    now = utcnow()
    report = Report(
        id=str(uuid.uuid4()),
        project=PROJECT,
        vintage=now.year,
        period_start=now,
        period_end=now,
        account_id=account_id,
        status="approved",
        total_g=tonnes * 1_000_000,
        batch_ids=[],
        buffer_permille=0,
        created_by="bench",
        created_at=now,
    )
    session.add(report)
    session.flush()
    registry.issue(session, ctx=ctx, report=report)


def seed(url: str, *, buyers: int, listed_t: int) -> dict:
    """Issues 2 x listed_t tonnes, lists them twice, and opens buyer accounts."""
    ctx = TradingContext(
        config=TradingConfig(project=PROJECT, buffer_permille=0),
        signer=generate_key(),
        ledger=None,
        tracking=None,
    )
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        owner = registry.create_account(session, org_id="operator", name="Operator")
        issue(session, ctx, owner.id, 2 * listed_t)
        listings = [
            market.create_listing(
                session,
                ctx=ctx,
                principal=ADMIN,
                account_id=owner.id,
                quantity_t=listed_t,
                price_cny=Decimal("80.00"),
            ).id
            for _ in range(2)
        ]
        orgs = [f"buyer-{n:03d}" for n in range(buyers)]
        for org in orgs:
            registry.create_account(session, org_id=org, name=org)
        session.commit()
    engine.dispose()
    return {"contended": listings[0], "baseline": listings[1], "orgs": orgs}


def serve(url: str, data_dir: Path, workers: int) -> tuple[subprocess.Popen, str]:
    """Starts trading under uvicorn; the ledger URL points at a closed port."""
    port = free_port()
    env = dict(os.environ)
    env.update(
        SALVAGE_ENVIRONMENT="development",
        SALVAGE_DATA_DIR=str(data_dir),
        SALVAGE_TRADING_DATABASE_URL=url,
        SALVAGE_TRADING_PROJECT=PROJECT,
        SALVAGE_LEDGER_URL=f"http://127.0.0.1:{free_port()}",
        SALVAGE_OUTBOX_POLL_SECONDS="3600",
        SALVAGE_LOG_LEVEL="WARNING",
    )
    command = uvicorn_command("trading", "127.0.0.1", port, workers=workers)
    with (data_dir / "trading.log").open("ab") as log:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    wait_ready(process, base)
    return process, base


def wait_ready(process: subprocess.Popen, base: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("trading exited early")
        try:
            if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    stop(process)
    raise TimeoutError(f"trading did not become ready in {timeout:.0f} s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


async def buy(client: httpx.AsyncClient, run: Run, token: str, listing: str) -> None:
    """One purchase of one tonne with a fresh Idempotency-Key."""
    started = time.perf_counter()
    try:
        response = await client.post(
            "/v1/purchases",
            json={"listing_id": listing, "quantity_t": 1},
            headers={
                "Authorization": f"Bearer {token}",
                "Idempotency-Key": uuid.uuid4().hex,
            },
        )
        status = response.status_code
    except httpx.HTTPError:
        status = 0
    run.latencies.append(time.perf_counter() - started)
    if status == 201:
        run.sold_t += 1
    elif status == 409:
        run.refused += 1
    else:
        run.errors += 1


async def buyer_loop(
    client: httpx.AsyncClient, run: Run, token: str, listing: str, count: int
) -> None:
    for _ in range(count):
        await buy(client, run, token, listing)


async def contended(base: str, tokens: list[str], listing: str, run: Run, each: int):
    limits = httpx.Limits(max_connections=len(tokens), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as client:
        started = time.perf_counter()
        await asyncio.gather(
            *(buyer_loop(client, run, token, listing, each) for token in tokens)
        )
        run.seconds = time.perf_counter() - started
    run.attempts = len(tokens) * each


async def sequential(base: str, token: str, listing: str, run: Run, count: int):
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        started = time.perf_counter()
        await buyer_loop(client, run, token, listing, count)
        run.seconds = time.perf_counter() - started
    run.attempts = count


def stored(url: str, listing_id: str) -> dict[str, int]:
    """What the database says was sold from a listing, and whether blocks tile."""
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        purchases = select(func.coalesce(func.sum(Purchase.quantity_t), 0)).where(
            Purchase.listing_id == listing_id
        )
        sold = int(session.execute(purchases).scalar_one())
        available = session.get(Listing, listing_id).available_t
        blocks = list(
            session.execute(
                select(Block).where(Block.project == PROJECT).order_by(Block.start)
            ).scalars()
        )
    engine.dispose()
    tiled = all(b.start == a.end + 1 for a, b in zip(blocks, blocks[1:], strict=False))
    return {"sold": sold, "available": available, "tiled": int(tiled)}


def table(runs: list[Run], checks: list[dict[str, int]], args) -> Table:
    out = Table(title=f"trading: purchases from one listing ({args.workers} workers)")
    for name in (
        "run",
        "attempts",
        "bought",
        "purchases/s",
        "p50 ms",
        "p99 ms",
        "listed t",
        "sold t (HTTP)",
        "sold t (DB)",
        "409",
        "errors",
    ):
        out.add_column(name, justify="left" if name == "run" else "right")
    for run, check in zip(runs, checks, strict=True):
        out.add_row(
            run.label,
            str(run.attempts),
            str(run.bought),
            f"{run.per_second():.1f}",
            f"{run.percentile(0.5):.0f}",
            f"{run.percentile(0.99):.0f}",
            str(run.listed_t),
            str(run.sold_t),
            str(check["sold"]),
            str(run.refused),
            str(run.errors),
        )
    return out


def measure(args, url: str, data_dir: Path) -> tuple[list[Run], list[dict]]:
    seeded = seed(url, buyers=args.buyers, listed_t=args.listed)
    settings = Settings(environment="development", data_dir=data_dir)
    tokens = [
        issue_token(settings.auth_key(), sub=f"{org}-user", role="buyer", org=org)
        for org in seeded["orgs"]
    ]
    process, base = serve(url, data_dir, args.workers)
    each = -(-args.listed * args.oversubscribe // args.buyers)
    crowd = Run(f"{args.buyers} buyers at once", args.listed)
    alone = Run("baseline: 1 buyer in turn", args.listed)
    try:
        asyncio.run(contended(base, tokens, seeded["contended"], crowd, each))
        asyncio.run(sequential(base, tokens[0], seeded["baseline"], alone, args.listed))
    finally:
        stop(process)
    return [crowd, alone], [stored(url, seeded[k]) for k in ("contended", "baseline")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--buyers", type=int, default=200, help="concurrent buyers")
    parser.add_argument("--listed", type=int, default=300, help="tonnes listed")
    parser.add_argument(
        "--oversubscribe",
        type=int,
        default=2,
        help="demand as a multiple of the tonnes listed",
    )
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers")
    args = parser.parse_args()
    if not (1 <= args.buyers <= 1000 and 1 <= args.listed <= 5000):
        parser.error("keep --buyers within 1..1000 and --listed within 1..5000")
    load_before = os.getloadavg()[0]
    name = create_database(args.postgres)
    url = database_url(args.postgres, name)
    try:
        migrate("trading", url)
        with tempfile.TemporaryDirectory(prefix="salvage-bench-") as folder:
            runs, checks = measure(args, url, Path(folder))
    finally:
        drop_database(args.postgres, name)
    console.print(table(runs, checks, args))
    console.print(
        f"1-min load average: {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after ({os.cpu_count()} CPUs)"
    )
    honest = all(
        c["sold"] == r.sold_t == r.listed_t and c["available"] == 0 and c["tiled"]
        for r, c in zip(runs, checks, strict=True)
    )
    console.print("sold == listed, never more: " + ("PASS" if honest else "FAIL"))
    return 0 if honest and not any(r.errors for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
