"""The four services as real processes on free ports, on the test backend."""

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.processes import ServiceProcess, start_services, stop_services, wait_ready
from shared.settings import SERVICES, Settings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class RunningSalvage:
    settings: Settings
    processes: list[ServiceProcess]
    database_urls: dict[str, str]

    def process(self, name: str) -> ServiceProcess:
        return next(p for p in self.processes if p.name == name)


@pytest.fixture
def salvage(databases, tmp_path: Path) -> Iterator[RunningSalvage]:
    """Starts intake, tracking, ledger and trading; stops them afterwards."""
    data_dir = tmp_path / "data"
    ports = {name: free_port() for name in SERVICES}
    urls = {name: databases.url(name) for name in SERVICES}
    env = {
        "SALVAGE_ENVIRONMENT": "test",
        "SALVAGE_DATA_DIR": str(data_dir),
        **{f"SALVAGE_{name.upper()}_DATABASE_URL": url for name, url in urls.items()},
    }
    processes = start_services(ports, log_dir=tmp_path / "logs", env=env)
    settings = Settings(
        environment="test",
        data_dir=data_dir,
        **{f"{name}_url": f"http://127.0.0.1:{port}" for name, port in ports.items()},
        **{f"{name}_database_url": url for name, url in urls.items()},
    )
    try:
        wait_ready(processes)
        yield RunningSalvage(settings, processes, urls)
    finally:
        stop_services(processes)
