"""The notification audit: Alertmanager's webhook → append-only SQLite ledger → delay and deadline metrics.

Every customer receiver in the generated Alertmanager config also posts to `POST /alertmanager/webhook`.
Alertmanager sends all integrations of a receiver in parallel when it flushes an alert group, so the time this
webhook arrives is the dispatch time to the designated contacts. It is taken from the exporter's clock, the
same clock that stamped `determined_at`, so the delay needs no clock synchronisation between hosts.

Only the *first* firing dispatch of an outage (customer, service, target, determined_at) is a notification
in the contract's sense: it gives the delay and may miss the deadline. Repeats (repeat_interval, or an
Alertmanager that lost its notification log in a restart) are recorded as evidence but never counted twice.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from threenines.inventory import Inventory
from threenines.ledger import LedgerFile

log = logging.getLogger(__name__)

DELAY_BUCKETS = (30.0, 60.0, 120.0, 180.0, 300.0, 450.0, 600.0, 750.0, 900.0, 1200.0, 1800.0, 3600.0)
RECEIVER_PREFIX = "customer-"
# determined_at is stamped by the exporter's own clock, so it can never be after the dispatch; the allowance
# covers an HA peer's clock (NTP keeps them within milliseconds). More than this is a forged or broken value:
# a future (or +Inf) determination would satisfy ThreeninesNotificationOverdue for that target for good.
MAX_CLOCK_SKEW = 10.0
# The floor: no outage goes a year with its alert still firing; older values are garbage (a unit error, 0).
MAX_DETERMINATION_AGE = 366 * 86400.0
# Alerts the webhook does not record, by reason: they would create series the inventory does not have.
REJECT_REASONS = ("unknown_customer", "unknown_target", "wrong_receiver")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dispatches (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    dispatched_at   REAL    NOT NULL,   -- when the webhook arrived (exporter clock, Unix seconds)
    receiver        TEXT    NOT NULL,
    fingerprint     TEXT    NOT NULL,   -- Alertmanager's alert fingerprint
    alertname       TEXT    NOT NULL,
    customer        TEXT    NOT NULL,
    service         TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    determined_at   REAL,               -- from the alert's determined_at annotation; NULL when it has none
    starts_at       TEXT    NOT NULL,
    ends_at         TEXT    NOT NULL,
    resolved        INTEGER NOT NULL,   -- 1 for a resolved notification
    contact_version TEXT    NOT NULL,   -- the customer's contacts.version when dispatched ('' if unknown)
    deadline        REAL,               -- the customer's notification deadline in seconds (NULL if unknown)
    delay           REAL,               -- dispatched_at - determined_at, on the first firing dispatch only
    first           INTEGER NOT NULL,   -- 1: the notification of this outage that counts
    late            INTEGER NOT NULL,   -- 1: first dispatch later than the deadline
    group_key       TEXT    NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS one_first_dispatch_per_outage
    ON dispatches (customer, service, target, determined_at) WHERE first = 1;
CREATE TRIGGER IF NOT EXISTS dispatches_append_only_update BEFORE UPDATE ON dispatches
    BEGIN SELECT RAISE(ABORT, 'the audit ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS dispatches_append_only_delete BEFORE DELETE ON dispatches
    BEGIN SELECT RAISE(ABORT, 'the audit ledger is append-only'); END;
-- A missed notification deadline, decided when the deadline passed (threenines.deadlines): one per outage.
CREATE TABLE IF NOT EXISTS misses (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    customer        TEXT    NOT NULL,
    service         TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    determined_at   REAL    NOT NULL,
    deadline_at     REAL    NOT NULL,   -- determined_at + the customer's deadline: when the miss happened
    recorded_at     REAL    NOT NULL,   -- when the exporter wrote it (later if it was not running then)
    reason          TEXT    NOT NULL    -- 'late' (a first dispatch came after the deadline) | 'not_notified'
);
CREATE UNIQUE INDEX IF NOT EXISTS one_miss_per_outage ON misses (customer, service, target, determined_at);
CREATE TRIGGER IF NOT EXISTS misses_append_only_update BEFORE UPDATE ON misses
    BEGIN SELECT RAISE(ABORT, 'the audit ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS misses_append_only_delete BEFORE DELETE ON misses
    BEGIN SELECT RAISE(ABORT, 'the audit ledger is append-only'); END;
"""

