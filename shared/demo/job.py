"""The main job, step by step, over REST against the four services.

The job only moves data between the parties and reads figures back: every
number in the report is one a service answered.
"""

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
from rich.console import Console

from shared.auth import Role, issue_token
from shared.crypto import generate_key, public_key_b64, sign_statement
from shared.demo import scenario
from shared.demo.api import ServiceApi, StepFailed
from shared.demo.replay import Fix, read_fixes, replay
from shared.demo.report import MainJobReport
from shared.settings import Settings
from shared.timeutil import iso_utc

SEAL_WAIT_SECONDS = 90
PRICE_CNY = "68.00"


@dataclass
class Parties:
    """Who takes part, with the keys they sign with and their tokens."""

    admin: str
    tokens: dict[str, str] = field(default_factory=dict)
    keys: dict[str, object] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    communities: dict[str, dict] = field(default_factory=dict)
    batches: list[str] = field(default_factory=list)


@dataclass
class Services:
    intake: ServiceApi
    tracking: ServiceApi
    ledger: ServiceApi
    trading: ServiceApi

    @classmethod
    def from_settings(cls, settings: Settings) -> "Services":
        return cls(
            *(ServiceApi(name, settings.service_url(name)) for name in
              ("intake", "tracking", "ledger", "trading"))
        )  # fmt: skip

    def close(self) -> None:
        for api in (self.intake, self.tracking, self.ledger, self.trading):
            api.close()


def run_main_job(settings: Settings, *, console: Console) -> MainJobReport:
    """Runs the whole collection run and returns the services' figures."""
    services = Services.from_settings(settings)
    report = MainJobReport()
    admin = issue_token(settings.auth_key(), sub="demo-operator", role=Role.ADMIN)
    parties = Parties(admin=admin)
    try:
        with console.status("registry..."):
            register_city(services, parties)
        fixes = read_fixes(scenario.TRACE)
        for day in range(scenario.DAYS):
            with console.status(f"collection run {day + 1} of {scenario.DAYS}..."):
                collection_run(services, parties, report, day, fixes)
            console.print(f"[green]done[/green] collection run {day + 1}")
        for title, step in (
            ("seals", await_seals),
            ("alerts", review_alerts),
            ("credits", issue_credits),
            ("market", buy_and_retire),
            ("audit", audit_credits),
        ):
            with console.status(f"{title}..."):
                step(services, parties, report, settings)
            console.print(f"[green]done[/green] {title}")
    except StepFailed as exc:
        report.notes.append(f"stopped: {exc}")
        console.print(f"[red]failed[/red] {exc}")
    finally:
        services.close()
    report.notes.append(LOAD_NOTE)
    return report


LOAD_NOTE = (
    "The GPS trace is a real bus run standing in for the truck, driven on "
    f"{scenario.DAYS} consecutive days (times shifted by whole days); the masses "
    "are an assumed load (see shared/demo/scenario.py), not measurements."
)


def mint(services: Services, parties: Parties, role: str, sub: str, org=None) -> str:
    body = {"role": role, "sub": sub, "org": org}
    answer = services.intake.call("POST", "/v1/tokens", token=parties.admin, json=body)
    parties.tokens[sub] = answer["token"]
    return answer["token"]


def register_city(services: Services, parties: Parties) -> None:
    """Depot, plant, communities, hauler, truck, and the parties' keys."""
    stops = {stop.stop_no: stop for stop in scenario.read_stops()}
    intake, admin = services.intake, parties.admin
    depot = stops[scenario.DEPOT_STOP]
    plant = stops[scenario.PLANT_STOP]
    intake.call("POST", "/v1/depots", token=admin, json=_site(depot, "depot"))
    plant_body = _site(plant, "plant") | {
        "permit_no": "LK-TF-2019-007",
        "accepted_ewc": scenario.CHAPTER_17_CODES,
        "licensed": True,
    }
    parties.ids["plant"] = intake.call(
        "POST", "/v1/plants", token=admin, json=plant_body
    )["id"]
    for stop_no, stop in stops.items():
        if stop_no in (scenario.DEPOT_STOP, scenario.PLANT_STOP):
            continue
        community = intake.call("POST", "/v1/communities", token=admin, json={
            "name": stop.name,
            "address": f"{stop.name}, {scenario.CITY} (route 304 stop {stop_no})",
            "city": scenario.CITY,
            "lat": stop.lat,
            "lon": stop.lon,
            "radius_m": scenario.COMMUNITY_RADIUS_M,
            "property_manager_id": f"pm-{stop_no}",
        })  # fmt: skip
        parties.communities[stop_no] = community
    _register_hauler(services, parties)
    _register_keys(services, parties)


