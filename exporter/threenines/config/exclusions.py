"""The exclusions ledger (exclusions.yml): agreed maintenance, customer faults, force majeure, and the
customer-report intake that the optional "unreported within 5 days" policy needs.

    exclusions:
      - id: MW-2026-10-07              # unique
        customer: acme                 # inventory customer id
        services: [connectivity]       # connectivity, power and/or application
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
      merge: all                       # replica exporters: outage when every vantage with evidence says so
                                       # (all, the default) or when any does (any); docs/design.md

Recurring windows repeat in the customer's contract time zone (a 01:00 window stays at 01:00 local across a
DST change). Overlapping exclusions are merged before subtraction, so no second is excluded twice.

A recurring window's `rrule` is one RFC 5545 RRULE line (an optional `RRULE:` prefix; no DTSTART, RDATE,
EXDATE or EXRULE: `start`/`end` are the first occurrence and must be one). It repeats at most hourly, every
1 to 1000 periods, COUNT 1 to 10,000, UNTIL in UTC (`…Z`); every time in the ledger lies in the years 1970 to
2199. The loader refuses anything else with the file, line and field, so a rule the loader accepts always
expands: occurrences are computed per bucket of 31 days near the window asked (from a start moved forward by
whole periods, never iterated from DTSTART) and kept, so a tick's cost does not grow with the rule's age.
"""

from __future__ import annotations

import bisect
import calendar
import functools
import hashlib
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

from dateutil import rrule as rrulelib

from threenines.config.configfile import ID_RE, ID_RULE, Node, format_duration, load, unique_ids
from threenines.config.inventory import SERVICES
from threenines.intervals import Interval

# What an exclusion or a report may name: the billed services, and the customer's application checks (all of
# them, service="application"), which are outage time only with applications_billable and then excluded like
# the others (docs/design.md).
EXCLUDABLE_SERVICES = (*SERVICES, "application")
# How the vantages' views of one second merge (threenines.contract.vantages): "all" makes it outage only when
# every vantage with evidence says outage, "any" when one does.
POLICIES = ("all", "any")
REASONS = ("maintenance", "customer_fault", "force_majeure", "unreported")
# Every time written in the ledger: a year outside is a typo (year 1 overflowed datetime in every tick).
YEARS = (1970, 2199)
MAX_OCCURRENCES = 10_000  # the largest COUNT (its last occurrence is found once, at load)
MAX_INTERVAL = 1000
# Recurring windows are expanded per bucket of this many seconds (of Unix time) and the buckets are kept: a
# tick asks for one second of one bucket, a monthly report for two buckets.
BUCKET_SECONDS = 31 * 86400
# A rule is probed at load on a copy moved forward by whole 400-year Gregorian cycles (weekdays, leap years and
# ISO weeks repeat exactly) to just below datetime.MAXYEAR, where dateutil stops by itself: a rule that matches
# no date costs the at most 800 years up to MAXYEAR there, instead of searching up to 8,000 years.
_CYCLE_YEARS = 400
_PROBE_YEAR = 9200
_LAST_TIME = datetime(9000, 1, 1, tzinfo=UTC).timestamp()  # queries beyond are clipped (datetime's range)

_FREQS = {"YEARLY": rrulelib.YEARLY, "MONTHLY": rrulelib.MONTHLY, "WEEKLY": rrulelib.WEEKLY,
          "DAILY": rrulelib.DAILY, "HOURLY": rrulelib.HOURLY}
# The longest wall-clock period of each frequency (exact for the last three).
_PERIOD = {rrulelib.YEARLY: timedelta(days=366), rrulelib.MONTHLY: timedelta(days=31),
           rrulelib.WEEKLY: timedelta(days=7), rrulelib.DAILY: timedelta(days=1), rrulelib.HOURLY: timedelta(hours=1)}
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
# BYxxx integer lists: dateutil's keyword, smallest and largest magnitude, whether negatives (from the end) count.
_LISTS = {"BYSETPOS": ("bysetpos", 1, 366, True), "BYMONTH": ("bymonth", 1, 12, False),
          "BYMONTHDAY": ("bymonthday", 1, 31, True), "BYYEARDAY": ("byyearday", 1, 366, True),
          "BYWEEKNO": ("byweekno", 1, 53, True), "BYHOUR": ("byhour", 0, 23, False),
          "BYMINUTE": ("byminute", 0, 59, False), "BYSECOND": ("bysecond", 0, 59, False)}
