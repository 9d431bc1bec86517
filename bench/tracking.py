"""Benchmark of the tracking service on PostgreSQL, each figure beside a
baseline measured in the same run:

- batch ingest (`POST /v1/devices/{id}/positions`) in points per second,
  beside a raw COPY of the same rows into the same positions table;
- simulated devices posting one OsmAnd fix a second each, with p50 and p99
  latency and the error count, beside a bare FastAPI endpoint served by
  uvicorn with the same number of workers;
- the service's peak memory, and whether it grew with the points stored.

Everything runs on loopback, in bounded loops, against a throwaway database.
"""

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
from fastapi import FastAPI, Request
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.auth import issue_token  # noqa: E402
from shared.db import migrate  # noqa: E402
from shared.settings import Settings  # noqa: E402

ORIGIN = (52.66, -8.63)
KNOTS_PER_MPS = 3600 / 1852
console = Console()


def bare_app() -> FastAPI:
    """The baseline: an endpoint at / that reads the query and does nothing."""
    app = FastAPI()

    @app.api_route("/", methods=["GET", "POST"], include_in_schema=False)
    def osmand(request: Request) -> dict:
        return {"received": len(request.query_params)}

    return app


@dataclass
class Server:
    process: subprocess.Popen
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_peak_kb(self) -> tuple[int, int, int]:
        """Sums of current and peak RSS over the server's processes (the
        supervisor and its workers), and the largest worker's peak."""
        current = peak = worker_peak = 0
        for pid in [self.process.pid, *_children(self.process.pid)]:
            status = _status(pid)
            current += status.get("VmRSS", 0)
            peak += status.get("VmHWM", 0)
            if pid != self.process.pid:
                worker_peak = max(worker_peak, status.get("VmHWM", 0))
        return current, peak, worker_peak

    def pss_kb(self) -> int:
        """Proportional set size over the server's processes: shared library
        pages counted once in all, not once per worker as in RSS."""
        total = 0
        for pid in [self.process.pid, *_children(self.process.pid)]:
            try:
                rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except OSError:
                continue
            for line in rollup.splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        return total

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class PeakPss:
    """Samples a server's PSS twice a second while in use; keeps the peak."""

    def __init__(self, server: Server) -> None:
        self.server, self.peak_kb = server, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            self.peak_kb = max(self.peak_kb, self.server.pss_kb())

    def __enter__(self) -> "PeakPss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, self.server.pss_kb())


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    if not path.exists():
        return []
    return [int(p) for p in path.read_text().split()]


