"""One month's statement for a fleet: group customers by contract zone (one month window per zone), collect
evidence with a handful of fleet-wide queries per zone, and assemble the per-customer statements."""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from threenines.config.exclusions import Exclusions
from threenines.config.inventory import Inventory
from threenines.intervals import Interval, clip
from threenines.ledgers.audit import AuditLedgerReader
from threenines.report.applications import connectivity_unknown
from threenines.report.collect import (
    M_MISSED,
    M_MISSED_AT,
    M_OUTAGE,
    M_UP,
    Evidence,
    blind_spots,
    exact_selector,
    leaves,
    merge_vantages,
    missed_notifications,
    outages_from_ledger,
    outages_from_prometheus,
    service_evidence,
)
from threenines.report.inference import power_inferences
from threenines.report.months import Month
from threenines.report.promclient import PrometheusClient, PrometheusError, parallel
from threenines.report.schema import SCHEMA, CustomerStatement, ExclusionsSource, Statement
from threenines.report.statement import (
    CustomerSpec,
    Options,
    application_section,
    cross_check,
    customer_statement,
    service_statement,
)

AUDIT_SOURCE = "audit-ledger: missed deadlines, at determined_at + deadline"
Misses = dict[str, list[tuple[float, float]]]  # customer -> [(instant, count)]


def specs_from_inventory(inventory: Inventory) -> list[CustomerSpec]:
    return [CustomerSpec(c.id, c.name, c.timezone, c.objective, c.services, bool(c.applications))
            for c in inventory.customers]


def specs_from_prometheus(client: PrometheusClient, month: Month) -> list[CustomerSpec]:
    """Customers as the exporter described them (threenines_customer_info) during the month."""
    lo, hi = month.window(_utc())
    at, span = hi + 14 * 3600, hi - lo + 28 * 3600  # every zone's month lies inside this UTC span
    info = client.vector(f"last_over_time(threenines_customer_info[{span}s] @ {at})", at)
    objectives = client.vector(f"last_over_time(threenines_customer_objective_ratio[{span}s] @ {at})", at)
    services = client.vector(f"count by (customer, service) (last_over_time({M_OUTAGE}[{span}s] @ {at}))", at)
    objective: dict[str, float] = {}
    billed_applications: set[str] = set()
    for labels, value in objectives.items():
        lab = dict(labels)
        objective[lab["customer"]] = value
        if lab.get("service") == "application":  # exported only with applications_billable (docs/design.md)
            billed_applications.add(lab["customer"])
    offered: dict[str, set[str]] = defaultdict(set)
    checked: set[str] = set()  # customers with application checks, billed or not (the applications section)
    for labels in services:
        lab = dict(labels)
        if lab["service"] == "application":
            checked.add(lab["customer"])
        if lab["service"] != "application" or lab["customer"] in billed_applications:
            offered[lab["customer"]].add(lab["service"])
    specs: dict[str, CustomerSpec] = {}
    for labels in sorted(info):  # replica exporters each describe the customer: one spec per customer
        lab = dict(labels)
        customer = lab["customer"]
        specs.setdefault(customer, CustomerSpec(customer, lab.get("name", customer), lab.get("timezone", "UTC"),
                                                objective.get(customer, 0.999), tuple(sorted(offered[customer])),
                                                customer in checked))
    if not specs:
        raise PrometheusError(f"Prometheus has no threenines_customer_info series around {month}: pass --config "
                              "inventory.yml, or check that Prometheus scrapes the exporter and retains the month")
    return sorted(specs.values(), key=lambda s: s.id)


def _utc():
    from zoneinfo import ZoneInfo

    return ZoneInfo("UTC")


LEARN_SERIES = 5  # series whose raw samples give the scrape interval (the densest ones of the densest hour)


