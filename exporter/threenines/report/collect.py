"""Prometheus (and the outage ledger) → per customer/service evidence for one contract month.

Why exact sample arithmetic instead of `increase(x[<month>] @ <end>)`: increase() extrapolates from the first
and last sample in the range towards the range's edges (by up to half a scrape interval each side, or to the
range's edge when the series starts/ends inside it), so it returns fractional seconds that no outage ever had,
and for a counter that first appears inside the month with a non-zero value it misses that first value. The
report therefore takes `x @ end - x @ start` (the counter's value at the last scrape before each edge) for
every series without a reset, and for series with a reset (exporter restart) adds the values the counter fell
from, located server-side by report.resets (after a reset the new value counts from zero). Time with no
samples at all (exporter or scrape down) is unknown: `month length - samples × scrape interval`.

Each question is one query for the fleet (or a zone; split by customer regex into shards only so that
Prometheus runs them on several cores), never one per customer; the answers are one number per series, and Prometheus'
month-long scans of the independent questions run side by side. Only outage runs, the hours around counter
resets and series without edge samples come back as samples.

Per-outage bounds come from the per-target gauges: `threenines_service_outage_start_timestamp_seconds` gives
the exact start (first failed probe); the end is start + the per-target outage counter's increase across the
run (from the scrape before the run to the scrape after it), which is exact to the second because the counter
accrues exactly the outage's seconds. Where a run contains a reset or a scrape gap the end is only known to
scrape resolution, and the outage says so (`end_exact = False`). With `--ledger`, the exporter's outage ledger
gives the bounds instead.
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

from threenines.config.inventory import TargetKey
from threenines.contract.vantages import View, identity, merge_views, vantage_of
from threenines.exposition import catalogue
from threenines.intervals import Interval, clip, intersect, measure, merge, subtract
from threenines.ledgers.outages import OutageLedgerReader
from threenines.report.promclient import PrometheusClient, pack_queries, parallel, promql_string
from threenines.report.resets import corrections

Key = tuple[str, str]  # (customer, service)
MissKey = tuple[str, str, str]  # (customer, service, target) of a missed notification deadline
LabelKey = tuple[tuple[str, str], ...]  # a series' sorted label pairs, as PrometheusClient returns them
RAW_SAMPLES = 2_000_000  # samples per raw-sample query: bounds the answer (~50 MB of JSON) and stays far below
# Prometheus' --query.max-samples (default 50M), which counts a range selector's samples of all series at once
SHARD_SAMPLES = 10_000_000  # month-long function queries are split into shards of about this many samples
SUSPECT_BATCH = 500  # customers per outage-run subquery
RUN_BATCH = 100  # outage runs per bounds query
RUN_LABEL = "threenines_report_run"
LOOKBACK = 300  # Prometheus' default lookback delta: `x @ t` is the last sample in (t - 5m, t]
# The exporter publishes the views of an outage event at most MIN_TICK_SPACING (1 s) after it, plus the time to
# render under load: a scrape can show an ended outage's gauges that long after its end.
PUBLISH_LAG = 5.0
OUTAGE_MARGIN = 6 * 3600  # outages determined after month end but started before it are looked for this far

# The families the report reads (names from the metric catalogue, docs/metrics.md).
M_OUTAGE = catalogue.CUSTOMER_SERVICE_OUTAGE_SECONDS_TOTAL.name
M_UNKNOWN = catalogue.CUSTOMER_SERVICE_UNKNOWN_SECONDS_TOTAL.name
M_UP = catalogue.CUSTOMER_SERVICE_UP.name
M_KNOWN = catalogue.CUSTOMER_SERVICE_KNOWN.name
M_T_START = catalogue.SERVICE_OUTAGE_START_TIMESTAMP_SECONDS.name
M_T_DETERMINED = catalogue.SERVICE_DETERMINED_TIMESTAMP_SECONDS.name
M_T_OUTAGE = catalogue.SERVICE_OUTAGE_SECONDS_TOTAL.name
M_T_UNKNOWN = catalogue.SERVICE_UNKNOWN_SECONDS_TOTAL.name
M_MISSED = catalogue.NOTIFICATION_DEADLINE_MISSED_TOTAL.name
M_ACCOUNTING = catalogue.EXPORTER_ACCOUNTING_START_TIMESTAMP_SECONDS.name
M_MISSED_AT = catalogue.NOTIFICATION_DEADLINE_MISSED_TIMESTAMP_SECONDS.name
M_DEADLINE = catalogue.CUSTOMER_NOTIFICATION_DEADLINE_SECONDS.name
SAME_MISS = 0.001  # seconds: deadline instants of one target this close are one outage's miss (missed_notifications)


@dataclass(frozen=True)
class Outage:
    """One target's outage run: [start, end) from its first failed probe to its first successful probe.

    `pieces` are the seconds of the run that were outage: the run minus the time nobody had evidence
    (an exporter restart inside the outage, stale evidence). Billing measures the pieces, never the bounds,
    so an exclusion can only subtract seconds that were counted. None means the whole run.
    """

    target: str
    start: float
    end: float
    determined: float | None
    end_exact: bool
    source: str  # "prometheus" | "ledger"
    open: bool = False
    pieces: tuple[Interval, ...] | None = None
    vantage: str = ""  # the exporter whose evidence this is (report.vantages.vantage_of)

    def outage_pieces(self) -> tuple[Interval, ...]:
        return self.pieces if self.pieces is not None else ((self.start, self.end),)


@dataclass(frozen=True)
class Evidence:
    """What Prometheus says about one customer/service in one month window, built whole by service_evidence (the
    outage runs added, or the vantages merged, by making a new one: dataclasses.replace, merge_vantages)."""

    customer: str
    service: str
    start: int
    end: int
    outage_counter: float = 0.0
    unknown_counter: float = 0.0
    samples: int = 0
    gap_seconds: float = 0.0
    down_samples: int = 0
    has_data: bool = False
    rose_after_end: bool = False  # the outage counter rose in the hours after the month (determined later)
    outages: list[Outage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    vantage: str = ""
    # Two or more exporters (vantages) export this customer/service: each one's evidence, merged by
    # report.vantages into this one (`merged` then says the figures above are the merge's, not a counter's).
    vantages: dict[str, Evidence] = field(default_factory=dict)
    merged: bool = False


def selector(customers: Iterable[str], extra: str = "") -> str:
    names = sorted(set(customers))
    # re.escape writes `\-`, `\.`; PromQL strings take Go escapes, so the backslashes are escaped once more
    pattern = promql_string("|".join(re.escape(name) for name in names))
    inner = f'customer=~"{pattern}"' if names else ""
    return "{" + ",".join(part for part in (inner, extra) if part) + "}"


def exact_selector(labels: dict[str, str]) -> str:
    """A selector matching exactly these labels (the metric name is given separately)."""
    return "{" + ",".join(f'{k}="{promql_string(v)}"' for k, v in sorted(labels.items()) if k != "__name__") + "}"


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def shards(customers: list[tuple[str, tuple[str, ...]]], only_zone: bool, samples_per_series: float,
           budget: int = SHARD_SAMPLES) -> list[str]:
    """Selectors splitting the fleet into shards of about `budget` samples (customer regexes).

    Prometheus evaluates one query on one core, so a single month-long query for 5,000 customers (89M
    samples at a 5-minute scrape) uses one core however many the server has; shards of one question run side
    by side (`parallel`). (Functions over range selectors count --query.max-samples per series, so the limit
    is not what this is for: raw range selectors and subqueries, which count all series at once, are bounded
    by RAW_SAMPLES and the outage-run filter instead.)
    """
    per_customer = max((len(services) for _, services in customers), default=1) * samples_per_series
    if not customers or per_customer * len(customers) <= budget:
        return [selector(c for c, _ in customers) if only_zone else "{}"]
    size = max(1, int(budget // max(per_customer, 1)))
    return [selector(part) for part in _chunks(sorted(c for c, _ in customers), size)]


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


def _raw_samples(client: PrometheusClient, metric: str, wanted: set[LabelKey], length: int, end: int,
                 scrape_interval: float) -> dict[LabelKey, list[tuple[float, float]]]:
    """Raw samples of just these series: one range query per batch of customers (a customer regex) of at most
    RAW_SAMPLES samples, not one per series; series of those customers that were not asked for are dropped."""
    customers = sorted({dict(labels)["customer"] for labels in wanted})
    per_customer = max(1.0, len(wanted) / max(1, len(customers)) * length / scrape_interval)
    out: dict[LabelKey, list[tuple[float, float]]] = {}
    calls = {str(i): (lambda part=part: client.matrix(f"{metric}{selector(part)}[{length}s] @ {end}", end))
             for i, part in enumerate(_chunks(customers, max(1, int(RAW_SAMPLES // per_customer))))}
    for answer in parallel(client, calls).values():
        out.update({labels: samples for labels, samples in answer.items() if labels in wanted})
    return out


def _customer_service(labels: LabelKey) -> Key:
    lab = dict(labels)
    return lab.get("customer", ""), lab.get("service", "")


def service_evidence(client: PrometheusClient, customers: list[tuple[str, tuple[str, ...]]], start: int, end: int,
                     scrape_interval: float, only_zone: bool, budget: int = SHARD_SAMPLES) -> dict[Key, Evidence]:
    """Counters, coverage and state-gauge cross-checks for customers sharing one month window.

    One query per question for the whole fleet (or zone): the counters at both month edges, which counters
    reset in the month (`resets(...) > 0`, so only the few that did come back), the state gauge's sample count
    (coverage) and sum (down samples), and which outage counters rose after the month end (an outage
    determined after it). Only series that reset or lack an edge sample get their raw samples, in one batched
    query per metric. The month-long scans run side by side (`parallel`).
    """
    length = end - start
    hi = end + OUTAGE_MARGIN
    edges = f"[{length + LOOKBACK}s] @ {end}"
    # Prometheus 2.x range selectors include a sample exactly at the left edge; (start, end] is wanted.
    window = f"[{length * 1000 - 1}ms] @ {end}"
    queries: dict[tuple[str, int], str] = {}
    for i, sel in enumerate(shards(customers, only_zone, (length + LOOKBACK) / scrape_interval, budget)):
        # month-long scans first, so they start while the cheap edge queries run
        queries[("outage_resets", i)] = f"resets({M_OUTAGE}{sel}{edges}) > 0"
        queries[("unknown_resets", i)] = f"resets({M_UNKNOWN}{sel}{edges}) > 0"
        queries[("samples", i)] = f"count_over_time({M_UP}{sel}{window})"
        queries[("up_sum", i)] = f"sum_over_time({M_UP}{sel}{window})"
    for i, sel in enumerate(shards(customers, only_zone, 1, budget)):
        queries[("outage_end", i)] = f"{M_OUTAGE}{sel} @ {end}"
        queries[("outage_start", i)] = f"{M_OUTAGE}{sel} @ {start}"
        queries[("unknown_end", i)] = f"{M_UNKNOWN}{sel} @ {end}"
        queries[("unknown_start", i)] = f"{M_UNKNOWN}{sel} @ {start}"
        queries[("outage_later", i)] = (
            f"(max_over_time({M_OUTAGE}{sel}[{OUTAGE_MARGIN}s] @ {hi}) > {M_OUTAGE}{sel} @ {end}) or "
            f"(resets({M_OUTAGE}{sel}[{OUTAGE_MARGIN}s] @ {hi}) > 0)")
    answers = parallel(client, {f"{name}#{i}": (lambda q=q: client.vector(q, end)) for (name, i), q in queries.items()})
    got: dict[str, dict[LabelKey, float]] = defaultdict(dict)
    for key, answer in answers.items():
        got[key.split("#")[0]].update(answer)
    slots = _slots(got, customers)
    processes = _process_changes(client, start, end)
    samples: dict[LabelKey, int] = {}
    down: dict[LabelKey, int] = {}
    gaps: dict[LabelKey, float] = {}
    for labels, count in got["samples"].items():
        if labels in slots:
            samples[labels] = int(count)
            down[labels] = int(count - got["up_sum"].get(labels, count))
            lost = _unaccounted(processes, labels) if labels in got["outage_start"] else None
            # Without the exporter's accounting start (an older exporter), a missing sample is unknown time.
            gaps[labels] = max(0.0, length - count * scrape_interval) if lost is None else lost
    seen = {labels for labels, count in got["samples"].items() if count > 0}
    args = (start, end, scrape_interval, budget)
    fixed = parallel(client, {
        "outage": lambda: _deltas(client, M_OUTAGE, got["outage_end"], got["outage_start"], got["outage_resets"],
                                  seen, *args),
        "unknown": lambda: _deltas(client, M_UNKNOWN, got["unknown_end"], got["unknown_start"],
                                   got["unknown_resets"], seen, *args)})
    outage, unknown = fixed["outage"], fixed["unknown"]
    slow = parallel(client, {
        "outage": lambda: _raw_samples(client, M_OUTAGE, outage[1], length + LOOKBACK, end, scrape_interval),
        "unknown": lambda: _raw_samples(client, M_UNKNOWN, unknown[1], length + LOOKBACK, end, scrape_interval)})
    outage_figures = _counter_figures(*outage, slow["outage"], start, end)
    unknown_figures = _counter_figures(*unknown, slow["unknown"], start, end)
    no_samples = f"no samples of {M_UP} in the month"
    by_service: dict[Key, dict[str, Evidence]] = defaultdict(dict)
    for labels, slot in slots.items():
        counted = outage_figures.get(labels)
        count = samples.get(labels, 0)
        by_service[(slot.customer, slot.service)][slot.vantage] = Evidence(
            slot.customer, slot.service, start, end,
            outage_counter=counted[0] if counted else 0.0,
            unknown_counter=unknown_figures[labels][0] if labels in unknown_figures else 0.0,
            samples=count, gap_seconds=gaps.get(labels, 0.0) if count else float(length),
            down_samples=down.get(labels, 0), has_data=counted is not None,
            rose_after_end=labels in got["outage_later"],
            notes=[*slot.notes, *(counted[1] if counted else []), *([] if count else [no_samples])],
            vantage=slot.vantage)
    evidence: dict[Key, Evidence] = {}
    for c, services in customers:
        for s in services:
            mine = by_service.get((c, s), {})
            if len(mine) == 1:
                [evidence[(c, s)]] = mine.values()
            elif mine:  # two or more vantages: merged once their outage runs are known (merge_vantages)
                evidence[(c, s)] = Evidence(c, s, start, end, vantages=dict(sorted(mine.items())))
            else:
                evidence[(c, s)] = Evidence(c, s, start, end, gap_seconds=float(length), notes=[no_samples])
    return evidence


def _counter_figures(fast: dict[LabelKey, float], wanted: set[LabelKey], raw: dict[LabelKey, list[tuple[float, float]]],
                     start: int, end: int) -> dict[LabelKey, tuple[float, list[str]]]:
    """A counter's increase in the month per series, and notes on how it was read: the fast ones as computed, the
    rest from their raw samples. A series only the state gauge has (no counter samples at all) has none."""
    figures: dict[LabelKey, tuple[float, list[str]]] = {labels: (delta, []) for labels, delta in fast.items()}
    figures.update({labels: raw_delta(raw[labels], start, end) for labels in wanted if raw.get(labels)})
    return figures


def leaves(evidence: dict[Key, Evidence]) -> list[Evidence]:
    """Every vantage's evidence (a service with one exporter is its own leaf)."""
    return [leaf for ev in evidence.values() for leaf in (ev.vantages.values() if ev.vantages else [ev])]


