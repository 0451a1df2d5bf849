"""Figures and credits of one month: evidence + exclusions → a statement (threenines.report.schema).

Billing figures: raw outage seconds are the per customer/service counter's exact increase in the month;
excluded seconds are the part of the outage bounds (merged over targets) inside merged exclusion windows,
assigned to one reason each in the order of REASONS so no second is excluded twice; counted = raw − excluded.
Unknown seconds (exporter-reported plus scrape gaps) are not outage; a month whose coverage is below the
threshold is flagged for review. Every disagreement between counters, bounds and state gauges beyond one
scrape interval is listed under `review`, never silently resolved.

With the exporter's delivery ledger, the notification credits list each outage's deliveries per designated contact
(delivery_section): when each channel accepted it and its receipt, or that it was never delivered and why.

Two sections say what the billing figures rest on: a power outage decided by the blackout rule lists the UPSes
and last words it was inferred from (`inferred_from`, and a review item), and a customer with application checks
gets an `applications` section: each application outage set against the customer's connectivity during it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from zoneinfo import ZoneInfo

from threenines.config.exclusions import REASONS, Exclusions
from threenines.intervals import Interval, clip, intersect, measure, merge, subtract
from threenines.ledgers.audit import Miss
from threenines.ledgers.delivery import Delivery
from threenines.report.collect import Evidence, Outage, RepeatedMiss, UnowedMiss
from threenines.report.inference import Inference
from threenines.report.months import Month, budget_seconds
from threenines.report.schema import (
    ApplicationOutageLine,
    ApplicationsSection,
    ContactDeliveryLine,
    CustomerStatement,
    ExclusionLine,
    InferredEvidence,
    NotificationCredits,
    OutageDeliveries,
    OutageLine,
    ServiceStatement,
    Span,
)


@dataclass(frozen=True)
class CustomerSpec:
    id: str
    name: str
    timezone: str
    objective: float
    services: tuple[str, ...]  # the billed services ("application" only with applications_billable)
    applications: bool = False  # the customer has application checks (listed whether billed or not)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class Options:
    scrape_interval: float | None = None  # None: learned from the data (report.build.learn_scrape_interval)
    min_coverage: float = 0.99
    samples_per_shard: int = 10_000_000  # month-long queries are split by customer into shards of this size


def _r(value: float) -> float:
    return round(value, 3) + 0.0  # + 0.0 turns -0.0 into 0.0 so hashes are stable


def _iso(ts: float, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, zone).isoformat()


def _edge_shift(outages: Sequence[Outage], edge: float) -> float:
    """Outage seconds before `edge` of runs that were still pending there (first failed before it, determined
    after it): the exporter's counters add them at determination, so they are on the wrong side of the edge in
    `counter @ edge` differences. Billing uses the pieces and never needs this; the counter cross-check does."""
    return measure(clip((p for o in outages if o.determined and o.start < edge < o.determined
                         for p in o.outage_pieces()), (float("-inf"), edge)))


def service_statement(spec: CustomerSpec, service: str, ev: Evidence, ledger: Exclusions, options: Options,
                      inferred: Sequence[Inference] = ()) -> ServiceStatement:
    """One service's month. `inferred`: the blackout rule's episodes for this customer's power (report.inference),
    listed on the outages they decided; every such outage gets a review item."""
    window: Interval = (ev.start, ev.end)
    length = ev.end - ev.start
    zone = spec.zone
    interval = options.scrape_interval or 60.0  # build_statement always sets it (learned from the data)
    # What was outage, second by second: the targets' outage pieces (runs minus time without evidence),
    # merged over the service's targets and cut at the month's edges. A run that began before local midnight
    # on the 1st gives its earlier seconds to the earlier month, however late it was determined.
    pieces = clip((p for o in ev.outages for p in o.outage_pieces()), window)
    windows: dict[str, list[Interval]] = {reason: [] for reason in REASONS}
    ids: dict[str, list[tuple[str, Interval]]] = {reason: [] for reason in REASONS}
    for ex, occ in ledger.windows(spec.id, service, window, zone):
        windows[ex.reason].append(occ)
        ids[ex.reason].append((ex.id, occ))
    unreported: list[Span] = []
    if ledger.policy.unreported_outages_not_counted:
        for start, end in merge((o.start, o.end) for o in ev.outages):
            report = ledger.reported(spec.id, service, start)
            if report is None:
                windows["unreported"].append((start, end))
                unreported.append(Span(_iso(start, zone), _iso(end, zone)))
    excluded: dict[str, float] = {}
    remaining = pieces
    excluded_spans: dict[str, list[Interval]] = {}
    for reason in REASONS:
        hit = intersect(remaining, windows[reason])  # only seconds that were outage can be excluded
        excluded_spans[reason] = hit
        excluded[reason] = _r(measure(hit))
        remaining = subtract(remaining, hit)
    excluded_total = sum(excluded.values())
    # Without outage runs (nothing to place) the counter is the figure; with them the pieces are, and the
    # counter is their cross-check below. Both are exact; they differ only by runs pending at an edge.
    bounded = measure(pieces)
    raw = bounded if ev.outages else ev.outage_counter
    counted = measure(remaining) if ev.outages else max(0.0, raw - excluded_total)
    unknown = ev.unknown_counter + ev.gap_seconds
    coverage = 1.0 - unknown / length if length else 0.0
    availability = 1.0 - counted / length if length else 0.0
    budget = budget_seconds(ev.start, ev.end, spec.objective)
    met = counted <= budget + 1e-9

    review: list[str] = [f"{service}: {note}" for note in ev.notes]
    if not ev.has_data:
        review.append(f"{service}: Prometheus has no outage counter for this service in the month")
    if coverage < options.min_coverage:
        review.append(f"{service}: coverage {coverage:.4%} is below {options.min_coverage:.2%} "
                      f"({_r(unknown)} s unknown): review before billing")
    if ev.has_data and not ev.merged:  # a merge of vantages is cross-checked per vantage (report.build)
        expected = bounded + _edge_shift(ev.outages, ev.start) - _edge_shift(ev.outages, ev.end)
        if abs(expected - ev.outage_counter) > interval:
            review.append(f"{service}: outage counter says {_r(ev.outage_counter)} s but the outage runs say "
                          f"{_r(bounded)} s in the month ({_r(expected)} s as the counter counts runs pending at a "
                          "month edge): a counter/bounds disagreement")
    inexact = [o for o in ev.outages if not o.end_exact and not o.open]
    if inexact:
        review.append(f"{service}: {len(inexact)} outage(s) with bounds known only to scrape resolution "
                      f"(first at {_iso(min(o.start for o in inexact), zone)})")
    down_by_gauge = ev.down_samples * interval
    determined = intersect(pieces, [(o.determined, o.end) for o in ev.outages if o.determined])
    tolerance = interval * (1 + len(ev.outages))
    # Samples Prometheus never took can hide down time from the gauge, never add to it.
    unsampled = max(0.0, length - ev.samples * interval)
    if not ev.merged and not -tolerance <= measure(determined) - down_by_gauge <= tolerance + unsampled:
        review.append(f"{service}: state gauge shows {_r(down_by_gauge)} s down, the determined outages "
                      f"{_r(measure(determined))} s (tolerance {_r(tolerance)} s)")
    lines = [_outage(o, window, excluded_spans, ids, zone) for o in sorted(ev.outages, key=_order)]
    if service == "power" and inferred:
        lines, notes = _inferred(lines, inferred, zone, interval)
        review += notes
    return ServiceStatement(
        service=service,
        raw_outage_seconds=_r(raw),
        counter_outage_seconds=_r(ev.outage_counter),
        excluded_seconds=excluded,
        excluded_total_seconds=_r(excluded_total),
        counted_outage_seconds=_r(counted),
        unknown_seconds=_r(unknown),
        unknown_gap_seconds=_r(ev.gap_seconds),
        coverage_ratio=round(coverage, 6),
        availability_ratio=round(availability, 6),
        availability_percent=round(100 * availability, 4),
        objective_met=met,
        budget_used_minutes=_r(counted / 60),
        rent_waived=not met,
        outages=lines,
        exclusions=sorted((ExclusionLine(ident, reason, _iso(s, zone), _iso(e, zone))
                           for reason in REASONS for ident, (s, e) in ids[reason]),
                          key=lambda x: (x.start, x.id)),
        unreported_outages=unreported,
        review=review,
    )


def _inferred(lines: list[OutageLine], episodes: Sequence[Inference], zone: ZoneInfo, interval: float
              ) -> tuple[list[OutageLine], list[str]]:
    """The power outage lines with the blackout-rule episodes that decided them, and the review items: an
    interruption that rests on inference is billed like any power outage (the contract's mains AND UPS without
    power, from the first evaluation that had the whole evidence) but is never an invisible default.

    An episode belongs to an outage it overlaps: from its moment (or its first scrape, if earlier) to one scrape
    after its last (the gauge goes when the devices answer again, the outage ends at that evaluation)."""
    out: list[OutageLine] = []
    used: set[Inference] = set()
    review: list[str] = []
    for line in lines:
        mine = [e for e in episodes if min(e.since, e.first_seen) <= line.end_unix
                and line.start_unix <= e.last_seen + interval]
        if not mine:
            out.append(line)
            continue
        used.update(mine)
        items = [InferredEvidence(e.device, e.evidence, _iso(e.since, zone), _r(e.since), _iso(e.first_seen, zone),
                                  _iso(e.last_seen, zone)) for e in mine]
        out.append(replace(line, inferred_from=items))
        earliest = min(e.since for e in mine)
        said = "; ".join(f"UPS {e.device} said {e.evidence}, without output from {_iso(e.since, zone)}" for e in mine)
        review.append(f"power: outage {line.start} – {line.end} rests on inference (the blackout rule, docs/power.md): "
                      f"{said}; then it and every PDU it feeds went silent. Billed from the first evaluation with "
                      f"the whole evidence ({line.start}, {_r(line.start_unix - earliest)} s after the rule's "
                      "moment): review the evidence before billing")
    for e in episodes:
        if e not in used:
            review.append(f"power: the blackout rule held UPS {e.device} without output ({e.evidence}) from "
                          f"{_iso(e.since, zone)} (seen {_iso(e.first_seen, zone)} – {_iso(e.last_seen, zone)}) but "
                          "no power outage of the month rests on it (shorter than the determination, or outside "
                          "the month's outages): review")
    return out, review


def application_section(spec: CustomerSpec, app: Evidence, connectivity: Evidence | None,
                        connectivity_unknown: Sequence[Interval]) -> ApplicationsSection:
    """The customer's application outages, each set against its connectivity (docs/report.md, "Applications").

    The contract excludes the customer's own applications from the provider's outage time, so these are billed
    only with `applications_billable` (then through the "application" service's own figures and exclusions).
    Each outage second is one of: inside the connectivity outage (the ports were down: billed as connectivity,
    the application outage is its consequence), the ports answered (connectivity up: evidence that the fault is
    the customer's, for a customer_fault exclusion), or connectivity unknown (no evidence either way). A partial
    overlap is split, to the second, and its classification says it is partial."""
    zone = spec.zone
    window: Interval = (app.start, app.end)
    down = merge(p for o in (connectivity.outages if connectivity else []) for p in o.outage_pieces())
    billable = "application" in spec.services
    lines: list[ApplicationOutageLine] = []
    totals: dict[str, list[Interval]] = {"answered": [], "inside": [], "unknown": []}
    review: list[str] = []
    for o in sorted(app.outages, key=_order):
        pieces = clip(o.outage_pieces(), window)
        inside = intersect(pieces, down)
        rest = subtract(pieces, inside)
        unknown = intersect(rest, connectivity_unknown) if connectivity is not None else rest
        answered = subtract(rest, unknown)
        for name, part in (("answered", answered), ("inside", inside), ("unknown", unknown)):
            totals[name] += part
        seconds, a, i, u = measure(pieces), measure(answered), measure(inside), measure(unknown)
        if not seconds:
            classification = "outside month"
        elif a == seconds:
            classification = "customer_fault evidence"
        elif i == seconds:
            classification = "inside connectivity outage"
        elif u == seconds:
            classification = "connectivity unknown"
        elif i:
            classification = "partly inside connectivity outage"
        else:
            classification = "partly customer_fault evidence"
        line = ApplicationOutageLine(
            check=o.target, start=_iso(o.start, zone), end=_iso(o.end, zone), start_unix=o.start, end_unix=o.end,
            determined=_iso(o.determined, zone) if o.determined else None, seconds_in_month=_r(seconds),
            ports_answered_seconds=_r(a), inside_connectivity_outage_seconds=_r(i),
            connectivity_unknown_seconds=_r(u), classification=classification, billed=billable and seconds > 0,
            end_exact=o.end_exact, open=o.open, source=o.source)
        lines.append(line)
        if billable and a:
            review.append(f"application: {o.target} outage {line.start} – {line.end}: the ports answered for "
                          f"{_r(a)} s of its {_r(seconds)} s: evidence for a customer_fault exclusion (billed "
                          "until the exclusions ledger says so)")
    every = clip((p for o in app.outages for p in o.outage_pieces()), window)
    return ApplicationsSection(
        billable=billable, outage_seconds=_r(measure(every)),
        ports_answered_seconds=_r(measure(totals["answered"])),
        inside_connectivity_outage_seconds=_r(measure(totals["inside"])),
        connectivity_unknown_seconds=_r(measure(totals["unknown"])), outages=lines, review=review)


def _order(outage: Outage) -> tuple[float, str]:
    return (outage.start, outage.target)


def _outage(o: Outage, window: Interval, excluded: dict[str, list[Interval]],
            ids: dict[str, list[tuple[str, Interval]]], zone: ZoneInfo) -> OutageLine:
    inside = clip(o.outage_pieces(), window)
    per_reason = {r: _r(measure(intersect(inside, spans))) for r, spans in excluded.items()}
    per_reason = {r: v for r, v in per_reason.items() if v}
    seconds = measure(inside)
    if not seconds:
        classification = "outside month"
    elif not per_reason:
        classification = "counted"
    elif sum(per_reason.values()) >= seconds:
        classification = "excluded: " + ", ".join(per_reason)
    else:
        classification = "partly excluded: " + ", ".join(per_reason)
    refs = sorted({ident for spans in ids.values() for ident, occ in spans if intersect(inside, [occ])})
    return OutageLine(
        target=o.target, start=_iso(o.start, zone), end=_iso(o.end, zone), start_unix=o.start, end_unix=o.end,
        determined=_iso(o.determined, zone) if o.determined else None,
        seconds_in_month=_r(seconds), excluded_seconds=per_reason, classification=classification,
        exclusion_ids=refs, end_exact=o.end_exact, open=o.open, source=o.source,
    )


def notification_credits(spec: CustomerSpec, month: Month, misses: Sequence[tuple[float, float]], source: str,
                         exact: bool) -> NotificationCredits:
    """Days (contract calendar) with at least one missed deadline; one deduction per day at most.

    Exact misses are the instants the deadlines passed, each on the day [00:00, 24:00) that holds it; the
    fallback (an older exporter) has only the scrape that saw the counter rise, in (previous scrape, t]."""
    days = month.days(spec.zone)
    hit: dict[str, float] = {}
    for t, count in misses:
        for name, start, end in days:
            if (start <= t < end) if exact else (start < t <= end):
                hit[name] = hit.get(name, 0) + count
    return NotificationCredits(missed_deadlines=_r(sum(hit.values())), days=sorted(hit), deduction_days=len(hit),
                               source=source, exact=exact)


def unowed_miss_review(spec: CustomerSpec, miss: UnowedMiss, policy: str) -> str:
    """The review item of a missed deadline that is not billed (report.collect.owed_misses): it never vanishes."""
    zone = spec.zone
    up = ", ".join(repr(v) for v in miss.saw_up) or "none"
    return (f"notifications: the deadline of {miss.service} {miss.target} missed at {_iso(miss.instant, zone)} is not "
            f"billed: the vantages' merged evidence (merge: {policy}) has no outage of {miss.target} from "
            f"{_iso(miss.since, zone)} to it (vantages that saw it up: {up}), so no unavailability was determined "
            "and no notification was owed; one replica's own determination recorded it")


def repeated_miss_review(spec: CustomerSpec, miss: RepeatedMiss, policy: str) -> str:
    """The review item of a replica's missed deadline counted as an earlier miss of the same merged outage
    (report.collect.owed_misses): billed once, and the second instant still shown."""
    zone = spec.zone
    return (f"notifications: the deadline of {miss.service} {miss.target} missed at {_iso(miss.instant, zone)} is "
            f"the miss at {_iso(miss.kept, zone)} again: both fall in one merged outage of {miss.target} "
            f"(merge: {policy}, {_iso(miss.outage[0], zone)} – {_iso(miss.outage[1], zone)}), billed once at the "
            "earliest; the replicas keyed it by their own determinations (they did not learn each other's)")


def delivery_section(spec: CustomerSpec, deliveries: Sequence[Delivery], misses: Sequence[Miss] = ()
                     ) -> list[OutageDeliveries] | None:
    """Each outage's notification per designated contact, from the delivery ledger (`deliveries`: this customer's
    notices of the outages the month reports) and the audit ledger's missed deadlines (`misses`, those counted in
    the month): an outage is notified when every contact's channel accepted its firing notice, at the latest
    acceptance. A miss without any notice (nothing reached the exporter: `not_notified`) is listed too, with no
    contact: the deduction it causes says why. None when there is nothing to list (the section is left out)."""
    zone = spec.zone
    by_outage: dict[tuple[str, str, str, float], list[Delivery]] = {}
    for d in deliveries:
        by_outage.setdefault(d.outage, []).append(d)
    missed = {m.outage: m for m in misses}
    out = []
    for key in sorted(set(by_outage) | set(missed), key=lambda k: (k[3], k[1], k[2])):
        _, service, target, determined = key
        rows = by_outage.get(key, [])
        firing = [d for d in rows if d.event == "firing"]
        accepted = [d.accepted_at for d in firing if d.accepted_at is not None]
        delivered = max(accepted) if firing and len(accepted) == len(firing) else None
        miss = missed.get(key)
        out.append(OutageDeliveries(
            service=service, target=target, determined=_iso(determined, zone), determined_unix=determined,
            delivered_at=_iso(delivered, zone) if delivered is not None else None,
            delay_seconds=_r(delivered - determined) if delivered is not None else None,
            missed=miss.reason if miss else None, missed_at=_iso(miss.deadline_at, zone) if miss else None,
            contacts=[ContactDeliveryLine(
                event=d.event, channel=d.channel, contact=d.contact, contact_version=d.contact_version,
                first_attempt=_iso(d.first_attempt_at, zone) if d.first_attempt_at is not None else None,
                accepted_at=_iso(d.accepted_at, zone) if d.accepted_at is not None else None,
                accepted_at_unix=_r(d.accepted_at) if d.accepted_at is not None else None,
                delay_seconds=_r(d.delay) if d.delay is not None else None, receipt=d.receipt, attempts=d.attempts,
                state=d.state, last_failure=f"{d.last_reason}: {d.last_detail}" if d.last_reason else None)
                for d in rows]))
    return out or None


def customer_statement(spec: CustomerSpec, month: Month, evidence: dict[str, Evidence], ledger: Exclusions,
                       misses: Sequence[tuple[float, float]], options: Options,
                       misses_source: str = "prometheus:threenines_notification_deadline_missed_total",
                       notification_review: Sequence[str] = (), exact: bool = False,
                       inferred: Sequence[Inference] = (), applications: ApplicationsSection | None = None,
                       deliveries: list[OutageDeliveries] | None = None) -> CustomerStatement:
    """One customer's month. `inferred`: its power's blackout-rule episodes (report.inference); `applications`:
    its application section (application_section), for a customer with application checks; `deliveries`: its
    outages' deliveries per contact (delivery_section)."""
    start, end = month.window(spec.zone)
    services = [service_statement(spec, s, evidence[s], ledger, options, inferred if s == "power" else ())
                for s in spec.services]
    notification = replace(notification_credits(spec, month, misses, misses_source, exact), deliveries=deliveries)
    return CustomerStatement(
        customer=spec.id, name=spec.name, timezone=spec.timezone, month=str(month),
        start=_iso(start, spec.zone), end=_iso(end, spec.zone), start_unix=start, end_unix=end,
        seconds_in_month=end - start, minutes_in_month=_r((end - start) / 60),
        objective_ratio=spec.objective,
        budget_minutes=_r(budget_seconds(start, end, spec.objective) / 60),
        services=services,
        notification=notification,
        review=[item for s in services for item in s.review] + list(notification_review)
        + (applications.review if applications else []),
        applications=applications,
    )


