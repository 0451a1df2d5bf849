"""One month's statement for a fleet: group customers by contract zone (one month window per zone), collect
evidence with a handful of fleet-wide queries per zone, and assemble the per-customer statements."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

from threenines.inventory import Inventory
from threenines.report.auditledger import cross_check, read_misses
from threenines.report.collect import (
    M_OUTAGE,
    M_UP,
    Evidence,
    missed_notifications,
    outages_from_ledger,
    outages_from_prometheus,
    service_evidence,
)
from threenines.report.exclusions import Ledger
from threenines.report.months import Month
from threenines.report.promclient import PrometheusClient, PrometheusError
from threenines.report.statement import CustomerSpec, Options, customer_statement

SCHEMA = "threenines.statement/1"
AUDIT_SOURCE = "audit-ledger: first late dispatches, at determined_at + deadline"


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
    for labels, value in objectives.items():
        objective[dict(labels)["customer"]] = value
    offered: dict[str, set[str]] = defaultdict(set)
    for labels in services:
        lab = dict(labels)
        offered[lab["customer"]].add(lab["service"])
    specs = []
    for labels in info:
        lab = dict(labels)
        customer = lab["customer"]
        specs.append(CustomerSpec(customer, lab.get("name", customer), lab.get("timezone", "UTC"),
                                  objective.get(customer, 0.999), tuple(sorted(offered[customer]))))
    if not specs:
        raise PrometheusError(f"Prometheus has no threenines_customer_info series around {month}: pass --config "
                              "inventory.yml, or check that Prometheus scrapes the exporter and retains the month")
    return sorted(specs, key=lambda s: s.id)


def _utc():
    from zoneinfo import ZoneInfo

    return ZoneInfo("UTC")


def build_statement(client: PrometheusClient, month: Month, specs: list[CustomerSpec], ledger: Ledger,
                    options: Options, outage_ledger: str | Path | None = None, now: float | None = None,
                    allow_incomplete: bool = False, audit_ledger: str | Path | None = None) -> dict:
    now = time.time() if now is None else now
    by_zone: dict[str, list[CustomerSpec]] = defaultdict(list)
    for spec in specs:
        by_zone[spec.timezone].append(spec)
    only_zone = len(by_zone) > 1
    customers: list[dict] = []
    sampled = False
    for timezone, members in sorted(by_zone.items()):
        start, end = month.window(members[0].zone)
        if end > now and not allow_incomplete:
            raise PrometheusError(f"{month} in {timezone} ends at {end} (Unix), after now: a month is billed once "
                                  "it is over (--allow-incomplete for a preview)")
        _check_retention(client, start, end, allow_incomplete)
        ids = [m.id for m in members]
        evidence = service_evidence(client, [(m.id, m.services) for m in members], start, end,
                                    options.scrape_interval, only_zone, options.samples_per_shard)
        sampled = sampled or any(ev.samples for ev in evidence.values())
        bounds = (outages_from_ledger(outage_ledger, start, end) if outage_ledger
                  else outages_from_prometheus(client, evidence, start, end, options.scrape_interval))
        misses = missed_notifications(client, ids, start, end, only_zone, options.scrape_interval,
                                      options.samples_per_shard)
        audit = read_misses(audit_ledger, start, end) if audit_ledger else None
        for spec in members:
            per_service: dict[str, Evidence] = {}
            for service in spec.services:
                ev = evidence[(spec.id, service)]
                ev.outages = bounds.get((spec.id, service), [])
                per_service[service] = ev
            if audit is None:
                customers.append(customer_statement(spec, month, per_service, ledger, misses.get(spec.id, []),
                                                    options))
                continue
            checks = cross_check(spec.id, audit[1].get(spec.id, []), misses.get(spec.id, []), start, end,
                                 options.scrape_interval)
            customers.append(customer_statement(spec, month, per_service, ledger, audit[0].get(spec.id, []), options,
                                                AUDIT_SOURCE, checks))
    if not sampled:
        raise PrometheusError(f"Prometheus has no {M_UP} samples of these customers in the month at all: wrong "
                              "--prometheus, wrong tenant header, or retention does not cover the month")
    customers.sort(key=lambda c: c["customer"])
    return {
        "schema": SCHEMA,
        "month": str(month),
        "scrape_interval_seconds": options.scrape_interval,
        "min_coverage_ratio": options.min_coverage,
        "bounds_source": "ledger" if outage_ledger else "prometheus",
        "exclusions": {"source": ledger.source, "sha256": ledger.sha256,
                       "unreported_outages_not_counted": ledger.policy.unreported_outages_not_counted},
        "warnings": list(client.warnings),
        "customers": customers,
        "review": [f"{c['customer']}: {item}" for c in customers for item in c["review"]],
    }


def _check_retention(client: PrometheusClient, start: int, end: int, allow_incomplete: bool) -> None:
    """Refuse a month Prometheus does not hold from its first hour: that would read as a silent 100%.
    (A month with no samples at all is refused after the coverage query, which counts them anyway.)"""
    first = client.vector(f"count(count_over_time({M_OUTAGE}[3600s] @ {start + 3600}))", end)
    if not first and not allow_incomplete:
        raise PrometheusError(f"Prometheus has no {M_OUTAGE} samples in the month's first hour: its retention (or "
                              "the exporter's history) does not cover the whole month; --allow-incomplete to "
                              "report anyway (missing time then counts as unknown and is flagged)")