def blind_spots(client: PrometheusClient, evidence: dict[Key, Evidence], start: int, end: int,
                scrape_interval: float) -> dict[Key, dict[str, list[Interval]]]:
    """Where each vantage of a service with two or more vantages had no evidence in [start, end).

    Exact, from the exporter's accounting start (docs/metrics.md): before a process's accounting start, and
    from the old process's last scrape to the new one's accounting start across a restart (the time in no
    counter). To scrape resolution: across a restart where the new process resumed from the old one's last
    heartbeat (its accounting start; the downtime is in its unknown counter), to its first scrape; after a
    process's last scrape when it stopped being scraped before the
    month's end (more than two scrape intervals before it), and the scrape intervals ending in a sample of
    `threenines_customer_service_known` == 0 (the exporter's own unknown: stale or unsendable probes). A
    vantage's HA replicas (same exporter, two Prometheus) have evidence when either does.
    """
    multi = {key: ev for key, ev in evidence.items() if ev.vantages}
    if not multi:
        return {}
    length = end - start
    step = int(scrape_interval)
    per_vantage: dict[str, list[list[Interval]]] = defaultdict(list)
    for labels, samples in client.matrix(f"{M_ACCOUNTING}[{length + LOOKBACK}s] @ {end}", end).items():
        blind: list[Interval] = []
        if not samples:
            blind.append((start, end))
        else:
            first_at = samples[0][1]
            if first_at > start:
                blind.append((start, min(first_at, end)))
            for (t_a, before), (t_b, after) in itertools.pairwise(samples):
                # A new process counts from its accounting start: its own start, or, when it resumed from its
                # predecessor's last heartbeat (at most a scrape interval after that one's last scrape), that
                # heartbeat, with the downtime after it as unknown: then no evidence until its first scrape
                # (scrape resolution; tests/ha/test_fault_stack.py kills a replica with SIGKILL).
                if after != before:
                    back = t_b if after <= t_a + scrape_interval else after
                    blind.append((max(t_a, start), min(max(after, back), end)))
            if samples[-1][0] < end - 2 * scrape_interval:
                blind.append((max(samples[-1][0], start), end))
        per_vantage[vantage_of(labels)].append(blind)
    process_blind: dict[str, list[Interval]] = {}
    for vantage, spans in per_vantage.items():
        common = merge(spans[0])
        for other in spans[1:]:
            common = intersect(common, other)
        process_blind[vantage] = common
    customers = sorted({c for c, _ in multi})
    unknown_points: dict[tuple[str, str, str], list[Interval]] = defaultdict(list)
    calls = {str(i): (lambda part=part: client.matrix(
        f"({M_KNOWN}{selector(part)} == 0)[{length}s:{step}s] @ {end}", end))
        for i, part in enumerate(_chunks(customers, SUSPECT_BATCH))}
    for answer in parallel(client, calls).values():
        for labels, points in answer.items():
            lab = dict(labels)
            unknown_points[(lab.get("customer", ""), lab.get("service", ""), vantage_of(labels))].extend(
                (t - step, t) for t, _ in points)
    out: dict[Key, dict[str, list[Interval]]] = {}
    for key, ev in multi.items():
        out[key] = {vantage: clip([*process_blind.get(vantage, []), *unknown_points.get((*key, vantage), [])],
                                  (start, end)) for vantage in ev.vantages}
    return out


