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
from threenines.report.auditledger import cross_check, read_misses
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
from threenines.report.months import Month
from threenines.report.promclient import PrometheusClient, PrometheusError, parallel
from threenines.report.statement import CustomerSpec, Options, customer_statement, service_statement

SCHEMA = "threenines.statement/1"
AUDIT_SOURCE = "audit-ledger: missed deadlines, at determined_at + deadline"


def specs_from_inventory(inventory: Inventory) -> list[CustomerSpec]:
    return [CustomerSpec(c.id, c.name, c.timezone, c.objective, c.services) for c in inventory.customers]


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
    for labels in services:
        lab = dict(labels)
        if lab["service"] != "application" or lab["customer"] in billed_applications:
            offered[lab["customer"]].add(lab["service"])
    specs: dict[str, CustomerSpec] = {}
    for labels in sorted(info):  # replica exporters each describe the customer: one spec per customer
        lab = dict(labels)
        customer = lab["customer"]
        specs.setdefault(customer, CustomerSpec(customer, lab.get("name", customer), lab.get("timezone", "UTC"),
                                                objective.get(customer, 0.999), tuple(sorted(offered[customer]))))
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
                    allow_incomplete: bool = False, audit_ledger: str | Path | None = None) -> dict:
    """The month's statement. `options.scrape_interval` None: learned from the data (a given value that the
    data contradicts is replaced by the data's, with a warning). A month that is not over, or not retained
    from its first hour, is only ever a preview (allow_incomplete), marked as such, and never closed."""
    now = time.time() if now is None else now
    by_zone: dict[str, list[CustomerSpec]] = defaultdict(list)
    for spec in specs:
        by_zone[spec.timezone].append(spec)
    only_zone = len(by_zone) > 1
    customers: list[dict] = []
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
        evidence = service_evidence(client, [(m.id, m.services) for m in members], start, end,
                                    interval, only_zone, options.samples_per_shard)
        sampled = sampled or any(ev.samples for ev in leaves(evidence))
        bounds = (outages_from_ledger(outage_ledger, start, end, now) if outage_ledger
                  else outages_from_prometheus(client, evidence, start, end, interval))
        # Replica exporters: merge each service's vantages by the contract's rule (report.vantages). The outage
        # ledger is one exporter's record, so with --ledger its runs are that vantage's (see docs/report.md).
        blind = blind_spots(client, evidence, start, end, interval)
        for key, ev in evidence.items():
            if ev.vantages:
                merge_vantages(ev, bounds.get(key, []), blind.get(key, {}), ledger.policy.merge)
        misses, exact = missed_notifications(client, ids, start, end, only_zone, interval,
                                             options.samples_per_shard)
        metric_source = f"prometheus:{M_MISSED_AT if exact else M_MISSED}"
        audit = read_misses(audit_ledger, start, end) if audit_ledger else None
        for spec in members:
            per_service: dict[str, Evidence] = {}
            for service in spec.services:
                ev = evidence[(spec.id, service)]
                if ev.merged:
                    # each vantage's own cross-checks (counter vs its runs, state gauge), under its name
                    own = replace(options, min_coverage=0.0)
                    ev.notes.extend(f"vantage {vantage!r}: {item.removeprefix(service + ': ')}"
                                    for vantage, sub in ev.vantages.items()
                                    for item in service_statement(spec, service, sub, ledger, own)["review"])
                else:
                    ev.outages = bounds.get((spec.id, service), [])
                per_service[service] = ev
            if audit is None:
                customers.append(customer_statement(spec, month, per_service, ledger, misses.get(spec.id, []),
                                                    options, metric_source, exact=exact))
                continue
            legacy = audit[1].get(spec.id, []) if audit[1] is not None else None
            checks = cross_check(spec.id, audit[0].get(spec.id, []), misses.get(spec.id, []), exact, legacy, start,
                                 end, options.scrape_interval or 60.0)
            customers.append(customer_statement(spec, month, per_service, ledger, audit[0].get(spec.id, []), options,
                                                AUDIT_SOURCE, checks, exact=True))
    if not sampled:
        raise PrometheusError(f"Prometheus has no {M_UP} samples of these customers in the month at all: wrong "
                              "--prometheus, wrong tenant header, or retention does not cover the month")
    customers.sort(key=lambda c: c["customer"])
    if len(intervals) > 1:
        warnings.append(f"the zones' data have different scrape intervals: {sorted(intervals)}")
    return {
        "schema": SCHEMA,
        "month": str(month),
        # A preview is never final: its figures can still change, and --close refuses it.
        "status": "preview" if preview else "final",
        "preview_reasons": preview,
        "scrape_interval_seconds": min(intervals) if intervals else given.scrape_interval,
        "min_coverage_ratio": options.min_coverage,
        "bounds_source": "ledger" if outage_ledger else "prometheus",
        "exclusions": {"source": ledger.source, "sha256": ledger.sha256,
                       "unreported_outages_not_counted": ledger.policy.unreported_outages_not_counted},
        "warnings": warnings + list(client.warnings),
        "customers": customers,
        "review": [f"{c['customer']}: {item}" for c in customers for item in c["review"]],
    }


def _check_retention(client: PrometheusClient, start: int, end: int, allow_incomplete: bool) -> bool:
    """Refuse a month Prometheus does not hold from its first hour: that would read as a silent 100%.
    (A month with no samples at all is refused after the coverage query, which counts them anyway.)"""
    first = client.vector(f"count(count_over_time({M_OUTAGE}[3600s] @ {start + 3600}))", end)
    if not first and not allow_incomplete:
        raise PrometheusError(f"Prometheus has no {M_OUTAGE} samples in the month's first hour: its retention (or "
                              "the exporter's history) does not cover the whole month; --allow-incomplete to "
                              "report anyway (missing time then counts as unknown and is flagged)")
    return bool(first)