def _status(pid: int) -> dict[str, int]:
    values: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0])
    except OSError:
        pass
    return values


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(target: str, env: dict[str, str], workers: int, app_dir: Path) -> Server:
    """Starts uvicorn on a free loopback port and waits until it answers."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
        "--app-dir",
        str(app_dir),
    ]
    log = Path(env["SALVAGE_DATA_DIR"]) / f"{target.split(':')[0]}.log"
    with log.open("ab") as output:
        process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT
        )
    server = Server(process, port)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{server.url}/healthz", timeout=2).status_code in (200, 404):
                return server
        except httpx.HTTPError:
            time.sleep(0.3)
    server.stop()
    raise SystemExit(f"{target} did not start")


# The database -------------------------------------------------------------


def create_database(admin_url: str) -> tuple[str, str]:
    name = f"salvage_bench_tracking_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = admin_url.rpartition("/")
    return name, f"{base}/{name}"


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def count_positions(url: str) -> int:
    with psycopg.connect(url) as connection:
        return connection.execute("SELECT count(*) FROM positions").fetchone()[0]


# Workload -----------------------------------------------------------------


def track(start: datetime, count: int, step_s: float = 1.0, east_mps=8.0):
    """A truck driving east at a steady speed: (time, lat, lon)."""
    metres_per_degree = 111_195.0
    for i in range(count):
        lon = ORIGIN[1] + east_mps * i * step_s / (metres_per_degree * 0.6)
        yield start + timedelta(seconds=i * step_s), ORIGIN[0], lon


def batch_body(points) -> dict:
    return {
        "positions": [
            {
                "time": t.isoformat(),
                "lat": lat,
                "lon": lon,
                "speed_mps": 8.0,
                "accuracy_m": 5.0,
            }
            for t, lat, lon in points
        ]
    }


def register_devices(server: Server, token: str, count: int) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for i in range(count):
            response = client.put(
                f"/v1/devices/bench-{i}",
                json={"vehicle_id": f"veh-{i}", "hauler_id": "h", "plate": f"B{i}"},
                headers={"Authorization": f"Bearer {token}"},
            )
            response.raise_for_status()


def batch_ingest(server: Server, tokens, batches: int, size: int, start) -> float:
    """Points per second over `batches` uploads of `size` points each, one
    device per upload, two uploads in flight."""
    bodies = [(i, batch_body(track(start, size))) for i in range(batches)]

    async def upload(client, index, body):
        response = await client.post(
            f"/v1/devices/bench-{index}/positions",
            json=body,
            headers={"Authorization": f"Bearer {tokens[index]}"},
        )
        response.raise_for_status()
        assert response.json()["accepted"] == size, response.text

    async def run() -> float:
        async with httpx.AsyncClient(base_url=server.url, timeout=300) as client:
            began = time.perf_counter()
            for pair in range(0, batches, 2):
                await asyncio.gather(
                    *(upload(client, i, b) for i, b in bodies[pair : pair + 2])
                )
            return time.perf_counter() - began

    return batches * size / asyncio.run(run())


def raw_copy(url: str, batches: int, size: int, start) -> float:
    """Points per second for COPY of the same rows into the same table."""
    now = datetime.now(UTC)
    rows = [
        (f"copy-{i}", t, lat, lon, 8.0, None, None, 5.0, None, None, None, now)
        for i in range(batches)
        for t, lat, lon in track(start, size)
    ]
    columns = (
        "device_id, fix_time, lat, lon, speed_mps, course, altitude_m, "
        "accuracy_m, hdop, battery, attributes, received_at"
    )
    with psycopg.connect(url) as connection:
        began = time.perf_counter()
        with (
            connection.cursor() as cursor,
            cursor.copy(f"COPY positions ({columns}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        connection.commit()
        return len(rows) / (time.perf_counter() - began)


@dataclass
class Load:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    sent: int = 0
    late: int = 0
    unfinished: int = 0
    seconds: float = 0.0
    # Set by wrk, which reports percentiles rather than every latency.
    percentiles: dict[str, float] | None = None
    answered: int | None = None

    @property
    def answered_per_s(self) -> float:
        answered = len(self.latencies) if self.answered is None else self.answered
        return answered / self.seconds if self.seconds else 0.0

    def quantile(self, q: float) -> float:
        if self.percentiles is not None:
            return self.percentiles.get(f"{round(q * 100)}%", float("nan"))
        return quantile(self.latencies, q)


def osmand_load(
    url: str, tokens: list[str], seconds: int, start: datetime, limit: int, drain: int
) -> Load:
    """Each device posts one OsmAnd fix a second, spread evenly over the
    second; open loop with at most `limit` requests in flight. Requests still
    unanswered `drain` seconds after the last send are cancelled and counted
    as errors."""
    load = Load()
    devices = len(tokens)

    async def post(client, gate, device: int, second: int) -> None:
        t, lat, lon = start + timedelta(seconds=second), ORIGIN[0], ORIGIN[1]
        lon += 8.0 * second / (111_195.0 * 0.6)
        params = {
            "id": f"bench-{device}",
            "timestamp": str(int(t.timestamp())),
            "lat": f"{lat:.6f}",
            "lon": f"{lon:.6f}",
            "speed": f"{8.0 * KNOTS_PER_MPS:.2f}",
            "bearing": "90",
            "altitude": "12",
            "accuracy": "5",
            "batt": "80",
        }
        async with gate:
            began = time.perf_counter()
            try:
                response = await client.post(
                    "/",
                    params=params,
                    headers={"Authorization": f"Bearer {tokens[device]}"},
                )
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            load.latencies.append(time.perf_counter() - began)
            load.errors += not ok

    async def run() -> None:
        gate = asyncio.Semaphore(limit)
        limits = httpx.Limits(max_connections=limit, max_keepalive_connections=limit)
        async with httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as client:
            tasks = []
            began = time.perf_counter()
            for second in range(seconds):
                for device in range(devices):
                    due = began + second + device / devices
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    elif delay < -0.1:
                        load.late += 1
                    tasks.append(
                        asyncio.create_task(post(client, gate, device, second))
                    )
                    load.sent += 1
            _, pending = await asyncio.wait(tasks, timeout=drain)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            load.unfinished = len(pending)
            load.errors += len(pending)
            load.seconds = time.perf_counter() - began

    asyncio.run(run())
    return load


WRK_SCRIPT = """
local tokens = {%(tokens)s}
local devices = #tokens
local started = %(start)d
local pause = %(pause)d
local spawned = 0

