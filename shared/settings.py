"""Configuration read from SALVAGE_* environment variables."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.crypto import load_or_create_key, private_key_from_b64

SERVICES = ("intake", "tracking", "ledger", "trading")
DEFAULT_PORTS = {"intake": 8001, "tracking": 8002, "ledger": 8003, "trading": 8004}


class ConfigurationError(RuntimeError):
    """A setting that is missing or unsafe for the environment."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SALVAGE_", extra="ignore")

    # "development" allows generated keys under data_dir; anything else refuses.
    environment: Literal["development", "test", "production"] = "development"
    # Folder for the embedded SQLite databases and development keys.
    data_dir: Path = Path(".salvage")
    # Interface the services bind to.
    host: str = "127.0.0.1"

    # Per-service database URLs; SQLite under data_dir when unset.
    intake_database_url: str | None = None
    tracking_database_url: str | None = None
    ledger_database_url: str | None = None
    trading_database_url: str | None = None

    # Base URLs the services use to reach each other.
    intake_url: str = "http://127.0.0.1:8001"
    tracking_url: str = "http://127.0.0.1:8002"
    ledger_url: str = "http://127.0.0.1:8003"
    trading_url: str = "http://127.0.0.1:8004"

    # Token issuer key (base64 Ed25519 seed); only intake and the CLI sign.
    auth_private_key: SecretStr | None = None
    # Token verifier key (base64 raw public key) for services that only verify.
    auth_public_key: str | None = None
    # Bearer token this service presents to the others (role "service").
    service_token: SecretStr | None = None

    # Per-service Ed25519 signing keys (base64 seeds) or files holding them.
    ledger_signing_key: SecretStr | None = None
    ledger_signing_key_file: Path | None = None
    tracking_signing_key: SecretStr | None = None
    tracking_signing_key_file: Path | None = None
    trading_signing_key: SecretStr | None = None
    trading_signing_key_file: Path | None = None

    # Log level and whether logs are JSON lines (console rendering otherwise).
    log_level: str = "INFO"
    log_json: bool = True
    # Seconds between outbox delivery passes.
    outbox_poll_seconds: float = 0.5

    @property
    def is_development(self) -> bool:
        return self.environment in ("development", "test")

    def database_url(self, service: str) -> str:
        url = getattr(self, f"{service}_database_url")
        if url:
            return url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.data_dir / f'{service}.db').resolve()}"

    def service_url(self, service: str) -> str:
        return getattr(self, f"{service}_url").rstrip("/")

    def port(self, service: str) -> int:
        return DEFAULT_PORTS[service]

    def signing_key(self, service: str) -> Ed25519PrivateKey:
        """The service's own Ed25519 key: configured, or generated in development."""
        seed = getattr(self, f"{service}_signing_key", None)
        if seed is not None:
            return private_key_from_b64(seed.get_secret_value())
        path = getattr(self, f"{service}_signing_key_file", None)
        if path is not None:
            return private_key_from_b64(Path(path).read_text())
        return self._development_key(service, f"SALVAGE_{service.upper()}_SIGNING_KEY")

    def auth_key(self) -> Ed25519PrivateKey:
        if self.auth_private_key is not None:
            return private_key_from_b64(self.auth_private_key.get_secret_value())
        return self._development_key("auth", "SALVAGE_AUTH_PRIVATE_KEY")

    def _development_key(self, name: str, variable: str) -> Ed25519PrivateKey:
        if not self.is_development:
            raise ConfigurationError(
                f"{variable} must be set outside development; "
                "generated keys are refused"
            )
        return load_or_create_key(self.data_dir / "keys" / f"{name}.key")


@lru_cache
def get_settings() -> Settings:
    return Settings()
