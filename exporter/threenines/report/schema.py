"""The monthly statement, typed: what `threenines report --format json` publishes and `--close` snapshots.

The JSON is a published format (billing systems and customers read it, and a closed month's sha256 is taken
over it), so these classes are its definition: `Statement.to_dict()` gives exactly that JSON's object, the keys
in field order. A change to a field's name, type or meaning is a new SCHEMA version, documented in docs/report.md.
Each object is built whole by threenines.report.statement and threenines.report.build, never completed later.

An *optional section* (a field with `metadata=OPTIONAL`, always the last fields of its object) is left out of the
JSON while it is None: a statement with nothing to say there is byte for byte the statement of schema 1 before
the section existed, so adding one is compatible and keeps the version (closed months keep their hash).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

SCHEMA = "threenines.statement/1"
_OPTIONAL = "threenines.optional"
# field(default=None, metadata=OPTIONAL): a section present in the JSON only when it holds something (not None)
OPTIONAL = {_OPTIONAL: True}


def _plain(value: Any) -> Any:
    """dataclasses.asdict, less the optional sections that are None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not (f.metadata.get(_OPTIONAL) and getattr(value, f.name) is None)}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class InferredEvidence:
    """A UPS whose last words and then silence (its own and every PDU's it feeds) held the customer's power down:
    the blackout rule (docs/power.md), read from threenines_power_inferred_down and its since-timestamp. The
    interruption rests on this inference, not on a device that answered "no power": a reviewer checks it."""

    device: str  # the UPS
    evidence: str  # its last words: output_off | shutdown_pending | low_battery | runtime_low
    since: str  # the moment the rule holds the UPS without output (ISO 8601 in the contract zone)
    since_unix: float
    first_seen: str  # the first and last scrape that showed the inference (the exporter's evaluations)
    last_seen: str


@dataclass(frozen=True)
class OutageLine:
    """One outage run of a service (merged vantages: one connected stretch), as the statement shows it."""

    target: str  # a service's targets joined by "," when a merge of vantages covers several
    start: str  # ISO 8601 in the contract zone
    end: str
    start_unix: float
    end_unix: float
    determined: str | None  # when the outage was determined (None: not known)
    seconds_in_month: float
    excluded_seconds: dict[str, float]  # by exclusion reason, only the reasons that excluded some of it
    classification: str  # "counted" | "excluded: <reasons>" | "partly excluded: <reasons>" | "outside month"
    exclusion_ids: list[str]
    end_exact: bool  # False: the end is known to scrape resolution only
    open: bool  # still open at the end of what was read
    source: str  # "prometheus" | "ledger"
    # A power outage decided by the blackout rule: the UPSes it rests on (absent for every other outage).
    inferred_from: list[InferredEvidence] | None = field(default=None, metadata=OPTIONAL)


@dataclass(frozen=True)
class ExclusionLine:
    """One occurrence of an exclusion window overlapping the month."""

    id: str
    reason: str
    start: str
    end: str


@dataclass(frozen=True)
class Span:
    start: str
    end: str


@dataclass(frozen=True)
class ServiceStatement:
    """One customer's service in the month: its figures, the credits they give, and what needs review."""

    service: str
    raw_outage_seconds: float
    counter_outage_seconds: float
    excluded_seconds: dict[str, float]  # by reason, every reason of threenines.config.exclusions.REASONS
    excluded_total_seconds: float
    counted_outage_seconds: float
    unknown_seconds: float
    unknown_gap_seconds: float
    coverage_ratio: float
    availability_ratio: float
    availability_percent: float
    objective_met: bool
    budget_used_minutes: float
    rent_waived: bool
    outages: list[OutageLine]
    exclusions: list[ExclusionLine]
    unreported_outages: list[Span]
    review: list[str]


@dataclass(frozen=True)
class ContactDeliveryLine:
    """One designated contact's notice of an outage event, as the exporter's delivery ledger recorded it: delivered
    when the contact's channel accepted it (the relay's 250, the gateway's or webhook's 2xx, PagerDuty's 202)."""

    event: str  # "firing" (unavailable) | "resolved" (restored)
    channel: str  # email | sms | phone | webhook | pagerduty
    contact: str  # as the ledger names it; a URL only as its origin
    contact_version: str  # the customer's contacts.version when the notice was taken
    first_attempt: str | None  # ISO 8601 in the contract zone; None: never attempted
    accepted_at: str | None  # the delivery time; None: undelivered
    accepted_at_unix: float | None
    delay_seconds: float | None  # determination → acceptance
    receipt: str  # the channel's answer: relay reply and queue id, HTTP status and body, dedup_key
    attempts: int
    state: str  # "delivered" | "failing" (undelivered, still retried) | "given up" | "pending"
    last_failure: str | None  # "reason: detail" of the latest refused attempt