function setup(thread)
  thread:set("tid", spawned)
  spawned = spawned + 1
end

function init(args)
  counter = tid
  step = tonumber(args[1])
end

function request()
  local device = counter %% devices
  local second = math.floor(counter / devices)
  counter = counter + step
  local path = string.format(
    "/?id=bench-%%d&timestamp=%%d&lat=52.660000&lon=%%.6f&speed=15.55"
    .. "&bearing=90&altitude=12&accuracy=5&batt=80",
    device, started + second, -8.63 + second * 0.00012)
  return wrk.format("POST", path,
    {["Authorization"] = "Bearer " .. tokens[device + 1]})
end

function delay()
  return pause
end
"""


def wrk_load(
    url: str, tokens: list[str], seconds: int, start: datetime, connections: int
) -> Load:
    """wrk with `connections` connections, each pausing so that together they
    offer one post per device per second; each device's fixes in time order."""
    threads = 2
    script = WRK_SCRIPT % {
        "tokens": ", ".join(f'"{token}"' for token in tokens),
        "start": int(start.timestamp()),
        "pause": round(connections * 1000 / len(tokens)),
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
        file.write(script)
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        file.name,
        url,
        "--",
        str(threads),
    ]
    output = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=True
    ).stdout
    os.unlink(file.name)
    return _parse_wrk(output, seconds)


def _parse_wrk(output: str, seconds: int) -> Load:
    """The latency percentiles, request count and errors from wrk's report."""
    load = Load(seconds=float(seconds))
    percentiles: dict[str, float] = {}
    for line in output.splitlines():
        words = line.split()
        if len(words) == 2 and words[0].endswith("%"):
            percentiles[words[0]] = _seconds(words[1])
        elif "requests in" in line:
            load.sent = int(words[0])
        elif line.strip().startswith("Non-2xx"):
            load.errors += int(words[-1])
        elif line.strip().startswith("Socket errors"):
            load.errors += sum(
                int(w.strip(",")) for w in words if w.strip(",").isdigit()
            )
    load.percentiles = percentiles
    load.answered = load.sent
    return load


def _seconds(text: str) -> float:
    for unit, scale in (("us", 1e-6), ("ms", 1e-3), ("s", 1.0), ("m", 60.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    return float(text)


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


# Main ---------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--admin-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL where a throwaway database is created",
    )
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=60, help="OsmAnd load time")
    parser.add_argument("--batches", type=int, default=10, help="batch uploads")
    parser.add_argument("--batch-size", type=int, default=5000, help="points each")
    parser.add_argument(
        "--generator",
        choices=("wrk", "httpx"),
        default="wrk" if shutil.which("wrk") else "httpx",
        help="load generator: wrk (Debian package) or an asyncio httpx loop",
    )
    parser.add_argument("--connections", type=int, default=250, help="wrk only")
    parser.add_argument("--in-flight", type=int, default=256, help="httpx only")
    parser.add_argument(
        "--drain", type=int, default=30, help="seconds to wait for late answers"
    )
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.devices < args.batches:
        raise SystemExit("--devices must be at least --batches")
    name, url = create_database(args.admin_url)
    data_dir = Path(tempfile.mkdtemp(prefix="salvage-bench-"))
    try:
        results = run_all(args, url, data_dir)
    finally:
        drop_database(args.admin_url, name)
    report(args, results)


def generate(args, url: str, tokens: list[str], start: datetime) -> Load:
    if args.generator == "wrk":
        return wrk_load(url, tokens, args.seconds, start, args.connections)
    return osmand_load(url, tokens, args.seconds, start, args.in_flight, args.drain)