def _site(stop: scenario.Stop, kind: str) -> dict:
    return {
        "name": f"{stop.name} {kind}",
        "lat": stop.lat,
        "lon": stop.lon,
        "radius_m": scenario.SITE_RADIUS_M,
    }


def _register_hauler(services: Services, parties: Parties) -> None:
    intake, admin = services.intake, parties.admin
    hauler = intake.call("POST", "/v1/haulers", token=admin, json={
        "name": "Shannon Renovation Haulage",
        "licence_no": "LK-HAUL-2019-0042",
        "valid_from": "2018-01-01T00:00:00Z",
        "valid_until": "2029-12-31T23:59:59Z",
    })  # fmt: skip
    vehicle = intake.call("POST", "/v1/vehicles", token=admin, json={
        "plate": "191-L-3040",
        "capacity_kg": scenario.TRUCK_CAPACITY_KG,
        "hauler_id": hauler["id"],
        "device_id": scenario.DEVICE_ID,
    })  # fmt: skip
    parties.ids["hauler"] = hauler["id"]
    parties.ids["vehicle"] = vehicle["id"]


def _register_keys(services: Services, parties: Parties) -> None:
    """Each signing party makes its own key; intake learns the public half."""
    signers = [("device", scenario.DEVICE_ID), ("plant", parties.ids["plant"])]
    signers += [("property_manager", f"pm-{p.stop_no}") for p in scenario.PICKUPS]
    for party_kind, party_id in signers:
        key = generate_key()
        parties.keys[party_id] = key
        services.intake.call("POST", "/v1/parties/keys", token=parties.admin, json={
            "party_kind": party_kind,
            "party_id": party_id,
            "public_key": public_key_b64(key),
        })  # fmt: skip


def collection_run(
    services: Services, parties: Parties, report: MainJobReport, day: int, fixes
) -> None:
    """One day: bookings, the truck's telemetry, signed custody at each stop."""
    day_start = scenario.FIRST_DAY + timedelta(days=day)
    window = (day_start + scenario.WINDOW[0], day_start + scenario.WINDOW[1])
    requests, batch = book_pickups(services, parties, window)
    shifted = [_shift(fix, timedelta(days=day)) for fix in fixes]
    report.fixes_sent += len(shifted)
    send_telemetry(services, parties, shifted, over_osmand=day == 0)
    record_custody(services, parties, batch, requests, window, day_start)
    report.pickups += len(requests)
    parties.batches.append(batch)


def _shift(fix: Fix, by: timedelta) -> Fix:
    return Fix(
        fix.time + by, fix.lat, fix.lon, fix.altitude, fix.speed_mps, fix.bearing
    )


def book_pickups(
    services: Services, parties: Parties, window: tuple[datetime, datetime]
) -> tuple[dict[str, str], str]:
    """Residents scan the QR code, get a quote, pay; the operator dispatches."""
    intake = services.intake
    start, end = iso_utc(window[0]), iso_utc(window[1])
    requests, batch = {}, ""
    for pickup in scenario.PICKUPS:
        community = parties.communities[pickup.stop_no]
        token = mint(services, parties, "resident", f"resident-{pickup.stop_no}")
        code = scan_qr_code(services, community)
        request = intake.call("POST", "/v1/pickup-requests", token=token, json={
            "community_code": code,
            "unit": f"Block {pickup.stop_no[-2:]}, flat 3",
            "materials": list(pickup.materials),
            "bags": pickup.bags,
            "preferred_start": start,
            "preferred_end": end,
        })  # fmt: skip
        intake.call(
            "POST",
            f"/v1/pickup-requests/{request['id']}/payment",
            token=token,
            json={"amount": request["quote"]["amount"], "method": "wechat"},
            idempotent=True,
        )
        dispatched = intake.call(
            "POST",
            f"/v1/pickup-requests/{request['id']}/dispatch",
            token=parties.admin,
            json={
                "hauler_id": parties.ids["hauler"],
                "vehicle_id": parties.ids["vehicle"],
                "window_start": start,
                "window_end": end,
                "plant_id": parties.ids["plant"],
            },
        )
        requests[pickup.stop_no] = request["id"]
        batch = dispatched["batch_id"]
    return requests, batch