def cross_check(customer: str, ledger: Sequence[tuple[float, float]], metric: Sequence[tuple[float, float]],
                metric_exact: bool, dispatched: Sequence[float] | None, start: int, end: int,
                scrape_interval: float) -> list[str]:
    """Review items when the audit ledger and the metrics disagree about the month's missed deadlines.

    The exporter decides a miss when an outage's deadline passes without a first dispatch, writes it to the audit
    ledger with that instant and exports the same instant per target
    (`threenines_notification_deadline_missed_timestamp_seconds`): both sources give the same misses at the same
    instants by construction, and any difference goes to review (a ledger from another exporter, a lost scrape
    window). A ledger older than its `misses` table has only late first dispatches (`dispatched`, their arrival
    times), compared with the counter's rises, give or take the dispatches a scrape interval from an edge.
    """
    if dispatched is None and metric_exact:
        mine, theirs = sorted(t for t, _ in ledger), sorted(t for t, _ in metric)
        if mine != theirs:
            return [f"notifications: the audit ledger has {len(mine)} missed deadline(s) in the month, "
                    f"threenines_notification_deadline_missed_timestamp_seconds{{customer=\"{customer}\"}} shows "
                    f"{len(theirs)} (instants differ: {sorted(set(mine) ^ set(theirs))[:5]}): check the ledger file "
                    "and the exporter that wrote it"]
        return []
    late = dispatched or []
    inside = [t for t in late if start < t <= end]
    near_edge = sum(1 for t in late if abs(t - start) <= scrape_interval or abs(t - end) <= scrape_interval)
    by_metric = sum(count for _, count in metric)
    by_ledger = len(inside) if dispatched is not None else sum(count for _, count in ledger)
    if abs(by_ledger - by_metric) > near_edge:
        return [f"notifications: the audit ledger has {by_ledger:g} late first dispatch(es) in the month, "
                f"threenines_notification_deadline_missed_total{{customer=\"{customer}\"}} rose by {by_metric:g}: "
                "check the ledger file and the exporter that wrote it"]
    return []
