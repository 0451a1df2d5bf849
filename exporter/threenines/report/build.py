"""One month's statement for a fleet: group customers by contract zone (one month window per zone), collect
evidence with a handful of fleet-wide queries per zone, and assemble the per-customer statements."""

from __future__ import annotations

import glob
import itertools
import re
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from threenines.config.exclusions import Exclusions
from threenines.config.inventory import Inventory
from threenines.intervals import Interval, clip
from threenines.ledgers.audit import AuditLedgerReader, Miss
from threenines.ledgers.delivery import Delivery, DeliveryLedgerReader
from threenines.report.applications import connectivity_unknown
from threenines.report.collect import (
    M_MISSED,
    M_MISSED_AT,
    M_OUTAGE,
    M_UP,
    SAME_MISS,
    Evidence,
    Key,
    MissKey,
    Outage,
    RepeatedMiss,
    UnowedMiss,
    blind_spots,
    exact_selector,
    leaves,
    merge_vantages,
    missed_notifications,
    notification_deadlines,
    outages_from_ledger,
    outages_from_prometheus,
    owed_misses,
    service_evidence,
)
from threenines.report.inference import power_inferences
from threenines.report.months import Month
from threenines.report.promclient import PrometheusClient, PrometheusError, parallel
from threenines.report.schema import SCHEMA, CustomerStatement, ExclusionsSource, OutageDeliveries, Statement
from threenines.report.statement import (
    CustomerSpec,
    Options,
    application_section,
    cross_check,
    customer_statement,
    delivery_section,
    repeated_miss_review,
    service_statement,
    unowed_miss_review,
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
                    options: Options, outage_ledger: str | Path | Mapping[str, Path] | None = None,
                    now: float | None = None,
                    allow_incomplete: bool = False, audit_ledger: str | Path | None = None,
                    delivery_ledger: str | Path | None = None) -> Statement:
    """The month's statement. `options.scrape_interval` None: learned from the data (a given value that the
    data contradicts is replaced by the data's, with a warning). A month that is not over, or not retained
    from its first hour, is only ever a preview (allow_incomplete), marked as such, and never closed.
    `outage_ledger`: one exporter's ledger (a path), or one per vantage ({vantage: path}, resolve_ledgers).
    `delivery_ledger`: an exporter's delivery.sqlite, whose deliveries per contact the notification credits list
    (with `audit_ledger`, each outage's missed deadline and its reason beside them)."""
    now = time.time() if now is None else now
    ledgers = ({"": Path(outage_ledger)} if isinstance(outage_ledger, str | Path)
               else dict(outage_ledger) if outage_ledger else {})
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
        bounds = (outages_from_ledgers(ledgers, evidence, start, end, now) if ledgers
                  else outages_from_prometheus(client, evidence, start, end, interval))
        # Replica exporters: merge each service's vantages by the contract's rule (contract/vantages.py), whether
        # their runs come from Prometheus or from one outage ledger per vantage (each tagged with its vantage).
        blind = blind_spots(client, evidence, start, end, interval)
        evidence = {key: merge_vantages(ev, bounds.get(key, []), blind.get(key, {}), ledger.policy.merge)
                    if ev.vantages else replace(ev, outages=bounds.get(key, [])) for key, ev in evidence.items()}
        misses, exact, per_target = missed_notifications(client, ids, start, end, only_zone, interval,
                                                         options.samples_per_shard)
        metric_source = f"prometheus:{M_MISSED_AT if exact else M_MISSED}"
        audit = audit_misses(audit_ledger, start, end) if audit_ledger else None
        # With replica exporters a miss counts only where the merge had an outage to notify, and once per run of
        # merged outage (owed_misses); the cross-check below still compares the two sources whole.
        merged = {key for key, ev in evidence.items() if ev.merged}
        if audit is None:
            checked = {key: found for key, found in per_target.items() if key[:2] in merged}
            deadline = notification_deadlines(client, sorted({key[0] for key in checked}), start, end) if checked \
                else {}
            to_check = {key: [(m, deadline.get(key[0])) for m in found] for key, found in checked.items()}
        else:
            to_check = {key: found for key, found in _audit_miss_deadlines(audit_ledger, start, end).items()
                        if key[:2] in merged} if audit_ledger and merged else {}
        unowed: dict[str, list[UnowedMiss]] = defaultdict(list)
        repeated: dict[str, list[RepeatedMiss]] = defaultdict(list)
        not_owed, again = owed_misses(evidence, blind, ledger.policy.merge, to_check)
        for miss in not_owed:
            unowed[miss.customer].append(miss)
        for once in again:
            repeated[once.customer].append(once)
        inferred = power_inferences(client, [m.id for m in members if "power" in m.services], start, end, interval,
                                    only_zone, options.samples_per_shard)
        conn_unknown = _connectivity_unknown(client, members, evidence, interval)
        notified = (deliveries_of_month(delivery_ledger, audit_ledger, members, start, end) if delivery_ledger
                    else {})
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
            dropped = [*(miss.instant for miss in unowed.get(spec.id, [])),
                       *(once.instant for once in repeated.get(spec.id, []))]
            unbilled = [*(unowed_miss_review(spec, miss, ledger.policy.merge) for miss in unowed.get(spec.id, [])),
                        *(repeated_miss_review(spec, once, ledger.policy.merge) for once in repeated.get(spec.id, []))]
            if audit is None:
                customers.append(customer_statement(spec, month, per_service, ledger,
                                                    _without(misses.get(spec.id, []), dropped), options,
                                                    metric_source, unbilled, exact=exact, inferred=mine,
                                                    applications=apps, deliveries=notified.get(spec.id)))
                continue
            legacy = audit[1].get(spec.id, []) if audit[1] is not None else None
            checks = cross_check(spec.id, audit[0].get(spec.id, []), misses.get(spec.id, []), exact, legacy, start,
                                 end, options.scrape_interval or 60.0)
            customers.append(customer_statement(spec, month, per_service, ledger,
                                                _without(audit[0].get(spec.id, []), dropped), options,
                                                AUDIT_SOURCE, [*checks, *unbilled], exact=True, inferred=mine,
                                                applications=apps, deliveries=notified.get(spec.id)))
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
        bounds_source="ledger" if ledgers else "prometheus",
        exclusions=ExclusionsSource(ledger.source, ledger.sha256, ledger.policy.unreported_outages_not_counted),
        warnings=warnings + list(client.warnings),
        customers=customers,
        review=[f"{c.customer}: {item}" for c in customers for item in c.review],
    )