def scan_qr_code(services: Services, community: dict) -> str:
    """Does what the resident's phone does: decode the poster, open its link."""
    import io

    import zxingcpp
    from PIL import Image

    png = services.intake.client.get(f"/v1/communities/{community['id']}/qr.png")
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.content)))
    if not decoded:
        raise StepFailed(f"the QR code of community {community['id']} does not decode")
    link = httpx.URL(decoded[0].text)
    services.intake.call("GET", link.path)
    return link.path.rsplit("/", 1)[-1]


def send_telemetry(
    services: Services, parties: Parties, fixes: list[Fix], *, over_osmand: bool
) -> None:
    """The truck's phone sends the trace live (OsmAnd) or uploads it afterwards."""
    token = parties.tokens.get(scenario.DEVICE_ID) or mint(
        services, parties, "device", scenario.DEVICE_ID
    )
    _wait_until_tracking_knows_device(services, parties)
    if over_osmand:
        replay(services.tracking.client, scenario.DEVICE_ID, token, fixes)
        return
    positions = [
        {"time": iso_utc(fix.time), "lat": fix.lat, "lon": fix.lon,
         "speed_mps": fix.speed_mps, "altitude_m": fix.altitude, "accuracy_m": 5}
        for fix in fixes
    ]  # fmt: skip
    services.tracking.call(
        "POST",
        f"/v1/devices/{scenario.DEVICE_ID}/positions",
        token=token,
        json={"positions": positions},
    )


def _wait_until_tracking_knows_device(services: Services, parties: Parties) -> None:
    """Registry changes reach tracking through intake's outbox, within moments."""
    deadline = time.monotonic() + 30
    path = f"/v1/devices/{scenario.DEVICE_ID}"
    while time.monotonic() < deadline:
        response = services.tracking.client.get(
            path, headers={"Authorization": f"Bearer {parties.admin}"}
        )
        if response.status_code == 200:
            return
        time.sleep(0.3)
    raise StepFailed("tracking never learned the truck's device from intake")


def record_custody(services, parties, batch, requests, window, day_start) -> None:
    """Signed handovers where the truck stopped, then weighbridge and sorting."""
    stops = services.tracking.call(
        "GET",
        f"/v1/devices/{scenario.DEVICE_ID}/stops",
        token=parties.admin,
        params={"start": iso_utc(window[0]), "end": iso_utc(window[1])},
    )
    for pickup in scenario.PICKUPS:
        community_id = parties.communities[pickup.stop_no]["id"]
        stop = next((s for s in stops if s.get("place_id") == community_id), None)
        if stop is None:
            raise StepFailed(f"tracking found no stop at community {pickup.stop_no}")
        body = {
            "request_id": requests[pickup.stop_no],
            "declared_volume_l": pickup.declared_volume_l,
            "estimated_mass_kg": pickup.estimated_mass_kg,
            "materials": list(pickup.materials),
        }
        signers = [scenario.DEVICE_ID, f"pm-{pickup.stop_no}"]
        _sign_and_submit(
            services, parties, batch, "custody.pickup", stop["end"], body, signers
        )
    plant = parties.ids["plant"]
    ticket = f"WB-{day_start:%Y%m%d}-0001"
    delivery = dict(scenario.WEIGHBRIDGE, ticket_no=ticket)
    weighed_at = iso_utc(day_start + scenario.WEIGHED_AFTER)
    _sign_and_submit(
        services, parties, batch, "custody.delivery", weighed_at, delivery, [plant]
    )
    outputs = [
        {"material": material, "ewc": ewc, "kg": kg}
        for material, ewc, kg in scenario.SORTING_OUTPUTS
    ]
    sorted_at = iso_utc(day_start + scenario.SORTED_AFTER)
    _sign_and_submit(
        services,
        parties,
        batch,
        "custody.processing",
        sorted_at,
        {"outputs": outputs},
        [plant],
    )


def _sign_and_submit(services, parties, batch, kind, at, body, signers) -> dict:
    """Intake drafts the statement; each party signs it; intake records it."""
    draft = services.intake.call(
        "POST",
        f"/v1/batches/{batch}/statements",
        token=parties.admin,
        json={"kind": kind, "at": at, "body": body},
    )
    statement = draft["statement"]
    signatures = [sign_statement(parties.keys[who], statement) for who in signers]
    return services.intake.call(
        "POST",
        f"/v1/batches/{batch}/custody",
        token=parties.admin,
        json={"statement": statement, "signatures": signatures},
    )