_PARTS = ("FREQ", "INTERVAL", "COUNT", "UNTIL", "WKST", "BYDAY", *_LISTS)
# RFC 5545 §3.3.10: the frequencies each of these parts must not be used with.
_NOT_WITH = {"BYWEEKNO": ("MONTHLY", "WEEKLY", "DAILY", "HOURLY"), "BYYEARDAY": ("MONTHLY", "WEEKLY", "DAILY"),
             "BYMONTHDAY": ("WEEKLY",)}
_INT = re.compile(r"[+-]?[0-9]{1,6}")
_BYDAY = re.compile(r"([+-]?[0-9]{1,2})?(MO|TU|WE|TH|FR|SA|SU)")
_UNTIL = re.compile(r"([0-9]{8}T[0-9]{6})Z")


class RuleError(ValueError):
    """An rrule the exporter refuses; `field` is the exclusion's key the problem is best located at."""

    def __init__(self, message: str, field: str = "rrule") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Rule:
    """A parsed RRULE: dateutil's arguments without DTSTART, which each expansion supplies."""

    freq: int
    interval: int
    count: int | None
    until: datetime | None
    by: tuple[tuple[str, Any], ...]  # wkst and the BYxxx parts as dateutil keywords

    def build(self, dtstart: datetime, first: datetime, count: int | None = None,
              until: datetime | None = None) -> rrulelib.rrule:
        """The rule iterated from dtstart, a start of one of its periods at or after the first occurrence.

        dateutil fills parts the rule leaves out (the weekday of a WEEKLY rule, the day of a MONTHLY one, the
        time of day) from DTSTART; taking them from the first occurrence instead keeps a moved start exact.
        """
        given = dict(self.by)
        implicit: dict[str, Any] = {"byminute": first.minute, "bysecond": first.second}
        if self.freq != rrulelib.HOURLY:  # an HOURLY rule steps the hour from DTSTART
            implicit["byhour"] = first.hour
        if not given.keys() & {"byweekno", "byyearday", "bymonthday", "byweekday"}:
            if self.freq == rrulelib.YEARLY:
                implicit |= {"bymonth": first.month, "bymonthday": first.day}
            elif self.freq == rrulelib.MONTHLY:
                implicit["bymonthday"] = first.day
            elif self.freq == rrulelib.WEEKLY:
                implicit["byweekday"] = first.weekday()
        # dateutil's stubs type freq as Literal[0..6]; self.freq holds one of rrulelib's constants (validated).
        return rrulelib.rrule(cast(Any, self.freq), dtstart=dtstart, interval=self.interval, count=count, until=until,
                              **{**implicit, **given})

    def moved_start(self, first: datetime, target: datetime) -> datetime:
        """A DTSTART from which the rule gives the same occurrences at and after `target` as from `first`.

        dateutil steps whole periods (years, months, weeks, days, hours) INTERVAL apart from DTSTART. A year's,
        a month's, a day's and an hour's candidates do not depend on where in the period DTSTART falls, so
        `target` itself serves when its period is one the rule steps on; a week's start at DTSTART's day, so
        a moved start is the week's first day (WKST). Between stepped periods the next one's start serves.
        """
        if target <= first:
            return first
        zone, freq = first.tzinfo, self.freq
        if freq == rrulelib.YEARLY:
            diff = target.year - first.year

            def start_of(p: int) -> datetime:
                return datetime(first.year + p, 1, 1, tzinfo=zone)
        elif freq == rrulelib.MONTHLY:
            diff = (target.year - first.year) * 12 + target.month - first.month

            def start_of(p: int) -> datetime:
                year, month = divmod(first.month - 1 + p, 12)
                return datetime(first.year + year, month + 1, 1, tzinfo=zone)
        elif freq == rrulelib.WEEKLY:
            wkst = dict(self.by).get("wkst", calendar.firstweekday())
            week = datetime.combine(first.date() - timedelta(days=(first.weekday() - wkst) % 7), time(), zone)
            diff = (target.replace(tzinfo=None) - week.replace(tzinfo=None)).days // 7

            def start_of(p: int) -> datetime:
                return week + timedelta(weeks=p)
        else:  # DAILY, HOURLY: wall-clock days and hours, as dateutil steps them
            unit = _PERIOD[freq]
            origin = first.replace(hour=0 if freq == rrulelib.DAILY else first.hour, minute=0, second=0)
            diff = (target.replace(tzinfo=None) - origin.replace(tzinfo=None)) // unit

            def start_of(p: int) -> datetime:
                return origin + p * unit
        periods, off = divmod(diff, self.interval)
        if off:
            return start_of((periods + 1) * self.interval)
        if freq != rrulelib.WEEKLY:
            return target
        return start_of(periods * self.interval) if periods else first


