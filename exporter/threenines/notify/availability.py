"""The month's availability so far, for a customer's message: (elapsed − outage) / elapsed.

The month is the contract's: from local midnight on the 1st in the customer's time zone (as the monthly statement,
docs/report.md "Months"). Elapsed is the time from there to the instant the message reports — the determination for
an "unavailable" message, the first successful probe for a "restored" one — so the customer can check the figure
against the times the message states, and every attempt, retry or HA replica says the same.

Outage is what the contract engine determined: each outage of the service's targets from its first failed probe
to its end (or to the instant, while open), without the stretches inside it that had no evidence (an exporter
restart, stale probes: unknown, not outage — docs/design.md §1), merged over the targets so a second with two
ports down counts once. Unknown time is therefore *not* subtracted: it counts as available, as the statement counts
it (availability = 1 − counted outage / month). The figure is provisional: no exclusions (maintenance, customer
fault, force majeure) and no review; the monthly statement decides.

The engine's own counters are process-lifetime counters (they restart with the process), so they cannot say what
the month holds; the outage events can. `MonthOutages` keeps the outages of the last five weeks, rebuilt from the
outage ledger at start and fed the engine's events on the loop, and answers the delivery endpoint's HTTP threads.
It answers None — the message then has no availability line — when it was not built from the ledger, when no time
of the month has elapsed, or (the endpoint's check) when the outage being reported is not one it knows.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from threenines.config.inventory import TargetKey
from threenines.contract.machine import OutageEvent
from threenines.intervals import Interval, clip, measure, subtract
from threenines.ledgers.outages import OutageRecord

DECIMALS = 3  # 99.952 %: one second in a 31-day month is 0.00004 %, so a hundredth of a minute per month shows


def month_start(at: float, timezone: str) -> float:
    """Local midnight on the 1st of the month `at` is in, in the contract's zone (zoneinfo: DST and all)."""
    zone = ZoneInfo(timezone)
    local = datetime.fromtimestamp(at, UTC).astimezone(zone)
    return datetime(local.year, local.month, 1, tzinfo=zone).timestamp()


@dataclass(frozen=True)
class MonthSoFar:
    start: float  # local midnight on the 1st
    at: float  # the instant the message reports
    outage_seconds: float

    @property
    def elapsed_seconds(self) -> float:
        return self.at - self.start

    @property
    def ratio(self) -> float:
        return (self.elapsed_seconds - self.outage_seconds) / self.elapsed_seconds

    @property
    def percent(self) -> float:
        """Rounded *down* to DECIMALS: a message about an outage never says 100.000 %, nor more than was had.
        The 1e-6 absorbs the binary error of an exact figure (99.952 must not become 99.951)."""
        scale = 10**DECIMALS
        return math.floor(round(100 * self.ratio * scale, 6)) / scale

    def percent_text(self) -> str:
        return f"{self.percent:.{DECIMALS}f}"


def month_so_far(pieces: Iterable[Interval], at: float, timezone: str) -> MonthSoFar | None:
    """The month's figure as of `at` from outage pieces (any, overlapping or not); None when nothing has elapsed."""
    start = month_start(at, timezone)
    if at <= start:
        return None
    return MonthSoFar(start, at, measure(clip(pieces, (start, at))))


@dataclass
class _Outage:
    first_failed_at: float
    ended_at: float | None
    gaps: list[Interval]


class MonthOutages:
    """Outages of the last KEEP seconds per customer and service: rebuilt from the outage ledger, fed the engine's
    events on the loop, read by the delivery endpoint's HTTP threads."""

    KEEP = 35 * 86400.0  # a month (31 days, one DST hour) back from a message, with room for a late resolved one

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outages: dict[tuple[str, str], dict[tuple[str, float], _Outage]] = defaultdict(dict)
        self._ready = False

    def rebuild(self, records: Iterable[OutageRecord], gaps: Iterable[tuple[TargetKey, float, float, float]]) -> None:
        """From the outage ledger (OutageLedger.outages(since=now − KEEP), .outage_gaps()): the months before this
        process. Until this is called every answer is None: an empty history would claim no outage."""
        holes: dict[tuple[TargetKey, float], list[Interval]] = defaultdict(list)
        for key, determined_at, start, end in gaps:
            holes[(key, determined_at)].append((start, end))
        with self._lock:
            for r in records:
                group = self._outages[(r.key.customer, r.key.service)]
                group[(r.key.target, r.determined_at)] = _Outage(r.first_failed_at, r.ended_at,
                                                                 holes.get((r.key, r.determined_at), []))
            self._ready = True

    def observe(self, event: OutageEvent) -> None:
        key = event.key
        group_key = (key.customer, key.service)
        with self._lock:
            group = self._outages[group_key]
            outage = group.get((key.target, event.determined_at))
            if event.kind == "determined":
                group.setdefault((key.target, event.determined_at), _Outage(event.first_failed_at, None, []))
                self._prune(event.at - self.KEEP)
            elif outage is not None and event.kind == "ended":
                outage.ended_at = event.at
            elif outage is not None and event.kind == "gap":
                outage.gaps.append((event.gap_start, event.at))

    def _prune(self, horizon: float) -> None:
        for group in self._outages.values():
            for old in [k for k, o in group.items() if o.ended_at is not None and o.ended_at < horizon]:
                del group[old]

    def __call__(self, customer: str, service: str, at: float, timezone: str) -> MonthSoFar | None:
        """The service's month so far as of `at`, in the contract's `timezone`; None when it cannot be told."""
        with self._lock:
            if not self._ready:
                return None
            pieces = [piece for o in self._outages.get((customer, service), {}).values()
                      for piece in subtract([(o.first_failed_at, o.ended_at if o.ended_at is not None else at)],
                                            o.gaps)]
        return month_so_far(pieces, at, timezone)
