"""prometheus_client Collector over the application checks' latest statuses (no I/O in collect()).

The contract state of each check is in the contract families (`threenines_service_*{service="application"}`);
these are the checks' own measurements (docs/metrics.md, "Application checks").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from threenines.exposition import catalogue as c
from threenines.exposition.catalogue import metric_family
from threenines.probes.app_poller import CheckStatus


def _families() -> dict[str, GaugeMetricFamily | CounterMetricFamily]:
    return {
        "info": metric_family(c.APPLICATION_INFO),
        "runs": metric_family(c.APPLICATION_CHECKS_TOTAL),
        "failures": metric_family(c.APPLICATION_CHECK_FAILURES_TOTAL),
        "duration": metric_family(c.APPLICATION_CHECK_DURATION_SECONDS),
        "last": metric_family(c.APPLICATION_CHECK_LAST_TIMESTAMP_SECONDS),
        "expiry": metric_family(c.APPLICATION_CERTIFICATE_EXPIRY_TIMESTAMP_SECONDS),
    }


class ApplicationCollector(Collector):
    def __init__(self, statuses: Callable[[], list[CheckStatus]]) -> None:
        self._statuses = statuses

    def describe(self) -> Iterator[Metric]:
        yield from _families().values()

    def collect(self) -> Iterator[Metric]:
        f = _families()
        for s in self._statuses():
            labels = [s.customer, s.check.id]
            f["info"].add_metric([*labels, s.check.kind], 1.0)
            f["runs"].add_metric(labels, s.runs)
            for reason, count in s.failures:
                f["failures"].add_metric([*labels, reason], count)
            if s.duration is not None:
                f["duration"].add_metric(labels, s.duration)
                f["last"].add_metric(labels, s.last_at)
            if s.cert_not_after is not None:
                f["expiry"].add_metric(labels, s.cert_not_after)
        yield from f.values()