_COLUMNS = ("dispatched_at", "receiver", "fingerprint", "alertname", "customer", "service", "target",
            "determined_at", "starts_at", "ends_at", "resolved", "contact_version", "deadline", "delay", "first",
            "late", "group_key")


@dataclass(frozen=True)
class Dispatch:
    """One alert in one webhook delivery, as recorded in the ledger."""

    dispatched_at: float
    receiver: str
    fingerprint: str
    alertname: str
    customer: str
    service: str
    target: str
    determined_at: float | None
    starts_at: str
    ends_at: str
    resolved: bool
    contact_version: str
    deadline: float | None
    delay: float | None
    first: bool
    late: bool
    group_key: str

    @property
    def outage(self) -> tuple[str, str, str, float] | None:
        if self.determined_at is None:
            return None
        return outage_key(self.customer, self.service, self.target, self.determined_at)


def outage_key(customer: str, service: str, target: str, determined_at: float) -> tuple[str, str, str, float]:
    """One outage as the audit, the deadline watch and the notifier key it: determined_at to the millisecond.

    The alert carries determined_at as an annotation printed to the millisecond, the engine holds it to the
    microsecond: keyed by the engine's value, a dispatch of the outage was not found at its deadline (a miss
    counted beside a dispatch on time) and a miss not found by a later dispatch (late=0 beside a miss).
    """
    return (customer, service, target, round(determined_at, 3))


@dataclass(frozen=True)
class Miss:
    """A notification deadline that passed without a first dispatch of the outage (threenines.deadlines)."""

    customer: str
    service: str
    target: str
    determined_at: float
    deadline_at: float
    recorded_at: float
    reason: str  # "late" | "not_notified" | "undelivered" (dispatched, not accepted by every contact)

    @property
    def outage(self) -> tuple[str, str, str, float]:
        return outage_key(self.customer, self.service, self.target, self.determined_at)


_MISS_COLUMNS = ("customer", "service", "target", "determined_at", "deadline_at", "recorded_at", "reason")


