"""Monitoring reports, verifier decisions, issuance of serialized tonnes,
accounts and provenance.

A serial names one tonne: SALV-<project>-<vintage>-<n>. A block of
consecutive tonnes is written SALV-<project>-<vintage>-<start>-<end>; the
numbers run on per project across vintages, so no two tonnes share one.
"""

import re
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.trading import sealed
from services.trading.methodology import GRAMS_PER_TONNE, PERMILLE
from services.trading.models import (
    Account,
    Block,
    Calculation,
    Cancellation,
    Issuance,
    Project,
    Report,
    Retirement,
)
from services.trading.service import (
    TradingContext,
    append_statement,
    calculation_view,
    discover_and_quantify,
    new_id,
)
from shared.auth import Principal
from shared.problems import Conflict, Forbidden, NotFound, Unprocessable
from shared.provenance import seal_ref, seals_root
from shared.timeutil import as_utc, iso_utc, utcnow

log = structlog.get_logger()

SERIAL_PATTERN = re.compile(
    r"^SALV-(?P<project>[A-Z0-9]+)-(?P<vintage>[0-9]{4})-(?P<start>[0-9]{1,15})"
    r"(?:-(?P<end>[0-9]{1,15}))?$"
)
STATUSES = ("held", "listed", "retired", "cancelled", "buffer")


class NoEligibleBatches(Unprocessable):
    slug, title = "no-eligible-batches", "No eligible batches"


def create_account(
    session: Session, *, org_id: str, name: str, kind: str = "holding"
) -> Account:
    account = Account(
        id=new_id(), org_id=org_id, name=name, kind=kind, created_at=utcnow()
    )
    session.add(account)
    session.flush()
    log.info("trading.account_created", account_id=account.id, org_id=org_id)
    return account


def get_account(session: Session, *, principal: Principal, account_id: str) -> Account:
    """An account the principal may see; others look absent."""
    account = session.get(Account, account_id)
    if account is None or not principal.owns(account.org_id):
        raise NotFound(f"There is no account {account_id}.")
    return account


def list_accounts(session: Session, *, principal: Principal) -> list[Account]:
    query = select(Account).order_by(Account.created_at, Account.id)
    if not principal.owns(None):
        query = query.where(Account.org_id == (principal.org or ""))
    return list(session.execute(query).scalars())


def balances(session: Session, *, account_id: str) -> dict[str, int]:
    totals = dict.fromkeys(STATUSES, 0)
    query = (
        select(Block.status, func.sum(Block.end - Block.start + 1))
        .where(Block.account_id == account_id)
        .group_by(Block.status)
    )
    for status, total in session.execute(query):
        totals[status] = int(total)
    return totals


def account_blocks(session: Session, *, account_id: str) -> list[Block]:
    query = select(Block).where(Block.account_id == account_id).order_by(Block.start)
    return list(session.execute(query).scalars())


def _buffer_account(session: Session, *, ctx: TradingContext) -> Account:
    query = select(Account).where(
        Account.kind == "buffer", Account.org_id == ctx.config.buffer_org
    )
    account = session.execute(query).scalars().first()
    if account is None:
        account = create_account(
            session, org_id=ctx.config.buffer_org, name="Buffer pool", kind="buffer"
        )
    return account


def _project(session: Session, code: str, *, lock: bool = False) -> Project:
    query = select(Project).where(Project.code == code)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    project = session.execute(query).scalar_one_or_none()
    if project is None:
        project = Project(code=code, next_serial=1, carry_g=0)
        session.add(project)
        session.flush()
    return project


def _vintage(period_start: datetime, period_end: datetime) -> int:
    start, end = as_utc(period_start), as_utc(period_end)
    if start >= end:
        raise Unprocessable(
            "period_start must be before period_end.", slug="bad-period"
        )
    if (end - timedelta(microseconds=1)).year != start.year:
        raise Unprocessable(
            "A monitoring period lies within one calendar year (its vintage).",
            slug="bad-period",
        )
    return start.year


