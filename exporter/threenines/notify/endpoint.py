"""`POST /alertmanager/deliver`: the customer receiver's only integration in the generated alertmanager.yml.

Same token, limits and checks as the audit webhook, which records the dispatch first (threenines.ledgers.audit). Then
each alert becomes one notice per designated contact in the delivery ledger, on disk before the post is
answered: a 500 makes Alertmanager retry, and a repeat (repeat_interval, a retried post, the other member of an
Alertmanager cluster) adds nothing, because a notice is unique per outage event and contact. An alert whose
determined_at moved later while it kept firing (replicas under `merge: any`) is the outage the audit found it
continues (AuditWebhook.outage_of): its notices keep that outage's determination, so the repeat owes nothing and the
resolved notice closes the outage the contacts were told of.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from threenines.alerting.alertmanager_config import RECEIVER_PREFIX
from threenines.alerting.webhook import AuditWebhook, PayloadError, parse_payload
from threenines.config.inventory import Customer, Inventory
from threenines.contract.machine import OutageEvent
from threenines.exposition.delivery import DeliveryState
from threenines.ledgers.audit import outage_key
from threenines.ledgers.delivery import NoticeRow
from threenines.ledgers.outages import OutageRecord
from threenines.notify.availability import MonthSoFar
from threenines.notify.message import Notice
from threenines.notify.worker import Notifier, rows_for

log = logging.getLogger(__name__)

PostHandler = Callable[[bytes, Mapping[str, str]], tuple[int, bytes]]
Outage = tuple[str, str, str, float]
# (customer, service, as of, contract zone) → the month so far (notify.availability.MonthOutages), None if unknown
Availability = Callable[[str, str, float, str], MonthSoFar | None]
LOG_EVERY = 60.0  # a refused post is logged at most once a minute per endpoint and code; all are counted


class CountedEndpoint:
    """Counts a webhook's answers (threenines_notification_webhook_requests_total) and logs refused posts."""

    def __init__(self, name: str, handler: PostHandler, state: DeliveryState,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._name, self._handler, self._state, self._clock = name, handler, state, clock
        self._logged: dict[int, float] = {}
        self._lock = threading.Lock()

    def __call__(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        status, reply = self._handler(body, headers)
        self._state.request(self._name, status)
        if status >= 400:
            now = self._clock()
            with self._lock:
                due = now - self._logged.get(status, -LOG_EVERY) >= LOG_EVERY
                if due:
                    self._logged[status] = now
            if due:
                log.warning("%s webhook refused a post: %d %s (counted in threenines_notification_webhook_requests_"
                            "total; logged once a minute)", self._name, status,
                            reply[:200].decode("utf-8", "replace").strip())
        return status, reply


class OutageTimes:
    """First failed probe and end of recent outages, from the contract engine's events (and the outage ledger at
    start), for the messages: the times the monthly statement shows. Fed on the event loop, read by the
    delivery endpoint's HTTP threads (the outage ledger itself is the loop's alone)."""

    KEEP = 7 * 86400.0  # an outage's resolved message is written within this of its determination

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._times: dict[Outage, tuple[float, float | None]] = {}

    def rebuild(self, records: Iterable[OutageRecord]) -> None:
        with self._lock:
            for r in records:
                self._times[outage_key(*r.key, r.determined_at)] = (r.first_failed_at, r.ended_at)

    def observe(self, event: OutageEvent) -> None:
        outage = outage_key(*event.key, event.determined_at)
        with self._lock:
            if event.kind == "determined":
                self._times[outage] = (event.first_failed_at, None)
                horizon = event.at - self.KEEP
                for old in [o for o, (_, end) in self._times.items() if end is not None and end < horizon]:
                    del self._times[old]
            elif event.kind == "ended" and outage in self._times:
                self._times[outage] = (self._times[outage][0], event.at)

    def __call__(self, customer: str, service: str, target: str, determined_at: float
                 ) -> tuple[float | None, float | None] | None:
        with self._lock:
            return self._times.get(outage_key(customer, service, target, determined_at))


def _time_of(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if value > 0 and value == value and value != float("inf") else None


def _ends_at(raw: str) -> float | None:
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.timestamp() if moment.year > 1 else None


class DeliveryEndpoint:
    def __init__(self, audit: AuditWebhook, notifier: Notifier, inventory: Inventory,
                 clock: Callable[[], float] = time.time,
                 outage_times: Callable[[str, str, str, float], tuple[float | None, float | None] | None] | None = None,
                 availability: Availability | None = None) -> None:
        self._audit = audit
        self._notifier = notifier
        self._clock = clock
        self._outage_times = outage_times
        self._availability = availability
        self.set_inventory(inventory)

    def set_inventory(self, inventory: Inventory) -> None:
        self._inventory = inventory

    def handle(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        status, reply = self._audit.handle(body, headers)  # token, size, payload and times checked there
        if status != 200:
            return status, reply
        try:
            payload = parse_payload(body)
        except PayloadError as err:  # the audit accepted it, so this is not expected
            return 400, f"{err}\n".encode()
        now = self._clock()
        rows: list[NoticeRow] = []
        for alert in payload.alerts:
            customer = self._customer(alert.labels.get("customer", ""), payload.receiver)
            determined_at = _time_of(alert.annotations.get("determined_at"))
            service, target = alert.labels.get("service", ""), alert.labels.get("target", "")
            if customer is None or determined_at is None or not self._has_target(customer, service, target):
                continue  # counted by the audit as rejected, or not an outage notification
            outage = self._audit.outage_of(customer.id, service, target, determined_at)
            later = None
            if outage[3] != round(determined_at, 3):
                determined_at, later = outage[3], determined_at
            notice = self._notice(customer, alert.status, service, target, determined_at, alert.annotations,
                                  alert.ends_at, later)
            rows += rows_for(notice, customer.contacts.notify, now)
        try:
            queued = self._notifier.accept(rows) if rows else 0
        except sqlite3.Error as err:
            log.error("delivery ledger write failed, Alertmanager will retry the post: %s", err)
            return 500, b"delivery ledger write failed\n"
        answer = json.loads(reply)
        answer["queued"] = queued
        return 200, json.dumps(answer).encode() + b"\n"

    def _customer(self, customer_id: str, receiver: str) -> Customer | None:
        if receiver != RECEIVER_PREFIX + customer_id:
            return None
        try:
            return self._inventory.customer(customer_id)
        except KeyError:
            return None

    @staticmethod
    def _has_target(customer: Customer, service: str, target: str) -> bool:
        if service == "connectivity":
            return any(p.id == target for p in customer.ports)
        if service == "application":
            return any(a.id == target for a in customer.applications)
        return service == "power" and target == "power" and customer.power is not None

    def _notice(self, customer: Customer, status: str, service: str, target: str, determined_at: float,
                annotations: Mapping[str, str], ends_at: str, later: float | None = None) -> Notice:
        first_failed = _time_of(annotations.get("first_failed_at"))
        ended = None
        known = self._outage_times(customer.id, service, target, determined_at) if self._outage_times else None
        if known is not None:
            first_failed = known[0] if known[0] is not None else first_failed
            ended = known[1]
        if later is not None:
            # The vantage that determined first recovered before the outage did: its end is not the outage's.
            last = self._outage_times(customer.id, service, target, later) if self._outage_times else None
            ended = last[1] if last is not None else None
            if first_failed is None and last is not None:
                first_failed = last[0]
        # The month so far as of the instant the message reports, only for an outage this exporter's engine
        # determined (and, resolved, ended): otherwise the history would lack the very outage being reported. Only
        # for a billed service: the text defers to the monthly statement, which has no line for the others (the
        # customer's applications, unless the contract bills them).
        month = None
        as_of = (determined_at if status == "firing" else ended) if known is not None else None
        if as_of is not None and self._availability is not None and service in customer.services:
            month = self._availability(customer.id, service, as_of, customer.timezone)
        if status == "resolved" and ended is None:
            ended = _ends_at(ends_at)  # when Prometheus saw the end: later than the first successful probe
        if service == "connectivity":
            address = next(p.address for p in customer.ports if p.id == target)  # the inventory's, as billed
        elif service == "application":
            address = next(a.address for a in customer.applications if a.id == target)
        else:
            assert customer.power is not None
            address = ", ".join(f.id for f in customer.power.feeds)
        return Notice(status=status, customer=customer.id, customer_name=customer.name, service=service,
                      target=target, address=address, timezone=customer.timezone, language=customer.contacts.language,
                      determined_at=determined_at, first_failed_at=first_failed,
                      ended_at=ended if status == "resolved" else None, contacts_version=customer.contacts.version,
                      month_as_of=month.at if month is not None else None,
                      month_outage_seconds=month.outage_seconds if month is not None else None)