class AuditLedger:
    """Append-only SQLite (WAL, synchronous=FULL): a dispatch acknowledged to Alertmanager is on disk.

    Opened like the outage ledger (threenines.ledger.LedgerFile): refused at start when corrupt or not writable;
    on a full disk the exporter starts and each write opens the file first, so a delivery the disk refuses is a
    500 that Alertmanager retries, and a miss is decided again at the next check: the callers are the queue.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = LedgerFile(self.path, _SCHEMA, "audit ledger")
        self._lock = threading.Lock()
        self.writes_ok = 0
        self.writes_failed = 0

    def append(self, dispatches: list[Dispatch]) -> None:
        """All of one delivery or none of it."""
        rows = [tuple(_to_sql(getattr(d, c)) for c in _COLUMNS) for d in dispatches]
        sql = f"INSERT INTO dispatches ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
        self._transaction(lambda db: db.executemany(sql, rows))

    def append_miss(self, miss: Miss) -> None:
        """Once per outage: a retried write of the same miss is ignored."""
        sql = (f"INSERT OR IGNORE INTO misses ({', '.join(_MISS_COLUMNS)}) "
               f"VALUES ({', '.join('?' * len(_MISS_COLUMNS))})")
        values = tuple(getattr(miss, c) for c in _MISS_COLUMNS)
        self._transaction(lambda db: db.execute(sql, values))

    def _transaction(self, write: Callable[[sqlite3.Connection], object]) -> None:
        with self._lock:
            try:
                self._file.transaction(write)
            except Exception:
                self.writes_failed += 1
                raise
            self.writes_ok += 1

    def misses(self) -> Iterator[Miss]:
        with self._lock:
            rows = self._file.read(f"SELECT {', '.join(_MISS_COLUMNS)} FROM misses ORDER BY id", needs="misses")
        for row in rows:
            yield Miss(*row)

    def dispatches(self) -> Iterator[Dispatch]:
        with self._lock:
            rows = self._file.read(f"SELECT {', '.join(_COLUMNS)} FROM dispatches ORDER BY id", needs="dispatches")
        for row in rows:
            values = dict(zip(_COLUMNS, row, strict=True))
            for flag in ("resolved", "first", "late"):
                values[flag] = bool(values[flag])
            yield Dispatch(**values)

    def close(self) -> None:
        with self._lock:
            self._file.close()


def _to_sql(value: object) -> object:
    return int(value) if isinstance(value, bool) else value


# ---------------------------------------------------------------------------------------------------
# Metrics, rebuilt from the ledger at start and then kept in memory (collect() does no I/O)


class DelayHistograms:
    """Notification delays per customer in DELAY_BUCKETS (the audit's dispatches, the notifier's deliveries).
    Not locked: its owner's state object holds the lock."""

    def __init__(self) -> None:
        self.buckets: dict[str, list[int]] = {}
        self.sums: dict[str, float] = {}

    def observe(self, customer: str, delay: float) -> None:
        value = max(0.0, delay)
        counts = self.buckets.setdefault(customer, [0] * (len(DELAY_BUCKETS) + 1))
        counts[next((i for i, bound in enumerate(DELAY_BUCKETS) if value <= bound), len(DELAY_BUCKETS))] += 1
        self.sums[customer] = self.sums.get(customer, 0.0) + value

    def copy(self) -> DelayHistograms:
        out = DelayHistograms()
        out.buckets = {k: list(v) for k, v in self.buckets.items()}
        out.sums = dict(self.sums)
        return out

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, documentation, labels=["customer"])
        for customer, counts in sorted(self.buckets.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*DELAY_BUCKETS, float("inf")), counts, strict=True):
                cumulative += count
                buckets.append((floatToGoString(bound), cumulative))
            family.add_metric([customer], buckets, self.sums[customer])
        return family


class AuditState:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.delays = DelayHistograms()
        self.missed: dict[str, int] = {}
        self.dispatches: dict[tuple[str, str], int] = {}
        self.last_determined: dict[tuple[str, str, str], float] = {}
        self.counted: set[tuple[str, str, str, float]] = set()
        self.first_at: dict[tuple[str, str, str, float], float] = {}  # outage -> its first dispatch's arrival
        self.missed_outages: set[tuple[str, str, str, float]] = set()
        self.last_missed: dict[tuple[str, str, str], float] = {}  # target -> deadline instant of its latest miss
        self.rejected: dict[str, int] = {}
        # What the inventory has (customer ids, (customer, service, target)); None: everything counts.
        self.customers: frozenset[str] | None = None
        self.targets: frozenset[tuple[str, str, str]] | None = None

    def apply(self, dispatch: Dispatch) -> None:
        with self._lock:
            self._apply(dispatch)

    def reject(self, reason: str, count: int = 1) -> None:
        with self._lock:
            self.rejected[reason] = self.rejected.get(reason, 0) + count

    def _apply(self, d: Dispatch) -> None:
        # Rows already in the append-only ledger are neutralised here, at every rebuild: one for a customer the
        # inventory lacks creates no series, and an impossible determined_at (+Inf, a year ahead, from an
        # exporter before the webhook refused them) counts as no determination instead of disabling the
        # overdue alert for its target for good.
        if self.customers is not None and d.customer not in self.customers:
            return
        key = (d.customer, d.receiver)
        self.dispatches[key] = self.dispatches.get(key, 0) + 1
        if d.determined_at is None or determination_problem(d.determined_at, d.dispatched_at) is not None:
            return
        target = (d.customer, d.service, d.target)
        if not d.resolved and (self.targets is None or target in self.targets):
            self.last_determined[target] = max(self.last_determined.get(target, 0.0), d.determined_at)
        if d.first and d.delay is not None and d.outage is not None:
            self.counted.add(d.outage)
            self.first_at.setdefault(d.outage, d.dispatched_at)
            self.delays.observe(d.customer, d.delay)
            self.missed.setdefault(d.customer, 0)  # the counter exists from the first dispatch; misses: apply_miss

    def apply_miss(self, miss: Miss) -> None:
        with self._lock:
            if miss.outage in self.missed_outages:
                return
            self.missed_outages.add(miss.outage)
            self.missed[miss.customer] = self.missed.get(miss.customer, 0) + 1
            target = (miss.customer, miss.service, miss.target)
            self.last_missed[target] = max(self.last_missed.get(target, 0.0), miss.deadline_at)

    def is_missed(self, outage: tuple[str, str, str, float]) -> bool:
        with self._lock:
            return outage in self.missed_outages

    def first_dispatch_at(self, outage: tuple[str, str, str, float]) -> float | None:
        with self._lock:
            return self.first_at.get(outage)

    def is_counted(self, outage: tuple[str, str, str, float]) -> bool:
        with self._lock:
            return outage in self.counted

    def copy(self) -> AuditState:
        with self._lock:
            out = AuditState()
            out.delays = self.delays.copy()
            out.missed = dict(self.missed)
            out.dispatches = dict(self.dispatches)
            out.last_determined = dict(self.last_determined)
            out.last_missed = dict(self.last_missed)
            out.rejected = dict(self.rejected)
            return out