def merge_vantages(ev: Evidence, outages: list[Outage], blind: dict[str, list[Interval]], policy: str) -> Evidence:
    """A service's per-vantage evidence merged (report.vantages): its outages the merged outages, its outage and
    unknown figures the merged seconds in the month. Each vantage keeps its own runs (vantages[v].outages) for
    its own cross-checks."""
    runs: dict[str, list[Outage]] = defaultdict(list)
    for outage in outages:
        runs[outage.vantage].append(outage)
    subs = {vantage: replace(sub, outages=runs.get(vantage, [])) for vantage, sub in ev.vantages.items()}
    views = {vantage: View(tuple(p for o in runs.get(vantage, []) for p in o.outage_pieces()),
                           tuple(blind.get(vantage, ()))) for vantage in set(ev.vantages) | set(runs)}
    window = (min([ev.start, *(o.start for o in outages)]), max([ev.end, *(o.end for o in outages)]))
    merged = merge_views(views, window, policy)
    month = (ev.start, ev.end)
    return replace(
        ev, outages=_merged_outages(merged.outage, outages), outage_counter=measure(clip(merged.outage, month)),
        unknown_counter=measure(clip(merged.unknown, month)), gap_seconds=0.0,
        samples=max((sub.samples for sub in subs.values()), default=0),
        has_data=any(sub.has_data for sub in subs.values()),
        rose_after_end=any(sub.rose_after_end for sub in subs.values()), vantages=subs, merged=True)