def await_seals(services: Services, parties: Parties, report, settings) -> None:
    """The ledger seals each batch by itself once its chain and trip are in."""
    for batch in parties.batches:
        seal = _wait_for_seal(services, batch)
        body = seal["entry"]["statement"]["body"]
        report.net_kg += body["net_kg"]
        trip = services.tracking.call(
            "GET", f"/v1/batches/{batch}/trip", token=parties.admin
        )["summary"]
        report.distance_m += trip["distance_m"]
        report.duration_s += trip["duration_s"]
        report.coverage_permille = min(
            report.coverage_permille or 1000, trip["coverage_permille"]
        )
        report.stops += len(trip["stops"])
        report.stops_at_places += sum(1 for s in trip["stops"] if s.get("place_id"))
        report.fixes_stored += trip["point_count"]
    report.stops_unlisted = report.stops - report.stops_at_places
    report.runs = len(parties.batches)
    report.batch_ids = list(parties.batches)
    seals = services.ledger.call("GET", "/v1/seals", params={"limit": 1000})
    report.batches_sealed = len(seals["seals"] if isinstance(seals, dict) else seals)


def _wait_for_seal(services: Services, batch: str) -> dict:
    deadline = time.monotonic() + SEAL_WAIT_SECONDS
    while time.monotonic() < deadline:
        response = services.ledger.client.get(f"/v1/batches/{batch}/seal")
        if response.status_code == 200:
            return response.json()
        time.sleep(0.5)
    state = services.ledger.call("GET", f"/v1/batches/{batch}", expect=(200, 404))
    raise StepFailed(f"batch {batch} was not sealed in time: {state}")


def review_alerts(services: Services, parties: Parties, report, settings) -> None:
    """An inspector reviews every alert on the batches and resolves it."""
    inspector = mint(services, parties, "inspector", "inspector-1")
    for batch in parties.batches:
        for alert in _batch_alerts(services, inspector, batch):
            report.alerts_raised += 1
            report.alert_kinds.append(alert["kind"])
            if alert["status"] == "resolved":
                report.alerts_resolved += 1
                continue
            services.tracking.call(
                "POST",
                f"/v1/alerts/{alert['id']}/resolve",
                token=inspector,
                json={"reason": f"Reviewed on the route map: {alert['message']}"},
            )
            report.alerts_resolved += 1
    report.alert_kinds = sorted(set(report.alert_kinds))


def _batch_alerts(services: Services, token: str, batch: str) -> list[dict]:
    """Every alert tracking lists for the batch, following its pages."""
    alerts, params = [], {"batch_id": batch, "limit": 1000}
    while True:
        page = services.tracking.call("GET", "/v1/alerts", token=token, params=params)
        alerts += page["alerts"]
        if page.get("next_cursor") is None:
            return alerts
        params = {**params, "cursor": page["next_cursor"]}


def issue_credits(services: Services, parties: Parties, report, settings) -> None:
    """A monitoring report over the run's days; a verifier approves it."""
    trading, admin = services.trading, parties.admin
    owner = trading.call("POST", "/v1/accounts", token=admin, json={
        "org_id": "city-programme", "name": "City renovation-waste programme",
    })  # fmt: skip
    parties.ids["owner_account"] = owner["id"]
    first = scenario.FIRST_DAY
    created = trading.call("POST", "/v1/reports", token=admin, json={
        "period_start": iso_utc(first),
        "period_end": iso_utc(first + timedelta(days=scenario.DAYS)),
        "account_id": owner["id"],
    })  # fmt: skip
    verifier = mint(services, parties, "verifier", "verifier-1")
    decided = trading.call(
        "POST",
        f"/v1/reports/{created['id']}/decision",
        token=verifier,
        json={"decision": "approve", "comments": "Seals, proofs and alerts checked."},
    )
    issuance = decided["issuance"]
    report.buffer_permille = decided["buffer_permille"]
    report.avoided_by_material = _avoided_by_material(services, created["id"])
    report.quantified_g = decided["total_g"]
    report.issued_t = issuance["tonnes"]
    report.buffer_t = issuance["buffer_tonnes"]
    report.carried_over_g = issuance["carried_out_g"]


def _avoided_by_material(services: Services, report_id: str) -> dict[str, int]:
    calculations = services.trading.call(
        "GET", "/v1/quantifications", params={"report_id": report_id}
    )["items"]
    totals: dict[str, int] = {}
    for calculation in calculations:
        for material, grams in calculation["terms"]["avoided_g"].items():
            totals[material] = totals.get(material, 0) + grams
    return totals


