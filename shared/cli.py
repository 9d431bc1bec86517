"""The `salvage` command: run, migrate, demonstrate and audit Salvage."""

import contextlib
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from rich.console import Console
from rich.table import Table

from shared.audit_cli import audit_app
from shared.auth import Role, issue_token
from shared.db import migrate as migrate_database
from shared.processes import start_services, stop_services, wait_ready
from shared.settings import DEFAULT_PORTS, SERVICES, get_settings

app = typer.Typer(
    help="Salvage: renovation waste from community to credit.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(audit_app, name="audit", help="Verify the ledger as an auditor.")
console = Console()


def _check_service(name: str) -> str:
    if name not in SERVICES:
        raise typer.BadParameter(
            f"unknown service {name!r}; one of {', '.join(SERVICES)}"
        )
    return name


@app.command()
def migrate(
    names: Annotated[
        list[str] | None, typer.Argument(help="Services to migrate.")
    ] = None,
) -> None:
    """Brings each service's database to its newest schema."""
    settings = get_settings()
    for name in names or SERVICES:
        migrate_database(_check_service(name), settings.database_url(name))
        console.print(f"[green]migrated[/green] {name}")


@app.command()
def serve(
    name: Annotated[str, typer.Argument(help="intake, tracking, ledger or trading")],
    port: Annotated[
        int | None, typer.Option(help="Port; the service's default.")
    ] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
    run_migrations: Annotated[bool, typer.Option("--migrate/--no-migrate")] = True,
) -> None:
    """Runs one service in the foreground."""
    settings = get_settings()
    _check_service(name)
    if run_migrations:
        migrate_database(name, settings.database_url(name))
    uvicorn.run(
        f"services.{name}.api:create_app",
        factory=True,
        host=settings.host,
        port=port or DEFAULT_PORTS[name],
        workers=workers,
        access_log=False,
    )


@app.command()
def up() -> None:
    """Runs all four services (SQLite under SALVAGE_DATA_DIR unless configured)."""
    settings = get_settings()
    for name in SERVICES:
        migrate_database(name, settings.database_url(name))
    services = start_services(DEFAULT_PORTS, log_dir=settings.data_dir / "logs")
    try:
        wait_ready(services)
        _print_services(services, settings.data_dir / "logs")
        _wait_for_interrupt()
    finally:
        stop_services(services)
        console.print("stopped")


def _print_services(services, log_dir: Path) -> None:
    table = Table(title="Salvage is up (Ctrl-C stops it)")
    table.add_column("service")
    table.add_column("url")
    table.add_column("API docs")
    for service in services:
        table.add_row(service.name, service.url, service.url + "/docs")
    console.print(table)
    console.print(f"logs in {log_dir}")


def _wait_for_interrupt() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()


@app.command()
def demo(
    with_services: Annotated[
        bool,
        typer.Option(
            "--with-services/--against-running",
            help="Start fresh services for the run and stop them after.",
        ),
    ] = True,
) -> None:
    """Runs the main job: a real collection route from registry to audited credits."""
    from shared.demo import run_demo

    raise typer.Exit(run_demo(with_services=with_services, console=console))


@app.command()
def token(
    role: Annotated[str, typer.Option(help="One of the roles, e.g. admin.")],
    sub: Annotated[str, typer.Option(help="Who the token is for.")],
    org: Annotated[str | None, typer.Option(help="Organisation it acts for.")] = None,
    ttl: Annotated[
        int, typer.Option(min=1, max=31_536_000, help="Lifetime in seconds.")
    ] = 3600,
) -> None:
    """Prints a bearer token signed with the configured issuer key."""
    try:
        role = Role(role)
    except ValueError as exc:
        raise typer.BadParameter(f"unknown role {role!r}") from exc
    key = get_settings().auth_key()
    typer.echo(issue_token(key, sub=sub, role=role, org=org, ttl_seconds=ttl))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
