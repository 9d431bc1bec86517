"""Engines, sessions and Alembic migrations for the per-service databases."""

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, Table, create_engine, event, insert
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from alembic.config import Config

SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"


def normalize_url(url: str) -> str:
    """Makes plain postgresql:// URLs use the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_sqlite(url_or_engine: str | Engine) -> bool:
    url = str(getattr(url_or_engine, "url", url_or_engine))
    return url.startswith("sqlite")


def make_engine(url: str, **options) -> Engine:
    """Creates an engine; SQLite gets WAL, a busy timeout and foreign keys."""
    url = normalize_url(url)
    if not is_sqlite(url):
        options.setdefault("pool_pre_ping", True)
        return create_engine(url, **options)
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 30}, **options
    )
    event.listen(engine, "connect", _configure_sqlite)
    event.listen(engine, "begin", _begin_sqlite)
    return engine


def _configure_sqlite(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _begin_sqlite(connection) -> None:
    """Begins SQLite transactions IMMEDIATE so writers queue instead of failing."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def make_read_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose statements each run in autocommit on PostgreSQL, for
    reads that are consistent statement by statement. SQLite keeps ordinary
    transactions."""
    if not is_sqlite(engine):
        engine = engine.execution_options(isolation_level="AUTOCOMMIT")
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(service: str, url: str) -> "Config":
    """Alembic's settings for a service; Alembic is imported only here, as a
    running service never migrates and need not hold it in memory."""
    from alembic.config import Config

    config = Config()
    config.set_main_option(
        "script_location", str(SERVICES_DIR / service / "migrations")
    )
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    config.set_main_option(
        "file_template",
        "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s",
    )
    config.attributes["service"] = service
    return config


def migrate(service: str, url: str) -> None:
    """Brings a service's database up to its newest Alembic revision."""
    from alembic import command

    command.upgrade(alembic_config(service, url), "head")


def insert_rows(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Inserts many rows in the session's transaction: COPY on PostgreSQL,
    one executemany elsewhere."""
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        connection.execute(insert(table), rows)
        return
    columns = list(rows[0])
    names = ", ".join(f'"{name}"' for name in columns)
    statement = f'COPY "{table.name}" ({names}) FROM STDIN'
    cursor = connection.connection.driver_connection.cursor()
    with cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row([row[name] for name in columns])