def parse_rrule(text: str) -> Rule:
    """Parse one RRULE line into a Rule the exporter can expand at bounded cost; RuleError says why not."""
    upper = text.strip().upper()
    lines = [line.strip() for line in upper.splitlines() if line.strip()]
    if "DTSTART" in upper:
        raise RuleError("DTSTART would override start: remove it (start and end are the first occurrence)")
    if len(lines) != 1:
        raise RuleError("write one RRULE line (RDATE, EXDATE and EXRULE are not supported: use more exclusions)")
    line = lines[0].removeprefix("RRULE:")
    if ":" in line:
        raise RuleError(f"{line.split(':')[0]!r} is not supported: write one RRULE line such as "
                        "FREQ=WEEKLY;BYDAY=SU;COUNT=8")
    parts: dict[str, str] = {}
    for pair in line.split(";"):
        name, _, value = pair.partition("=")
        if name not in _PARTS:
            raise RuleError(f"{name!r} is not an RRULE part here; use {', '.join(_PARTS)}")
        if not value:
            raise RuleError(f"{name} has no value: write {name}=...")
        if name in parts:
            raise RuleError(f"{name} is given twice")
        parts[name] = value
    if "FREQ" not in parts:
        raise RuleError("FREQ is missing: e.g. FREQ=WEEKLY;BYDAY=SU;COUNT=8")
    freq_name = parts["FREQ"]
    if freq_name in ("MINUTELY", "SECONDLY"):
        raise RuleError(f"FREQ={freq_name} repeats more often than hourly: use FREQ=HOURLY or coarser "
                        "(BYHOUR and BYMINUTE pick the times)")
    if freq_name not in _FREQS:
        raise RuleError(f"FREQ={freq_name} is not one of {', '.join(_FREQS)}")
    for name, freqs in _NOT_WITH.items():
        if name in parts and freq_name in freqs:
            raise RuleError(f"{name} is not allowed with FREQ={freq_name} (RFC 5545)")
    if "COUNT" in parts and "UNTIL" in parts:
        raise RuleError("COUNT and UNTIL together are not allowed (RFC 5545): keep one")
    if "BYSETPOS" in parts and not any(p.startswith("BY") and p != "BYSETPOS" for p in parts):
        raise RuleError("BYSETPOS needs another BYxxx part to pick from (RFC 5545)")
    by: dict[str, Any] = {}
    for name, (keyword, low, high, negative) in _LISTS.items():
        if name in parts:
            by[keyword] = _int_list(name, parts[name], low, high, negative)
    if "BYDAY" in parts:
        by["byweekday"] = _weekdays(parts["BYDAY"], freq_name, "BYWEEKNO" in parts)
    if "WKST" in parts:
        if parts["WKST"] not in _WEEKDAYS:
            raise RuleError(f"WKST={parts['WKST']} is not a weekday: use one of {', '.join(_WEEKDAYS)}")
        by["wkst"] = _WEEKDAYS.index(parts["WKST"])
    _check_density(freq_name, by)
    interval = _integer("INTERVAL", parts.get("INTERVAL", "1"), 1, MAX_INTERVAL)
    count = _integer("COUNT", parts["COUNT"], 1, MAX_OCCURRENCES) if "COUNT" in parts else None
    until = _until(parts["UNTIL"]) if "UNTIL" in parts else None
    return Rule(_FREQS[freq_name], interval, count, until, tuple(by.items()))