def buy_and_retire(services: Services, parties: Parties, report, settings) -> None:
    """The owner lists what it holds; a stationery maker buys and retires it."""
    trading, admin = services.trading, parties.admin
    owner = trading.call(
        "GET", f"/v1/accounts/{parties.ids['owner_account']}", token=admin
    )
    held = owner["balances"]["held"]
    if held < 1:
        raise StepFailed("no whole tonne is held after the buffer; nothing to sell")
    listing = trading.call("POST", "/v1/listings", token=admin, json={
        "account_id": owner["id"], "quantity_t": held, "price_cny": PRICE_CNY,
    })  # fmt: skip
    buyer_org = "stationery-maker"
    buyer_account = trading.call("POST", "/v1/accounts", token=admin, json={
        "org_id": buyer_org, "name": "A stationery maker",
    })  # fmt: skip
    buyer = mint(services, parties, "buyer", "buyer-1", org=buyer_org)
    order = {"listing_id": listing["id"], "quantity_t": held}
    purchase = trading.call(
        "POST", "/v1/purchases", token=buyer, json=order, idempotent=True
    )
    report.bought_t = purchase["quantity_t"]
    retirement = trading.call("POST", "/v1/retirements", token=buyer, json={
        "account_id": buyer_account["id"],
        "quantity_t": purchase["quantity_t"],
        "beneficiary": "A stationery maker",
        "purpose": "Carbon-neutral ballpoint pens, 2019 production run",
    })  # fmt: skip
    report.retired_t = retirement["quantity_t"]
    report.certificate_id = retirement["id"]
    report.serials = retirement["serials"]


def audit_credits(services: Services, parties: Parties, report, settings) -> None:
    """Checks the seals behind every retired serial, then replays the whole log."""
    from shared.audit import audit_seals, replay

    indices = set()
    for serial in report.serials:
        provenance = services.trading.call("GET", f"/v1/credits/{serial}/provenance")
        indices.update(seal["index"] for seal in provenance["seals"])
    _wait_for_quiet_ledger(services)
    state_file = settings.data_dir / "audit" / "witness.json"
    ledger_url = settings.service_url("ledger")
    seals = audit_seals(ledger_url, sorted(indices), state_file)
    whole = replay(ledger_url, state_file=state_file)
    report.seals_audited = seals.checked
    report.checkpoint_size = whole.size or 0
    report.ledger_entries = report.checkpoint_size
    offline = check_provenance_offline(services, report, settings)
    report.audit_passed = (
        seals.ok and whole.ok and offline.ok and seals.checked == len(indices) > 0
    )
    for failed in (seals, whole, offline):
        if not failed.ok:
            report.audit_detail += (
                f"{failed.check} audit failed at index {failed.first_bad_index}: "
                f"{failed.reason}\n"
            )


def check_provenance_offline(services: Services, report, settings):
    """Downloads a retired serial's provenance bundle and checks it offline."""
    from shared.provenance import verify_credit_bundle

    output = settings.data_dir / "output"
    output.mkdir(parents=True, exist_ok=True)
    bundle = _credit_bundle(services, report.serials[0])
    bundle_path = output / "credit-bundle.json"
    bundle_path.write_text(json.dumps(bundle, indent=1))
    pdf = services.trading.client.get(
        f"/v1/retirements/{report.certificate_id}/certificate.pdf"
    )
    (output / "certificate.pdf").write_bytes(pdf.content)
    pinned_key = services.ledger.call("GET", "/v1/key").strip()
    result = verify_credit_bundle(
        json.loads(bundle_path.read_text()), verifier_key=pinned_key
    )
    report.offline_check = f"{result.verdict} ({result.checked} entries)"
    report.notes.append(
        f"provenance bundle: {bundle_path}; certificate: {output / 'certificate.pdf'}"
    )
    return result


def _credit_bundle(services: Services, serial: str) -> dict:
    """The serial's bundle, once trading's own entries have reached the log."""
    deadline = time.monotonic() + 15
    while True:
        response = services.trading.client.get(f"/v1/credits/{serial}/bundle")
        if response.status_code == 200:
            return response.json()
        if response.status_code != 409 or time.monotonic() > deadline:
            raise StepFailed(
                f"trading has no provenance bundle for {serial}: {response.text}"
            )
        time.sleep(0.2)


def _wait_for_quiet_ledger(services: Services, quiet_polls: int = 4) -> None:
    """Waits until trading's credit entries have reached the ledger's log."""
    deadline, last, quiet = time.monotonic() + 30, -1, 0
    while quiet < quiet_polls and time.monotonic() < deadline:
        size = int(services.ledger.call("GET", "/v1/checkpoint").split("\n")[1])
        quiet = quiet + 1 if size == last else 0
        last = size
        time.sleep(0.5)
