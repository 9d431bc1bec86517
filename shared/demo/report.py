"""The main job's report: every figure as one of the services answered it."""

from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

GRAMS_PER_TONNE = 1_000_000


@dataclass
class MainJobReport:
    runs: int = 0
    fixes_sent: int = 0
    fixes_stored: int = 0
    distance_m: int = 0
    duration_s: int = 0
    coverage_permille: int = 0
    stops: int = 0
    stops_at_places: int = 0
    stops_unlisted: int = 0
    alerts_raised: int = 0
    alerts_resolved: int = 0
    alert_kinds: list[str] = field(default_factory=list)
    pickups: int = 0
    net_kg: int = 0
    ledger_entries: int = 0
    batches_sealed: int = 0
    quantified_g: int = 0
    issued_t: int = 0
    buffer_t: int = 0
    carried_over_g: int = 0
    bought_t: int = 0
    retired_t: int = 0
    certificate_id: str = ""
    serials: list[str] = field(default_factory=list)
    batch_ids: list[str] = field(default_factory=list)
    buffer_permille: int = 0
    offline_check: str = ""
    avoided_by_material: dict[str, int] = field(default_factory=dict)
    checkpoint_size: int = 0
    seals_audited: int = 0
    audit_passed: bool = False
    audit_detail: str = ""
    notes: list[str] = field(default_factory=list)


def _tonnes(grams: int) -> str:
    return f"{grams / GRAMS_PER_TONNE:,.3f} t"


def print_report(report: MainJobReport, console: Console) -> None:
    title = f"Salvage main job: {report.runs} collection runs of one real route"
    table = Table(title=title, show_header=False)
    table.add_column("what", style="bold")
    table.add_column("figure")
    rows = [
        ("GPS fixes sent / stored", f"{report.fixes_sent} / {report.fixes_stored}"),
        (
            "distance driven (all runs)",
            f"{report.distance_m / 1000:,.2f} km"
            + (
                f" ({report.distance_m / report.runs / 1000:,.2f} km a run)"
                if report.runs
                else ""
            ),
        ),
        ("time on trips", f"{report.duration_s // 60} min"),
        (
            "lowest telemetry coverage of a trip",
            f"{report.coverage_permille / 10:.1f} %",
        ),
        (
            "stops (at registered places / unlisted)",
            f"{report.stops} ({report.stops_at_places} / {report.stops_unlisted})",
        ),
        (
            "alerts raised / resolved",
            f"{report.alerts_raised} / {report.alerts_resolved}"
            + (f" ({', '.join(report.alert_kinds)})" if report.alert_kinds else ""),
        ),
        ("pickups signed", str(report.pickups)),
        ("weighbridge net mass", f"{report.net_kg:,} kg"),
        ("ledger entries", str(report.ledger_entries)),
        ("batches sealed", str(report.batches_sealed)),
        ("CO2e quantified", _tonnes(report.quantified_g)),
        ("credits issued (buffer)", f"{report.issued_t} t ({report.buffer_t} t)"),
        ("carried over to next issuance", _tonnes(report.carried_over_g)),
        ("bought / retired", f"{report.bought_t} t / {report.retired_t} t"),
        ("serials retired", ", ".join(report.serials) or "none"),
        ("retirement certificate", report.certificate_id or "none"),
        ("seals behind the retired credits audited", str(report.seals_audited)),
        (
            "whole log replayed against its checkpoint",
            f"{report.checkpoint_size} entries",
        ),
        (
            "offline provenance check of a retired serial",
            report.offline_check or "none",
        ),
        ("audit verdict", "PASS" if report.audit_passed else "FAIL"),
    ]
    for what, figure in rows:
        table.add_row(what, figure)
    console.print(table)
    if report.audit_detail:
        console.print(report.audit_detail)
    for line in _explanations(report):
        console.print(line)
    for note in report.notes:
        console.print(f"[dim]{note}[/dim]")


def _explanations(report: MainJobReport) -> list[str]:
    """Says what the credit rests on and why the buffer is what it is."""
    lines = []
    avoided = sum(g for g in report.avoided_by_material.values() if g > 0)
    if avoided:
        shares = sorted(report.avoided_by_material.items(), key=lambda kv: -kv[1])
        parts = [f"{m} {g / avoided:.0%}" for m, g in shares if g > 0]
        lines.append("avoided emissions by material: " + ", ".join(parts))
    if report.issued_t:
        lines.append(
            f"buffer: {report.buffer_permille / 10:g} % of the issued tonnes, "
            f"rounded up to whole tonnes ({report.buffer_t} of {report.issued_t} t)"
        )
    return lines
