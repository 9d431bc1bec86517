"""Routes of the trading service: quantification, reports, credits and market."""

from typing import Annotated, Any, Literal

import httpx
import structlog
from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from services.trading import bundle, market, methodology, registry, service
from services.trading.certificate import render_pdf
from services.trading.config import TradingConfig
from services.trading.models import outbox
from services.trading.schemas import (
    AccountRequest,
    CancellationRequest,
    DecisionRequest,
    ListingRequest,
    OrderRequest,
    PurchaseRequest,
    QuantificationRequest,
    QuoteRequest,
    ReportRequest,
    RetirementRequest,
    TransferRequest,
)
from services.trading.service import TradingContext
from shared.app import create_service_app, get_session
from shared.auth import Principal, Role, current_principal, require
from shared.crypto import key_id, public_key_b64
from shared.http import service_client
from shared.idempotency import check_key
from shared.outbox import OutboxRelay
from shared.provenance import seals_root
from shared.settings import Settings, get_settings
from shared.timeutil import iso_utc

log = structlog.get_logger()

SessionDep = Annotated[Session, Depends(get_session)]
Operator = Annotated[Principal, Depends(require(Role.SERVICE))]
ByVerifier = Annotated[Principal, Depends(require(Role.VERIFIER))]
Trader = Annotated[Principal, Depends(require(Role.BUYER, Role.SERVICE))]
Buyer = Annotated[Principal, Depends(require(Role.BUYER))]
Admin = Annotated[Principal, Depends(require())]
Anyone = Annotated[Principal, Depends(current_principal)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


def get_context(request: Request) -> TradingContext:
    return request.app.state.trading


Context = Annotated[TradingContext, Depends(get_context)]
router = APIRouter(prefix="/v1")


@router.get("/methodology")
def read_methodology(ctx: Context, version: str | None = None) -> dict[str, Any]:
    """The factor table (each row with its source) and the conservativeness policy."""
    table = methodology.load_factor_table(version or ctx.config.factor_version)
    return {
        "version": table.version,
        "versions": methodology.available_versions(),
        "current_version": ctx.config.factor_version,
        "factors": [
            {
                "key": f.key,
                "value": str(f.value),
                "unit": f.unit,
                "source": f.source,
                "note": f.note,
            }
            for f in table.factors.values()
        ],
        "policy": ctx.policy().as_dict(),
    }


@router.get("/signing-key")
def read_signing_key(ctx: Context) -> dict[str, str]:
    """The trading key that signs ledger statements and certificates."""
    return {"key_id": key_id(ctx.signer), "public_key": public_key_b64(ctx.signer)}


@router.post("/quantifications", status_code=201)
def quantify_batch(
    body: QuantificationRequest, session: SessionDep, ctx: Context, _: Operator
) -> dict[str, Any]:
    """Verifies one sealed batch against the ledger and stores its calculation."""
    verifier = service.ledger_verifier(session, ctx=ctx)
    calculation = service.quantify_batch(
        session, ctx=ctx, verifier=verifier, batch_id=body.batch_id
    )
    session.commit()
    return service.calculation_view(calculation)


@router.get("/quantifications")
def list_quantifications(
    session: SessionDep, report_id: str | None = None
) -> dict[str, Any]:
    calculations = service.list_calculations(session, report_id=report_id)
    return {"items": [service.calculation_view(c) for c in calculations]}


@router.get("/quantifications/{batch_id}")
def read_quantification(batch_id: str, session: SessionDep) -> dict[str, Any]:
    """A batch's calculation: inputs, factor version, factors used and outputs."""
    return service.calculation_view(service.get_calculation(session, batch_id=batch_id))


@router.post("/reports", status_code=201)
def create_report(
    body: ReportRequest, session: SessionDep, ctx: Context, principal: Operator
) -> dict[str, Any]:
    """Quantifies the period's sealed batches and submits them for verification.

    Seals read on the way are remembered even when no report results.
    """
    try:
        report, refused = registry.create_report(
            session,
            ctx=ctx,
            principal=principal,
            period_start=body.period_start,
            period_end=body.period_end,
            account_id=body.account_id,
        )
    except registry.NoEligibleBatches:
        session.commit()
        raise
    session.commit()
    return {**registry.report_view(session, report), "refused": refused}


@router.get("/reports")
def list_reports(session: SessionDep) -> dict[str, Any]:
    reports = registry.list_reports(session)
    return {"items": [registry.report_view(session, r) for r in reports]}


@router.get("/reports/{report_id}")
def read_report(report_id: str, session: SessionDep) -> dict[str, Any]:
    report = registry.get_report(session, report_id=report_id)
    return registry.report_view(session, report)


@router.post("/reports/{report_id}/decision")
def decide_report(
    report_id: str,
    body: DecisionRequest,
    session: SessionDep,
    ctx: Context,
    principal: ByVerifier,
) -> dict[str, Any]:
    """A verifier approves (credits are issued) or rejects a report."""
    report = registry.decide_report(
        session,
        ctx=ctx,
        principal=principal,
        report_id=report_id,
        approve=body.decision == "approve",
        comments=body.comments,
    )
    session.commit()
    return registry.report_view(session, report)


@router.post("/accounts", status_code=201)
def create_account(
    body: AccountRequest, session: SessionDep, _: Admin
) -> dict[str, Any]:
    """Opens a holding account for an organisation (admin only)."""
    account = registry.create_account(session, org_id=body.org_id, name=body.name)
    session.commit()
    return registry.account_view(session, account)


@router.get("/accounts")
def list_accounts(session: SessionDep, principal: Anyone) -> dict[str, Any]:
    """Accounts the caller may see: its organisation's, or all for admins."""
    accounts = registry.list_accounts(session, principal=principal)
    return {"items": [registry.account_view(session, a) for a in accounts]}


@router.get("/accounts/{account_id}")
def read_account(
    account_id: str, session: SessionDep, principal: Anyone
) -> dict[str, Any]:
    account = registry.get_account(session, principal=principal, account_id=account_id)
    return registry.account_view(session, account, with_blocks=True)


@router.post("/listings", status_code=201)
def create_listing(
    body: ListingRequest, session: SessionDep, ctx: Context, principal: Trader
) -> dict[str, Any]:
    """Offers held tonnes of an account at a fixed price per tonne in CNY."""
    listing = market.create_listing(
        session,
        ctx=ctx,
        principal=principal,
        account_id=body.account_id,
        quantity_t=body.quantity_t,
        price_cny=body.price_cny,
    )
    session.commit()
    return listing_view(listing)


@router.get("/listings")
def list_listings(
    session: SessionDep, status: Literal["open", "sold", "closed"] | None = None
) -> dict[str, Any]:
    return {
        "items": [listing_view(x) for x in market.list_listings(session, status=status)]
    }


@router.get("/listings/{listing_id}")
def read_listing(listing_id: str, session: SessionDep) -> dict[str, Any]:
    return listing_view(market.get_listing(session, listing_id=listing_id))


@router.post("/listings/{listing_id}/close")
def close_listing(
    listing_id: str, session: SessionDep, ctx: Context, principal: Trader
) -> dict[str, Any]:
    """Withdraws a listing; its unsold tonnes are held again."""
    listing = market.close_listing(
        session, ctx=ctx, principal=principal, listing_id=listing_id
    )
    session.commit()
    return listing_view(listing)


def listing_view(listing) -> dict[str, Any]:
    return {
        "id": listing.id,
        "account_id": listing.account_id,
        "price_cny": str(listing.price_cny),
        "currency": "CNY",
        "quantity_t": listing.quantity_t,
        "available_t": listing.available_t,
        "status": listing.status,
        "created_at": iso_utc(listing.created_at),
    }


@router.post("/quotes")
def make_quote(body: QuoteRequest, session: SessionDep) -> dict[str, Any]:
    """The price of a quantity from a listing; nothing is reserved."""
    return market.quote(session, listing_id=body.listing_id, quantity_t=body.quantity_t)


@router.post("/purchases", status_code=201)
def purchase(
    body: PurchaseRequest,
    session: SessionDep,
    ctx: Context,
    principal: Buyer,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Buys tonnes from a listing; a repeated Idempotency-Key gets the first answer."""
    key = check_key(idempotency_key)
    status, payload = market.purchase(
        session,
        ctx=ctx,
        principal=principal,
        key=key,
        request=body.model_dump(mode="json"),
    )
    session.commit()
    return JSONResponse(payload, status_code=status)


@router.post("/orders", status_code=201)
def place_order(
    body: OrderRequest,
    session: SessionDep,
    ctx: Context,
    principal: Buyer,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Buys tonnes and retires them for a beneficiary in one step, as Patch and
    Carbonmark orders do; the answer links the certificate. Idempotency-Key
    is required."""
    status, payload = market.order(
        session,
        ctx=ctx,
        principal=principal,
        key=check_key(idempotency_key),
        request=body.model_dump(mode="json"),
    )
    session.commit()
    return JSONResponse(payload, status_code=status)


@router.post("/transfers", status_code=201)
def transfer(
    body: TransferRequest,
    session: SessionDep,
    ctx: Context,
    principal: Trader,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Moves held tonnes to another account; an Idempotency-Key makes it once."""
    status, payload = market.once(
        session,
        principal=principal,
        key=check_key(idempotency_key, required=False),
        request=body.model_dump(mode="json"),
        lock=lambda: market.lock_account(session, body.from_account_id),
        action=lambda: market.transfer_view(
            market.transfer(
                session,
                ctx=ctx,
                principal=principal,
                from_account_id=body.from_account_id,
                to_account_id=body.to_account_id,
                quantity_t=body.quantity_t,
            )
        ),
    )
    session.commit()
    return JSONResponse(payload, status_code=status)


@router.post("/retirements", status_code=201)
def retire(
    body: RetirementRequest,
    session: SessionDep,
    ctx: Context,
    principal: Trader,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Retires held tonnes for a beneficiary and purpose; this cannot be undone.

    The answer carries the certificate. An Idempotency-Key makes a retry safe.
    """
    status, payload = market.once(
        session,
        principal=principal,
        key=check_key(idempotency_key, required=False),
        request=body.model_dump(mode="json"),
        lock=lambda: market.lock_account(session, body.account_id),
        action=lambda: market.retirement_view(
            market.retire(
                session,
                ctx=ctx,
                principal=principal,
                account_id=body.account_id,
                quantity_t=body.quantity_t,
                beneficiary=body.beneficiary,
                purpose=body.purpose,
            ),
            ctx,
        ),
    )
    session.commit()
    return JSONResponse(payload, status_code=status)


@router.get("/retirements/{retirement_id}")
def read_retirement(
    retirement_id: str, session: SessionDep, ctx: Context
) -> dict[str, Any]:
    record = market.get_retirement(session, retirement_id=retirement_id)
    return market.retirement_view(record, ctx)


@router.get("/retirements/{retirement_id}/certificate")
def read_certificate(
    retirement_id: str, session: SessionDep, ctx: Context
) -> dict[str, Any]:
    """The retirement certificate: the statement and the trading key's signature."""
    record = market.get_retirement(session, retirement_id=retirement_id)
    return market.certificate(record, ctx)


@router.get(
    "/retirements/{retirement_id}/certificate.pdf",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
)
def read_certificate_pdf(
    retirement_id: str, request: Request, session: SessionDep, ctx: Context
) -> Response:
    """The retirement certificate as a PDF that restates the signed JSON."""
    record = market.get_retirement(session, retirement_id=retirement_id)
    base = str(request.base_url).rstrip("/")
    pdf = render_pdf(market.certificate(record, ctx), registry_url=base)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'inline; filename="retirement-{record.id}.pdf"'
        },
    )


@router.post("/cancellations", status_code=201)
def cancel_credits(
    body: CancellationRequest,
    session: SessionDep,
    ctx: Context,
    principal: Admin,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Cancels held or buffer tonnes of an account for good (admin only)."""
    status, payload = market.once(
        session,
        principal=principal,
        key=check_key(idempotency_key, required=False),
        request=body.model_dump(mode="json"),
        lock=lambda: market.lock_account(session, body.account_id),
        action=lambda: market.cancellation_view(
            market.cancel(
                session,
                ctx=ctx,
                principal=principal,
                account_id=body.account_id,
                quantity_t=body.quantity_t,
                reason=body.reason,
            )
        ),
    )
    session.commit()
    return JSONResponse(payload, status_code=status)


@router.get("/credits/{serial}/bundle")
def download_bundle(serial: str, session: SessionDep, ctx: Context) -> JSONResponse:
    """Every ledger entry behind a serial with inclusion proofs against one
    checkpoint: `salvage audit credit-bundle FILE` verifies it offline."""
    payload = bundle.credit_bundle(session, ctx=ctx, serial=serial)
    session.commit()
    return JSONResponse(
        payload,
        headers={"Content-Disposition": f'attachment; filename="{serial}.bundle.json"'},
    )


@router.get("/issuances/{issuance_id}/seals")
def read_issuance_seals(issuance_id: str, session: SessionDep) -> dict[str, Any]:
    """The seals an issuance's seals_root commits to, in log order."""
    issuance = registry.get_issuance(session, issuance_id=issuance_id)
    seals = registry.seals_of(session, issuance.report_id)
    return {
        "issuance_id": issuance.id,
        "seals_root": seals_root(seals),
        "seal_count": len(seals),
        "seals": seals,
    }


@router.get("/credits/{serial}/provenance")
def read_provenance(serial: str, session: SessionDep) -> dict[str, Any]:
    """The block, issuance, report, calculations and seals behind a serial."""
    return registry.provenance(session, serial=serial)


@router.get("/registry/issuances")
def public_issuances(session: SessionDep) -> dict[str, Any]:
    """Every issuance, public."""
    return {"items": registry.list_issuances(session)}


@router.get("/registry/retirements")
def public_retirements(session: SessionDep) -> dict[str, Any]:
    """Every retirement with its beneficiary and purpose, public."""
    return {"items": registry.list_public_retirements(session)}


@router.get("/registry/cancellations")
def public_cancellations(session: SessionDep) -> dict[str, Any]:
    """Every cancellation with its serials and reason, public."""
    return {"items": registry.list_public_cancellations(session)}


def create_app(
    settings: Settings | None = None,
    *,
    clients: dict[str, httpx.Client] | None = None,
    config: TradingConfig | None = None,
) -> FastAPI:
    """Builds the trading app; clients replace the httpx clients to other services."""
    settings = settings or get_settings()
    config = config or TradingConfig()

    def start(app: FastAPI) -> None:
        owned: list[httpx.Client] = []
        app.state.trading = _context(settings, config, clients or {}, owned)
        app.state.owned_clients = owned
        with app.state.sessions() as session:
            service.enqueue_key_registration(session, ctx=app.state.trading)
            session.commit()
        relay_client = (clients or {}).get("ledger") or service_client(
            settings, caller="trading", target="ledger"
        )
        app.state.relay = OutboxRelay(
            engine=app.state.engine,
            table=outbox,
            clients={"ledger": relay_client},
            poll_seconds=settings.outbox_poll_seconds,
        )
        app.state.relay.start()

    def stop(app: FastAPI) -> None:
        app.state.relay.stop()
        for client in app.state.owned_clients:
            client.close()

    app = create_service_app(
        "trading",
        settings,
        title="Salvage trading",
        description="Sealed recycling quantified into serialized tonnes of CO2e, "
        "verified, issued and traded.",
        on_startup=(start,),
        on_shutdown=(stop,),
    )
    app.include_router(router)
    return app


def _context(
    settings: Settings,
    config: TradingConfig,
    clients: dict[str, httpx.Client],
    owned: list[httpx.Client],
) -> TradingContext:
    """The trading context; clients it had to create are added to owned."""

    def client(target: str) -> httpx.Client:
        if target in clients:
            return clients[target]
        created = service_client(settings, caller="trading", target=target)
        owned.append(created)
        return created

    return TradingContext(
        config=config,
        signer=settings.signing_key("trading"),
        ledger=client("ledger"),
        tracking=client("tracking"),
    )
