"""The audit's metrics: notification delays, dispatches, misses and rejected alerts, from the audit state
(no I/O in collect())."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.registry import Collector

from threenines.exposition import catalogue as c
from threenines.exposition.catalogue import metric_family
from threenines.ledgers.audit import DELAY_BUCKETS, REJECT_REASONS, AuditState


class AuditCollector(Collector):
    def __init__(self, state: AuditState) -> None:
        self._state = state

    def describe(self) -> Iterator[Any]:
        yield from self._families(AuditState())

    def collect(self) -> Iterator[Any]:
        yield from self._families(self._state.copy())

    @staticmethod
    def _families(state: AuditState) -> Iterator[Any]:
        yield c.histogram_family(c.NOTIFICATION_DELAY_SECONDS, DELAY_BUCKETS, state.delays.buckets, state.delays.sums)
        yield metric_family(c.NOTIFICATION_DEADLINE_MISSED_TOTAL, state.missed)
        yield metric_family(c.NOTIFICATION_DEADLINE_MISSED_TIMESTAMP_SECONDS, state.last_missed)
        yield metric_family(c.NOTIFICATION_DISPATCHES_TOTAL, state.dispatches)
        yield metric_family(c.NOTIFICATION_LAST_DISPATCH_DETERMINED_TIMESTAMP_SECONDS, state.last_determined)
        # Every reason from the start, at 0: a rate() over a counter that appears at its first increment misses it.
        yield metric_family(c.NOTIFICATION_REJECTED_ALERTS_TOTAL,
                            {reason: state.rejected.get(reason, 0) for reason in REJECT_REASONS})
