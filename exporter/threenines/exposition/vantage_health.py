"""prometheus_client Collector over the vantage's health per site (threenines.contract.vantage_health).

The families are always written, with no series when no site has canaries, so every exporter serves the same
catalogue (docs/metrics.md, "Vantage health"). No I/O in collect(): it reads the small state the loop keeps
(values replaced whole, dicts swapped on reload, so a scrape from the HTTP thread never sees one half-updated).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from threenines.contract.vantage_health import SiteHealth
from threenines.exposition import catalogue as c
from threenines.exposition.catalogue import Family, metric_family


class VantageHealthCollector(Collector):
    def __init__(self, snapshot: Callable[[], tuple[SiteHealth, ...]], vantage: str = "") -> None:
        self._snapshot = snapshot
        self._vantage = vantage  # a replica's name: these families carry it like the contract's (catalogue)

    def _family(self, family: Family) -> GaugeMetricFamily | CounterMetricFamily:
        if not self._vantage:
            return metric_family(family)
        kind = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
        return kind(family.name, family.help, labels=("vantage", *family.labels))

    def describe(self) -> Iterator[Metric]:
        yield from (self._family(f) for f in (c.VANTAGE_BLIND, c.CANARY_UP, c.VANTAGE_BLIND_FAILURES_TOTAL))

    def collect(self) -> Iterator[Metric]:
        blind, up, withheld = (self._family(f) for f in (c.VANTAGE_BLIND, c.CANARY_UP,
                                                         c.VANTAGE_BLIND_FAILURES_TOTAL))
        own = [self._vantage] if self._vantage else []
        for site in self._snapshot():
            blind.add_metric([*own, site.site], 1.0 if site.blind else 0.0)
            withheld.add_metric([*own, site.site], site.withheld_failures)
            for canary, answered in site.canaries:
                if answered is not None:
                    up.add_metric([*own, site.site, canary], 1.0 if answered else 0.0)
        yield from (blind, up, withheld)
