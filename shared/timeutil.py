"""Timezone-aware UTC times and their one text form in signed statements."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Treats a naive time (as SQLite returns it) as UTC; converts aware ones."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def iso_utc(value: datetime) -> str:
    """RFC 3339 in UTC with a Z, to the microsecond only when there is one."""
    value = as_utc(value).replace(tzinfo=None)
    spec = "microseconds" if value.microsecond else "seconds"
    return value.isoformat(timespec=spec) + "Z"


def parse_utc(text: str) -> datetime:
    """Parses RFC 3339; a time without an offset is refused as ambiguous."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError("a timestamp needs a UTC offset")
    return value.astimezone(UTC)