_NAMED = re.compile(r"^([^=/]+)=(.+)$")  # VANTAGE=PATH; a vantage name has no "/" (an instance may have ":")


def resolve_ledgers(values: Sequence[str]) -> dict[str, Path]:
    """`--ledger` values (each `[VANTAGE=]PATH`, PATH may be a glob) -> {vantage: path}.

    One ledger without a name is the one exporter's record: its vantage is "" (whatever Prometheus calls the
    only exporter of a service). Several ledgers are one per vantage: a name given with `VANTAGE=`, else the
    name of the ledger's directory (`ledgers/a/outages.sqlite` is vantage `a`), which is how a glob such as
    `'ledgers/*/outages.sqlite'` names them. Two ledgers for one vantage, or a glob matching nothing, is an error
    naming the flag and the fix."""
    found: list[tuple[str | None, Path, str]] = []
    for value in values:
        named = _NAMED.match(value)
        name, pattern = (named.group(1), named.group(2)) if named else (None, value)
        if glob.has_magic(pattern):
            paths = sorted(glob.glob(pattern))
            if not paths:
                raise ValueError(f"--ledger {value}: the pattern matches no file")
            if name is not None and len(paths) > 1:
                raise ValueError(f"--ledger {value}: one vantage name for {len(paths)} files ({', '.join(paths)}); "
                                 "name each: --ledger NAME=PATH")
            found += [(name, Path(p), value) for p in paths]
        else:
            found.append((name, Path(pattern), value))
    if len(found) == 1 and found[0][0] is None:
        return {"": found[0][1]}
    out: dict[str, Path] = {}
    for name, path, value in found:
        vantage = name if name is not None else path.resolve().parent.name
        if vantage in out:
            raise ValueError(f"--ledger {value}: two ledgers for vantage {vantage!r} ({out[vantage]} and {path}); "
                             "one ledger per vantage, named by its directory or with --ledger VANTAGE=PATH")
        out[vantage] = path
    return out


