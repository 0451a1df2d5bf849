"""What the delivery ledger says, as metrics: rebuilt from the ledger at start, then kept in memory (collect() does
no I/O). One object, updated by the notifier on the event loop and read by scrapes under its lock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client.registry import Collector

from threenines.exposition import catalogue as c
from threenines.exposition.catalogue import metric_family
from threenines.ledgers.audit import DELAY_BUCKETS, DelayHistograms

Outage = tuple[str, str, str, float]
ENDPOINTS = ("audit", "deliver")
# Answered codes, each series present from the start at 0, so increase() sees the first refused post too.
CODES = ("200", "400", "401", "413", "500")


class DeliveryState:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.delivered: dict[tuple[str, str], int] = {}  # (customer, channel) -> accepted notices
        self.failures: dict[tuple[str, str, str], int] = {}  # (customer, channel, reason) -> failed attempts
        self.pending: dict[tuple[str, str], int] = {}  # (customer, channel) -> owed, not accepted yet
        self.delays = DelayHistograms()
        self.last_delivered: dict[tuple[str, str, str], float] = {}  # target -> determined_at
        self.requests: dict[tuple[str, str], int] = {(e, c): 0 for e in ENDPOINTS for c in CODES}

    def accepted(self, customer: str, channel: str) -> None:
        with self._lock:
            key = (customer, channel)
            self.delivered[key] = self.delivered.get(key, 0) + 1
            self.pending[key] = max(0, self.pending.get(key, 0) - 1)

    def failed(self, customer: str, channel: str, reason: str) -> None:
        with self._lock:
            key = (customer, channel, reason)
            self.failures[key] = self.failures.get(key, 0) + 1

    def owed(self, customer: str, channel: str, change: int) -> None:
        with self._lock:
            key = (customer, channel)
            self.pending[key] = max(0, self.pending.get(key, 0) + change)
            self.delivered.setdefault(key, 0)

    def outage_delivered(self, outage: Outage, delay: float) -> None:
        customer, service, target, determined_at = outage
        with self._lock:
            self.delays.observe(customer, delay)
            key = (customer, service, target)
            self.last_delivered[key] = max(self.last_delivered.get(key, 0.0), determined_at)

    def request(self, endpoint: str, code: int) -> None:
        with self._lock:
            key = (endpoint, str(code))
            self.requests[key] = self.requests.get(key, 0) + 1

    def copy(self) -> DeliveryState:
        with self._lock:
            out = DeliveryState()
            out.delivered, out.failures, out.pending = dict(self.delivered), dict(self.failures), dict(self.pending)
            out.delays, out.last_delivered = self.delays.copy(), dict(self.last_delivered)
            out.requests = dict(self.requests)
            return out


class DeliveryCollector(Collector):
    def __init__(self, state: DeliveryState) -> None:
        self._state = state

    def describe(self) -> Iterator[Any]:
        yield from self._families(DeliveryState())

    def collect(self) -> Iterator[Any]:
        yield from self._families(self._state.copy())

    @staticmethod
    def _families(state: DeliveryState) -> Iterator[Any]:
        yield metric_family(c.NOTIFICATION_DELIVERIES_TOTAL, state.delivered)
        yield metric_family(c.NOTIFICATION_DELIVERY_FAILURES_TOTAL, state.failures)
        yield metric_family(c.NOTIFICATION_DELIVERY_PENDING, state.pending)
        yield c.histogram_family(c.NOTIFICATION_DELIVERY_DELAY_SECONDS, DELAY_BUCKETS, state.delays.buckets,
                                 state.delays.sums)
        yield metric_family(c.NOTIFICATION_LAST_DELIVERY_DETERMINED_TIMESTAMP_SECONDS, state.last_delivered)
        yield metric_family(c.NOTIFICATION_WEBHOOK_REQUESTS_TOTAL, state.requests)