class AuditCollector(Collector):
    def __init__(self, state: AuditState) -> None:
        self._state = state

    def describe(self) -> Iterator[Any]:
        yield from self._families(AuditState())

    def collect(self) -> Iterator[Any]:
        yield from self._families(self._state.copy())

    @staticmethod
    def _families(state: AuditState) -> Iterator[Any]:
        yield state.delays.family("threenines_notification_delay_seconds",
                                  "Determination to the first audited Alertmanager dispatch of each outage.")
        missed = CounterMetricFamily(
            "threenines_notification_deadline_missed_total",
            "Outages with no audited first dispatch by their notification deadline (counted when it passed).",
            labels=["customer"])
        for customer, count in sorted(state.missed.items()):
            missed.add_metric([customer], count)
        yield missed
        missed_at = GaugeMetricFamily(
            "threenines_notification_deadline_missed_timestamp_seconds",
            "The deadline instant (determined_at + deadline) of this target's latest missed notification.",
            labels=["customer", "service", "target"])
        for (customer, service, target), value in sorted(state.last_missed.items()):
            missed_at.add_metric([customer, service, target], value)
        yield missed_at
        total = CounterMetricFamily(
            "threenines_notification_dispatches_total",
            "Alerts delivered to the audit webhook (every delivery, repeats included).",
            labels=["customer", "receiver"])
        for (customer, receiver), count in sorted(state.dispatches.items()):
            total.add_metric([customer, receiver], count)
        yield total
        last = GaugeMetricFamily(
            "threenines_notification_last_dispatch_determined_timestamp_seconds",
            "determined_at of the latest outage whose firing notification reached the audit ledger.",
            labels=["customer", "service", "target"])
        for (customer, service, target), value in sorted(state.last_determined.items()):
            last.add_metric([customer, service, target], value)
        yield last
        rejected = CounterMetricFamily(
            "threenines_notification_rejected_alerts_total",
            "Alerts the audit webhook did not record: their customer, target or receiver is not the inventory's.",
            labels=["reason"])
        for reason in REJECT_REASONS:
            rejected.add_metric([reason], state.rejected.get(reason, 0))
        yield rejected


# ---------------------------------------------------------------------------------------------------
# The webhook


class PayloadError(ValueError):
    """The body is not an Alertmanager webhook payload; nothing of it is recorded."""


@dataclass(frozen=True)
class _Alert:
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    ends_at: str
    fingerprint: str


@dataclass(frozen=True)
class Payload:
    receiver: str
    group_key: str
    alerts: tuple[_Alert, ...]


