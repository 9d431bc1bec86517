"""RFC 3339 in UTC, whatever the year or precision."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.timeutil import iso_utc, parse_utc


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00Z"),
        (datetime(2026, 12, 3, 1, 2, 3, tzinfo=UTC), "2026-12-03T01:02:03Z"),
        (datetime(2026, 12, 3, 1, 2, 3, 45, tzinfo=UTC), "2026-12-03T01:02:03.000045Z"),
        (
            datetime(2026, 12, 3, 9, 2, 3, tzinfo=timezone(timedelta(hours=8))),
            "2026-12-03T01:02:03Z",
        ),
    ],
)
def test_iso_utc_writes_four_digit_years_and_reads_back(value, text):
    assert iso_utc(value) == text
    assert parse_utc(text) == value
