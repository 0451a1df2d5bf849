"""Calendar months and days in the contract time zone."""

from __future__ import annotations

import itertools
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from threenines.report.months import Month, budget_seconds

UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(("month", "days"), [("2026-02", 28), ("2028-02", 29), ("2026-04", 30), ("2026-12", 31)])
def test_utc_months_are_whole_days(month: str, days: int) -> None:
    start, end = Month.parse(month).window(UTC)
    assert end - start == days * 86400


def test_october_in_berlin_has_the_extra_dst_hour_on_its_last_sunday() -> None:
    month = Month.parse("2026-10")
    start, end = month.window(BERLIN)
    assert start == int(datetime(2026, 9, 30, 22, tzinfo=UTC).timestamp())
    assert end - start == 31 * 86400 + 3600
    long_days = [(d, e - s) for d, s, e in month.days(BERLIN) if e - s != 86400]
    assert long_days == [("2026-10-25", 90000)]


def test_march_in_berlin_is_an_hour_short_and_days_tile_the_month() -> None:
    month = Month.parse("2026-03")
    start, end = month.window(BERLIN)
    assert end - start == 31 * 86400 - 3600
    days = month.days(BERLIN)
    assert days[0][1] == start and days[-1][2] == end
    assert all(a[2] == b[1] for a, b in itertools.pairwise(days))


def test_budget_is_40_32_to_44_64_minutes_at_three_nines() -> None:
    assert budget_seconds(*Month.parse("2026-02").window(UTC), 0.999) == pytest.approx(40.32 * 60)
    assert budget_seconds(*Month.parse("2026-01").window(UTC), 0.999) == pytest.approx(44.64 * 60)


@pytest.mark.parametrize("text", ["2026-13", "2026-1", "Oct 2026", ""])
def test_bad_month_names_the_format(text: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        Month.parse(text)