def _integer(name: str, text: str, low: int, high: int) -> int:
    value = int(text) if _INT.fullmatch(text) else None
    if value is None or not low <= value <= high:
        hint = " (a rule without occurrences would silently remove the window)" if name == "COUNT" else ""
        raise RuleError(f"{name}={text} must be a whole number from {low} to {high}{hint}")
    return value


def _int_list(name: str, text: str, low: int, high: int, negative: bool) -> tuple[int, ...]:
    values = []
    for item in text.split(","):
        value = int(item) if _INT.fullmatch(item) else None
        if value is None or not (low <= value <= high or (negative and -high <= value <= -low)):
            span = f"{low} to {high}" + (f" or -{high} to -{low}" if negative else "")
            raise RuleError(f"{name}={text}: {item!r} is not a whole number from {span}")
        values.append(value)
    return tuple(values)


def _weekdays(text: str, freq_name: str, with_weekno: bool) -> tuple[rrulelib.weekday, ...]:
    days = []
    for item in text.split(","):
        match = _BYDAY.fullmatch(item)
        if match is None:
            raise RuleError(f"BYDAY={text}: {item!r} is not a weekday such as SU, 1MO or -1FR")
        ordinal = int(match[1]) if match[1] else None
        if ordinal is not None:
            limit = {"MONTHLY": 5, "YEARLY": 53}.get(freq_name)
            if limit is None or with_weekno:
                raise RuleError(f"BYDAY={text}: a numbered weekday ({item}) needs FREQ=MONTHLY or YEARLY "
                                "without BYWEEKNO (RFC 5545)")
            if not 1 <= abs(ordinal) <= limit:
                raise RuleError(f"BYDAY={text}: {item} is not within ±1 to ±{limit} for FREQ={freq_name}")
        days.append(rrulelib.weekday(_WEEKDAYS.index(match[2]), ordinal))
    return tuple(days)


def _check_density(freq_name: str, by: dict[str, Any]) -> None:
    """At most one occurrence an hour on average: bounds a bucket's expansion (744 starts in 31 days)."""
    minutes_seconds = len(by.get("byminute", (0,))) * len(by.get("bysecond", (0,)))
    if freq_name == "HOURLY":
        if minutes_seconds > 1:
            raise RuleError("FREQ=HOURLY with several BYMINUTE/BYSECOND values repeats more often than hourly")
    elif len(by.get("byhour", (0,))) * minutes_seconds > 24:
        raise RuleError("BYHOUR × BYMINUTE × BYSECOND give more than 24 times a day: at most hourly")


def _until(text: str) -> datetime:
    match = _UNTIL.fullmatch(text)
    try:
        value = datetime.strptime(match[1], "%Y%m%dT%H%M%S").replace(tzinfo=UTC) if match else None
    except ValueError:
        value = None
    if value is None:
        raise RuleError(f"UNTIL={text} is not a UTC time: write e.g. UNTIL=20261231T235959Z")
    if not YEARS[0] <= value.year <= YEARS[1]:
        raise RuleError(f"UNTIL={text} is not within the years {YEARS[0]} to {YEARS[1]}")
    return value


