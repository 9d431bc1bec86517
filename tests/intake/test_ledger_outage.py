"""Custody reaches a real ledger process exactly once, even across an outage."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from services.intake.api import create_app
from services.intake.models import outbox
from shared.http import service_client
from shared.timeutil import utcnow

from .conftest import at, outbox_rows, sorted_outputs


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class LedgerProcess:
    """The ledger service run by uvicorn, as `salvage serve ledger` runs it."""

    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [sys.executable, "-m", "uvicorn", "services.ledger.api:create_app"]
        command += ["--factory", "--host", "127.0.0.1", "--port", str(self.port)]
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                command,
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_path.read_text()[-3000:]
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError("the ledger did not become ready")

    def kill(self) -> None:
        """Ends the ledger at once, as a crash or a lost node would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)
        self.process = None

    def batch(self, batch_id: str) -> dict:
        return httpx.get(f"{self.url}/v1/batches/{batch_id}", timeout=5.0).json()


@pytest.fixture
def intake_settings(databases, settings):
    settings.auth_key()
    return settings.model_copy(
        update={
            "intake_database_url": databases.url("intake"),
            "outbox_poll_seconds": 0.1,
        }
    )


@pytest.fixture
def ledger(databases, intake_settings, tmp_path) -> Iterator[LedgerProcess]:
    env = dict(os.environ)
    env.update(
        SALVAGE_ENVIRONMENT="test",
        SALVAGE_DATA_DIR=str(intake_settings.data_dir),
        SALVAGE_LEDGER_DATABASE_URL=databases.url("ledger"),
    )
    process = LedgerProcess(free_port(), env, tmp_path / "ledger.log")
    process.start()
    try:
        yield process
    finally:
        process.kill()


@pytest.fixture
def app(intake_settings, ledger, peers, config):
    """Intake whose outbox delivers to the real ledger process."""
    reach = intake_settings.model_copy(update={"ledger_url": ledger.url})
    clients = {
        "ledger": service_client(reach, caller="intake", target="ledger", timeout=5),
        "tracking": peers.clients()["tracking"],
    }
    return create_app(intake_settings, clients=clients, config=config)


def wait_delivered(app, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while app.state.relay.pending_count():
        assert time.monotonic() < deadline, "the outbox did not drain"
        time.sleep(0.1)
    failed = [row.key for row in outbox_rows(app) if row.failed_at is not None]
    assert not failed


def shared_batch(world) -> tuple[str, list[str]]:
    """Two paid requests dispatched to the same truck and window."""
    requests = [world.paid_request()["id"] for _ in range(2)]
    batches = {world.dispatch(request).json()["batch_id"] for request in requests}
    assert len(batches) == 1
    return batches.pop(), requests


def intake_chain(world, batch_id: str) -> list[tuple[str, str]]:
    events = world.get(f"/v1/batches/{batch_id}").json()["events"]
    return [(event["kind"], event["leaf_hash"]) for event in events]


def ledger_chain(ledger: LedgerProcess, batch_id: str) -> list[tuple[str, str]]:
    entries = ledger.batch(batch_id)["entries"]
    return [(entry["kind"], entry["leaf_hash"]) for entry in entries]


def test_every_event_arrives_exactly_once_across_a_ledger_outage(app, world, ledger):
    batch_id, (first, second) = shared_batch(world)
    assert world.pickup(batch_id, first, mass=150, minute=10).status_code == 201
    wait_delivered(app)
    assert len(ledger_chain(ledger, batch_id)) == 1

    ledger.kill()
    assert world.pickup(batch_id, second, mass=150, minute=20).status_code == 201
    assert world.deliver(batch_id, gross=11_300, tare=11_000).status_code == 201
    assert world.process(batch_id, sorted_outputs(300)).status_code == 201
    time.sleep(1.0)
    waiting = [row for row in outbox_rows(app) if row.path == "/v1/entries"][1:]
    assert len(waiting) == 3
    assert all(row.delivered_at is None for row in waiting)
    assert any("ConnectError" in (row.last_error or "") for row in waiting)

    ledger.start()
    wait_delivered(app)

    chain = intake_chain(world, batch_id)
    assert [kind for kind, _ in chain] == [
        "custody.pickup",
        "custody.pickup",
        "custody.delivery",
        "custody.processing",
    ]
    assert ledger_chain(ledger, batch_id) == chain


def test_a_retried_append_duplicates_nothing(app, world, ledger):
    batch_id, (first, _) = shared_batch(world)
    body = {"request_id": first, "declared_volume_l": 400, "estimated_mass_kg": 300}
    statement = world.statement(batch_id, "custody.pickup", at(10), body, "device")
    keys = [world.device_key, world.pm_key]
    event = world.record(batch_id, statement, keys, "device").json()
    wait_delivered(app)

    with app.state.engine.begin() as connection:
        connection.execute(
            update(outbox)
            .where(outbox.c.key == f"custody:{event['event_id']}")
            .values(delivered_at=None, next_attempt_at=utcnow())
        )
    app.state.relay.wake()
    wait_delivered(app)
    again = world.record(batch_id, statement, keys, "device")

    assert again.status_code == 200
    assert again.json()["event_id"] == event["event_id"]
    assert ledger_chain(ledger, batch_id) == intake_chain(world, batch_id)
    assert len(ledger_chain(ledger, batch_id)) == 1
    delivered = [row for row in outbox_rows(app) if row.path == "/v1/entries"]
    assert len(delivered) == 1
