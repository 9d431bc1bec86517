"""Timezone-aware UTC times and their one text form in signed statements."""

import re
from datetime import UTC, datetime
from typing import Any


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


# RFC 3339 section 5.6 date-time: a full date, "T", a full time with an offset
# ("T" and "Z" may be lower case).
RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def rfc3339_text(value: Any) -> Any:
    """Lets a datetime through and refuses text that is not an RFC 3339
    date-time (an epoch number, a bare date, a space for the "T", no seconds),
    which pydantic alone would accept; for use as a BeforeValidator."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 date-time such as 2027-01-15T12:30:00Z")
    return value


def parse_utc(text: str) -> datetime:
    """Parses RFC 3339; a time without an offset is refused as ambiguous."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError("a timestamp needs a UTC offset")
    return value.astimezone(UTC)