@dataclass(frozen=True)
class OutageDeliveries:
    """The notification of one outage, per designated contact (report.statement.delivery_section)."""

    service: str
    target: str
    determined: str  # ISO 8601 in the contract zone
    determined_unix: float
    # when every designated contact's channel had accepted the firing notice (the contract's notification);
    # None while one has not
    delivered_at: str | None
    delay_seconds: float | None
    # the audit ledger's missed deadline of this outage (with --audit-ledger): its reason ("undelivered": the
    # dispatch reached the exporter, no accepted delivery to every contact by the deadline; "not_notified";
    # "late") and the deadline instant; None: not missed, or not known
    missed: str | None
    missed_at: str | None
    contacts: list[ContactDeliveryLine]


@dataclass(frozen=True)
class NotificationCredits:
    """Days of the contract calendar with at least one missed notification deadline: one deduction each."""

    missed_deadlines: float
    days: list[str]
    deduction_days: int
    source: str  # where the misses come from: "prometheus:<metric>" or the audit ledger
    exact: bool  # True: each miss at the instant its deadline passed
    # with --delivery-ledger: the outages of the month notified (or owed), each with its deliveries per contact
    deliveries: list[OutageDeliveries] | None = field(default=None, metadata=OPTIONAL)


@dataclass(frozen=True)
class ApplicationOutageLine:
    """One outage of one of the customer's application checks (service "application", target = the check id),
    set against the customer's connectivity during it (docs/report.md, "Applications")."""

    check: str
    start: str
    end: str
    start_unix: float
    end_unix: float
    determined: str | None
    seconds_in_month: float
    # the outage seconds in the month, split by what connectivity said during them (they add up to the above)
    ports_answered_seconds: float  # connectivity up: evidence for a customer_fault classification
    inside_connectivity_outage_seconds: float  # covered by the connectivity outage (already billed there)
    connectivity_unknown_seconds: float  # connectivity had no evidence: neither
    # "customer_fault evidence" | "inside connectivity outage" | "partly inside connectivity outage" |
    # "connectivity unknown" | "outside month" (the seconds above say how a mixed one splits)
    classification: str
    billed: bool  # counted as provider outage time (the customer's applications_billable)
    end_exact: bool
    open: bool
    source: str  # "prometheus" | "ledger"


@dataclass(frozen=True)
class ApplicationsSection:
    """The customer's application checks in the month: their outages, never provider outage time unless the
    customer's contract makes them billable (then the "application" service's figures bill them)."""

    billable: bool
    outage_seconds: float  # merged over the checks, in the month
    ports_answered_seconds: float
    inside_connectivity_outage_seconds: float
    connectivity_unknown_seconds: float
    outages: list[ApplicationOutageLine]
    review: list[str]


@dataclass(frozen=True)
class CustomerStatement:
    customer: str
    name: str
    timezone: str
    month: str
    start: str
    end: str
    start_unix: int
    end_unix: int
    seconds_in_month: int
    minutes_in_month: float
    objective_ratio: float
    budget_minutes: float
    services: list[ServiceStatement]
    notification: NotificationCredits
    review: list[str]
    # only for a customer with application checks
    applications: ApplicationsSection | None = field(default=None, metadata=OPTIONAL)


@dataclass(frozen=True)
class ExclusionsSource:
    """Which exclusions file the statement applied (its sha256 makes a closed month reproducible)."""

    source: str
    sha256: str
    unreported_outages_not_counted: bool


@dataclass(frozen=True)
class Statement:
    schema: str
    month: str
    status: str  # "final" | "preview" (a preview's figures can still change; --close refuses it)
    preview_reasons: list[str]
    scrape_interval_seconds: float | None
    min_coverage_ratio: float
    bounds_source: str  # "prometheus" | "ledger"
    exclusions: ExclusionsSource
    warnings: list[str]
    customers: list[CustomerStatement]
    review: list[str]

    def to_dict(self) -> dict[str, Any]:
        """The published JSON object (threenines.report.render.to_json writes it)."""
        data: dict[str, Any] = _plain(self)
        return data
