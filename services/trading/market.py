"""Listings, quotes, purchases, transfers and retirements of serialized tonnes.

Every movement takes whole blocks, splitting the last one when it holds more
than is needed, so the tonnes in all blocks of an issuance always add up.
Purchases lock the listing row (SELECT ... FOR UPDATE on PostgreSQL; SQLite
transactions are IMMEDIATE and so serialized), which is what keeps a listing
from being oversold however many buyers arrive at once.
"""

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.trading.models import (
    Account,
    Block,
    Cancellation,
    Listing,
    Purchase,
    Retirement,
    Transfer,
    idempotency_keys,
)
from services.trading.service import TradingContext, append_statement, new_id
from shared import idempotency
from shared.auth import Principal
from shared.crypto import key_id, public_key_b64
from shared.problems import Conflict, Forbidden, NotFound, Unprocessable
from shared.timeutil import iso_utc, utcnow

log = structlog.get_logger()

CENTS = Decimal("0.01")
MAX_TOTAL_CNY = Decimal("999999999999.99")  # what a Numeric(14, 2) column holds


def total_price(listing: Listing, quantity_t: int) -> Decimal:
    """The price of quantity_t tonnes, refused past what a purchase can record."""
    total = (listing.price_cny * quantity_t).quantize(CENTS)
    if total > MAX_TOTAL_CNY:
        raise Unprocessable(
            f"{quantity_t} t at {listing.price_cny} CNY is more than one purchase "
            f"can record ({MAX_TOTAL_CNY} CNY); buy fewer tonnes at a time.",
            slug="total-too-large",
        )
    return total


def _owned_account(session: Session, principal: Principal, account_id: str) -> Account:
    account = session.get(Account, account_id)
    if account is None or not principal.owns(account.org_id):
        raise NotFound(f"There is no account {account_id}.", slug="no-such-account")
    if account.kind != "holding":
        raise Forbidden("Only holding accounts trade.", slug="not-a-holding-account")
    return account


def _blocks(session: Session, *, lock: bool = True, **where: Any) -> list[Block]:
    query = select(Block).filter_by(**where).order_by(Block.start)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return list(session.execute(query).scalars())


def take(session: Session, blocks: list[Block], quantity: int) -> list[Block]:
    """Blocks holding exactly quantity tonnes, splitting the last one needed."""
    if sum(block.quantity_t for block in blocks) < quantity:
        raise Conflict(
            f"Only {sum(b.quantity_t for b in blocks)} t are available.",
            slug="insufficient-credits",
        )
    taken, needed = [], quantity
    for block in blocks:
        if needed == 0:
            break
        if block.quantity_t > needed:
            _split(session, block, needed)
        taken.append(block)
        needed -= block.quantity_t
    return taken


def _split(session: Session, block: Block, keep: int) -> Block:
    """Shortens block to keep tonnes; the rest becomes a new block beside it."""
    rest = Block(
        id=new_id(),
        project=block.project,
        vintage=block.vintage,
        start=block.start + keep,
        end=block.end,
        issuance_id=block.issuance_id,
        account_id=block.account_id,
        status=block.status,
        listing_id=block.listing_id,
        retirement_id=block.retirement_id,
        updated_at=utcnow(),
    )
    block.end = block.start + keep - 1
    session.flush()
    session.add(rest)
    session.flush()
    return rest


def _move(blocks: list[Block], **values: Any) -> list[str]:
    now = utcnow()
    for block in blocks:
        for name, value in values.items():
            setattr(block, name, value)
        block.updated_at = now
    return [block.serial for block in blocks]


def create_listing(
    session: Session,
    *,
    ctx: TradingContext,
    principal: Principal,
    account_id: str,
    quantity_t: int,
    price_cny: Decimal,
) -> Listing:
    account = _owned_account(session, principal, account_id)
    held = _blocks(session, account_id=account.id, status="held")
    listing = Listing(
        id=new_id(),
        account_id=account.id,
        price_cny=price_cny.quantize(CENTS),
        quantity_t=quantity_t,
        available_t=quantity_t,
        status="open",
        created_at=utcnow(),
    )
    session.add(listing)
    session.flush()
    serials = _move(
        take(session, held, quantity_t), status="listed", listing_id=listing.id
    )
    _record_status_change(
        session,
        ctx=ctx,
        subject_id=f"listing-{listing.id}",
        reason="listing",
        account_id=account.id,
        serials=serials,
        status=("held", "listed"),
        quantity=quantity_t,
        extra={"listing_id": listing.id, "price_cny": str(listing.price_cny)},
    )
    log.info("trading.listing_created", listing_id=listing.id, quantity_t=quantity_t)
    return listing


