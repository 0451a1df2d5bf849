"""The clock's steps as a metric: `threenines_clock_steps_total{direction}` from the AnchoredClock's counts
(clock.py counts them at each tick; this only reads them, no I/O in collect())."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from threenines.clock import AnchoredClock
from threenines.exposition.catalogue import CLOCK_STEPS_TOTAL, metric_family


class ClockStepsCollector(Collector):
    def __init__(self, clock: AnchoredClock) -> None:
        self._clock = clock

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        family = metric_family(CLOCK_STEPS_TOTAL)
        family.add_metric(["forward"], self._clock.forward)
        family.add_metric(["backward"], self._clock.backward)
        yield family
