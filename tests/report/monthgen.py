"""A month of exporter series with known outages, scrape gaps, counter resets and notification misses.

The exporter model follows docs/metrics.md: a scrape at grid time g reports what happened in [.., g);
outage counters add a run's pending seconds at determination; counters restart at 0 when the exporter
restarts; a scrape missing because the exporter was down (`missing`) means nothing is known about
[g - step, g), while a scrape missing because only Prometheus did not look (`scrape_gaps`) loses nothing: the
exporter's cumulative counters cover it. The truth of a month is computed here independently of the report
code, second by second (big integers as bit sets), from the same scenario and the contract's words.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from tests.promdata import Series

STEP = 60
REASON_ORDER = ("maintenance", "customer_fault", "force_majeure", "unreported")


def ts(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


@dataclass(frozen=True)
class Run:
    target: str
    first_failed: int
    determined: int
    recovered: int


@dataclass
class Service:
    customer: str
    service: str
    targets: tuple[str, ...]
    outages: list[Run] = field(default_factory=list)
    unknown: list[tuple[int, int]] = field(default_factory=list)  # exporter-reported unknown time


@dataclass
class Customer:
    id: str
    timezone: str
    services: list[Service]
    misses: list[int] = field(default_factory=list)  # times of missed notification deadlines


@dataclass
class Scenario:
    begin: int
    end: int
    missing: set[int]  # scrape grid times with no sample (exporter down)
    customers: list[Customer]
    step: int = STEP  # the scrape interval
    scrape_gaps: set[int] = field(default_factory=set)  # grid times Prometheus did not scrape (exporter up)
    accounting_gauge: bool = True  # export threenines_exporter_accounting_start_timestamp_seconds (docs/metrics.md)

    def grid(self) -> list[int]:
        return [g for g in range(self.begin, self.end + 1, self.step)
                if g not in self.missing and g not in self.scrape_gaps]

    def restart_before(self) -> list[int]:
        """For each present grid time, when the exporter that answered it had started."""
        out, started, down = [], self.begin - self.step, False
        for g in range(self.begin, self.end + 1, self.step):
            if g in self.missing:
                down = True
                continue
            if down:
                started, down = g - self.step, False
            if g not in self.scrape_gaps:
                out.append(started)
        return out


def _union_len(spans: Iterable[tuple[int, int]], lo: int, hi: int) -> int:
    # independent of threenines.intervals on purpose
    total, cursor = 0, lo
    for start, end in sorted(spans):
        start, end = max(start, cursor), min(end, hi)
        if end > start:
            total += end - start
            cursor = end
    return total


def series(scenario: Scenario) -> list[Series]:
    grid = scenario.grid()
    starts = scenario.restart_before()
    out: list[Series] = []
    if scenario.accounting_gauge:
        # This model's exporter restarts from scratch (no heartbeat to resume from): it counts from `started`.
        out.append(Series("threenines_exporter_accounting_start_timestamp_seconds", {},
                          list(zip(grid, starts, strict=True))))
    for customer in scenario.customers:
        for svc in customer.services:
            labels = {"customer": customer.id, "service": svc.service}
            counted, unknown, up, known = [], [], [], []
            for g, r in zip(grid, starts, strict=True):
                finalised = [(o.first_failed, min(o.recovered, g)) for o in svc.outages if o.determined <= g]
                counted.append((g, _union_len(finalised, r, g)))
                unknown.append((g, _union_len(svc.unknown, r, g)))
                up.append((g, 0 if any(o.determined <= g < o.recovered for o in svc.outages) else 1))
                known.append((g, 0 if any(a < g <= b for a, b in svc.unknown) else 1))
            out += [Series("threenines_customer_service_outage_seconds_total", labels, counted, "counter"),
                    Series("threenines_customer_service_unknown_seconds_total", labels, unknown, "counter"),
                    Series("threenines_customer_service_up", labels, up),
                    Series("threenines_customer_service_known", labels, known)]
            for target in svc.targets:
                mine = [o for o in svc.outages if o.target == target]
                tl = {**labels, "target": target}
                start_g, det_g, total_g = [], [], []
                for g, r in zip(grid, starts, strict=True):
                    open_run = next((o for o in mine if o.determined <= g < o.recovered), None)
                    start_g.append((g, open_run.first_failed if open_run else 0))
                    det_g.append((g, open_run.determined if open_run else 0))
                    total_g.append((g, sum(_union_len([(o.first_failed, min(o.recovered, g))], r, g)
                                           for o in mine if o.determined <= g)))
                out += [Series("threenines_service_outage_start_timestamp_seconds", tl, start_g),
                        Series("threenines_service_determined_timestamp_seconds", tl, det_g),
                        Series("threenines_service_outage_seconds_total", tl, total_g, "counter")]
        if customer.misses:
            first = min(customer.misses)
            samples = []
            for g, r in zip(grid, starts, strict=True):
                if g > first:  # the series is born at the first miss (prometheus_client labelled counter)
                    samples.append((g, sum(1 for m in customer.misses if r <= m < g)))
            out.append(Series("threenines_notification_deadline_missed_total", {"customer": customer.id}, samples,
                              "counter"))
            # the deadline instant of the latest miss (kept across restarts: rebuilt from the audit ledger)
            instants = [(g, max(m for m in customer.misses if m < g)) for g in grid if g > first]
            out.append(Series("threenines_notification_deadline_missed_timestamp_seconds",
                              {"customer": customer.id, "service": "connectivity", "target": "p1"}, instants))
        info = {"customer": customer.id, "name": customer.id.title(), "site": "dc1", "timezone": customer.timezone,
                "contacts_version": "1"}
        out.append(Series("threenines_customer_info", info, [(g, 1) for g in grid[::5]]))
        for svc in customer.services:
            out.append(Series("threenines_customer_objective_ratio",
                              {"customer": customer.id, "service": svc.service}, [(g, 0.999) for g in grid[::5]]))
    return out


def truth(scenario: Scenario, svc: Service, start: int, end: int,
          exclusions: dict[str, list[tuple[int, int]]]) -> dict[str, float]:
    """Outage/excluded/counted/unknown seconds of one service in [start, end): one bit per second."""
    nodata = 0
    for g in scenario.missing:
        nodata |= _bits(g - scenario.step, g, start, end)
    outage = 0
    for o in svc.outages:
        outage |= _bits(o.first_failed, o.recovered, start, end)
    outage &= ~nodata
    unknown = nodata
    for a, b in svc.unknown:
        unknown |= _bits(a, b, start, end)
    result: dict[str, float] = {"raw": outage.bit_count(), "unknown": unknown.bit_count()}
    taken = 0
    for reason in REASON_ORDER:
        mask = 0
        for a, b in exclusions.get(reason, []):
            mask |= _bits(a, b, start, end)
        hit = outage & mask & ~taken
        result[reason] = hit.bit_count()
        taken |= hit
    result["counted"] = result["raw"] - taken.bit_count()
    return result


def _bits(a: int, b: int, start: int, end: int) -> int:
    lo, hi = max(a, start) - start, min(b, end) - start
    return ((1 << (hi - lo)) - 1) << lo if hi > lo else 0


def missed_days(customer: Customer, start: int, end: int) -> list[str]:
    zone = ZoneInfo(customer.timezone)
    return sorted({datetime.fromtimestamp(m, zone).date().isoformat() for m in customer.misses if start <= m < end})