def create_report(
    session: Session,
    *,
    ctx: TradingContext,
    principal: Principal,
    period_start: datetime,
    period_end: datetime,
    account_id: str,
) -> tuple[Report, list[dict[str, Any]]]:
    """Quantifies the period's new sealed batches and groups them in a report."""
    vintage = _vintage(period_start, period_end)
    account = session.get(Account, account_id)
    if account is None or account.kind != "holding":
        raise Unprocessable(
            f"There is no holding account {account_id}.", slug="no-such-account"
        )
    period = (as_utc(period_start), as_utc(period_end))
    _project(session, ctx.config.project)
    refused = discover_and_quantify(session, ctx=ctx, period=period)
    calculations = _unreported(session, period)
    if not calculations:
        raise NoEligibleBatches(
            "No sealed batch of this period is eligible and not yet reported.",
            refused=refused,
        )
    report = Report(
        id=new_id(),
        project=ctx.config.project,
        vintage=vintage,
        period_start=period[0],
        period_end=period[1],
        account_id=account.id,
        status="submitted",
        total_g=sum(c.creditable_g for c in calculations),
        batch_ids=[c.batch_id for c in calculations],
        buffer_permille=max(c.policy["buffer_permille"] for c in calculations),
        created_by=principal.sub,
        created_at=utcnow(),
    )
    session.add(report)
    session.flush()
    for calculation in calculations:
        calculation.report_id = report.id
    log.info("trading.report_created", report_id=report.id, total_g=report.total_g)
    return report, refused


def _unreported(
    session: Session, period: tuple[datetime, datetime]
) -> list[Calculation]:
    """Calculations of the period in no report yet, locked against other reports."""
    query = (
        select(Calculation)
        .where(
            Calculation.report_id.is_(None),
            Calculation.processed_at >= period[0],
            Calculation.processed_at < period[1],
        )
        .order_by(Calculation.seal_index)
        .with_for_update()
    )
    return list(session.execute(query).scalars())


def get_report(session: Session, *, report_id: str) -> Report:
    report = session.get(Report, report_id)
    if report is None:
        raise NotFound(f"There is no report {report_id}.")
    return report


def list_reports(session: Session) -> list[Report]:
    query = select(Report).order_by(Report.created_at, Report.id)
    return list(session.execute(query).scalars())


def decide_report(
    session: Session,
    *,
    ctx: TradingContext,
    principal: Principal,
    report_id: str,
    approve: bool,
    comments: str,
) -> Report:
    """A verifier approves (issuing credits) or rejects a submitted report;
    a rejection says why."""
    if not approve and not comments.strip():
        raise Unprocessable(
            "A rejection needs comments that say what the report must fix.",
            slug="comments-required",
        )
    query = select(Report).where(Report.id == report_id).with_for_update()
    report = session.execute(query).scalar_one_or_none()
    if report is None:
        raise NotFound(f"There is no report {report_id}.")
    if report.status != "submitted":
        raise Conflict(
            f"Report {report_id} is already {report.status}.", slug="report-decided"
        )
    if report.created_by == principal.sub:
        raise Forbidden(
            "A report's author may not verify it.", slug="self-verification"
        )
    if approve:
        _refuse_open_alerts(session, ctx=ctx, report=report)
    report.status = "approved" if approve else "rejected"
    report.decided_by, report.decided_at = principal.sub, utcnow()
    report.comments = comments
    if approve:
        issue(session, ctx=ctx, report=report)
    else:
        _release(session, report)
    log.info("trading.report_decided", report_id=report.id, status=report.status)
    return report


def _refuse_open_alerts(session: Session, *, ctx: TradingContext, report: Report):
    """An alert raised after a batch was counted still blocks its credits."""
    query = select(Calculation.batch_id).where(Calculation.report_id == report.id)
    for batch_id in session.scalars(query):
        open_ids = sealed.unresolved_alerts(ctx.tracking, batch_id, [])
        if open_ids:
            raise sealed.OpenAlerts(
                f"Batch {batch_id} of report {report.id} has {len(open_ids)} "
                "alert(s) raised since it was counted and not resolved.",
                alert_ids=open_ids,
                batch_id=batch_id,
            )


def _release(session: Session, report: Report) -> None:
    """A rejected report's batches may go into a corrected report."""
    query = select(Calculation).where(Calculation.report_id == report.id)
    for calculation in session.execute(query).scalars():
        calculation.report_id = None