def _storable(text: str) -> bool:
    # JSON may carry a lone surrogate (the escape \ud800 alone), a str but no UTF-8: refused here, before the
    # ledger's transaction, where it failed and left the transaction open for the next delivery.
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _string_map(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise PayloadError(f"{where} must be an object of strings")
    for key, text in value.items():
        if not (_storable(key) and _storable(text)):
            raise PayloadError(f"{where} holds a string that is not valid Unicode (a lone surrogate)")
    return value


def _no_constant(name: str) -> object:
    raise PayloadError(f"not JSON: {name} is not a JSON value")


def parse_payload(body: bytes) -> Payload:
    """Alertmanager webhook payload (version 4) → Payload; PayloadError names the first problem, and nothing
    else is ever raised (a 500 would make Alertmanager retry a bad delivery for ever)."""
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise PayloadError("not JSON that an Alertmanager sends: nested too deeply") from None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, and integers over 4300 digits
        raise PayloadError(f"not JSON: {err}") from None
    if not isinstance(data, dict):
        raise PayloadError("the payload must be a JSON object")
    receiver, alerts = data.get("receiver"), data.get("alerts")
    if not isinstance(receiver, str) or not receiver:
        raise PayloadError("receiver must be a non-empty string")
    if not isinstance(alerts, list):
        raise PayloadError("alerts must be a list")
    parsed = []
    for i, alert in enumerate(alerts):
        if not isinstance(alert, dict):
            raise PayloadError(f"alerts[{i}] must be an object")
        status = alert.get("status")
        if status not in ("firing", "resolved"):
            raise PayloadError(f"alerts[{i}].status must be firing or resolved")
        fields = {k: alert.get(k) for k in ("startsAt", "endsAt", "fingerprint")}
        for key in ("startsAt", "fingerprint"):
            if not isinstance(fields[key], str) or not fields[key]:
                raise PayloadError(f"alerts[{i}].{key} must be a non-empty string")
        for key, text in fields.items():
            if isinstance(text, str) and not _storable(text):
                raise PayloadError(f"alerts[{i}].{key} is not valid Unicode (a lone surrogate)")
        parsed.append(_Alert(
            status=status,
            labels=_string_map(alert.get("labels"), f"alerts[{i}].labels"),
            annotations=_string_map(alert.get("annotations", {}), f"alerts[{i}].annotations"),
            starts_at=str(fields["startsAt"]),  # checked above: a non-empty string
            ends_at=fields["endsAt"] if isinstance(fields["endsAt"], str) else "",
            fingerprint=str(fields["fingerprint"]),
        ))
    group_key = data.get("groupKey")
    group_key = group_key if isinstance(group_key, str) else ""
    if not (_storable(receiver) and _storable(group_key)):
        raise PayloadError("receiver and groupKey must be valid Unicode (no lone surrogate)")
    return Payload(receiver=receiver, group_key=group_key, alerts=tuple(parsed))


class AuditWebhook:
    """`POST /alertmanager/webhook`: bearer token, size limit, whole payload recorded or none of it."""

    def __init__(self, ledger: AuditLedger, token: str | None, max_body: int, inventory: Inventory,
                 clock: Callable[[], float] = time.time, on_record: Callable[[], None] | None = None) -> None:
        if token is not None and not token.strip():
            # hmac.compare_digest(b"", b"") is True: "Authorization: Bearer" would then authenticate anyone.
            raise ValueError("an empty audit token would turn authentication off")
        self.ledger = ledger
        self.max_body = max_body
        self._token = token.encode() if token is not None else None
        self._clock = clock
        self._on_record = on_record
        self._lock = threading.Lock()
        self.state = AuditState()
        self.set_inventory(inventory)
        for dispatch in ledger.dispatches():
            self.state.apply(dispatch)
        for miss in ledger.misses():
            self.state.apply_miss(miss)
        self.collector = AuditCollector(self.state)

    def decide_deadline(self, outage: tuple[str, str, str, float], deadline_at: float, now: float,
                        delivered_at: Callable[[tuple[str, str, str, float]], float | None] | None = None
                        ) -> Miss | bool:
        """Decide an outage whose notification deadline passed by `now` (threenines.deadlines).

        True: a first dispatch reached the ledger by the deadline, nothing to record. A Miss: it did not, and
        the miss is now in the ledger. False: the ledger refused the write (decided again at the next check).
        Decided under the lock that records dispatches, whose arrival is stamped under it too: a dispatch and
        a miss of one outage are ordered, so a dispatch recorded after a miss is late by construction.
        With `delivered_at` (threenines.notify: when every designated contact's channel accepted the
        notification) the promise is measured to delivery: a dispatch that no channel accepted is no
        notification (reason `undelivered`).
        """
        with self._lock:
            outage = outage_key(*outage)
            dispatched = self.state.first_dispatch_at(outage)
            first = dispatched if delivered_at is None else delivered_at(outage)
            if first is not None and first <= deadline_at:
                return True
            reason = "late" if first is not None else "undelivered" if dispatched is not None else "not_notified"
            miss = Miss(*outage, deadline_at, now, reason)
            try:
                self.ledger.append_miss(miss)
            except sqlite3.Error as err:
                log.error("audit ledger write of a missed deadline failed, will retry: %s", err)
                return False
            self.state.apply_miss(miss)
        return miss

    def set_inventory(self, inventory: Inventory) -> None:
        """After a reload: new deadlines, contact versions and targets apply to dispatches from now on."""
        self._inventory = inventory
        self._targets = frozenset(
            [(c.id, "connectivity", p.id) for c in inventory.customers for p in c.ports]
            + [(c.id, "power", "power") for c in inventory.customers if c.power is not None]
            + [(c.id, "application", a.id) for c in inventory.customers for a in c.applications])
        self.state.customers = frozenset(c.id for c in inventory.customers)
        self.state.targets = self._targets

    def handle(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        if self._token is not None and not self._authorized(headers):
            return 401, b"missing or wrong bearer token\n"
        if len(body) > self.max_body:
            return 413, f"body larger than {self.max_body} bytes\n".encode()
        try:
            payload = parse_payload(body)
        except PayloadError as err:
            return 400, f"{err}\n".encode()
        with self._lock:  # one delivery at a time, so "first dispatch of an outage" is decided exactly once
            # Stamped under the lock that also decides missed deadlines (decide_deadline): whichever of the two
            # comes first, the other sees it.
            dispatched_at = self._clock()
            try:
                dispatches, rejected = self._dispatches(payload, dispatched_at)
            except PayloadError as err:  # an impossible determined_at: validated before anything is written
                return 400, f"{err}\n".encode()
            if dispatches:
                try:
                    self.ledger.append(dispatches)
                except sqlite3.Error as err:
                    log.error("audit ledger write failed: %s", err)
                    return 500, b"audit ledger write failed\n"  # Alertmanager retries the delivery
            for dispatch in dispatches:
                self.state.apply(dispatch)
            for reason, alerts in rejected.items():
                self.state.reject(reason, len(alerts))
        if rejected:
            reason, alerts = next(iter(rejected.items()))
            log.warning("audit webhook: %d alert(s) of receiver %.80r not recorded, e.g. customer=%.80r "
                        "service=%.40r target=%.80r (%s): not in the inventory this exporter runs",
                        sum(len(a) for a in rejected.values()), payload.receiver, *alerts[0], reason)
        if self._on_record is not None:
            self._on_record()
        answer: dict[str, int] = {"recorded": len(dispatches)}
        if rejected:
            answer["rejected"] = sum(len(a) for a in rejected.values())
        return 200, json.dumps(answer).encode() + b"\n"

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        assert self._token is not None
        value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        scheme, _, credentials = value.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), self._token)

    def _dispatches(self, payload: Payload, dispatched_at: float
                    ) -> tuple[list[Dispatch], dict[str, list[tuple[str, str, str]]]]:
        """The delivery's rows, and the alerts left out by reason; PayloadError for an impossible time."""
        out: list[Dispatch] = []
        rejected: dict[str, list[tuple[str, str, str]]] = {}
        seen_in_payload: set[tuple[str, str, str, float]] = set()
        for i, alert in enumerate(payload.alerts):
            customer_id = alert.labels.get("customer") or payload.receiver.removeprefix(RECEIVER_PREFIX)
            determined_at = _determined_at(alert, i, dispatched_at)
            service, target = alert.labels.get("service", ""), alert.labels.get("target", "")
            try:
                customer = self._inventory.customer(customer_id)
            except KeyError:
                customer = None
            # Only what the inventory has becomes a row (and so a series): 2,400 invented targets in one post
            # were 2,400 new series. The generated config routes a customer's alerts to its own receiver only.
            reason = ("unknown_customer" if customer is None
                      else "unknown_target" if (customer_id, service, target) not in self._targets
                      else "wrong_receiver" if payload.receiver != RECEIVER_PREFIX + customer_id else None)
            if reason is not None or customer is None:
                rejected.setdefault(reason or "unknown_customer", []).append((customer_id, service, target))
                continue
            resolved = alert.status == "resolved"
            outage = outage_key(customer_id, service, target, determined_at) if determined_at is not None else None
            first = (not resolved and outage is not None and outage not in seen_in_payload
                     and not self.state.is_counted(outage))
            # Within the clock-skew allowance a dispatch may stamp a hair before its determination: delay 0.
            delay = max(0.0, dispatched_at - determined_at) if first and determined_at is not None else None
            deadline = customer.notification_deadline
            if first and outage is not None:
                seen_in_payload.add(outage)
            out.append(Dispatch(
                dispatched_at=dispatched_at,
                receiver=payload.receiver,
                fingerprint=alert.fingerprint,
                alertname=alert.labels.get("alertname", ""),
                customer=customer_id,
                service=service,
                target=target,
                determined_at=determined_at,
                starts_at=alert.starts_at,
                ends_at=alert.ends_at,
                resolved=resolved,
                contact_version=customer.contacts.version,
                deadline=deadline,
                delay=delay,
                first=first,
                # A miss already decided for this outage makes its first dispatch late, whatever the
                # arithmetic says at the edge (one fact, the ledger's misses row).
                late=bool(first and outage is not None and (
                    self.state.is_missed(outage)
                    or (delay is not None and deadline is not None and delay > deadline))),
                group_key=payload.group_key,
            ))
        return out, rejected