def _merged_outages(pieces: list[Interval], outages: list[Outage]) -> list[Outage]:
    """One outage per connected stretch of merged outage, described by the vantages' runs that overlap it."""
    out = []
    for start, end in merge(pieces):
        mine = [o for o in outages if intersect(o.outage_pieces(), [(start, end)])]
        inside = tuple(intersect(pieces, [(start, end)]))
        determined = [o.determined for o in mine]
        out.append(Outage(
            ",".join(sorted({o.target for o in mine})), start, end,
            None if None in determined or not determined else max(d for d in determined if d is not None),
            all(o.end_exact for o in mine), mine[0].source if mine else "prometheus",
            open=any(o.open and o.end >= end for o in mine), pieces=inside if inside != ((start, end),) else None,
            vantage="+".join(sorted({o.vantage for o in mine}))))
    return out


class _Slot(NamedTuple):
    customer: str
    service: str
    vantage: str
    notes: list[str]


def _slots(got: dict[str, dict[LabelKey, float]], customers: list[tuple[str, tuple[str, ...]]]
           ) -> dict[LabelKey, _Slot]:
    """The series each (customer, service, vantage) takes its figures from, and what it says for review.

    An HA Prometheus pair stores one exporter twice (a `replica` label): those series are one vantage's, and
    the one with the most samples gives the figures. Series of one vantage that differ otherwise (two jobs
    scraping one exporter, a relabelling) cannot be attributed to one exporter: one is used and the statement
    says so for review; they are never added or pooled.
    """
    wanted = {(c, s) for c, services in customers for s in services}
    members: dict[tuple[str, str, str], set[LabelKey]] = defaultdict(set)
    for answer in got.values():
        for labels in answer:
            key = _customer_service(labels)
            if key in wanted:
                members[(*key, vantage_of(labels))].add(labels)
    out: dict[LabelKey, _Slot] = {}
    for (customer, service, vantage), series in sorted(members.items()):
        best = max(sorted(series), key=lambda labels: got["samples"].get(labels, -1.0))
        notes = []
        identities = {identity(labels) for labels in series}
        if len(identities) > 1:
            differing = sorted({k for one in identities for k, v in one if any((k, v) not in other
                                                                               for other in identities)})
            notes.append(f"{len(identities)} series of vantage {vantage or '(no instance label)'!r} overlap and "
                         f"cannot be attributed to one exporter (they differ in {', '.join(differing)}): only "
                         f"{exact_selector(dict(best))} is used")
        out[best] = _Slot(customer, service, vantage, notes)
    return out


