"""The audit's metrics: notification delays, dispatches, misses and rejected alerts, from the audit state
(no I/O in collect())."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

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

