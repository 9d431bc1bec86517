"""The OsmAnd protocol as Traccar Client speaks it: query or form parameters,
or the JSON body of its newer versions, turned into raw fixes."""

import json
import math
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from shared.problems import Unprocessable
from shared.timeutil import parse_utc

KNOT_MPS = 1852 / 3600
# Device ids as the registry's paths accept them.
DEVICE_ID = re.compile(r"[A-Za-z0-9._:\-]+")
MAX_DEVICE_ID = 64
# A number as a parameter: ASCII digits, optional sign, fraction and exponent.
DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Traccar reads a numeric timestamp below 2**31 as seconds, above as milliseconds.
SECONDS_LIMIT = 2**31
# Traccar also reads `yyyy-MM-dd HH:mm:ss`, in the server's zone: here UTC.
DATE_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")
KNOWN = {
    "id",
    "deviceid",
    "lat",
    "lon",
    "location",
    "timestamp",
    "speed",
    "bearing",
    "heading",
    "altitude",
    "accuracy",
    "hdop",
    "batt",
    "valid",
    "token",
}


@dataclass
class RawFix:
    """One fix as received, before cleaning; speed in m/s."""

    time: datetime
    lat: float
    lon: float
    speed_mps: float | None = None
    course: float | None = None
    altitude_m: float | None = None
    accuracy_m: float | None = None
    hdop: float | None = None
    battery: float | None = None
    valid: bool = True
    attributes: dict[str, Any] = field(default_factory=dict)


# Physically plausible ranges of a truck's auxiliary readings. A reading
# outside its range is kept aside in the fix's attributes, not used (a
# negative accuracy is unknown, not perfect; cleaning drops a poor one).
PLAUSIBLE = {
    "accuracy_m": (0.0, math.inf),
    "hdop": (0.0, math.inf),
    "speed_mps": (0.0, 150.0),
    "course": (0.0, 360.0),
    "altitude_m": (-500.0, 9000.0),
    "battery": (0.0, 100.0),
}
# Most bytes of a fix's free-form attributes, as compact JSON.
MAX_ATTRIBUTES_BYTES = 4096


def plausible(fix: RawFix) -> RawFix:
    """The fix with implausible readings set aside under attributes'
    out_of_range, and oversized attributes replaced by their size."""
    attributes = fix.attributes
    size = len(json.dumps(attributes, separators=(",", ":"), default=str))
    if size > MAX_ATTRIBUTES_BYTES:
        attributes = {"attributes_dropped_bytes": size}
    aside = {}
    for name, (low, high) in PLAUSIBLE.items():
        value = getattr(fix, name)
        if value is not None and not low <= value <= high:
            aside[name] = value if math.isfinite(value) else str(value)
    if not aside and attributes is fix.attributes:
        return fix
    if aside:
        attributes = {**attributes, "out_of_range": aside}
    return replace(fix, **dict.fromkeys(aside), attributes=attributes)


class InvalidFix(Unprocessable):
    slug = "invalid-fix"
    title = "The fix cannot be read"


def device_of(params: dict[str, str]) -> str:
    device_id = params.get("id") or params.get("deviceid")
    if not device_id:
        raise InvalidFix("The device is missing: send id or deviceid.")
    return checked_device_id(device_id)


def checked_device_id(device_id: str) -> str:
    """A device id as the registry allows them, or a problem: never a string
    the database cannot store or compare."""
    if len(device_id) > MAX_DEVICE_ID or not DEVICE_ID.fullmatch(device_id):
        raise InvalidFix(
            "A device id is 1 to 64 letters, digits, '.', '_', ':' or '-'."
        )
    return device_id


def fix_from_params(params: dict[str, str], now: datetime) -> RawFix:
    """Reads a fix from OsmAnd query or form parameters."""
    lat, lon = _position(params)
    speed = _number(params, "speed")
    return RawFix(
        time=parse_timestamp(params["timestamp"]) if "timestamp" in params else now,
        lat=lat,
        lon=lon,
        speed_mps=None if speed is None else speed * KNOT_MPS,
        course=_number(params, "bearing", "heading"),
        altitude_m=_number(params, "altitude"),
        accuracy_m=_number(params, "accuracy"),
        hdop=_number(params, "hdop"),
        battery=_number(params, "batt"),
        valid=params.get("valid", "true").lower() not in ("false", "0"),
        attributes={k: v for k, v in params.items() if k not in KNOWN},
    )


