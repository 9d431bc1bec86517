"""Daily range partitions of positions on PostgreSQL, created ahead of the
fixes that need them and dropped after the retention period. SQLite keeps one
plain table, and every function here leaves it alone.

Run `python -m services.tracking.partitions` from cron (or a Kubernetes
CronJob) to create the coming days and drop expired ones; the service also
does both when it starts, and creates a missing day on demand.
"""

import argparse
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import structlog
from sqlalchemy import Connection, Engine, func, insert, select, text

from services.tracking.config import TrackingConfig
from services.tracking.models import Backfill
from shared.db import is_sqlite, make_engine
from shared.problems import TooManyRequests, Unprocessable
from shared.settings import get_settings
from shared.timeutil import utcnow

log = structlog.get_logger()

PREFIX = "positions_p"
# Creating a partition waits for transactions that use positions; past this it
# fails instead of holding ingest up.
LOCK_TIMEOUT = "10s"
# Days known to have a partition, per database URL, in this process.
_known: dict[str, set[date]] = {}
_known_lock = threading.Lock()


def partition_name(day: date) -> str:
    return f"{PREFIX}{day:%Y%m%d}"


def partition_positions(connection: Connection) -> None:
    """Turns the plain positions table into a partitioned one, keeping its rows."""
    run = connection.exec_driver_sql
    run("ALTER TABLE positions RENAME TO positions_plain")
    run("ALTER TABLE positions_plain RENAME CONSTRAINT positions_pkey TO plain_pkey")
    run(
        "CREATE TABLE positions (LIKE positions_plain INCLUDING DEFAULTS) "
        "PARTITION BY RANGE (fix_time)"
    )
    run(
        "ALTER TABLE positions ADD CONSTRAINT positions_pkey "
        "PRIMARY KEY (device_id, fix_time)"
    )
    days = run(
        "SELECT DISTINCT (fix_time AT TIME ZONE 'UTC')::date FROM positions_plain"
    ).scalars()
    for day in days:
        _create(connection, day)
    run("INSERT INTO positions SELECT * FROM positions_plain")
    run("DROP TABLE positions_plain")


def unpartition_positions(connection: Connection) -> None:
    """Turns positions back into one plain table, keeping its rows."""
    run = connection.exec_driver_sql
    run("CREATE TABLE positions_plain (LIKE positions INCLUDING DEFAULTS)")
    run("INSERT INTO positions_plain SELECT * FROM positions")
    run("DROP TABLE positions")
    run("ALTER TABLE positions_plain RENAME TO positions")
    run(
        "ALTER TABLE positions ADD CONSTRAINT positions_pkey "
        "PRIMARY KEY (device_id, fix_time)"
    )


def _create(connection: Connection, day: date) -> None:
    following = day + timedelta(days=1)
    connection.exec_driver_sql(
        f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF positions "
        f"FOR VALUES FROM ('{day.isoformat()} 00:00:00+00') "
        f"TO ('{following.isoformat()} 00:00:00+00')"
    )


def existing_days(connection: Connection) -> set[date]:
    """The days that have a partition of positions."""
    names = connection.execute(
        text(
            "SELECT c.relname FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE p.relname = 'positions' AND pg_table_is_visible(p.oid)"
        )
    ).scalars()
    return {
        datetime.strptime(name[len(PREFIX) :], "%Y%m%d").date()
        for name in names
        if name.startswith(PREFIX)
    }


def _lock(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('positions'))"))


class TooManyNewDays(Unprocessable):
    slug, title = "too-many-new-days", "The upload spans too many new days"


