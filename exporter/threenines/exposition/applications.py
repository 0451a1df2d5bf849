"""prometheus_client Collector over the application checks' latest statuses (no I/O in collect()).

The contract state of each check is in the contract families (`threenines_service_*{service="application"}`);
these are the checks' own measurements (docs/metrics.md, "Application checks").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from threenines.probes.app_poller import CheckStatus

_LABELS = ["customer", "target"]


def _families() -> dict[str, GaugeMetricFamily | CounterMetricFamily]:
    return {
        "info": GaugeMetricFamily("threenines_application_info", "Application checks from the inventory, by kind "
                                  "(http, smtp, tcp); 1.", labels=[*_LABELS, "kind"]),
        "runs": CounterMetricFamily("threenines_application_checks", "Application checks completed.",
                                    labels=_LABELS),
        "failures": CounterMetricFamily("threenines_application_check_failures",
                                        "Application checks that failed (or could not be made), by reason.",
                                        labels=[*_LABELS, "reason"]),
        "duration": GaugeMetricFamily("threenines_application_check_duration_seconds",
                                      "Duration of the last application check.", labels=_LABELS),
        "last": GaugeMetricFamily("threenines_application_check_last_timestamp_seconds",
                                  "Unix time of the last completed application check.", labels=_LABELS),
        "expiry": GaugeMetricFamily("threenines_application_certificate_expiry_timestamp_seconds",
                                    "Unix time the TLS certificate the application last presented expires.",
                                    labels=_LABELS),
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
