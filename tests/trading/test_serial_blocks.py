"""Serial blocks never overlap and always add up, whatever moves them."""

import uuid
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from services.trading import market, registry
from services.trading.config import TradingConfig
from services.trading.models import Account, Block, Project, Report
from services.trading.service import TradingContext
from shared.auth import Principal, Role
from shared.crypto import generate_key
from shared.db import make_engine, make_sessionmaker
from shared.problems import Conflict
from shared.timeutil import utcnow

ADMIN = Principal(sub="admin-1", role=Role.ADMIN)
ACCOUNTS = 3

moves = st.lists(
    st.tuples(
        st.sampled_from(["transfer", "retire", "list", "buy", "close", "cancel"]),
        st.integers(0, ACCOUNTS - 1),
        st.integers(0, ACCOUNTS - 1),
        st.integers(1, 40),
    ),
    max_size=12,
)


@pytest.fixture(scope="module")
def sessions(databases):
    engine = make_engine(databases.url("trading"))
    yield make_sessionmaker(engine)
    engine.dispose()


def issued(session, ctx, tonnes: int) -> list[str]:
    accounts = [
        registry.create_account(session, org_id=f"org{n}", name="a")
        for n in range(ACCOUNTS)
    ]
    session.add(Project(code=ctx.config.project, next_serial=1, carry_g=0))
    report = Report(
        id=str(uuid.uuid4()),
        project=ctx.config.project,
        vintage=2026,
        period_start=utcnow(),
        period_end=utcnow(),
        account_id=accounts[0].id,
        status="approved",
        total_g=tonnes * 1_000_000 + 999_999,
        batch_ids=[],
        buffer_permille=0,
        created_by="service",
        created_at=utcnow(),
    )
    session.add(report)
    session.flush()
    registry.issue(session, ctx=ctx, report=report)
    return [account.id for account in accounts]


def apply(session, ctx, accounts, move, listings) -> None:
    kind, source, target, quantity = move
    if kind == "transfer" and source != target:
        market.transfer(
            session,
            ctx=ctx,
            principal=ADMIN,
            from_account_id=accounts[source],
            to_account_id=accounts[target],
            quantity_t=quantity,
        )
    elif kind == "retire":
        market.retire(
            session,
            ctx=ctx,
            principal=ADMIN,
            account_id=accounts[source],
            quantity_t=quantity,
            beneficiary="b",
            purpose="p",
        )
    elif kind == "list":
        listings.append(
            market.create_listing(
                session,
                ctx=ctx,
                principal=ADMIN,
                account_id=accounts[source],
                quantity_t=quantity,
                price_cny=market.CENTS,
            )
        )
    elif kind == "close" and listings and listings[-1].status == "open":
        market.close_listing(
            session, ctx=ctx, principal=ADMIN, listing_id=listings[-1].id
        )
    elif kind == "cancel":
        market.cancel(
            session,
            ctx=ctx,
            principal=ADMIN,
            account_id=accounts[source],
            quantity_t=quantity,
            reason="duplicate claim found",
        )
    elif kind == "buy" and listings:
        listing = listings[-1]
        buyer = session.get(Account, accounts[target])
        market.buy(
            session,
            ctx=ctx,
            principal=ADMIN,
            listing=listing,
            buyer=buyer,
            quantity=quantity,
        )


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(tonnes=st.integers(1, 60), steps=moves)
def test_blocks_never_overlap_and_always_sum(sessions, tonnes, steps):
    project = "P" + uuid.uuid4().hex[:8].upper()
    ctx = TradingContext(
        config=TradingConfig(project=project),
        signer=generate_key(),
        ledger=None,
        tracking=None,
    )
    with sessions() as session:
        accounts = issued(session, ctx, tonnes)
        listings: list = []
        for move in steps:
            try:
                with session.begin_nested():
                    apply(session, ctx, accounts, move, listings)
            except Conflict:
                pass
            blocks = list(
                session.execute(
                    select(Block).where(Block.project == project).order_by(Block.start)
                ).scalars()
            )

            assert blocks[0].start == 1
            assert blocks[-1].end == tonnes
            for left, right in zip(blocks, blocks[1:], strict=False):
                assert right.start == left.end + 1
            assert sum(b.quantity_t for b in blocks) == tonnes
            by_status = Counter()
            for block in blocks:
                by_status[block.status] += block.quantity_t
                if block.status == "listed":
                    assert block.listing_id is not None
                if block.status == "cancelled":
                    assert block.cancellation_id is not None
            listed = sum(listing.available_t for listing in listings)
            assert by_status["listed"] == listed
        session.rollback()
