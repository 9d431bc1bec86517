"""Starting and stopping the four services as real processes."""

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from shared.settings import SERVICES


@dataclass
class ServiceProcess:
    name: str
    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def uvicorn_command(name: str, host: str, port: int, workers: int = 1) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        f"services.{name}.api:create_app",
        "--factory",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
    ]


def service_environment(ports: dict[str, int], extra: dict[str, str]) -> dict[str, str]:
    """The environment a service process runs with: its peers' URLs and extras."""
    env = dict(os.environ)
    env.update(extra)
    for name, port in ports.items():
        env[f"SALVAGE_{name.upper()}_URL"] = f"http://127.0.0.1:{port}"
    return env


def start_services(
    ports: dict[str, int],
    *,
    log_dir: Path,
    env: dict[str, str] | None = None,
    host: str = "127.0.0.1",
) -> list[ServiceProcess]:
    """Starts every service in ports; logs go to log_dir/<name>.log."""
    log_dir.mkdir(parents=True, exist_ok=True)
    environment = service_environment(ports, env or {})
    started = []
    for name in SERVICES:
        if name not in ports:
            continue
        log_path = log_dir / f"{name}.log"
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(
                uvicorn_command(name, host, ports[name]),
                env=environment,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(ServiceProcess(name, ports[name], process, log_path))
    return started


def wait_ready(services: list[ServiceProcess], timeout: float = 60.0) -> None:
    """Waits until every service answers /readyz; raises if one dies or stalls."""
    deadline = time.monotonic() + timeout
    pending = list(services)
    while pending:
        for service in list(pending):
            if service.process.poll() is not None:
                tail = service.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{service.name} exited early:\n{tail}")
            try:
                if httpx.get(service.url + "/readyz", timeout=1.0).status_code == 200:
                    pending.remove(service)
            except httpx.HTTPError:
                pass
        if pending and time.monotonic() > deadline:
            names = ", ".join(service.name for service in pending)
            raise TimeoutError(f"services not ready after {timeout:.0f} s: {names}")
        if pending:
            time.sleep(0.2)


def stop_services(services: list[ServiceProcess], timeout: float = 15.0) -> None:
    """Stops the services gracefully, then by force; leaves no process behind."""
    for service in services:
        if service.process.poll() is None:
            os.killpg(service.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for service in services:
        remaining = max(0.1, deadline - time.monotonic())
        try:
            service.process.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            os.killpg(service.process.pid, signal.SIGKILL)
            service.process.wait()