def _process_changes(client: PrometheusClient, start: int, end: int) -> dict[LabelKey, list[Interval]]:
    """Per exporter process series (its target labels): the time in the month that no process's counters hold.

    The counters are cumulative, so a scrape gap while the exporter ran loses nothing. Across a restart the
    new process counts from its accounting start (the heartbeat it resumed from: the downtime is then in its
    unknown counters); what lies between the old process's last scrape and that start is in no counter.
    """
    length = end - start
    series = client.vector(f"count_over_time({M_ACCOUNTING}[{length + LOOKBACK}s] @ {end})", end)
    if not series:
        return {}
    changed = client.vector(f"changes({M_ACCOUNTING}[{length + LOOKBACK}s] @ {end}) > 0", end)
    out: dict[LabelKey, list[Interval]] = {labels: [] for labels in series}
    if changed:
        raw = client.matrix(f"{M_ACCOUNTING}[{length + LOOKBACK}s] @ {end}", end)
        for labels, samples in raw.items():
            if labels not in changed:
                continue
            for (t_a, before), (_t_b, after) in itertools.pairwise(samples):
                if after != before and after > t_a:
                    out.setdefault(labels, []).append((max(t_a, start), min(after, end)))
    return out


def _unaccounted(processes: dict[LabelKey, list[Interval]], labels: LabelKey) -> float | None:
    """Seconds of the month a customer series' exporter held in no counter; None if it exports no start."""
    mine = set(labels)
    found = [lost for process, lost in processes.items() if set(process) <= mine]
    if len(found) != 1:
        return None  # no accounting start, or it cannot be told which exporter wrote this series
    return measure(found[0])


def _deltas(client: PrometheusClient, metric: str, at_end: dict[LabelKey, float], at_start: dict[LabelKey, float],
            resets: dict[LabelKey, float], seen: set[LabelKey], start: int, end: int, scrape_interval: float,
            budget: int) -> tuple[dict[LabelKey, float], set[LabelKey]]:
    """Exact counter increases: `end - start` without a reset; with resets, plus the values the counter fell
    from (located by report.resets, reading only the hours that hold them). The rest need a month of raw
    samples: no sample near an edge (born, gone or scraped late), or resets that could not be located."""
    fast: dict[LabelKey, float] = {}
    slow: set[LabelKey] = set()
    resetting: dict[LabelKey, float] = {}
    for labels, value in at_end.items():
        if labels not in at_start:
            slow.add(labels)
        elif labels in resets:
            resetting[labels] = resets[labels]
        elif value >= at_start[labels]:
            fast[labels] = value - at_start[labels]
        else:
            slow.add(labels)  # went down without a reset Prometheus can see: read it rather than guess
    slow.update(labels for labels in (set(at_start) | set(resets) | seen) if labels not in at_end)
    if resetting:
        added, unresolved = corrections(client, metric, resetting, start, end, scrape_interval, budget)
        fast.update({labels: at_end[labels] - at_start[labels] + value for labels, value in added.items()})
        slow.update(unresolved)
    return fast, slow


def outages_from_prometheus(client: PrometheusClient, evidence: dict[Key, Evidence], start: int, end: int,
                            scrape_interval: float) -> dict[Key, list[Outage]]:
    """Per-target outage runs overlapping [start, end), with exact ends where the counter allows.

    Only services with outage evidence are read: the outage counter rose in the month or after it (an
    outage determined later), it reset or lacks an edge sample, or the state gauge read 0. A subquery of a
    filter returns grid points only where an outage is open, for those customers only.
    """
    step = int(scrape_interval)
    hi = end + OUTAGE_MARGIN
    span = hi - start + OUTAGE_MARGIN
    suspects = sorted({ev.customer for ev in leaves(evidence)
                       if ev.outage_counter > 0 or ev.down_samples > 0 or ev.rose_after_end
                       or any("no sample" in note for note in ev.notes)})
    calls = {str(i): (lambda part=part: client.matrix(f"({M_T_START}{selector(part)} > 0)[{span}s:{step}s] @ {hi}",
                                                      hi))
             for i, part in enumerate(_chunks(suspects, SUSPECT_BATCH))}
    runs: list[tuple[dict[str, str], float, float, float, bool]] = []
    found: set[tuple[tuple[tuple[str, str], ...], float]] = set()
    for answer in parallel(client, calls).values():
        for labels, points in sorted(answer.items()):
            lab = dict(labels)
            for first_failed, t_first, t_last, gaps in _split_runs(points, step):
                if first_failed >= end or t_last + step <= start or (identity(labels), first_failed) in found:
                    continue  # outside the month, or the same exporter's run seen through another HA replica
                found.add((identity(labels), first_failed))
                runs.append((lab, first_failed, t_first, t_last, gaps))
    out: dict[Key, list[Outage]] = defaultdict(list)
    for (lab, *_), outage in zip(runs, _bounded(client, runs, step, hi), strict=True):
        out[(lab["customer"], lab["service"])].append(outage)
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
    return [(run[0], run[1], run[2], run[3]) for run in runs]


def _tag(expr: str, run: int, question: str) -> str:
    return f'label_replace({expr}, "{RUN_LABEL}", "{run}:{question}", "", "")'