# What the alert rule writes ({{ printf "%.3f" $value }}), with an exponent allowed for hand-made rules;
# "inf", "nan", "0x..." and signs are not times.
_TIME_RE = re.compile(r"[0-9]{1,20}(?:\.[0-9]{1,9})?(?:[eE]\+?[0-9]{1,3})?")


def determination_problem(determined_at: float, dispatched_at: float) -> str | None:
    """Why determined_at cannot be the determination of an outage dispatched at dispatched_at, or None."""
    if not math.isfinite(determined_at) or determined_at <= 0:
        return "is not a time"
    if determined_at > dispatched_at + MAX_CLOCK_SKEW:
        return (f"is {determined_at - dispatched_at:.6g} s after this delivery arrived: a notification cannot "
                f"precede its determination (allowance {MAX_CLOCK_SKEW:.0f} s)")
    if determined_at < dispatched_at - MAX_DETERMINATION_AGE:
        return "is more than a year before this delivery arrived"
    return None


def _determined_at(alert: _Alert, index: int, dispatched_at: float) -> float | None:
    """The alert's determined_at, None when it has none; PayloadError (the delivery is refused with 400, and
    ThreeninesNotificationOverdue still pages for the outage) when it is not a possible determination time."""
    raw = alert.annotations.get("determined_at")
    if raw is None:
        return None
    where = f"alerts[{index}].annotations.determined_at {raw[:40]!r}"
    if not _TIME_RE.fullmatch(raw.strip()):
        raise PayloadError(f"{where} is not a Unix time in seconds such as 1767225600.000")
    value = float(raw)
    problem = determination_problem(value, dispatched_at)
    if problem is not None:
        raise PayloadError(f"{where} {problem}")
    return value
