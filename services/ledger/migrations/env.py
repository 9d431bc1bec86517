"""Alembic environment of the ledger service."""

from services.ledger.models import Base
from shared.migrations import run_migrations

run_migrations(Base.metadata)