def _bounded(client: PrometheusClient, runs: list[tuple[dict[str, str], float, float, float, bool]], step: int,
             hi: int) -> list[Outage]:
    """Bounds of every run from three instant questions per run (determined time, counter increase across the
    run, resets in it), asked for RUN_BATCH runs per query (each tagged with a label) instead of per run."""
    exprs: list[str] = []
    for i, (lab, _first_failed, t_first, t_last, _gap) in enumerate(runs):
        one = exact_selector(lab)
        t_prev, t_next = t_first - step, t_last + step
        exprs.append(_tag(f"{M_T_DETERMINED}{one} @ {t_first}", i, "determined"))
        if t_next <= hi:
            exprs.append(_tag(f"{M_T_OUTAGE}{one} @ {t_next} - {M_T_OUTAGE}{one} @ {t_prev}", i, "seconds"))
            exprs.append(_tag(f"resets({M_T_OUTAGE}{one}[{t_next - t_prev}s] @ {t_next})", i, "resets"))
            # Did the exporter that wrote the run restart inside it? Its accounting start changes at a restart.
            process = exact_selector({k: v for k, v in lab.items() if k not in ("customer", "service", "target")})
            exprs.append(_tag(f"changes({M_ACCOUNTING}{process}[{t_next - t_prev}s] @ {t_next})", i, "restarts"))
    calls = {str(i): (lambda query=query: client.vector(query, hi))
             for i, query in enumerate(pack_queries(exprs, 3 * RUN_BATCH))}
    answers: dict[tuple[int, str], float] = {}
    for answer in parallel(client, calls).values():
        for labels, value in answer.items():
            run, question = dict(labels)[RUN_LABEL].split(":")
            answers[(int(run), question)] = value
    restarted = [i for i, (_lab, _ff, _tf, t_last, _gap) in enumerate(runs)
                 if answers.get((i, "resets")) and t_last + step <= hi]
    raw = _run_samples(client, {i: (runs[i][0], runs[i][2] - step, runs[i][3] + step) for i in restarted})
    out = []
    for i, (lab, first_failed, _t_first, t_last, _gap) in enumerate(runs):
        det = answers.get((i, "determined"))
        if t_last + step > hi:  # still open at the end of what we looked at
            out.append(Outage(lab["target"], first_failed, t_last, det, False, "prometheus", open=True,
                              vantage=vantage_of(lab)))
            continue
        if i in raw:
            outage_samples, unknown_samples = raw[i]
            found = _across_restarts(first_failed, t_last, outage_samples, unknown_samples, step)
            if found is not None:
                pieces, end, exact = found
                out.append(Outage(lab["target"], first_failed, end, det, exact, "prometheus", pieces=pieces,
                                  vantage=vantage_of(lab)))
                continue
        seconds = answers.get((i, "seconds"))
        restarts = answers.get((i, "restarts"))
        # A scrape gap inside the run does not matter: the counter kept counting while Prometheus did not look.
        # A restart with no drop (the counter back above its old value by the next scrape) would make the
        # increase short: the exporter's accounting start says whether one happened. Without it (an older
        # exporter) the end must reach the run's last point but one, less the time the exporter may show an
        # ended outage's gauge after its end (it publishes an event's views within PUBLISH_LAG).
        exact = seconds is not None and not answers.get((i, "resets")) and (
            restarts == 0 if restarts is not None else first_failed + seconds > t_last - step - PUBLISH_LAG)
        end = first_failed + seconds if exact and seconds is not None else t_last + step
        out.append(Outage(lab["target"], first_failed, end, det, exact, "prometheus", vantage=vantage_of(lab)))
    return out


def _run_samples(client: PrometheusClient, runs: dict[int, tuple[dict[str, str], float, float]]
                 ) -> dict[int, tuple[list[tuple[float, float]], list[tuple[float, float]]]]:
    """Raw samples of a target's outage and unknown counters over [t_prev, t_next] of each run (only runs with
    a counter reset in them: an exporter restart inside an outage, which is rare)."""
    calls = {}
    for i, (lab, t_prev, t_next) in runs.items():
        one = exact_selector(lab)
        for metric, name in ((M_T_OUTAGE, "o"), (M_T_UNKNOWN, "u")):
            calls[f"{i}:{name}"] = (lambda q=f"{metric}{one}[{t_next - t_prev}s] @ {t_next}", t=t_next:
                                    client.matrix(q, t))
    answers = parallel(client, calls)
    out = {}
    for i in runs:
        outage = next(iter(answers[f"{i}:o"].values()), [])
        unknown = next(iter(answers[f"{i}:u"].values()), [])
        out[i] = (outage, unknown)
    return out


def _across_restarts(first_failed: float, t_last: float, outage: list[tuple[float, float]],
                     unknown: list[tuple[float, float]], step: int
                     ) -> tuple[tuple[Interval, ...], float, bool] | None:
    """The outage seconds of a run that an exporter restart cut into lifetimes, from its counters' samples
    over [t_prev, t_next].

    The first lifetime's outage is contiguous from the first failed probe: [first_failed, first_failed + A),
    A its counter's increase. A later lifetime is a process that resumed the open outage: it accounts every
    second since it resumed (h) as outage or unknown (the target is down, so none is up), so at its first
    sample t, h = t - (outage + unknown); it was unknown from h until its first probe, then outage up to its
    last sample: [h + u, h + u + o) with u, o its final counter values. The time between a lifetime's last
    counted second and the next one's h is in no counter (the last seconds before a crash are never
    scraped): neither outage nor unknown here. None when the samples show no drop to split at.
    """
    unknown_at = dict(unknown)
    lifetimes: list[list[tuple[float, float]]] = []
    for t, value in outage:
        if lifetimes and value >= lifetimes[-1][-1][1]:
            lifetimes[-1].append((t, value))
        else:
            lifetimes.append([(t, value)])
    if len(lifetimes) < 2:
        return None
    first = lifetimes[0]
    exact = unknown_at.get(first[-1][0], 0.0) == unknown_at.get(first[0][0], 0.0)  # no hole before the crash
    pieces: list[Interval] = [(first_failed, first_failed + first[-1][1] - first[0][1])]
    for life in lifetimes[1:]:
        t, value = next(((t, v) for t, v in life if t <= t_last), life[0])
        if t > t_last:
            exact = False  # resumed and recovered between two scrapes: its up time is not in these counters
        resumed = t - value - unknown_at.get(t, 0.0)
        began = resumed + unknown_at.get(life[-1][0], 0.0)
        pieces.append((began, began + life[-1][1]))
    end = pieces[-1][1]
    if not pieces[-1][0] <= t_last < end or any(b[0] < a[1] for a, b in itertools.pairwise(pieces)):
        exact = False  # the pieces do not fit the run the gauges show: keep the seconds, flag the placement
    return tuple((a, b) for a, b in pieces if b > a), max(end, t_last), exact and measure(pieces) > 0


