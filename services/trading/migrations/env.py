"""Alembic environment of the trading service."""

from services.trading.models import Base
from shared.migrations import run_migrations

run_migrations(Base.metadata)
