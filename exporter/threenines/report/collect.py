"""Prometheus (and the outage ledger) → per customer/service evidence for one contract month.

Why exact sample arithmetic instead of `increase(x[<month>] @ <end>)`: increase() extrapolates from the first
and last sample in the range towards the range's edges (by up to half a scrape interval each side, or to the
range's edge when the series starts/ends inside it), so it returns fractional seconds that no outage ever had,
and for a counter that first appears inside the month with a non-zero value it misses that first value. The
report therefore takes `x @ end - x @ start` (the counter's value at the last scrape before each edge) for
every series without a reset, and for the few series with a reset (exporter restart) sums the non-negative
deltas of their raw samples: after a reset the new value counts from zero. Both are computed per series at
scrape resolution and need no extrapolation. Time with no samples at all (exporter or scrape down) is unknown:
`month length - samples × scrape interval`.

Per-outage bounds come from the per-target gauges: `threenines_service_outage_start_timestamp_seconds` gives
the exact start (first failed probe); the end is start + the per-target outage counter's increase across the
run (from the scrape before the run to the scrape after it), which is exact to the second because the counter
accrues exactly the outage's seconds. Where a run contains a reset or a scrape gap the end is only known to
scrape resolution, and the outage says so (`end_exact = False`). With `--ledger`, the exporter's outage ledger
gives the bounds instead.
"""

from __future__ import annotations

import re
import sqlite3
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from threenines.report.promclient import PrometheusClient

Key = tuple[str, str]  # (customer, service)
LOOKBACK = 300  # Prometheus' default lookback delta: `x @ t` is the last sample in (t - 5m, t]
OUTAGE_MARGIN = 6 * 3600  # outages determined after month end but started before it are looked for this far

M_OUTAGE = "threenines_customer_service_outage_seconds_total"
M_UNKNOWN = "threenines_customer_service_unknown_seconds_total"
M_UP = "threenines_customer_service_up"
M_KNOWN = "threenines_customer_service_known"
M_T_START = "threenines_service_outage_start_timestamp_seconds"
M_T_DETERMINED = "threenines_service_determined_timestamp_seconds"
M_T_OUTAGE = "threenines_service_outage_seconds_total"
M_MISSED = "threenines_notification_deadline_missed_total"


@dataclass
class Outage:
    target: str
    start: float
    end: float
    determined: float | None
    end_exact: bool
    source: str  # "prometheus" | "ledger"
    open: bool = False


