"""The main job's inputs: a real route and trace, and an assumed load.

The route and the trace are real (see data/README.md). The load is not: no
public record of a renovation-waste truck's masses exists, so the masses
below are an assumption, sized for a medium (8 t) truck collecting at four
community collection points, with a composition inside the published ranges
for Chinese renovation waste (hard inorganics 35-55 %, gypsum and soft
inorganics 5-25 %, timber 5-10 %, plastics and other combustibles 9-12 %,
glass and metal 1-5 %; Buildings 2025, 15(2):252).
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
TRACE = DATA_DIR / "limerick-bus-304-2019-02-18.gpx"
STOPS = DATA_DIR / "limerick-bus-304-stops.geojson"

# Route 304 runs from Raheen to the University of Limerick: its first stop
# along the route stands for the hauler's depot, its last for the plant.
DEPOT_STOP = "607461"
PLANT_STOP = "607631"
CITY = "Limerick"
# One run on such a load quantifies about a quarter of a tonne of CO2e, and
# credits are whole tonnes with a buffer held back, so the job drives the
# same real run on consecutive days (times shifted by whole days, nothing
# else changed) until a tonne can be sold. The report says how many.
FIRST_DAY = datetime(2019, 2, 18, tzinfo=UTC)
DAYS = 9
WINDOW = (timedelta(hours=7, minutes=45), timedelta(hours=9, minutes=15))
WEIGHED_AFTER = timedelta(hours=9, minutes=2)
SORTED_AFTER = timedelta(hours=11, minutes=30)

DEVICE_ID = "truck-304"
TRUCK_CAPACITY_KG = 8000

COMMUNITY_RADIUS_M = 50
SITE_RADIUS_M = 150

CHAPTER_17_CODES = [
    "17 01 01", "17 01 02", "17 01 03", "17 01 07", "17 02 01", "17 02 02",
    "17 02 03", "17 04 05", "17 04 11", "17 08 02", "17 09 04",
]  # fmt: skip


@dataclass(frozen=True)
class Stop:
    stop_no: str
    name: str
    lat: float
    lon: float


@dataclass(frozen=True)
class Pickup:
    """One community's handover: what the driver and manager declare."""

    stop_no: str
    bags: int
    declared_volume_l: int
    estimated_mass_kg: int
    materials: tuple[str, ...]


PICKUPS = (
    Pickup("609071", 60, 2400, 1900, ("17 01 07", "17 02 01", "17 09 04")),
    Pickup("609381", 52, 2100, 1700, ("17 01 07", "17 08 02", "17 09 04")),
    Pickup("607491", 70, 2800, 2300, ("17 01 07", "17 02 03", "17 04 05")),
    Pickup("608021", 48, 1900, 1500, ("17 01 07", "17 02 02", "17 09 04")),
)

WEIGHBRIDGE = {"gross_kg": 14960, "tare_kg": 7120}

SORTING_OUTPUTS = (
    ("concrete_mortar", "17 01 01", 3100),
    ("brick_tile", "17 01 07", 2150),
    ("wood", "17 02 01", 560),
    ("plastics", "17 02 03", 420),
    ("glass", "17 02 02", 140),
    ("metals", "17 04 05", 190),
    ("gypsum", "17 08 02", 610),
    ("residue_landfill", "17 09 04", 600),
)


def read_stops(path: Path = STOPS) -> list[Stop]:
    features = json.loads(path.read_text())["features"]
    stops = []
    for feature in features:
        lon, lat = feature["geometry"]["coordinates"]
        props = feature["properties"]
        stops.append(Stop(props["stop_no"], props["stop_name"], lat, lon))
    return stops