def run_all(args, url: str, data_dir: Path) -> dict:
    settings = Settings(data_dir=data_dir)
    migrate("tracking", url)
    env = {
        **os.environ,
        "SALVAGE_DATA_DIR": str(data_dir),
        "SALVAGE_TRACKING_DATABASE_URL": url,
        "SALVAGE_LEDGER_URL": f"http://127.0.0.1:{free_port()}",
        "SALVAGE_LOG_LEVEL": "WARNING",
    }
    key = settings.auth_key()
    service_token = issue_token(key, sub="service:bench", role="service")
    tokens = [
        issue_token(key, sub=f"bench-{i}", role="device") for i in range(args.devices)
    ]
    results: dict = {}
    server = serve("services.tracking.api:create_app", env, args.workers, ROOT)
    try:
        with PeakPss(server) as pss:
            load_service(args, results, server, url, tokens, service_token)
        results["pss_peak"] = pss.peak_kb
    finally:
        server.stop()
    console.print("OsmAnd load on a bare FastAPI endpoint ...")
    bare = serve("tracking:bare_app", env, args.workers, ROOT / "bench")
    try:
        with PeakPss(bare) as pss:
            results["bare"] = generate(args, bare.url, tokens, datetime.now(UTC))
        results["bare_rss_peak"] = bare.rss_peak_kb()[1]
        results["bare_pss_peak"] = pss.peak_kb
    finally:
        bare.stop()
    results["uptime"] = Path("/proc/loadavg").read_text().split()[:3]
    return results


def load_service(args, results: dict, server, url, tokens, service_token) -> None:
    """Batch uploads, then the OsmAnd load, on the tracking service."""
    register_devices(server, service_token, args.devices)
    start = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
    console.print("batch ingest ...")
    results["batch"] = batch_ingest(
        server, tokens, args.batches, args.batch_size, start
    )
    results["copy"] = raw_copy(url, args.batches, args.batch_size, start)
    results["rss_after_batch"] = server.rss_peak_kb()[0]
    results["rows_after_batch"] = count_positions(url)
    console.print("OsmAnd load on the service ...")
    osmand_start = start + timedelta(hours=4)
    results["service"] = generate(args, server.url, tokens, osmand_start)
    memory = server.rss_peak_kb()
    results["rss_end"], results["rss_peak"], results["worker_peak"] = memory
    results["pss_end"] = server.pss_kb()
    results["rows_end"] = count_positions(url)


def _errors(load: Load) -> str:
    return (
        f"{load.errors} / {load.sent} ({load.unfinished}; {load.answered_per_s:,.0f}/s)"
    )


def report(args, results: dict) -> None:
    table = Table(title="tracking on PostgreSQL", show_lines=True)
    for column in ("measure", "tracking", "baseline", "target"):
        table.add_column(column)
    table.add_row(
        "batch ingest, points/s",
        f"{results['batch']:,.0f}",
        f"{results['copy']:,.0f} (raw COPY, same rows and table)",
        ">= 20,000",
    )
    service, bare = results["service"], results["bare"]
    rate = args.devices
    for label, q in (("p50", 0.5), ("p99", 0.99)):
        table.add_row(
            f"OsmAnd {rate} devices x 1/s, {args.seconds} s: {label} ms",
            f"{1000 * service.quantile(q):.1f}",
            f"{1000 * bare.quantile(q):.1f} (bare FastAPI)",
            "p99 <= 50" if label == "p99" else "",
        )
    table.add_row(
        "OsmAnd errors / sent (unanswered; answers/s)",
        _errors(service),
        _errors(bare),
        "0 errors",
    )
    table.add_row(
        "service memory, supervisor + workers (MiB)",
        f"peak {results['rss_peak'] / 1024:.0f} (largest worker "
        f"{results['worker_peak'] / 1024:.0f}); at the end "
        f"{results['rss_end'] / 1024:.0f}",
        f"{results['rss_after_batch'] / 1024:.0f} after batches, "
        f"{results['rows_after_batch']:,} rows; "
        f"{results['rows_end']:,} rows at the end",
        "< 300, flat",
    )
    table.add_row(
        "service memory, PSS: shared pages once (MiB)",
        f"peak {results['pss_peak'] / 1024:.0f}; at the end "
        f"{results['pss_end'] / 1024:.0f}",
        f"peak {results['bare_pss_peak'] / 1024:.0f} (bare FastAPI; peak RSS "
        f"{results['bare_rss_peak'] / 1024:.0f})",
        "< 300",
    )
    console.print(table)
    console.print(
        f"generator {args.generator}; workers {args.workers}; load average at the end "
        f"{' '.join(results['uptime'])} on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
