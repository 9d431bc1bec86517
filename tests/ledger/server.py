"""The ledger as a real uvicorn process (several workers) on a free port."""

import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.crypto import private_key_to_b64
from shared.processes import ServiceProcess, stop_services, uvicorn_command, wait_ready
from tests.ledger.helpers import ORIGIN


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def ledger_process(
    url: str,
    *,
    workers: int,
    log_key: Ed25519PrivateKey,
    auth_key: Ed25519PrivateKey,
    folder: Path,
) -> Iterator[str]:
    """Runs the ledger with `workers` uvicorn workers; yields its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "SALVAGE_ENVIRONMENT": "test",
        "SALVAGE_DATA_DIR": str(folder),
        "SALVAGE_LEDGER_DATABASE_URL": url,
        "SALVAGE_LEDGER_SIGNING_KEY": private_key_to_b64(log_key),
        "SALVAGE_AUTH_PRIVATE_KEY": private_key_to_b64(auth_key),
        "SALVAGE_LEDGER_ORIGIN": ORIGIN,
        "SALVAGE_LOG_LEVEL": "warning",
    }
    log_path = folder / "ledger.log"
    folder.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            uvicorn_command("ledger", "127.0.0.1", port, workers),
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    service = ServiceProcess("ledger", port, process, log_path)
    try:
        wait_ready([service])
        yield service.url
    finally:
        stop_services([service])
