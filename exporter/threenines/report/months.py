"""Calendar months (and days) in a contract time zone, as exact Unix-second windows.

A month runs from local midnight on the 1st to local midnight on the 1st of the next month; in a zone with
DST the month is one hour shorter or longer than its days × 86400 (zoneinfo resolves the offsets).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

MONTH_RE = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")


@dataclass(frozen=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        match = MONTH_RE.fullmatch(text.strip())
        if not match:
            raise ValueError(f"{text!r} is not a month: write YYYY-MM, e.g. 2026-10")
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def next(self) -> Month:
        return Month(self.year + (self.month == 12), self.month % 12 + 1)

    def first_local(self, zone: ZoneInfo) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=zone)

    def window(self, zone: ZoneInfo) -> tuple[int, int]:
        """[start, end) Unix seconds of the month in zone."""
        return int(self.first_local(zone).timestamp()), int(self.next().first_local(zone).timestamp())

    def days(self, zone: ZoneInfo) -> list[tuple[str, int, int]]:
        """(YYYY-MM-DD, start, end) of every local calendar day of the month (23, 24 or 25 hours long)."""
        out = []
        day = self.first_local(zone)
        while day.month == self.month:
            following = (day + timedelta(days=1)).replace(tzinfo=zone)  # wall-clock arithmetic in the zone
            out.append((day.date().isoformat(), int(day.timestamp()), int(following.timestamp())))
            day = following
        return out


def budget_seconds(start: int, end: int, objective: float) -> float:
    """Allowed outage seconds for a window at an objective (31 days at 99.9%: 2678.4 s = 44.64 min)."""
    return (end - start) * (1.0 - objective)