@dataclass
class Evidence:
    """What Prometheus says about one customer/service in one month window."""

    customer: str
    service: str
    start: int
    end: int
    outage_counter: float = 0.0
    unknown_counter: float = 0.0
    samples: int = 0
    gap_seconds: float = 0.0
    down_samples: int = 0
    unknown_samples: int = 0
    has_data: bool = False
    outages: list[Outage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def selector(customers: Iterable[str], extra: str = "") -> str:
    names = sorted(set(customers))
    pattern = "|".join(re.escape(name) for name in names)
    inner = f'customer=~"{pattern}"' if names else ""
    return "{" + ",".join(part for part in (inner, extra) if part) + "}"


def _exact(labels: dict[str, str]) -> str:
    """A selector matching exactly these labels (the metric name is given separately)."""
    return "{" + ",".join(f'{k}="{_quote(v)}"' for k, v in sorted(labels.items()) if k != "__name__") + "}"


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _labels(key: tuple[tuple[str, str], ...]) -> dict[str, str]:
    return dict(key)


def counter_deltas(client: PrometheusClient, metric: str, sel: str, start: int, end: int
                   ) -> dict[Key, tuple[float, list[str]]]:
    """Exact increase of a per customer/service counter over (start, end], reset-aware, per series."""
    length = end - start
    at_end = client.vector(f"{metric}{sel} @ {end}", end)
    at_start = client.vector(f"{metric}{sel} @ {start}", end)
    resets = client.vector(f"resets({metric}{sel}[{length + LOOKBACK}s] @ {end})", end)
    out: dict[Key, tuple[float, list[str]]] = {}
    slow: list[tuple[tuple[str, str], ...]] = []
    for labels, value in at_end.items():
        if labels in at_start and resets.get(labels, 0) == 0 and value >= at_start[labels]:
            lab = _labels(labels)
            out[(lab["customer"], lab["service"])] = (value - at_start[labels], [])
        else:
            slow.append(labels)
    # Series with a reset, or without a sample near an edge: raw samples for just those series.
    for labels in set(resets) - set(at_end):
        if resets[labels] or labels not in at_end:
            slow.append(labels)
    for labels in dict.fromkeys(slow):
        lab = _labels(labels)
        one = _exact(lab)
        raw = client.matrix(f"{metric}{one}[{length + LOOKBACK}s] @ {end}", end)
        out[(lab["customer"], lab["service"])] = raw_delta(raw.get(labels, []), start, end)
    return out


def raw_delta(samples: list[tuple[float, float]], start: float, end: float) -> tuple[float, list[str]]:
    """Sum of increases of raw counter samples over (start, end]; a drop is a reset and counts from zero."""
    notes: list[str] = []
    before = [v for t, v in samples if t <= start]
    inside = [(t, v) for t, v in samples if start < t <= end]
    previous = before[-1] if before else None
    if previous is None and inside:
        # No scrape just before the month: the first value inside counts only if it follows a restart.
        notes.append("no sample within 5m before the month start; counted from the first sample in the month")
        previous = inside[0][1]
    total = 0.0
    for _, value in inside:
        assert previous is not None
        total += value - previous if value >= previous else value
        previous = value
    return total, notes


def service_evidence(client: PrometheusClient, customers: list[tuple[str, tuple[str, ...]]], start: int, end: int,
                     scrape_interval: float, only_zone: bool) -> dict[Key, Evidence]:
    """Counters, coverage and state-gauge cross-checks for customers sharing one month window."""
    sel = selector((c for c, _ in customers)) if only_zone else "{}"
    length = end - start
    evidence = {(c, s): Evidence(c, s, start, end) for c, services in customers for s in services}
    for (customer, service), (delta, notes) in counter_deltas(client, M_OUTAGE, sel, start, end).items():
        if (customer, service) in evidence:
            evidence[(customer, service)].outage_counter = delta
            evidence[(customer, service)].notes.extend(notes)
            evidence[(customer, service)].has_data = True
    for (customer, service), (delta, _notes) in counter_deltas(client, M_UNKNOWN, sel, start, end).items():
        if (customer, service) in evidence:
            evidence[(customer, service)].unknown_counter = delta
    # Prometheus 2.x range selectors include a sample exactly at the left edge; (start, end] is wanted.
    window = f"[{length * 1000 - 1}ms] @ {end}"
    counts = client.vector(f"count_over_time({M_KNOWN}{sel}{window})", end)
    known = client.vector(f"sum_over_time({M_KNOWN}{sel}{window})", end)
    ups = client.vector(f"sum_over_time({M_UP}{sel}{window})", end)
    up_counts = client.vector(f"count_over_time({M_UP}{sel}{window})", end)
    for labels, count in counts.items():
        lab = _labels(labels)
        ev = evidence.get((lab.get("customer", ""), lab.get("service", "")))
        if ev is None:
            continue
        ev.samples = int(count)
        ev.gap_seconds = max(0.0, length - count * scrape_interval)
        ev.unknown_samples = int(count - known.get(labels, count))
        ev.down_samples = int(up_counts.get(labels, 0) - ups.get(labels, 0))
    for ev in evidence.values():
        if not ev.samples:
            ev.gap_seconds = float(length)
            ev.notes.append("no samples of threenines_customer_service_known in the month")
    return evidence


def outages_from_prometheus(client: PrometheusClient, customers: list[str], start: int, end: int,
                            scrape_interval: float, only_zone: bool) -> dict[Key, list[Outage]]:
    """Per-target outage runs overlapping [start, end), with exact ends where the counter allows."""
    sel = selector(customers) if only_zone else "{}"
    step = int(scrape_interval)
    hi = end + OUTAGE_MARGIN
    span = hi - start + OUTAGE_MARGIN
    # A subquery of a filter returns grid points only where an outage is open: small even for a fleet.
    runs = client.matrix(f"({M_T_START}{sel} > 0)[{span}s:{step}s] @ {hi}", hi)
    out: dict[Key, list[Outage]] = defaultdict(list)
    for labels, points in runs.items():
        lab = _labels(labels)
        for first_failed, t_first, t_last, gaps in _split_runs(points, step):
            if first_failed >= end or t_last + step <= start:
                continue
            out[(lab["customer"], lab["service"])].append(
                _bounded(client, lab, first_failed, t_first, t_last, gaps, step, hi))
    return out


def _split_runs(points: list[tuple[float, float]], step: int) -> list[tuple[float, float, float, bool]]:
    """Group grid points by first-failed time: (first_failed, first point, last point, had a gap)."""
    runs: list[list] = []
    for time_, value in points:
        t = int(time_)  # subquery points lie on the step grid
        if runs and runs[-1][0] == value:
            runs[-1][3] = runs[-1][3] or t - runs[-1][2] > step
            runs[-1][2] = t
        else:
            runs.append([value, t, t, False])
    return [tuple(run) for run in runs]  # type: ignore[misc]


def _bounded(client: PrometheusClient, lab: dict[str, str], first_failed: float, t_first: float, t_last: float,
             gap: bool, step: int, hi: int) -> Outage:
    one = _exact(lab)
    t_prev, t_next = t_first - step, t_last + step
    determined = client.vector(f"{M_T_DETERMINED}{one} @ {t_first}", t_first)
    det = next(iter(determined.values()), None)
    if t_next > hi:  # still open at the end of what we looked at
        return Outage(lab["target"], first_failed, t_last, det, False, "prometheus", open=True)
    delta = client.vector(f"{M_T_OUTAGE}{one} @ {t_next} - {M_T_OUTAGE}{one} @ {t_prev}", t_next)
    resets = client.vector(f"resets({M_T_OUTAGE}{one}[{t_next - t_prev}s] @ {t_next})", t_next)
    seconds = next(iter(delta.values()), None)
    exact = not gap and seconds is not None and not any(resets.values()) and first_failed + seconds > t_last - step
    end = first_failed + seconds if exact and seconds is not None else t_next
    return Outage(lab["target"], first_failed, end, det, exact, "prometheus")


def outages_from_ledger(path: str | Path, start: int, end: int) -> dict[Key, list[Outage]]:
    """Outages overlapping [start, end) from the exporter's outage ledger (read-only)."""
    uri = f"file:{Path(path).resolve()}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        rows = db.execute(
            "SELECT customer, service, target, first_failed_at, determined_at, ended_at FROM outages "
            "WHERE first_failed_at < ? AND (ended_at IS NULL OR ended_at > ?)", (end, start)).fetchall()
    out: dict[Key, list[Outage]] = defaultdict(list)
    for customer, service, target, first_failed, determined, ended in rows:
        out[(customer, service)].append(Outage(target, first_failed, end if ended is None else ended, determined,
                                               ended is not None, "ledger", open=ended is None))
    return out


def missed_notifications(client: PrometheusClient, customers: list[str], start: int, end: int,
                         only_zone: bool) -> dict[str, list[tuple[float, float]]]:
    """Raw (time, increase) of the missed-deadline counter inside (start, end] for customers that missed any."""
    sel = selector(customers) if only_zone else "{}"
    length = end - start
    candidates = client.vector(
        f"(({M_MISSED}{sel} @ {end} - {M_MISSED}{sel} @ {start}) > 0) or (resets({M_MISSED}{sel}[{length}s] @ {end})"
        f" > 0) or ({M_MISSED}{sel} @ {end} > 0 unless {M_MISSED}{sel} @ {start})", end)
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for labels in candidates:
        lab = _labels(labels)
        one = _exact(lab)
        raw = client.matrix(f"{M_MISSED}{one}[{length + LOOKBACK}s] @ {end}", end)
        samples = raw.get(labels, next(iter(raw.values()), []))
        before = [v for t, v in samples if t <= start]
        previous = before[-1] if before else 0.0  # a series born inside the month starts from zero
        for t, value in samples:
            if t <= start:
                continue
            increase = value - previous if value >= previous else value
            if increase > 0:
                out[lab["customer"]].append((t, increase))
            previous = value
    return out
