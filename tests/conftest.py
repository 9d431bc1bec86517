"""Fixtures shared by every test: real, Alembic-migrated databases.

SALVAGE_TEST_DB picks the backend: "sqlite" (default) or "postgres". Each
test that asks for a database gets a fresh one, copied from a template that
was migrated once per run, so tests never see each other's rows.
"""

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from shared.auth import issue_token
from shared.db import migrate
from shared.settings import Settings

BACKEND = os.environ.get("SALVAGE_TEST_DB", "sqlite")
POSTGRES_ADMIN_URL = os.environ.get(
    "SALVAGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"


def pytest_report_header(config) -> str:
    return f"salvage database backend: {BACKEND}"


def pytest_sessionstart(session) -> None:
    if BACKEND != "postgres":
        return
    try:
        psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        pytest.exit(f"PostgreSQL is required but unreachable: {exc}", returncode=3)


def _postgres_url(database: str) -> str:
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


def _admin(sql: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(sql)


def _drop(name: str) -> None:
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class DatabaseFactory:
    """Makes fresh migrated databases per service from a per-run template."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.templates: dict[str, str] = {}
        self.created: list[str] = []
        self.run_id = uuid.uuid4().hex[:8]

    def url(self, service: str) -> str:
        template = self.templates.get(service) or self._template(service)
        name = f"salvage_t_{service}_{uuid.uuid4().hex[:12]}"
        if BACKEND == "postgres":
            _admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            self.created.append(name)
            return _postgres_url(name)
        target = self.root / f"{name}.db"
        shutil.copyfile(template, target)
        return f"sqlite:///{target}"

    def empty_url(self, service: str) -> str:
        """A database with no tables yet, for tests that run the migrations."""
        name = f"salvage_t_{service}_{uuid.uuid4().hex[:12]}"
        if BACKEND == "postgres":
            _admin(f'CREATE DATABASE "{name}"')
            self.created.append(name)
            return _postgres_url(name)
        return f"sqlite:///{self.root / name}.db"

    def _template(self, service: str) -> str:
        if BACKEND == "postgres":
            name = f"salvage_tpl_{service}_{self.run_id}"
            _admin(f'CREATE DATABASE "{name}"')
            self.created.append(name)
            migrate(service, _postgres_url(name))
            self.templates[service] = name
        else:
            path = self.root / f"template_{service}.db"
            migrate(service, f"sqlite:///{path}")
            self.templates[service] = str(path)
        return self.templates[service]

    def drop_all(self) -> None:
        if BACKEND != "postgres":
            return
        templates = set(self.templates.values())
        copies = [name for name in self.created if name not in templates]
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(_drop, copies))
        for name in templates:
            _drop(name)


@pytest.fixture(scope="session")
def databases(tmp_path_factory) -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(tmp_path_factory.mktemp("databases"))
    yield factory
    factory.drop_all()


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Development-mode settings whose keys live in this test's folder."""
    return Settings(environment="test", data_dir=tmp_path / "data", log_json=True)


@pytest.fixture
def token_for(settings) -> Callable[..., str]:
    """Mints a bearer token for a role, as the CLI or intake would."""

    def mint(role: str, sub: str = "tester", org: str | None = None) -> str:
        return issue_token(settings.auth_key(), sub=sub, role=role, org=org)

    return mint


@pytest.fixture
def auth_header(token_for) -> Callable[..., dict[str, str]]:
    def header(role: str, sub: str = "tester", org: str | None = None) -> dict:
        return {"Authorization": f"Bearer {token_for(role, sub, org)}"}

    return header
