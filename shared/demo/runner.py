"""`salvage demo`: starts fresh services if asked, runs the job, prints the report."""

import shutil
import socket
import time
from pathlib import Path

from rich.console import Console

from shared.db import migrate
from shared.processes import start_services, stop_services, wait_ready
from shared.settings import DEFAULT_PORTS, SERVICES, Settings, get_settings

DEMO_DIR_NAME = "demo"


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _demo_ports() -> dict[str, int]:
    """The default ports when free, otherwise any free ones."""
    ports = {}
    for name, port in DEFAULT_PORTS.items():
        if not _port_is_free(port):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
        ports[name] = port
    return ports


def _fresh_settings(base: Settings, data_dir: Path, ports: dict[str, int]) -> Settings:
    urls = {f"{name}_url": f"http://127.0.0.1:{port}" for name, port in ports.items()}
    return base.model_copy(update={"data_dir": data_dir, **urls})


def run_demo(*, with_services: bool, console: Console) -> int:
    """Runs the main job; returns the process exit code (0 when the audit passes)."""
    from shared.demo.job import run_main_job
    from shared.demo.report import print_report

    base = get_settings()
    if not with_services:
        report = run_main_job(base, console=console)
        print_report(report, console)
        return 0 if report.audit_passed else 1

    data_dir = base.data_dir / DEMO_DIR_NAME
    shutil.rmtree(data_dir, ignore_errors=True)
    ports = _demo_ports()
    settings = _fresh_settings(base, data_dir, ports)
    env = {
        "SALVAGE_DATA_DIR": str(data_dir),
        "SALVAGE_INTAKE_PUBLIC_URL": settings.service_url("intake"),
    }
    for name in SERVICES:
        migrate(name, settings.database_url(name))
    started = time.monotonic()
    services = start_services(ports, log_dir=data_dir / "logs", env=env)
    try:
        wait_ready(services)
        console.print(f"services up on ports {ports}; logs in {data_dir / 'logs'}")
        report = run_main_job(settings, console=console)
    finally:
        stop_services(services)
    print_report(report, console)
    console.print(f"wall time {time.monotonic() - started:.1f} s; services stopped")
    return 0 if report.audit_passed else 1
