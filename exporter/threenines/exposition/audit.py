"""The audit's metrics: notification delays, dispatches, misses and rejected alerts, from the audit state
(no I/O in collect())."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.registry import Collector

from threenines.exposition import catalogue as c
from threenines.exposition.catalogue import metric_family
from threenines.ledgers.audit import REJECT_REASONS, AuditState


class AuditCollector(Collector):
    def __init__(self, state: AuditState) -> None:
        self._state = state

    def describe(self) -> Iterator[Any]:
        yield from self._families(AuditState())

    def collect(self) -> Iterator[Any]:
        yield from self._families(self._state.copy())

    @staticmethod
    def _families(state: AuditState) -> Iterator[Any]:
        yield state.delays.family(c.NOTIFICATION_DELAY_SECONDS.name, c.NOTIFICATION_DELAY_SECONDS.help)
        missed = metric_family(c.NOTIFICATION_DEADLINE_MISSED_TOTAL)
        for customer, count in sorted(state.missed.items()):
            missed.add_metric([customer], count)
        yield missed
        missed_at = metric_family(c.NOTIFICATION_DEADLINE_MISSED_TIMESTAMP_SECONDS)
        for (customer, service, target), value in sorted(state.last_missed.items()):
            missed_at.add_metric([customer, service, target], value)
        yield missed_at
        total = metric_family(c.NOTIFICATION_DISPATCHES_TOTAL)
        for (customer, receiver), count in sorted(state.dispatches.items()):
            total.add_metric([customer, receiver], count)
        yield total
        last = metric_family(c.NOTIFICATION_LAST_DISPATCH_DETERMINED_TIMESTAMP_SECONDS)
        for (customer, service, target), value in sorted(state.last_determined.items()):
            last.add_metric([customer, service, target], value)
        yield last
        rejected = metric_family(c.NOTIFICATION_REJECTED_ALERTS_TOTAL)
        for reason in REJECT_REASONS:
            rejected.add_metric([reason], state.rejected.get(reason, 0))
        yield rejected