def outages_from_ledger(path: str | Path, start: int, end: int, now: float | None = None) -> dict[Key, list[Outage]]:
    """Outages overlapping [start, end) from the exporter's outage ledger (read-only), with the time inside each
    that had no evidence (`outage_gaps`: an exporter restart, stale probes) taken out of its pieces. The ledger
    holds the seconds before a crash that no scrape showed. An outage still open ends at `now` (a preview)."""
    with OutageLedgerReader(path) as ledger:
        records = ledger.outages(start, end)
        gaps: dict[tuple[TargetKey, float], list[Interval]] = defaultdict(list)
        for gap in ledger.gaps():
            gaps[(gap.key, gap.determined_at)].append((gap.start, gap.end))
    out: dict[Key, list[Outage]] = defaultdict(list)
    for r in records:
        stop = (min(end, now) if now is not None else end) if r.ended_at is None else r.ended_at
        holes = gaps.get((r.key, r.determined_at), [])
        pieces = tuple(subtract([(r.first_failed_at, stop)], holes)) if holes else None
        out[(r.key.customer, r.key.service)].append(Outage(r.key.target, r.first_failed_at, stop, r.determined_at,
                                                           r.ended_at is not None, "ledger",
                                                           open=r.ended_at is None, pieces=pieces))
    return out


def missed_notifications(client: PrometheusClient, customers: list[str], start: int, end: int, only_zone: bool,
                         scrape_interval: float = 60.0, budget: int = SHARD_SAMPLES
                         ) -> tuple[dict[str, list[tuple[float, float]]], bool, dict[MissKey, list[float]]]:
    """Missed notification deadlines of the month per customer: ([(instant, count)], exact, the same instants per
    target — empty for the counter, which has no target: owed_misses checks them against the merged evidence).

    The exporter decides a miss when its deadline passes and exports that instant per target
    (threenines_notification_deadline_missed_timestamp_seconds): every distinct value in [start, end) is one
    miss at that instant (exact: True). Read up to 6 hours past the month, since a deadline just before
    midnight is scraped after it. For an exporter without that gauge, the counter's rises, at the scrape that
    saw them (exact: False)."""
    length = end - start
    hi = end + OUTAGE_MARGIN
    span = f"[{hi - start + LOOKBACK}s] @ {hi}"
    # The instants come with the exporter that exports its accounting start; an older one has only the counter.
    if not client.vector(f"count(count_over_time({M_ACCOUNTING}{span}))", hi):
        return _missed_by_counter(client, customers, start, end, only_zone, scrape_interval, budget), False, {}
    calls = {str(i): (lambda sel=sel: client.vector(f"max_over_time({M_MISSED_AT}{sel}{span}) >= {start}", hi))
             for i, sel in enumerate(shards([(c, ("",)) for c in customers], only_zone, length / scrape_interval,
                                            budget))}
    answers = parallel(client, calls)
    candidates = {labels for answer in answers.values() for labels in answer}
    raw = _raw_samples(client, M_MISSED_AT, candidates, hi - start + LOOKBACK, hi, scrape_interval)
    # One miss per outage, whichever series carry it: replica exporters (vantages) record an outage's miss at its
    # earliest determination + the deadline (threenines.alerting.deadlines), the same instant on each (to the
    # millisecond when one of them learnt the determination from the page), and a Prometheus HA pair without
    # deduplication stores each exporter's series twice. Two outages of one target never miss within a millisecond.
    instants: dict[tuple[str, str, str], set[float]] = defaultdict(set)
    for labels, samples in raw.items():
        lab = dict(labels)
        instants[(lab["customer"], lab.get("service", ""), lab.get("target", ""))].update(
            value for _, value in samples if start <= value < end)
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    per_target: dict[MissKey, list[float]] = {}
    for key, values in sorted(instants.items()):
        kept: list[float] = []
        for instant in sorted(values):
            if not kept or instant - kept[-1] >= SAME_MISS:
                kept.append(instant)
        out[key[0]] += [(instant, 1.0) for instant in kept]
        per_target[key] = kept
    return out, True, per_target


def notification_deadlines(client: PrometheusClient, customers: list[str], start: int, end: int) -> dict[str, float]:
    """Each customer's notification deadline (threenines_customer_notification_deadline_seconds): the longest any
    exporter exported over the month and the hours after it that misses are read from (owed_misses' window is then
    the widest the contract allowed, so a change of the deadline never drops a miss it owed)."""
    hi = end + OUTAGE_MARGIN
    answer = client.vector(f"max by (customer) (max_over_time({M_DEADLINE}{selector(customers)}"
                           f"[{hi - start + LOOKBACK}s] @ {hi}))", hi)
    return {dict(labels).get("customer", ""): value for labels, value in answer.items()}


@dataclass(frozen=True)
class UnowedMiss:
    """A missed deadline of a target that the merged evidence gives no outage to owe a notification for."""

    customer: str
    service: str
    target: str
    instant: float  # the deadline instant the exporter recorded
    since: float  # the window's start: instant - deadline - the target's longest pending stretch
    saw_up: tuple[str, ...]  # the vantages with evidence that the target was up in [since, instant)


