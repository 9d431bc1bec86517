"""The ledger's own settings, read from SALVAGE_LEDGER_* variables."""

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class LedgerConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SALVAGE_LEDGER_", extra="ignore")

    # Checkpoint origin line, also the name of the note signing key.
    origin: str = Field(default="salvage.local/ledger", pattern=r"^[^\s+]+$")
    # Largest accepted entry, in bytes of canonical JSON.
    max_entry_bytes: int = 64 * 1024
    # Most entries returned by one GET /v1/entries range request.
    max_range: int = 1000
    # Most items returned by one listing (seals, checkpoints).
    max_page: int = 1000
    # Most concurrent appends written in one transaction and checkpoint;
    # 1 turns cross-request batching off.
    max_batch: int = Field(default=1000, ge=1)


@lru_cache
def get_ledger_config() -> LedgerConfig:
    return LedgerConfig()
