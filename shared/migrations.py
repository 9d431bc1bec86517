"""The body of every service's Alembic env.py."""

from alembic import context
from sqlalchemy import MetaData, text

from shared.db import is_sqlite, make_engine

LOCK_TIMEOUT = "10s"


def run_migrations(metadata: MetaData) -> None:
    """Runs the migrations of one service, online or as offline SQL."""
    url = context.config.get_main_option("sqlalchemy.url")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            if not is_sqlite(engine):
                connection.execute(text(f"SET lock_timeout = '{LOCK_TIMEOUT}'"))
            context.configure(
                connection=connection,
                target_metadata=metadata,
                render_as_batch=is_sqlite(engine),
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
    finally:
        engine.dispose()
