"""The exclusions ledger (exclusions.yml): agreed maintenance, customer faults, force majeure, and the
customer-report intake that the optional "unreported within 5 days" policy needs.

    exclusions:
      - id: MW-2026-10-07              # unique
        customer: acme                 # inventory customer id
        services: [connectivity]       # connectivity and/or power
        start: 2026-10-07T01:00:00+02:00   # ISO 8601 with offset (a time without offset is refused)
        end: 2026-10-07T03:00:00+02:00
        reason: maintenance            # maintenance | customer_fault | force_majeure | unreported
        reference: CHG-1042
        approved_by: ops@example.net
        rrule: FREQ=WEEKLY;BYDAY=SU;COUNT=8   # optional RFC 5545 rule; start/end are the first occurrence
    reports:                           # when the customer reported an outage (for the policy below)
      - customer: acme
        service: connectivity
        reported_at: 2026-10-09T08:00:00+02:00
        reference: TICKET-77
    policy:
      unreported_outages_not_counted: false   # the SLA's optional clause; off by default
      report_within: 5d

Recurring windows repeat in the customer's contract time zone (a 01:00 window stays at 01:00 local across a
DST change). Overlapping exclusions are merged before subtraction, so no second is excluded twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from dateutil import rrule as rrulelib

from threenines.configfile import Node, load, unique_ids
from threenines.inventory import ID_RE, ID_RULE, SERVICES
from threenines.report.intervals import Interval

REASONS = ("maintenance", "customer_fault", "force_majeure", "unreported")
MAX_OCCURRENCES = 10_000  # bounds the expansion of a rule without COUNT/UNTIL


@dataclass(frozen=True)
class Exclusion:
    id: str
    customer: str
    services: tuple[str, ...]
    start: float
    end: float
    reason: str
    reference: str
    approved_by: str
    rrule: str | None = None
    line: int = 0

    def occurrences(self, window: Interval, zone: ZoneInfo) -> list[Interval]:
        """The exclusion's intervals overlapping window (recurring ones expanded in the contract zone)."""
        lo, hi = window
        if self.rrule is None:
            return [(self.start, self.end)] if self.end > lo and self.start < hi else []
        length = self.end - self.start
        rule = rrulelib.rrulestr(self.rrule, dtstart=datetime.fromtimestamp(self.start, zone))
        out = []
        for occurrence in rule.xafter(datetime.fromtimestamp(lo - length, zone), count=MAX_OCCURRENCES, inc=True):
            # dateutil steps wall-clock time; re-attaching the zone gives each date its own UTC offset
            start = occurrence.replace(tzinfo=zone).timestamp()
            if start >= hi:
                break
            if start + length > lo:
                out.append((start, start + length))
        return out


@dataclass(frozen=True)
class CustomerReport:
    customer: str
    service: str
    reported_at: float
    reference: str


@dataclass(frozen=True)
class Policy:
    unreported_outages_not_counted: bool = False
    report_within: float = 5 * 86400


@dataclass(frozen=True)
class Ledger:
    exclusions: tuple[Exclusion, ...] = ()
    reports: tuple[CustomerReport, ...] = ()
    policy: Policy = field(default_factory=Policy)
    source: str = ""
    sha256: str = ""

    def windows(self, customer: str, service: str, window: Interval, zone: ZoneInfo
                ) -> list[tuple[Exclusion, Interval]]:
        return [(ex, occ) for ex in self.exclusions if ex.customer == customer and service in ex.services
                for occ in ex.occurrences(window, zone)]

    def reported(self, customer: str, service: str, outage_start: float) -> CustomerReport | None:
        """The first customer report within the policy's window after the outage started, if any."""
        deadline = outage_start + self.policy.report_within
        hits = [r for r in self.reports if r.customer == customer and r.service == service
                and outage_start <= r.reported_at <= deadline]
        return min(hits, key=lambda r: r.reported_at) if hits else None


def load_ledger(path: str | Path, customers: dict[str, ZoneInfo] | None = None) -> Ledger:
    """Parse exclusions.yml; customers (id → zone), when given, must contain every customer named."""
    root = load(path)
    top = root.mapping(allowed=("exclusions", "reports", "policy"))
    nodes = top["exclusions"].sequence() if "exclusions" in top else []
    exclusions = tuple(_exclusion(node, customers) for node in nodes)
    unique_ids(((ex.id, node) for ex, node in zip(exclusions, nodes, strict=True)), "exclusion")
    reports = tuple(_report(node, customers) for node in top["reports"].sequence()) if "reports" in top else ()
    policy = _policy(top["policy"]) if "policy" in top else Policy()
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return Ledger(exclusions, reports, policy, str(path), digest)


def _time(node: Node) -> float:
    text = node.raw
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        node.fail(f"{text!r} is not an ISO 8601 time: write e.g. 2026-10-07T01:00:00+02:00")
    if value.tzinfo is None:
        node.fail(f"{text!r} has no UTC offset: add one, e.g. {text}+02:00 or {text}Z")
    return value.timestamp()


def _customer(node: Node, customers: dict[str, ZoneInfo] | None) -> str:
    ident = node.string(ID_RE, ID_RULE)
    if customers is not None and ident not in customers:
        node.fail(f"customer {ident!r} is not in the inventory")
    return ident


def _exclusion(node: Node, customers: dict[str, ZoneInfo] | None) -> Exclusion:
    f = node.mapping(allowed=("id", "customer", "services", "start", "end", "reason", "reference", "approved_by",
                              "rrule"),
                     required=("id", "customer", "services", "start", "end", "reason", "reference", "approved_by"))
    services = tuple(f["services"].string_list())
    for service in services:
        if service not in SERVICES:
            f["services"].fail(f"{service!r} is not a service: use {' and/or '.join(SERVICES)}")
    if not services:
        f["services"].fail("name at least one service")
    start, end = _time(f["start"]), _time(f["end"])
    if end <= start:
        f["end"].fail("must be after start")
    rule = None
    if "rrule" in f:
        rule = f["rrule"].string()
        try:
            rrulelib.rrulestr(rule, dtstart=datetime.fromtimestamp(start, ZoneInfo("UTC")))
        except (ValueError, TypeError) as err:
            f["rrule"].fail(f"{rule!r} is not an RFC 5545 RRULE ({err}); e.g. FREQ=WEEKLY;BYDAY=SU;COUNT=8")
    return Exclusion(
        id=f["id"].string(ID_RE, ID_RULE), customer=_customer(f["customer"], customers), services=services,
        start=start, end=end, reason=f["reason"].choice(REASONS), reference=f["reference"].string(),
        approved_by=f["approved_by"].string(), rrule=rule, line=node.line)


def _report(node: Node, customers: dict[str, ZoneInfo] | None) -> CustomerReport:
    f = node.mapping(allowed=("customer", "service", "reported_at", "reference"),
                     required=("customer", "service", "reported_at"))
    return CustomerReport(customer=_customer(f["customer"], customers), service=f["service"].choice(SERVICES),
                          reported_at=_time(f["reported_at"]),
                          reference=f["reference"].string() if "reference" in f else "")


def _policy(node: Node) -> Policy:
    f = node.mapping(allowed=("unreported_outages_not_counted", "report_within"))
    return Policy(
        unreported_outages_not_counted=f["unreported_outages_not_counted"].boolean()
        if "unreported_outages_not_counted" in f else False,
        report_within=f["report_within"].duration() if "report_within" in f else 5 * 86400)