@dataclass(frozen=True, eq=False)  # identity: the buckets cache keys on the object _recurrence keeps
class _Recurrence:
    rule: Rule
    first: datetime  # the first occurrence (start, in the zone, whole seconds as dateutil keeps)
    length: float
    last: float  # Unix time of the last occurrence's start; inf without COUNT or UNTIL
    until: datetime | None  # UNTIL, or the last occurrence COUNT gives

    def between(self, lo: float, hi: float) -> list[Interval]:
        """Occurrences overlapping [lo, hi): starts after lo - length and before hi, from the buckets."""
        first = self.first.timestamp()
        low, high = max(lo - self.length, first - 1), min(hi, self.last + 1, _LAST_TIME)
        if high <= low:
            return []
        out = []
        for index in range(math.floor(low / BUCKET_SECONDS), math.floor(high / BUCKET_SECONDS) + 1):
            starts = _bucket(self, index)
            out += [(s, s + self.length)
                    for s in starts[bisect.bisect_right(starts, lo - self.length):bisect.bisect_left(starts, hi)]]
        return out


@functools.lru_cache(maxsize=8192)
def _bucket(recurrence: _Recurrence, index: int) -> tuple[float, ...]:
    """Sorted starts of the occurrences in bucket `index`, iterated from a start moved to just before it."""
    rule, first = recurrence.rule, recurrence.first
    lo, hi = index * BUCKET_SECONDS, (index + 1) * BUCKET_SECONDS
    zone = first.tzinfo
    margin = timedelta(days=1)  # between wall time and Unix time (DST changes), with room to spare
    dtstart = rule.moved_start(first, datetime.fromtimestamp(max(lo, first.timestamp()), zone) - margin)
    stop = datetime.fromtimestamp(hi, zone) + margin
    starts = []
    for occurrence in rule.build(dtstart, first, until=recurrence.until):
        if occurrence > stop:
            break
        start = occurrence.timestamp()
        if lo <= start < hi:
            starts.append(start)
    return tuple(sorted(starts))


