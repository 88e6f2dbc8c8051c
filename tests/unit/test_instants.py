"""One reading of ISO 8601 times everywhere (projections/instants.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from regen.projections.instants import epoch, instant
from regen.projections.sql_jobs import JobFilterError, parse_since

NOON_UTC = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("text", ["2026-01-31T12:00:00Z", "2026-01-31T12:00:00+00:00", "2026-01-31T13:00:00+01:00",
                                  " 2026-01-31T12:00:00Z ", "2026-01-31T12:00:00"])
def test_every_spelling_of_one_time_is_that_time_and_a_naive_one_is_utc(text):
    assert instant(text) == NOON_UTC
    assert epoch(text) == NOON_UTC.timestamp()
    assert parse_since(text, now=0) == NOON_UTC.timestamp()


@pytest.mark.parametrize("text", [None, "", "yesterday", "2026-13-01T00:00:00Z", "12:00"])
def test_what_is_not_a_time_is_none_in_rows_and_an_error_in_a_query(text):
    assert instant(text) is None and epoch(text) is None
    if text:
        with pytest.raises(JobFilterError, match="ISO 8601"):
            parse_since(text, now=0)


def test_a_naive_time_does_not_depend_on_the_workers_time_zone(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert epoch("2026-01-31T12:00:00") == NOON_UTC.timestamp()
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
