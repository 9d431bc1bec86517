"""OsmAnd fixes from concurrent requests, stored in one transaction.

A thousand trucks each posting a fix every few seconds means hundreds of
one-fix requests a second. Each worker gathers the fixes that arrive while
its last group is being written (their requests wait on the event loop, not
in a thread each) and writes them together: one query locks every device's
motion row, one statement inserts every fix, one commit. Each request still
gets its own result, or its own problem. If anything fails the group, it is
rolled back and every fix in it is written alone, so one bad fix costs only
its own request.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.orm import Session

from services.tracking import ingest as ingestion
from services.tracking import service
from services.tracking.config import TrackingConfig
from services.tracking.osmand import RawFix
from shared.groupcommit import AsyncGroupCommit
from shared.problems import Problem

log = structlog.get_logger()

Outcome = ingestion.IngestResult | BaseException


@dataclass(frozen=True)
class DeviceFix:
    """One fix a device posted, with the time the service received it."""

    device_id: str
    fix: RawFix
    received_at: datetime


def fix_writer(
    sessions: Callable[[], Session], config: TrackingConfig
) -> AsyncGroupCommit[DeviceFix, ingestion.IngestResult]:
    """The per-process group writer of single fixes."""

    def write(items: Sequence[DeviceFix]) -> list[Outcome]:
        return write_group(sessions, config, items)

    return AsyncGroupCommit(
        write, max_batch=config.fix_group_max, name="tracking.fixes"
    )


def write_group(
    sessions: Callable[[], Session],
    config: TrackingConfig,
    items: Sequence[DeviceFix],
) -> list[Outcome]:
    """Writes the group in one transaction, or else each fix alone."""
    try:
        with sessions() as session:
            outcomes = ingest_group(session, config, items)
            session.commit()
        return outcomes
    except Exception as exc:
        log.warning(
            "tracking.fix_group_split", size=len(items), error=type(exc).__name__
        )
        return [write_alone(sessions, config, item) for item in items]


def write_alone(
    sessions: Callable[[], Session], config: TrackingConfig, item: DeviceFix
) -> Outcome:
    try:
        with sessions() as session:
            target = service.device_for_ingest(session, item.device_id)
            result = _ingest(session, config, target, item)
            session.commit()
        return result
    except Exception as exc:
        return exc


def ingest_group(
    session: Session, config: TrackingConfig, items: Sequence[DeviceFix]
) -> list[Outcome]:
    """Cleans and stores every fix of the group, in arrival order; a fix from
    an unregistered device is answered with that problem."""
    targets = _targets(session, {item.device_id for item in items})
    _create_partitions(session, config, items, targets)
    pending = ingestion.PendingPositions()
    outcomes: list[Outcome] = []
    for item in items:
        target = targets[item.device_id]
        if isinstance(target, Problem):
            outcomes.append(target)
            continue
        outcomes.append(_ingest(session, config, target, item, pending))
    pending.write(session)
    return outcomes


def _create_partitions(session: Session, config, items, targets) -> None:
    """Creates the partitions the registered devices' fixes need, each fix
    judged at its own arrival, on a connection of its own. The group's
    transaction has locked motion rows but not yet touched positions, so
    creating a partition does not wait for it; ingest then creates none."""
    known = [i for i in items if not isinstance(targets[i.device_id], Problem)]
    if not known:
        return
    days = set().union(
        *(ingestion.usable_days(config, [i.fix], i.received_at) for i in known)
    )
    now = max(item.received_at for item in known)
    ingestion.ensure_partitions(session.get_bind(), config, days, now)


def _ingest(
    session: Session,
    config: TrackingConfig,
    target: service.IngestTarget,
    item: DeviceFix,
    pending: ingestion.PendingPositions | None = None,
) -> ingestion.IngestResult:
    return ingestion.ingest(
        session,
        config=config,
        target=target,
        fixes=[item.fix],
        now=item.received_at,
        pending=pending,
    )


def _targets(
    session: Session, device_ids: set[str]
) -> dict[str, service.IngestTarget | Problem]:
    targets: dict[str, service.IngestTarget | Problem] = dict(
        service.devices_for_ingest(session, device_ids)
    )
    for device_id in sorted(device_ids - targets.keys()):
        try:
            targets[device_id] = service.device_for_ingest(session, device_id)
        except service.UnknownDevice as problem:
            targets[device_id] = problem
    return targets
