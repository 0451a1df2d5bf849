"""The merge policy as a metric: `threenines_merge_policy_info{merge}` 1 (docs/metrics.md, docs/ha.md "Merged
views").

The report merges replica exporters by the exclusions file's `policy.merge`; the alert and recording rules read
it here to apply the same policy, so it is whatever the running exclusions say: `all` without an exclusions file
(the contract's default), the new value after a reload, the old one after a refused reload. Read at each scrape
from the exclusions the process holds (replaced whole on reload), so collect() does no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from threenines.config.exclusions import Exclusions, Policy
from threenines.exposition.catalogue import MERGE_POLICY_INFO


class MergePolicyCollector(Collector):
    def __init__(self, exclusions: Callable[[], Exclusions | None], vantage: str = "") -> None:
        self._exclusions = exclusions
        self._vantage = vantage  # a replica's name: the family carries it like the contract's (catalogue)

    def _family(self) -> GaugeMetricFamily:
        own = ("vantage",) if self._vantage else ()
        return GaugeMetricFamily(MERGE_POLICY_INFO.name, MERGE_POLICY_INFO.help,
                                 labels=(*own, *MERGE_POLICY_INFO.labels))

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        exclusions = self._exclusions()
        policy = exclusions.policy if exclusions is not None else Policy()
        family = self._family()
        family.add_metric([self._vantage, policy.merge] if self._vantage else [policy.merge], 1.0)
        yield family