def ensure_days(
    engine: Engine,
    days: Iterable[date],
    *,
    max_new: int | None = None,
    backfill: "BackfillBudget | None" = None,
    create: bool = True,
) -> None:
    """Makes sure each day has a partition; cheap when this process knows it.
    Refuses, creating nothing, when more than `max_new` days would be new, or
    when the new days before yesterday would overdraw today's backfill budget."""
    if is_sqlite(engine):
        return
    key = str(engine.url)
    wanted = set(days)
    with _known_lock:
        missing = wanted - _known.setdefault(key, set())
    if not missing:
        return
    if not create:
        raise PartitionsMissing(sorted(missing))
    with engine.begin() as connection:
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        _lock(connection)
        present = existing_days(connection)
        new = sorted(missing - present)
        if max_new is not None and len(new) > max_new:
            raise TooManyNewDays(
                f"The fixes fall on {len(new)} days that have no partition yet; "
                f"send at most {max_new} such days in one upload.",
                new_days=len(new),
                first_day=new[0].isoformat(),
                last_day=new[-1].isoformat(),
            )
        if backfill is not None:
            backfill.spend(connection, new)
        for day in new:
            _create(connection, day)
            log.info("tracking.partition_created", day=day.isoformat())
    with _known_lock:
        _known[key] |= present | missing


class PartitionsMissing(RuntimeError):
    """Days a caller needed to exist already, as it may not create them."""


class BackfillSpent(TooManyRequests):
    slug, title = "backfill-limit", "Too many past days created today"


@dataclass(frozen=True)
class BackfillBudget:
    """How many partitions for days before yesterday uploads may create on one
    UTC day, across every device and worker."""

    today: date
    per_day: int

    def spend(self, connection: Connection, new: list[date]) -> None:
        """Records the new past days, or refuses them all if they would pass
        the budget; the caller holds the partition lock."""
        past = [day for day in new if day < self.today - timedelta(days=1)]
        if not past:
            return
        spent = connection.execute(
            select(func.count())
            .select_from(Backfill)
            .where(Backfill.created_on == self.today)
        ).scalar_one()
        if spent + len(past) > self.per_day:
            raise BackfillSpent(
                f"Uploads have created {spent} partitions for past days today, "
                f"of {self.per_day} allowed; these fixes need {len(past)} more. "
                "Send them again after midnight UTC.",
                retry_after_s=_seconds_to_midnight(self.today),
                past_days=len(past),
            )
        connection.execute(
            insert(Backfill), [{"day": d, "created_on": self.today} for d in past]
        )
        log.warning("tracking.partitions_backfilled", days=len(past), spent=spent)


def _seconds_to_midnight(today: date) -> int:
    midnight = datetime.combine(today + timedelta(days=1), time(), tzinfo=UTC)
    return max(1, math.ceil((midnight - utcnow()).total_seconds()))


def drop_expired(engine: Engine, *, now: datetime, retention_days: int) -> list[date]:
    """Drops the partitions whose whole day is older than the retention period."""
    if is_sqlite(engine):
        return []
    cutoff = (now - timedelta(days=retention_days)).date()
    with engine.begin() as connection:
        _lock(connection)
        expired = sorted(day for day in existing_days(connection) if day < cutoff)
        for day in expired:
            connection.exec_driver_sql(f"DROP TABLE {partition_name(day)}")
            log.info("tracking.partition_dropped", day=day.isoformat())
    with _known_lock:
        _known.setdefault(str(engine.url), set()).difference_update(expired)
    return expired


def maintain(engine: Engine, config: TrackingConfig, now: datetime) -> list[date]:
    """Creates today's and the coming days' partitions, drops expired ones."""
    today = now.date()
    ahead = range(-1, config.partitions_ahead_days + 1)
    ensure_days(engine, [today + timedelta(days=n) for n in ahead])
    if config.retention_days is None:
        return []
    return drop_expired(engine, now=now, retention_days=config.retention_days)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Create coming position partitions and drop expired ones."
    )
    parser.add_argument("--database-url", help="default: the tracking database")
    parser.add_argument("--retention-days", type=int, help="override the setting")
    args = parser.parse_args(argv)
    url = args.database_url or get_settings().database_url("tracking")
    config = TrackingConfig()
    if args.retention_days is not None:
        config = config.model_copy(update={"retention_days": args.retention_days})
    engine = make_engine(url)
    dropped = maintain(engine, config, utcnow())
    engine.dispose()
    print(f"dropped {len(dropped)} partition(s)")


if __name__ == "__main__":
    main()