def learn_scrape_interval(client: PrometheusClient, start: int, end: int) -> float | None:
    """The exporter's scrape interval, read from the data: the spacing of the state gauge's samples.

    Every figure computed as samples × interval depends on it, and a flag that says 60 s over 30 s scrapes
    doubles them. Samples per hour alone are not enough: a series younger than the hour (a new exporter, a
    month's first report) has fewer, and 3600/count read a 1 s scrape as 120 s. So the hour with the most
    samples (of three: a gap only thins an hour) names its densest series, and the median spacing of their
    raw samples is the interval — a few series, one hour: at most a few thousand samples.
    """
    counts: dict[float, dict[tuple[tuple[str, str], ...], float]] = {}
    hours = {at: (lambda at=at: client.vector(f"count_over_time({M_UP}[3599999ms] @ {at})", at))
             for at in sorted({min(start + 3600, end), (start + end) // 2, end})}
    for hour, answer in parallel(client, {str(at): call for at, call in hours.items()}).items():
        counts[float(hour)] = answer
    at, answer = max(counts.items(), key=lambda item: (sum(item[1].values()), item[0]))
    densest = sorted((labels for labels, count in answer.items() if count >= 2), key=lambda lab: -answer[lab])
    raw = parallel(client, {str(i): (lambda labels=labels: client.matrix(
        f"{M_UP}{exact_selector(dict(labels))}[3599999ms] @ {int(at)}", at))
        for i, labels in enumerate(densest[:LEARN_SERIES])})
    spacings = sorted(b[0] - a[0] for series in raw.values() for samples in series.values()
                      for a, b in itertools.pairwise(samples))
    if not spacings:
        return None
    median = spacings[len(spacings) // 2]
    # Prometheus scrapes on whole seconds (or milliseconds below one); jitter is well under half a second.
    return float(round(median)) if median >= 1 else round(median, 3)


def build_statement(client: PrometheusClient, month: Month, specs: list[CustomerSpec], ledger: Exclusions,
                    options: Options, outage_ledger: str | Path | None = None, now: float | None = None,
                    allow_incomplete: bool = False, audit_ledger: str | Path | None = None) -> Statement:
    """The month's statement. `options.scrape_interval` None: learned from the data (a given value that the
    data contradicts is replaced by the data's, with a warning). A month that is not over, or not retained
    from its first hour, is only ever a preview (allow_incomplete), marked as such, and never closed."""
    now = time.time() if now is None else now
    by_zone: dict[str, list[CustomerSpec]] = defaultdict(list)
    for spec in specs:
        by_zone[spec.timezone].append(spec)
    only_zone = len(by_zone) > 1
    customers: list[CustomerStatement] = []
    sampled = False
    preview: list[str] = []
    warnings: list[str] = []
    intervals: set[float] = set()
    given = options
    for timezone, members in sorted(by_zone.items()):
        start, end = month.window(members[0].zone)
        if end > now:
            if not allow_incomplete:
                raise PrometheusError(f"{month} in {timezone} ends at {end} (Unix), after now: a month is billed "
                                      "once it is over (--allow-incomplete for a preview)")
            preview.append(f"{month} in {timezone} is not over")
        if not _check_retention(client, start, end, allow_incomplete):
            preview.append(f"{month} in {timezone} is not retained from its first hour")
        # a preview's last hour is the one before now: a new exporter's samples are there
        learned = learn_scrape_interval(client, start, min(end, int(now)))
        interval = learned or given.scrape_interval or 60.0
        if learned and given.scrape_interval and abs(learned - given.scrape_interval) > 0.5:
            warnings.append(f"--scrape-interval {given.scrape_interval:g}s disagrees with the data ({learned:g}s "
                            f"between samples in {timezone}): the data's interval is used")
        intervals.add(interval)
        options = replace(given, scrape_interval=interval)
        ids = [m.id for m in members]
        # Application checks are read for the applications section whether billed or not (then they are not
        # among the billed services, and only the section shows them).
        asked = [(m.id, m.services if not m.applications or "application" in m.services
                  else (*m.services, "application")) for m in members]
        evidence = service_evidence(client, asked, start, end, interval, only_zone, options.samples_per_shard)
        sampled = sampled or any(ev.samples for ev in leaves(evidence))
        bounds = (outages_from_ledger(outage_ledger, start, end, now) if outage_ledger
                  else outages_from_prometheus(client, evidence, start, end, interval))
        # Replica exporters: merge each service's vantages by the contract's rule (report.vantages). The outage
        # ledger is one exporter's record, so with --ledger its runs are that vantage's (see docs/report.md).
        blind = blind_spots(client, evidence, start, end, interval)
        evidence = {key: merge_vantages(ev, bounds.get(key, []), blind.get(key, {}), ledger.policy.merge)
                    if ev.vantages else replace(ev, outages=bounds.get(key, [])) for key, ev in evidence.items()}
        misses, exact = missed_notifications(client, ids, start, end, only_zone, interval,
                                             options.samples_per_shard)
        metric_source = f"prometheus:{M_MISSED_AT if exact else M_MISSED}"
        audit = audit_misses(audit_ledger, start, end) if audit_ledger else None
        inferred = power_inferences(client, [m.id for m in members if "power" in m.services], start, end, interval,
                                    only_zone, options.samples_per_shard)
        conn_unknown = _connectivity_unknown(client, members, evidence, interval)
        for spec in members:
            per_service: dict[str, Evidence] = {}
            for service in spec.services:
                ev = evidence[(spec.id, service)]
                if ev.merged:
                    # each vantage's own cross-checks (counter vs its runs, state gauge), under its name
                    own = replace(options, min_coverage=0.0)
                    ev = replace(ev, notes=[*ev.notes, *(
                        f"vantage {vantage!r}: {item.removeprefix(service + ': ')}"
                        for vantage, sub in ev.vantages.items()
                        for item in service_statement(spec, service, sub, ledger, own).review)])
                per_service[service] = ev
            apps = (application_section(spec, evidence[(spec.id, "application")],
                                        evidence.get((spec.id, "connectivity")), conn_unknown.get(spec.id, []))
                    if spec.applications else None)
            mine = inferred.get(spec.id, [])
            if audit is None:
                customers.append(customer_statement(spec, month, per_service, ledger, misses.get(spec.id, []),
                                                    options, metric_source, exact=exact,
                                                    inferred=mine, applications=apps))
                continue
            legacy = audit[1].get(spec.id, []) if audit[1] is not None else None
            checks = cross_check(spec.id, audit[0].get(spec.id, []), misses.get(spec.id, []), exact, legacy, start,
                                 end, options.scrape_interval or 60.0)
            customers.append(customer_statement(spec, month, per_service, ledger, audit[0].get(spec.id, []), options,
                                                AUDIT_SOURCE, checks, exact=True, inferred=mine,
                                                applications=apps))
    if not sampled:
        raise PrometheusError(f"Prometheus has no {M_UP} samples of these customers in the month at all: wrong "
                              "--prometheus, wrong tenant header, or retention does not cover the month")
    customers.sort(key=lambda c: c.customer)
    if len(intervals) > 1:
        warnings.append(f"the zones' data have different scrape intervals: {sorted(intervals)}")
    return Statement(
        schema=SCHEMA,
        month=str(month),
        # A preview is never final: its figures can still change, and --close refuses it.
        status="preview" if preview else "final",
        preview_reasons=preview,
        scrape_interval_seconds=min(intervals) if intervals else given.scrape_interval,
        min_coverage_ratio=options.min_coverage,
        bounds_source="ledger" if outage_ledger else "prometheus",
        exclusions=ExclusionsSource(ledger.source, ledger.sha256, ledger.policy.unreported_outages_not_counted),
        warnings=warnings + list(client.warnings),
        customers=customers,
        review=[f"{c.customer}: {item}" for c in customers for item in c.review],
    )


def _connectivity_unknown(client: PrometheusClient, members: list[CustomerSpec],
                          evidence: dict[tuple[str, str], Evidence], interval: float) -> dict[str, list[Interval]]:
    """Where each customer's connectivity had no evidence during its application outages: asked only of those
    whose connectivity had unknown time in the month (report.applications); the others had evidence throughout."""
    spans: dict[str, list[Interval]] = {}
    for spec in members:
        app, conn = evidence.get((spec.id, "application")), evidence.get((spec.id, "connectivity"))
        if not spec.applications or app is None or conn is None or not app.outages:
            continue
        if conn.unknown_counter + conn.gap_seconds > 0:
            spans[spec.id] = clip((p for o in app.outages for p in o.outage_pieces()), (app.start, app.end))
    return connectivity_unknown(client, spans, interval) if spans else {}


# How far around the month a legacy ledger's late dispatches are read: one that arrived a scrape interval from an
# edge may have been counted by the metric on the other side (report.statement.cross_check).
LEGACY_DISPATCH_MARGIN = 86400


def audit_misses(path: str | Path, start: int, end: int) -> tuple[Misses, dict[str, list[float]] | None]:
    """Missed deadlines per customer from the exporter's audit ledger: (misses at their deadline instants in
    [start, end), None); for a ledger older than its `misses` table, (its late first dispatches at
    `determined_at + deadline`, their arrival times around the month for the cross-check against the counter).
    An outage never notified at all is not in such a ledger."""
    misses: Misses = defaultdict(list)
    with AuditLedgerReader(path) as audit:
        if audit.has_misses:
            for miss in audit.misses(start, end):
                misses[miss.customer].append((float(miss.deadline_at), 1.0))
            return misses, None
        late = audit.late_first_dispatches(start - LEGACY_DISPATCH_MARGIN, end + LEGACY_DISPATCH_MARGIN)
    dispatched: dict[str, list[float]] = defaultdict(list)
    for d in late:
        assert d.determined_at is not None and d.deadline is not None  # the reader selects those with both
        missed_at = d.determined_at + d.deadline
        if start <= missed_at < end:
            misses[d.customer].append((float(missed_at), 1.0))
        dispatched[d.customer].append(float(d.dispatched_at))
    return misses, dispatched


def _check_retention(client: PrometheusClient, start: int, end: int, allow_incomplete: bool) -> bool:
    """Refuse a month Prometheus does not hold from its first hour: that would read as a silent 100%.
    (A month with no samples at all is refused after the coverage query, which counts them anyway.)"""
    first = client.vector(f"count(count_over_time({M_OUTAGE}[3600s] @ {start + 3600}))", end)
    if not first and not allow_incomplete:
        raise PrometheusError(f"Prometheus has no {M_OUTAGE} samples in the month's first hour: its retention (or "
                              "the exporter's history) does not cover the whole month; --allow-incomplete to "
                              "report anyway (missing time then counts as unknown and is flagged)")
    return bool(first)