def get_listing(session: Session, *, listing_id: str, lock: bool = False) -> Listing:
    query = select(Listing).where(Listing.id == listing_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    listing = session.execute(query).scalar_one_or_none()
    if listing is None:
        raise NotFound(f"There is no listing {listing_id}.", slug="no-such-listing")
    return listing


def list_listings(session: Session, *, status: str | None) -> list[Listing]:
    query = select(Listing).order_by(Listing.created_at, Listing.id)
    if status is not None:
        query = query.where(Listing.status == status)
    return list(session.execute(query).scalars())


def close_listing(
    session: Session, *, ctx: TradingContext, principal: Principal, listing_id: str
) -> Listing:
    """Withdraws what is unsold; those tonnes are held again."""
    listing = get_listing(session, listing_id=listing_id, lock=True)
    _owned_account(session, principal, listing.account_id)
    if listing.status != "open":
        raise Conflict(
            f"Listing {listing_id} is {listing.status}.", slug="listing-closed"
        )
    withdrawn = listing.available_t
    serials = _move(
        _blocks(session, listing_id=listing.id, status="listed"),
        status="held",
        listing_id=None,
    )
    listing.status, listing.available_t = "closed", 0
    if serials:
        _record_status_change(
            session,
            ctx=ctx,
            subject_id=f"delisting-{listing.id}",
            reason="delisting",
            account_id=listing.account_id,
            serials=serials,
            status=("listed", "held"),
            quantity=withdrawn,
            extra={"listing_id": listing.id},
        )
    return listing


def quote(session: Session, *, listing_id: str, quantity_t: int) -> dict[str, Any]:
    listing = get_listing(session, listing_id=listing_id)
    if listing.status != "open" or listing.available_t < quantity_t:
        raise Conflict(
            f"Listing {listing_id} has {listing.available_t} t available.",
            slug="insufficient-credits",
            available_t=listing.available_t,
        )
    return {
        "listing_id": listing.id,
        "quantity_t": quantity_t,
        "unit_price_cny": str(listing.price_cny),
        "total_cny": str(total_price(listing, quantity_t)),
        "currency": "CNY",
        "available_t": listing.available_t,
    }


def _buyer_account(
    session: Session, principal: Principal, account_id: str | None
) -> Account:
    if account_id is not None:
        return _owned_account(session, principal, account_id)
    query = (
        select(Account)
        .where(Account.org_id == (principal.org or ""), Account.kind == "holding")
        .order_by(Account.created_at, Account.id)
    )
    account = session.execute(query).scalars().first()
    if account is None:
        raise Unprocessable(
            "The buyer's organisation has no account; an admin creates one.",
            slug="no-buyer-account",
        )
    return account


def once(
    session: Session,
    *,
    principal: Principal,
    key: str | None,
    request: dict[str, Any],
    lock: Callable[[], Any],
    action: Callable[[], dict[str, Any]],
) -> tuple[int, dict[str, Any]]:
    """Runs action once per Idempotency-Key and returns (status, body).

    The key is checked again after lock(), which makes a rival request with
    the same key wait for the first one and then replay its answer.
    """
    who = f"{principal.role}:{principal.sub}"
    stored = _replayed(session, key, who, request)
    if stored is not None:
        return stored
    lock()
    stored = _replayed(session, key, who, request)
    if stored is not None:
        return stored
    body = action()
    if key is not None:
        idempotency.remember(
            session,
            idempotency_keys,
            key=key,
            principal=who,
            request=request,
            status_code=201,
            response=body,
        )
    return 201, body


def _replayed(
    session: Session, key: str | None, who: str, request: dict[str, Any]
) -> tuple[int, Any] | None:
    if key is None:
        return None
    return idempotency.replay(
        session, idempotency_keys, key=key, principal=who, request=request
    )


def lock_account(session: Session, account_id: str) -> Account | None:
    query = (
        select(Account)
        .where(Account.id == account_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.execute(query).scalar_one_or_none()


def purchase(
    session: Session,
    *,
    ctx: TradingContext,
    principal: Principal,
    key: str,
    request: dict[str, Any],
) -> tuple[int, dict[str, Any]]:
    """Buys tonnes from a listing once per Idempotency-Key; returns (status, body)."""
    locked: list[Listing] = []

    def lock() -> None:
        locked.append(get_listing(session, listing_id=request["listing_id"], lock=True))

    def action() -> dict[str, Any]:
        buyer = _buyer_account(session, principal, request.get("account_id"))
        record = buy(
            session,
            ctx=ctx,
            principal=principal,
            listing=locked[0],
            buyer=buyer,
            quantity=request["quantity_t"],
        )
        return purchase_view(record)

    return once(
        session,
        principal=principal,
        key=key,
        request=request,
        lock=lock,
        action=action,
    )


def buy(
    session: Session,
    *,
    ctx: TradingContext,
    principal: Principal,
    listing: Listing,
    buyer: Account,
    quantity: int,
) -> Purchase:
    if listing.status != "open" or listing.available_t < quantity:
        raise Conflict(
            f"Listing {listing.id} has {listing.available_t} t available.",
            slug="insufficient-credits",
            available_t=listing.available_t,
        )
    if buyer.id == listing.account_id:
        raise Conflict("An account cannot buy its own listing.", slug="own-listing")
    listed = _blocks(session, listing_id=listing.id, status="listed")
    serials = _move(
        take(session, listed, quantity),
        status="held",
        listing_id=None,
        account_id=buyer.id,
    )
    listing.available_t -= quantity
    if listing.available_t == 0:
        listing.status = "sold"
    record = Purchase(
        id=new_id(),
        listing_id=listing.id,
        buyer_account_id=buyer.id,
        quantity_t=quantity,
        unit_price_cny=listing.price_cny,
        total_cny=total_price(listing, quantity),
        serials=serials,
        buyer=principal.sub,
        created_at=utcnow(),
    )
    session.add(record)
    session.flush()
    _record_transfer(
        session,
        ctx=ctx,
        subject_id=record.id,
        reason="purchase",
        from_account=listing.account_id,
        to_account=buyer.id,
        quantity=quantity,
        serials=serials,
        extra={"listing_id": listing.id, "total_cny": str(record.total_cny)},
    )
    log.info("trading.purchase_made", purchase_id=record.id, quantity_t=quantity)
    return record


def _record_transfer(
    session: Session,
    *,
    ctx: TradingContext,
    subject_id: str,
    reason: str,
    from_account: str,
    to_account: str,
    quantity: int,
    serials: list[str],
    extra: dict[str, Any] | None = None,
) -> None:
    append_statement(
        session,
        ctx=ctx,
        kind="credit.transfer",
        subject_id=subject_id,
        body={
            "transfer_id": subject_id,
            "reason": reason,
            "from_account_id": from_account,
            "to_account_id": to_account,
            "quantity_t": quantity,
            "serials": serials,
            **(extra or {}),
        },
    )


def _record_status_change(
    session: Session,
    *,
    ctx: TradingContext,
    subject_id: str,
    reason: str,
    account_id: str,
    serials: list[str],
    status: tuple[str, str],
    quantity: int,
    extra: dict[str, Any] | None = None,
) -> None:
    """A movement that changes status within one account, for the ledger."""
    _record_transfer(
        session,
        ctx=ctx,
        subject_id=subject_id,
        reason=reason,
        from_account=account_id,
        to_account=account_id,
        quantity=quantity,
        serials=serials,
        extra={"status_from": status[0], "status_to": status[1], **(extra or {})},
    )


def purchase_view(record: Purchase) -> dict[str, Any]:
    return {
        "id": record.id,
        "listing_id": record.listing_id,
        "account_id": record.buyer_account_id,
        "quantity_t": record.quantity_t,
        "unit_price_cny": str(record.unit_price_cny),
        "total_cny": str(record.total_cny),
        "currency": "CNY",
        "serials": record.serials,
        "created_at": iso_utc(record.created_at),
    }


def transfer(
    session: Session,
    *,
    ctx: TradingContext,
    principal: Principal,
    from_account_id: str,
    to_account_id: str,
    quantity_t: int,
) -> Transfer:
    source = _owned_account(session, principal, from_account_id)
    target = session.get(Account, to_account_id)
    if target is None or target.kind != "holding":
        raise NotFound(f"There is no account {to_account_id}.", slug="no-such-account")
    if target.id == source.id:
        raise Unprocessable("A transfer needs two accounts.", slug="same-account")
    held = _blocks(session, account_id=source.id, status="held")
    serials = _move(take(session, held, quantity_t), account_id=target.id)
    record = Transfer(
        id=new_id(),
        from_account_id=source.id,
        to_account_id=target.id,
        quantity_t=quantity_t,
        serials=serials,
        created_by=principal.sub,
        created_at=utcnow(),
    )
    session.add(record)
    session.flush()
    _record_transfer(
        session,
        ctx=ctx,
        subject_id=record.id,
        reason="transfer",
        from_account=source.id,
        to_account=target.id,
        quantity=quantity_t,
        serials=serials,
    )
    return record


def transfer_view(record: Transfer) -> dict[str, Any]:
    return {
        "id": record.id,
        "from_account_id": record.from_account_id,
        "to_account_id": record.to_account_id,
        "quantity_t": record.quantity_t,
        "serials": record.serials,
        "created_at": iso_utc(record.created_at),
    }


def retire(
    session: Session,
    *,
    ctx: TradingContext,
    principal: Principal,
    account_id: str,
    quantity_t: int,
    beneficiary: str,
    purpose: str,
) -> Retirement:
    """Retires held tonnes for a beneficiary; nothing can undo it."""
    account = _owned_account(session, principal, account_id)
    held = _blocks(session, account_id=account.id, status="held")
    taken = take(session, held, quantity_t)
    return _retire_blocks(
        session,
        ctx=ctx,
        principal=principal,
        account=account,
        taken=taken,
        beneficiary=beneficiary,
        purpose=purpose,
    )


def _retire_blocks(
    session: Session,
    *,
    ctx: TradingContext,
    principal: Principal,
    account: Account,
    taken: list[Block],
    beneficiary: str,
    purpose: str,
) -> Retirement:
    """Retires exactly the blocks taken and signs the statement."""
    retirement_id = new_id()
    quantity_t = sum(block.quantity_t for block in taken)
    now = utcnow()
    body = {
        "retirement_id": retirement_id,
        "account_id": account.id,
        "org_id": account.org_id,
        "quantity_t": quantity_t,
        "serials": [block.serial for block in taken],
        "beneficiary": beneficiary,
        "purpose": purpose,
    }
    entry = append_statement(
        session,
        ctx=ctx,
        kind="credit.retirement",
        subject_id=retirement_id,
        body=body,
        at=now,
    )
    record = Retirement(
        id=retirement_id,
        account_id=account.id,
        quantity_t=quantity_t,
        beneficiary=beneficiary,
        purpose=purpose,
        serials=body["serials"],
        statement=entry["statement"],
        signature=entry["signatures"][0],
        created_by=principal.sub,
        created_at=now,
    )
    session.add(record)
    session.flush()
    _move(taken, status="retired", retirement_id=record.id)
    log.info("trading.credits_retired", retirement_id=record.id, quantity_t=quantity_t)
    return record


def get_retirement(session: Session, *, retirement_id: str) -> Retirement:
    record = session.get(Retirement, retirement_id)
    if record is None:
        raise NotFound(f"There is no retirement {retirement_id}.")
    return record


def certificate(record: Retirement, ctx: TradingContext) -> dict[str, Any]:
    """The retirement statement with the trading key's signature over it."""
    return {
        "statement": record.statement,
        "signatures": [record.signature],
        "signer": {
            "party_id": "trading",
            "key_id": key_id(ctx.signer),
            "public_key": public_key_b64(ctx.signer),
        },
    }


def order(
    session: Session,
    *,
    ctx: TradingContext,
    principal: Principal,
    key: str,
    request: dict[str, Any],
) -> tuple[int, dict[str, Any]]:
    """Buys from a listing and retires exactly those tonnes for a beneficiary,
    in one transaction, once per Idempotency-Key (a Patch or Carbonmark order)."""
    locked: list[Listing] = []

    def lock() -> None:
        locked.append(get_listing(session, listing_id=request["listing_id"], lock=True))

    def action() -> dict[str, Any]:
        buyer = _buyer_account(session, principal, request.get("account_id"))
        bought = buy(
            session,
            ctx=ctx,
            principal=principal,
            listing=locked[0],
            buyer=buyer,
            quantity=request["quantity_t"],
        )
        retirement = _retire_blocks(
            session,
            ctx=ctx,
            principal=principal,
            account=buyer,
            taken=_bought_blocks(session, bought),
            beneficiary=request["beneficiary"],
            purpose=request["purpose"],
        )
        return order_view(bought, retirement, ctx)

    return once(
        session, principal=principal, key=key, request=request, lock=lock, action=action
    )


def _bought_blocks(session: Session, record: Purchase) -> list[Block]:
    starts = [int(serial.split("-")[-2]) for serial in record.serials]
    query = (
        select(Block)
        .where(
            Block.account_id == record.buyer_account_id,
            Block.status == "held",
            Block.start.in_(starts),
            Block.project == record.serials[0].split("-")[1],
        )
        .order_by(Block.start)
    )
    return list(session.execute(query).scalars())


def order_view(
    bought: Purchase, retirement: Retirement, ctx: TradingContext
) -> dict[str, Any]:
    return {
        "id": bought.id,
        "state": "retired",
        "quantity_t": bought.quantity_t,
        "unit_price_cny": str(bought.unit_price_cny),
        "total_cny": str(bought.total_cny),
        "currency": "CNY",
        "beneficiary": retirement.beneficiary,
        "purpose": retirement.purpose,
        "serials": retirement.serials,
        "purchase": purchase_view(bought),
        "retirement": retirement_view(retirement, ctx),
        "certificate_url": f"/v1/retirements/{retirement.id}/certificate",
        "certificate_pdf_url": f"/v1/retirements/{retirement.id}/certificate.pdf",
        "created_at": iso_utc(bought.created_at),
    }


def retirement_view(record: Retirement, ctx: TradingContext) -> dict[str, Any]:
    return {
        "id": record.id,
        "account_id": record.account_id,
        "quantity_t": record.quantity_t,
        "beneficiary": record.beneficiary,
        "purpose": record.purpose,
        "serials": record.serials,
        "created_at": iso_utc(record.created_at),
        "certificate": certificate(record, ctx),
    }


def cancel(
    session: Session,
    *,
    ctx: TradingContext,
    principal: Principal,
    account_id: str,
    quantity_t: int,
    reason: str,
) -> Cancellation:
    """Takes held (or buffer) tonnes out of circulation for good."""
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(f"There is no account {account_id}.", slug="no-such-account")
    status = "buffer" if account.kind == "buffer" else "held"
    taken = take(
        session, _blocks(session, account_id=account.id, status=status), quantity_t
    )
    record = Cancellation(
        id=new_id(),
        account_id=account.id,
        quantity_t=quantity_t,
        serials=[block.serial for block in taken],
        reason=reason,
        created_by=principal.sub,
        created_at=utcnow(),
    )
    session.add(record)
    session.flush()
    _move(taken, status="cancelled", cancellation_id=record.id)
    _record_status_change(
        session,
        ctx=ctx,
        subject_id=f"cancellation-{record.id}",
        reason="cancellation",
        account_id=account.id,
        serials=record.serials,
        status=(status, "cancelled"),
        quantity=quantity_t,
        extra={"cancellation_id": record.id, "cancellation_reason": reason},
    )
    log.info(
        "trading.credits_cancelled", cancellation_id=record.id, quantity_t=quantity_t
    )
    return record


def cancellation_view(record: Cancellation) -> dict[str, Any]:
    return {
        "id": record.id,
        "account_id": record.account_id,
        "quantity_t": record.quantity_t,
        "serials": record.serials,
        "reason": record.reason,
        "created_by": record.created_by,
        "created_at": iso_utc(record.created_at),
    }