def outages_from_ledgers(ledgers: Mapping[str, Path], evidence: Mapping[Key, Evidence], start: int, end: int,
                         now: float | None = None) -> dict[Key, list[Outage]]:
    """Each service's outage runs from the ledger of each vantage that exports it, tagged with that vantage, so
    that merge_vantages applies the contract's rule to them exactly as to Prometheus' runs. The vantages'
    no-evidence time still comes from Prometheus (report.collect.blind_spots): a ledger does not record when
    its exporter was down outside an outage. ValueError when a vantage of a service has no ledger, or a named
    ledger matches no vantage Prometheus knows (a misnamed directory would otherwise drop its runs)."""
    read = {vantage: outages_from_ledger(path, start, end, now) for vantage, path in ledgers.items()}
    if set(read) == {""}:  # one exporter's record
        only = read[""]
        several = sorted(key for key, ev in evidence.items() if ev.vantages and only.get(key))
        if several:
            customer, service = several[0]
            raise ValueError(f"--ledger {ledgers['']}: one exporter's ledger, but {customer}/{service} has vantages "
                             f"{', '.join(evidence[several[0]].vantages)} in Prometheus (replica exporters): pass "
                             "each vantage's ledger, --ledger VANTAGE=PATH (repeatable)")
        return only
    known = {v for ev in evidence.values() for v in ([*ev.vantages] if ev.vantages else [ev.vantage])}
    stray = sorted(set(read) - known)
    if stray:
        raise ValueError(f"--ledger {ledgers[stray[0]]}: vantage {stray[0]!r} is not one Prometheus knows "
                         f"({', '.join(sorted(v for v in known if v)) or 'none'}): name it, --ledger VANTAGE=PATH")
    out: dict[Key, list[Outage]] = defaultdict(list)
    for key, ev in evidence.items():
        vantages = list(ev.vantages) if ev.vantages else [ev.vantage] if ev.vantage else list(read)
        missing = [v for v in vantages if v not in read]
        if missing:
            raise ValueError(f"{key[0]}/{key[1]}: no --ledger for vantage {missing[0]!r} (given: "
                             f"{', '.join(sorted(read))}): pass one ledger per vantage, --ledger VANTAGE=PATH")
        for vantage in vantages:
            out[key] += [replace(o, vantage=vantage) for o in read[vantage].get(key, [])]
    return out


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


# How long before the month an outage can be determined and still have its deadline (and so its miss) in the month:
# far beyond any notification deadline (15 minutes in the contract).
DELIVERY_LOOKBACK = 86400


def deliveries_of_month(delivery_ledger: str | Path, audit_ledger: str | Path | None, members: list[CustomerSpec],
                        start: int, end: int) -> dict[str, list[OutageDeliveries]]:
    """Per customer, the deliveries of the outages determined in [start, end), and of those determined before
    whose missed deadline the audit ledger counts in the month (with the miss and its reason)."""
    ids = {m.id for m in members}
    month_misses: list[Miss] = []
    if audit_ledger:
        with AuditLedgerReader(audit_ledger) as audit:
            month_misses = [m for m in audit.misses(start, end) if m.customer in ids]
    missed = {m.outage for m in month_misses}
    with DeliveryLedgerReader(delivery_ledger) as book:
        rows = book.deliveries(start - DELIVERY_LOOKBACK, end, customers=ids)
    mine: dict[str, list[Delivery]] = defaultdict(list)
    for d in rows:
        if d.determined_at >= start or d.outage in missed:
            mine[d.customer].append(d)
    out: dict[str, list[OutageDeliveries]] = {}
    for spec in members:
        section = delivery_section(spec, mine.get(spec.id, []), [m for m in month_misses if m.customer == spec.id])
        if section is not None:
            out[spec.id] = section
    return out


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


def _audit_miss_deadlines(path: str | Path, start: int, end: int) -> dict[MissKey, list[tuple[float, float | None]]]:
    """The audit ledger's misses in [start, end) per target, each with its own deadline (deadline_at − determined_at,
    exact: the row says both); none for a ledger older than its `misses` table (no targets to check)."""
    out: dict[MissKey, list[tuple[float, float | None]]] = defaultdict(list)
    with AuditLedgerReader(path) as audit:
        for miss in audit.misses(start, end):
            out[(miss.customer, miss.service, miss.target)].append(
                (float(miss.deadline_at), float(miss.deadline_at) - float(miss.determined_at)))
    return out


def _without(misses: list[tuple[float, float]], dropped: list[float]) -> list[tuple[float, float]]:
    """A customer's misses less one entry per instant not billed (owed_misses: each is one of them)."""
    out = list(misses)
    for instant in dropped:
        at = next((i for i, (t, _) in enumerate(out) if abs(t - instant) < SAME_MISS), None)
        if at is not None:
            del out[at]
    return out


def _check_retention(client: PrometheusClient, start: int, end: int, allow_incomplete: bool) -> bool:
    """Refuse a month Prometheus does not hold from its first hour: that would read as a silent 100%.
    (A month with no samples at all is refused after the coverage query, which counts them anyway.)"""
    first = client.vector(f"count(count_over_time({M_OUTAGE}[3600s] @ {start + 3600}))", end)
    if not first and not allow_incomplete:
        raise PrometheusError(f"Prometheus has no {M_OUTAGE} samples in the month's first hour: its retention (or "
                              "the exporter's history) does not cover the whole month; --allow-incomplete to "
                              "report anyway (missing time then counts as unknown and is flagged)")
    return bool(first)