@dataclass(frozen=True)
class RepeatedMiss:
    """A replica's missed deadline of an outage whose miss another replica recorded earlier: one miss, billed at
    the earliest instant."""

    customer: str
    service: str
    target: str
    instant: float  # the later deadline instant, not billed
    kept: float  # the earliest instant of the same merged outage, billed
    outage: Interval  # the run of merged outage of the target both misses were owed for


def owed_misses(evidence: dict[Key, Evidence], blind: dict[Key, dict[str, list[Interval]]], policy: str,
                misses: dict[MissKey, list[tuple[float, float | None]]]
                ) -> tuple[list[UnowedMiss], list[RepeatedMiss]]:
    """The misses of services with two or more vantages that are not billed (docs/report.md, "Notification
    credits"): those no merged outage owed, and those repeating an earlier miss of the same merged outage; every
    other miss counts.

    The contract owes a notification within the deadline D of determining unavailability, and with replica
    exporters unavailability is what the merge says (docs/design.md, "Replica exporters"). Each replica watches its
    own determination, so a replica whose own path failed records a miss at determination + D although the merge
    has no outage and nobody was paged. A miss of target t at instant m counts when the merge of t's runs (each
    vantage's runs of t, its no-evidence time, the policy) has outage in [m - D - R, m): m - D is the determination
    the miss counts from, and R the longest a run of t (any vantage's, read for the month) began before its
    determination, so the window reaches back to the first failed probe of the run that determination was made in
    (the merge can put the outage in the run's pending stretch). By the probe policy R is at most threshold x
    interval (the threshold-th failed probe ends within an interval after the (threshold-1)-th); a blind spell's
    residue can add one interval; R is read from the runs rather than assumed. A miss whose window begins before
    the month counts as before: no-evidence time is known only inside the month. `misses`: per target, the
    (instant, deadline) pairs; a deadline of None (not known) counts the miss.

    Replicas that cannot reach each other and get no page each know only their own determination and key the
    outage's miss by it: two instants up to a probe interval apart for one outage. A miss that counts belongs to
    the run of merged outage of t (a maximal interval of the merge over the month) that meets its window and holds
    m - D, else the one of those nearest m - D (a determination the merge puts before or after its outage: the
    other vantage failed later, or recovered first); the misses of one run are one miss, at the earliest instant,
    since the provider's deadline counts from the outage's earliest determination. Runs meeting one window are
    told apart by the determination, so two outages less than D + R apart stay two misses.
    """
    unowed: list[UnowedMiss] = []
    repeated: list[RepeatedMiss] = []
    for (customer, service, target), found in sorted(misses.items()):
        ev = evidence.get((customer, service))
        if ev is None or not ev.merged:
            continue  # one exporter: its determination is the determination, every miss counts
        runs = {vantage: [o for o in sub.outages if o.target == target] for vantage, sub in ev.vantages.items()}
        reach = max((o.determined - o.start for mine in runs.values() for o in mine if o.determined is not None),
                    default=0.0)
        spots = blind.get((customer, service), {})
        views = {vantage: View(tuple(p for o in mine for p in o.outage_pieces()), tuple(spots.get(vantage, ())))
                 for vantage, mine in runs.items()}
        merged = merge(merge_views(views, (ev.start, ev.end), policy).outage)
        first: dict[Interval, float] = {}
        for instant, deadline in sorted(found, key=lambda miss: miss[0]):
            if deadline is None:
                continue
            since = instant - deadline - reach
            if since < ev.start or since >= instant:
                continue
            window = (since, instant)
            meeting = [run for run in merged if run[0] < instant and run[1] > since]
            if not meeting:
                unowed.append(UnowedMiss(customer, service, target, instant, since,
                                         tuple(sorted(v for v, view in views.items() if view.up(window)))))
                continue
            determined = instant - deadline
            run = min(meeting, key=lambda r: (max(r[0] - determined, determined - r[1], 0.0), r[0]))
            if run in first:
                repeated.append(RepeatedMiss(customer, service, target, instant, first[run], run))
            else:
                first[run] = instant
    return unowed, repeated


def _missed_by_counter(client: PrometheusClient, customers: list[str], start: int, end: int, only_zone: bool,
                       scrape_interval: float, budget: int) -> dict[str, list[tuple[float, float]]]:
    """Raw (time, increase) of the missed-deadline counter inside (start, end] for customers that missed any:
    one fleet-wide query (per shard) finds them, batched range queries read their samples."""
    length = end - start
    calls = {}
    for i, sel in enumerate(shards([(c, ("",)) for c in customers], only_zone, length / scrape_interval, budget)):
        expr = (f"(({M_MISSED}{sel} @ {end} - {M_MISSED}{sel} @ {start}) > 0) or (resets({M_MISSED}{sel}[{length}s] "
                f"@ {end}) > 0) or ({M_MISSED}{sel} @ {end} > 0 unless {M_MISSED}{sel} @ {start})")
        calls[str(i)] = (lambda expr=expr: client.vector(expr, end))
    candidates: dict[LabelKey, float] = {}
    for answer in parallel(client, calls).values():
        candidates.update(answer)
    raw = _raw_samples(client, M_MISSED, set(candidates), length + LOOKBACK, end, scrape_interval)
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for labels in candidates:
        customer = dict(labels)["customer"]
        samples = raw.get(labels, [])
        before = [v for t, v in samples if t <= start]
        previous = before[-1] if before else 0.0  # a series born inside the month starts from zero
        for t, value in samples:
            if t <= start:
                continue
            increase = value - previous if value >= previous else value
            if increase > 0:
                out[customer].append((t, increase))
            previous = value
    return out
