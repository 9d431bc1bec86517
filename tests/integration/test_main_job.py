"""The main job over real HTTP between the four services as real processes."""

import csv
import io
import math
import subprocess
import sys
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import httpx
import pytest
from rich.console import Console
from sqlalchemy import create_engine, text

from shared.db import normalize_url
from shared.demo import scenario
from shared.demo.job import run_main_job
from shared.demo.replay import read_fixes

pytestmark = pytest.mark.integration

FACTORS = scenario.DATA_DIR.parent / "services" / "trading" / "factors" / "v1.csv"
EARTH_RADIUS_M = 6_371_008.8


def haversine_m(a, b) -> float:
    """Great-circle distance, written out here independently of tracking."""
    lat1, lat2 = math.radians(a.lat), math.radians(b.lat)
    dlat, dlon = lat2 - lat1, math.radians(b.lon - a.lon)
    h = (
        math.sin(dlat / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(h))


def raw_trace_distance_m() -> float:
    fixes = read_fixes(scenario.TRACE)
    return sum(haversine_m(a, b) for a, b in zip(fixes, fixes[1:], strict=False))


def factor_table() -> dict[str, Decimal]:
    with FACTORS.open(newline="", encoding="utf-8") as handle:
        return {row["key"]: Decimal(row["value"]) for row in csv.DictReader(handle)}


def grams_by_hand(distance_m: int, coverage_permille: int) -> int:
    """One batch's creditable grams from the factor table, per methodology.md."""
    factors = factor_table()
    net_kg = scenario.WEIGHBRIDGE["gross_kg"] - scenario.WEIGHBRIDGE["tare_kg"]
    avoided = sum(
        int((kg * factors[f"avoided.{material}"]).to_integral_value(ROUND_FLOOR))
        for material, _, kg in scenario.SORTING_OUTPUTS
    )
    up = ROUND_CEILING
    transport = (
        Decimal(distance_m * net_kg) * factors["transport.diesel_truck_2t"] / 1000
    )
    plant = net_kg * factors["plant.processing"]
    leakage = avoided * factors["leakage.share_of_avoided"]
    net = avoided - sum(
        int(term.to_integral_value(up)) for term in (transport, plant, leakage)
    )
    discount = 100 if coverage_permille < 900 else 0
    return net * (1000 - discount) // 1000


@pytest.fixture
def finished_job(salvage):
    report = run_main_job(salvage.settings, console=Console(file=io.StringIO()))
    assert not [note for note in report.notes if note.startswith("stopped")]
    return salvage, report


def trip_summary(salvage, batch_id: str, token: str) -> dict:
    response = httpx.get(
        f"{salvage.settings.tracking_url}/v1/batches/{batch_id}/trip",
        headers={"Authorization": f"Bearer {token}"},
    )
    response.raise_for_status()
    return response.json()["summary"]


def test_main_job_from_registry_to_audited_credits(finished_job, token_for):
    salvage, report = finished_job
    admin = token_for("admin")
    summaries = [trip_summary(salvage, batch, admin) for batch in report.batch_ids]

    raw = raw_trace_distance_m()
    for summary in summaries:
        assert abs(summary["distance_m"] - raw) <= 0.01 * raw
    assert report.batches_sealed == scenario.DAYS == len(report.batch_ids)

    expected_g = sum(
        grams_by_hand(s["distance_m"], s["coverage_permille"]) for s in summaries
    )
    assert report.quantified_g == expected_g
    assert report.issued_t == expected_g // 1_000_000
    assert report.carried_over_g == expected_g - report.issued_t * 1_000_000
    assert report.buffer_t == -(-report.issued_t * 100 // 1000)
    assert report.bought_t == report.retired_t == report.issued_t - report.buffer_t
    assert report.bought_t >= 1

    assert report.audit_passed
    assert report.offline_check.startswith("PASS")
    assert report.seals_audited == scenario.DAYS
    assert report.checkpoint_size == report.ledger_entries > 0


def test_audit_names_an_entry_changed_behind_the_ledgers_back(finished_job, tmp_path):
    salvage, report = finished_job
    ledger_url = salvage.settings.ledger_url
    index = report.checkpoint_size // 2
    engine = create_engine(normalize_url(salvage.database_urls["ledger"]))
    with engine.begin() as connection:
        leaf = connection.execute(
            text('SELECT leaf FROM entries WHERE "index" = :i'), {"i": index}
        ).scalar_one()
        forged = bytes(leaf).replace(b'"v":1', b'"v":2', 1)
        assert forged != bytes(leaf)
        connection.execute(
            text('UPDATE entries SET leaf = :leaf WHERE "index" = :i'),
            {"leaf": forged, "i": index},
        )
    engine.dispose()

    audit = subprocess.run(
        [sys.executable, "-m", "shared.cli", "audit", "replay",
         "--ledger-url", ledger_url, "--state-file", str(tmp_path / "witness.json")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert audit.returncode == 1
    assert "FAIL" in audit.stdout
    assert f"index {index}" in audit.stdout or f"index: {index}" in audit.stdout