def tonnes_from(available_g: int) -> tuple[int, int]:
    """Whole tonnes in the grams available and the grams carried over."""
    tonnes = max(available_g, 0) // GRAMS_PER_TONNE
    return tonnes, available_g - tonnes * GRAMS_PER_TONNE


def buffer_share(tonnes: int, buffer_permille: int) -> int:
    """Buffer tonnes, rounded up so the holder's share is never rounded up."""
    return -(-tonnes * buffer_permille // PERMILLE)


def issue(session: Session, *, ctx: TradingContext, report: Report) -> Issuance:
    """Issues the report's whole tonnes in serial blocks; carries the rest over."""
    project = _project(session, report.project, lock=True)
    carried_in = project.carry_g
    tonnes, carried_out = tonnes_from(carried_in + report.total_g)
    buffer_t = buffer_share(tonnes, report.buffer_permille)
    start = project.next_serial
    issuance = Issuance(
        id=new_id(),
        report_id=report.id,
        project=project.code,
        vintage=report.vintage,
        carried_in_g=carried_in,
        report_total_g=report.total_g,
        tonnes=tonnes,
        buffer_tonnes=buffer_t,
        carried_out_g=carried_out,
        serial_start=start if tonnes else None,
        serial_end=start + tonnes - 1 if tonnes else None,
        account_id=report.account_id,
        issued_at=utcnow(),
    )
    session.add(issuance)
    session.flush()
    held_t = tonnes - buffer_t
    if held_t:
        _new_block(session, issuance, start, held_t, report.account_id, "held")
    if buffer_t:
        buffer = _buffer_account(session, ctx=ctx)
        _new_block(session, issuance, start + held_t, buffer_t, buffer.id, "buffer")
    project.next_serial = start + tonnes
    project.carry_g = carried_out
    session.flush()
    append_statement(
        session,
        ctx=ctx,
        kind="credit.issuance",
        subject_id=issuance.id,
        body=issuance_body(session, issuance),
    )
    log.info(
        "trading.credits_issued",
        issuance_id=issuance.id,
        tonnes=tonnes,
        carried_out_g=carried_out,
    )
    return issuance


def _new_block(
    session: Session,
    issuance: Issuance,
    start: int,
    count: int,
    account_id: str,
    status: str,
) -> Block:
    block = Block(
        id=new_id(),
        project=issuance.project,
        vintage=issuance.vintage,
        start=start,
        end=start + count - 1,
        issuance_id=issuance.id,
        account_id=account_id,
        status=status,
        updated_at=utcnow(),
    )
    session.add(block)
    return block


def seals_of(session: Session, report_id: str) -> list[dict[str, Any]]:
    query = (
        select(Calculation)
        .where(Calculation.report_id == report_id)
        .order_by(Calculation.seal_index)
    )
    return [
        seal_ref(c.batch_id, c.seal_index, c.seal_leaf_hash)
        for c in session.execute(query).scalars()
    ]


def issuance_body(session: Session, issuance: Issuance) -> dict[str, Any]:
    """The issuance as the ledger keeps it: a root over its seals, not the list.

    A list of every seal would outgrow the ledger's entry limit at a few
    hundred batches; the root (shared.provenance.seals_root) stays 44 bytes.
    """
    seals = seals_of(session, issuance.report_id)
    serials = []
    for block in session.execute(
        select(Block).where(Block.issuance_id == issuance.id).order_by(Block.start)
    ).scalars():
        serials.append(
            {
                "serial": block.serial,
                "quantity_t": block.quantity_t,
                "status": block.status,
            }
        )
    report = session.get(Report, issuance.report_id)
    before = previous_issuance(session, issuance)
    return {
        "issuance_id": issuance.id,
        "report_id": issuance.report_id,
        "report": _report_summary(report),
        "project": issuance.project,
        "vintage": issuance.vintage,
        "previous_issuance_id": before.id if before else None,
        "carried_in_g": issuance.carried_in_g,
        "report_total_g": issuance.report_total_g,
        "tonnes": issuance.tonnes,
        "buffer_permille": report.buffer_permille,
        "buffer_tonnes": issuance.buffer_tonnes,
        "carried_out_g": issuance.carried_out_g,
        "serial_start": issuance.serial_start,
        "serial_end": issuance.serial_end,
        "blocks": serials,
        "account_id": issuance.account_id,
        "seals_root": seals_root(seals),
        "seal_count": len(seals),
        "issued_at": iso_utc(issuance.issued_at),
    }


def previous_issuance(session: Session, issuance: Issuance) -> Issuance | None:
    """The project's issuance just before this one, whose carry-over it took.

    issue() numbers a project's issuances under the project's row lock, so
    their issued_at order is the order of their serials and carry-overs.
    """
    query = (
        select(Issuance)
        .where(
            Issuance.project == issuance.project,
            Issuance.issued_at < issuance.issued_at,
        )
        .order_by(Issuance.issued_at.desc(), Issuance.id.desc())
        .limit(1)
    )
    return session.execute(query).scalars().first()


def _report_summary(report: Report) -> dict[str, Any]:
    """The monitoring report and its verification, as the issuance records them."""
    return {
        "period_start": iso_utc(report.period_start),
        "period_end": iso_utc(report.period_end),
        "created_by": report.created_by,
        "verified_by": report.decided_by,
        "verified_at": iso_utc(report.decided_at) if report.decided_at else None,
        "comments": report.comments,
    }


def issuance_view(session: Session, issuance: Issuance) -> dict[str, Any]:
    """The issuance statement with the seal list its seals_root commits to."""
    return {
        **issuance_body(session, issuance),
        "seals": seals_of(session, issuance.report_id),
    }


def get_issuance(session: Session, *, issuance_id: str) -> Issuance:
    issuance = session.get(Issuance, issuance_id)
    if issuance is None:
        raise NotFound(f"There is no issuance {issuance_id}.")
    return issuance


def issuance_of(session: Session, report_id: str) -> Issuance | None:
    query = select(Issuance).where(Issuance.report_id == report_id)
    return session.execute(query).scalar_one_or_none()


def report_view(session: Session, report: Report) -> dict[str, Any]:
    issuance = issuance_of(session, report.id)
    return {
        "id": report.id,
        "project": report.project,
        "vintage": report.vintage,
        "period_start": iso_utc(report.period_start),
        "period_end": iso_utc(report.period_end),
        "account_id": report.account_id,
        "status": report.status,
        "total_g": report.total_g,
        "buffer_permille": report.buffer_permille,
        "batch_ids": report.batch_ids,
        "created_by": report.created_by,
        "created_at": iso_utc(report.created_at),
        "decided_by": report.decided_by,
        "decided_at": iso_utc(report.decided_at) if report.decided_at else None,
        "comments": report.comments,
        "issuance": issuance_view(session, issuance) if issuance else None,
    }


def list_issuances(session: Session) -> list[dict[str, Any]]:
    """Issuances as a public registry lists them, with their monitoring period."""
    query = select(Issuance).order_by(Issuance.issued_at, Issuance.id)
    return [_public_issuance(session, i) for i in session.execute(query).scalars()]


def _public_issuance(session: Session, issuance: Issuance) -> dict[str, Any]:
    report = get_report(session, report_id=issuance.report_id)
    versions = session.execute(
        select(Calculation.factor_version)
        .where(Calculation.report_id == report.id)
        .distinct()
    ).scalars()
    return {
        **issuance_view(session, issuance),
        "monitoring_period": {
            "start": iso_utc(report.period_start),
            "end": iso_utc(report.period_end),
        },
        "methodology": sorted(f"salvage-{version}" for version in versions),
        "verified_by": report.decided_by,
        "verified_at": iso_utc(report.decided_at) if report.decided_at else None,
    }


def list_public_retirements(session: Session) -> list[dict[str, Any]]:
    """Retirements as a public registry lists them: who, for whom, what and when."""
    query = select(Retirement).order_by(Retirement.created_at, Retirement.id)
    return [_public_retirement(session, r) for r in session.execute(query).scalars()]


def _public_retirement(session: Session, record: Retirement) -> dict[str, Any]:
    account = session.get(Account, record.account_id)
    parsed = [parse_serial(serial) for serial in record.serials]
    return {
        "id": record.id,
        "quantity_t": record.quantity_t,
        "project": sorted({p[0] for p in parsed}),
        "vintage": sorted({p[1] for p in parsed}),
        "serials": record.serials,
        "retired_by": account.org_id if account else None,
        "beneficiary": record.beneficiary,
        "purpose": record.purpose,
        "retired_at": iso_utc(record.created_at),
        "created_at": iso_utc(record.created_at),
        "certificate": f"/v1/retirements/{record.id}/certificate",
        "certificate_pdf": f"/v1/retirements/{record.id}/certificate.pdf",
    }


def list_public_cancellations(session: Session) -> list[dict[str, Any]]:
    """Cancelled tonnes with the reason, as a public registry lists them."""
    query = select(Cancellation).order_by(Cancellation.created_at, Cancellation.id)
    return [
        {
            "id": c.id,
            "quantity_t": c.quantity_t,
            "serials": c.serials,
            "reason": c.reason,
            "cancelled_at": iso_utc(c.created_at),
        }
        for c in session.execute(query).scalars()
    ]


def parse_serial(serial: str) -> tuple[str, int, int, int]:
    match = SERIAL_PATTERN.match(serial)
    if match is None:
        raise Unprocessable(
            "A serial reads SALV-<project>-<vintage>-<start>[-<end>].",
            slug="bad-serial",
        )
    start = int(match["start"])
    end = int(match["end"]) if match["end"] else start
    if end < start:
        raise Unprocessable("A serial block ends after it starts.", slug="bad-serial")
    return match["project"], int(match["vintage"]), start, end


def issuance_holding(
    session: Session, project: str, vintage: int, start: int, end: int
) -> Issuance:
    """The one issuance whose serials include start..end."""
    query = select(Issuance).where(
        Issuance.project == project,
        Issuance.vintage == vintage,
        Issuance.serial_start <= start,
        Issuance.serial_end >= end,
    )
    issuance = session.execute(query).scalar_one_or_none()
    if issuance is None:
        raise NotFound(
            f"No issuance holds SALV-{project}-{vintage}-{start}-{end}.",
            slug="no-such-serial",
        )
    return issuance


def provenance(session: Session, *, serial: str) -> dict[str, Any]:
    """The chain behind a serial: block, issuance, report, calculations, seals."""
    project, vintage, start, end = parse_serial(serial)
    issuance = issuance_holding(session, project, vintage, start, end)
    blocks = session.execute(
        select(Block)
        .where(Block.project == project, Block.start <= end, Block.end >= start)
        .order_by(Block.start)
    ).scalars()
    report = get_report(session, report_id=issuance.report_id)
    calculations = session.execute(
        select(Calculation)
        .where(Calculation.report_id == report.id)
        .order_by(Calculation.seal_index)
    ).scalars()
    return {
        "serial": serial,
        "blocks": [block_view(block) for block in blocks],
        "issuance": issuance_view(session, issuance),
        "report": {
            key: value
            for key, value in report_view(session, report).items()
            if key != "issuance"
        },
        "calculations": [calculation_view(c) for c in calculations],
        "seals": seals_of(session, report.id),
    }


def block_view(block: Block) -> dict[str, Any]:
    return {
        "serial": block.serial,
        "project": block.project,
        "vintage": block.vintage,
        "start": block.start,
        "end": block.end,
        "quantity_t": block.quantity_t,
        "status": block.status,
        "account_id": block.account_id,
        "issuance_id": block.issuance_id,
        "listing_id": block.listing_id,
        "retirement_id": block.retirement_id,
    }


def account_view(
    session: Session, account: Account, *, with_blocks: bool = False
) -> dict[str, Any]:
    view = {
        "id": account.id,
        "org_id": account.org_id,
        "name": account.name,
        "kind": account.kind,
        "created_at": iso_utc(account.created_at),
        "balances": balances(session, account_id=account.id),
    }
    if with_blocks:
        view["blocks"] = [
            block_view(b) for b in account_blocks(session, account_id=account.id)
        ]
    return view