def fix_from_json(body: Any, now: datetime) -> tuple[str, RawFix]:
    """Reads the device and fix from Traccar Client's JSON body."""
    if not isinstance(body, dict) or not isinstance(body.get("location"), dict):
        raise InvalidFix("The JSON body needs device_id and a location object.")
    location = body["location"]
    coords = location.get("coords")
    device_id = body.get("device_id")
    if not isinstance(device_id, str) or not device_id:
        raise InvalidFix("The JSON body needs a device_id string.")
    checked_device_id(device_id)
    if not isinstance(coords, dict):
        raise InvalidFix("The location needs a coords object.")
    battery = location.get("battery", body.get("battery"))
    timestamp = location.get("timestamp")
    fix = RawFix(
        time=now if timestamp is None else parse_timestamp(str(timestamp)),
        lat=_coordinate(coords.get("latitude"), "latitude", 90),
        lon=_coordinate(coords.get("longitude"), "longitude", 180),
        speed_mps=_json_number(coords, "speed"),
        course=_json_number(coords, "heading"),
        altitude_m=_json_number(coords, "altitude"),
        accuracy_m=_json_number(coords, "accuracy"),
        battery=_battery_percent(battery),
        attributes=_json_attributes(location, body),
    )
    return device_id, fix


def parse_timestamp(text: str) -> datetime:
    """Unix seconds or milliseconds, ISO 8601 with an offset, or Traccar's
    `yyyy-MM-dd HH:mm:ss` read as UTC."""
    value = float(text) if DECIMAL.fullmatch(text) else None
    try:
        if DATE_TIME.fullmatch(text):
            return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        if value is None:
            return parse_utc(text)
        if not math.isfinite(value):
            raise ValueError("not finite")
        seconds = value if abs(value) < SECONDS_LIMIT else value / 1000
        return datetime.fromtimestamp(seconds, UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise InvalidFix(
            f"timestamp {text[:40]!r} is not Unix seconds, milliseconds, "
            "ISO 8601 with an offset or yyyy-MM-dd HH:mm:ss (UTC).",
            parameter="timestamp",
        ) from exc


def _position(params: dict[str, str]) -> tuple[float, float]:
    if "lat" in params or "lon" in params:
        return (
            _coordinate(params.get("lat"), "lat", 90),
            _coordinate(params.get("lon"), "lon", 180),
        )
    if "location" in params:
        parts = params["location"].split(",")
        if len(parts) == 2:
            return (
                _coordinate(parts[0], "location", 90),
                _coordinate(parts[1], "location", 180),
            )
        raise InvalidFix("location must be 'lat,lon'.", parameter="location")
    raise InvalidFix("The fix has no position: send lat and lon, or location.")


def _coordinate(value: Any, name: str, limit: float) -> float:
    number = _finite(value, name)
    if number is None:
        raise InvalidFix(f"{name} is missing.", parameter=name)
    if not -limit <= number <= limit:
        raise InvalidFix(
            f"{name} {number} is out of range [-{limit}, {limit}].", parameter=name
        )
    return number


def _number(params: dict[str, str], *names: str) -> float | None:
    for name in names:
        if params.get(name, "") != "":
            return _finite(params[name], name)
    return None


def _json_number(source: dict[str, Any], name: str) -> float | None:
    value = source.get(name)
    if value is None:
        return None
    number = _finite(value, name)
    # Traccar Client reports -1 for an unknown speed, heading or accuracy.
    return None if number is not None and number < 0 and name != "altitude" else number


def _finite(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidFix(f"{name} must be a number.", parameter=name)
    if isinstance(value, str) and not DECIMAL.fullmatch(value):
        raise InvalidFix(
            f"{name} must be a plain decimal number in ASCII digits.", parameter=name
        )
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidFix(f"{name} must be a number.", parameter=name) from exc
    if not math.isfinite(number):
        raise InvalidFix(f"{name} must be a finite number.", parameter=name)
    return number


def _battery_percent(battery: Any) -> float | None:
    if isinstance(battery, dict):
        level = _finite(battery.get("level"), "battery.level")
        return None if level is None or level < 0 else level * 100
    return _finite(battery, "battery")


def _json_attributes(location: dict[str, Any], body: dict[str, Any]) -> dict:
    attributes: dict[str, Any] = {}
    for source in (body, location):
        for name in ("is_moving", "odometer", "event", "activity", "extras"):
            if name in source:
                attributes[name] = source[name]
    battery = location.get("battery", body.get("battery"))
    if isinstance(battery, dict) and "is_charging" in battery:
        attributes["charging"] = battery["is_charging"]
    return attributes