@functools.lru_cache(maxsize=1024)
def _recurrence(text: str, start: float, end: float, zone: tzinfo) -> _Recurrence:
    """Parse and probe a recurring window once per zone; RuleError for one that cannot be expanded."""
    rule = parse_rrule(text)
    first = datetime.fromtimestamp(start, zone).replace(microsecond=0)
    period = rule.interval * _PERIOD[rule.freq]
    # A window longer than its period would overlap the next one; an hour more allows a DST change.
    if end - start > min(period + timedelta(hours=1), timedelta(days=366)).total_seconds():
        raise RuleError(f"a window repeating every {format_duration(period.total_seconds())} lasts at most that "
                        f"long: this one lasts {format_duration(end - start)}", "end")
    if rule.until is not None and rule.until < first:
        raise RuleError("UNTIL is before start: the rule has no occurrence")
    shift = _CYCLE_YEARS * -(-(_PROBE_YEAR - first.year) // _CYCLE_YEARS)
    probe = first.replace(year=first.year + shift)
    try:
        found = next(iter(rule.build(probe, first)), None)
        occurrences = list(rule.build(probe, first, count=rule.count)) if rule.count is not None else []
    except ValueError as err:  # dateutil's own refusals, e.g. a BYHOUR an HOURLY INTERVAL never reaches
        raise RuleError(str(err)) from err
    if found is None:
        raise RuleError(f"matches no date in the {_CYCLE_YEARS} years after start (e.g. BYMONTH=2;BYMONTHDAY=30)")
    if found != probe:
        raise RuleError(f"start ({first:%a %Y-%m-%d %H:%M:%S}) is not one of its occurrences (the next is "
                        f"{found.replace(year=found.year - shift):%a %Y-%m-%d %H:%M:%S}): make start and end the "
                        "first occurrence", "start")
    until = rule.until
    if rule.count is not None:
        if len(occurrences) < rule.count:
            raise RuleError(f"COUNT={rule.count} is not reached within {_CYCLE_YEARS} years of start "
                            f"({len(occurrences)} occurrences): lower COUNT or use UNTIL")
        until = occurrences[-1].replace(year=occurrences[-1].year - shift)
    return _Recurrence(rule, first, end - start, until.timestamp() if until is not None else math.inf, until)


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
        """The exclusion's intervals overlapping window (recurring ones expanded in the contract zone).

        A recurring one costs the occurrences near the window, whatever the distance from its first one.
        """
        lo, hi = window
        if self.rrule is None:
            return [(self.start, self.end)] if self.end > lo and self.start < hi else []
        return _recurrence(self.rrule, self.start, self.end, zone).between(lo, hi)


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
    merge: str = "all"  # replica exporters (report.vantages): outage when all vantages with evidence say so


@dataclass(frozen=True)
class Exclusions:
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


def load_exclusions(path: str | Path, customers: dict[str, ZoneInfo] | None = None) -> Exclusions:
    """Parse exclusions.yml; customers (id → zone), when given, must contain every customer named."""
    root = load(path)
    top = root.mapping(allowed=("exclusions", "reports", "policy"))
    nodes = top["exclusions"].sequence() if "exclusions" in top else []
    exclusions = tuple(_exclusion(node, customers) for node in nodes)
    unique_ids(((ex.id, node) for ex, node in zip(exclusions, nodes, strict=True)), "exclusion")
    reports = tuple(_report(node, customers) for node in top["reports"].sequence()) if "reports" in top else ()
    policy = _policy(top["policy"]) if "policy" in top else Policy()
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return Exclusions(exclusions, reports, policy, str(path), digest)


def _moment(node: Node) -> datetime:
    text = node.raw
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        node.fail(f"{text!r} is not an ISO 8601 time: write e.g. 2026-10-07T01:00:00+02:00")
    if value.tzinfo is None:
        node.fail(f"{text!r} has no UTC offset: add one, e.g. {text}+02:00 or {text}Z")
    if not YEARS[0] <= value.year <= YEARS[1]:
        node.fail(f"{text!r} is not within the years {YEARS[0]} to {YEARS[1]}")
    return value


def _time(node: Node) -> float:
    return _moment(node).timestamp()


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
        if service not in EXCLUDABLE_SERVICES:
            f["services"].fail(f"{service!r} is not a service: use {', '.join(EXCLUDABLE_SERVICES)}")
    if not services:
        f["services"].fail("name at least one service")
    first = _moment(f["start"])
    start, end = first.timestamp(), _time(f["end"])
    if end <= start:
        f["end"].fail("must be after start")
    customer = _customer(f["customer"], customers)
    rule = None
    if "rrule" in f:
        rule = f["rrule"].string()
        # Probed in the contract zone it will expand in (the start's own offset when no inventory is given):
        # whether start is an occurrence, and where COUNT ends, depend on the local calendar.
        zone = customers[customer] if customers is not None else first.tzinfo
        try:
            _recurrence(rule, start, end, zone)
        except RuleError as err:
            f[err.field].fail(f"rrule {rule!r}: {err}" if err.field != "rrule" else f"{rule!r}: {err}")
    return Exclusion(
        id=f["id"].string(ID_RE, ID_RULE), customer=customer, services=services,
        start=start, end=end, reason=f["reason"].choice(REASONS), reference=f["reference"].string(),
        approved_by=f["approved_by"].string(), rrule=rule, line=node.line)


def _report(node: Node, customers: dict[str, ZoneInfo] | None) -> CustomerReport:
    f = node.mapping(allowed=("customer", "service", "reported_at", "reference"),
                     required=("customer", "service", "reported_at"))
    return CustomerReport(customer=_customer(f["customer"], customers),
                          service=f["service"].choice(EXCLUDABLE_SERVICES), reported_at=_time(f["reported_at"]),
                          reference=f["reference"].string() if "reference" in f else "")


def _policy(node: Node) -> Policy:
    f = node.mapping(allowed=("unreported_outages_not_counted", "report_within", "merge"))
    return Policy(
        unreported_outages_not_counted=f["unreported_outages_not_counted"].boolean()
        if "unreported_outages_not_counted" in f else False,
        report_within=f["report_within"].duration() if "report_within" in f else 5 * 86400,
        merge=f["merge"].choice(POLICIES) if "merge" in f else "all")
