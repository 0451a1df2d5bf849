"""Replica exporters (vantages): whose evidence a series is, and the contract's rule for merging them.

A vantage is one exporter's view of the fleet: its `vantage` label when it has one, else its `instance`
(Prometheus' target label). A Prometheus HA pair adds a `replica` label (external_labels): that is the same
exporter scraped twice, not a second vantage, so it is grouped away.

The rule (docs/design.md, "Replica exporters"): a second of a customer's service is

* **outage** under `merge: all` (the default) when every vantage that has evidence for it says outage, under
  `merge: any` when any vantage says outage;
* **unknown** only when no vantage has evidence for it;
* **up** otherwise.

A vantage has evidence for a second unless it is in its no-evidence set, and its outage pieces are evidence
(they already exclude the time inside a run without evidence). Everything here is interval arithmetic on
half-open [start, end) seconds, so the merge is exactly as exact as its inputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from threenines.config.exclusions import POLICIES
from threenines.intervals import Interval, intersect, merge, subtract

VANTAGE_LABEL = "vantage"
INSTANCE_LABEL = "instance"
REPLICA_LABEL = "replica"  # Prometheus HA pairs' external label: the same exporter scraped by two servers


def vantage_of(labels: Iterable[tuple[str, str]] | Mapping[str, str]) -> str:
    """The vantage a series belongs to: its `vantage` label, else its `instance`, else "" (one exporter)."""
    lab = dict(labels.items() if isinstance(labels, Mapping) else labels)
    return lab.get(VANTAGE_LABEL) or lab.get(INSTANCE_LABEL, "")


def identity(labels: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """A series' labels without the HA replica label: two series with the same identity are one exporter's."""
    return tuple(sorted((k, v) for k, v in labels if k != REPLICA_LABEL))


@dataclass(frozen=True)
class View:
    """One vantage's evidence for one customer/service: where it said outage, and where it had no evidence."""

    outage: tuple[Interval, ...]
    no_evidence: tuple[Interval, ...]

    def up(self, window: Interval) -> list[Interval]:
        """Where this vantage had evidence and did not say outage."""
        return subtract([window], [*self.no_evidence, *self.outage])

    def evidence(self, window: Interval) -> list[Interval]:
        return merge([*subtract([window], self.no_evidence), *self.outage])


@dataclass(frozen=True)
class Merged:
    outage: list[Interval]
    unknown: list[Interval]
    up: list[Interval]


def merge_views(views: Mapping[str, View], window: Interval, policy: str = "all") -> Merged:
    """The merged outage, unknown and up time of one customer/service in window (they partition it)."""
    if policy not in POLICIES:
        raise ValueError(f"merge policy must be one of {POLICIES}, got {policy!r}")
    said_outage = merge(p for view in views.values() for p in intersect(view.outage, [window]))
    if policy == "all":
        outage = subtract(said_outage, [p for view in views.values() for p in view.up(window)])
    else:
        outage = said_outage
    has_evidence = merge(p for view in views.values() for p in view.evidence(window))
    unknown = subtract([window], has_evidence)
    return Merged(outage, unknown, subtract([window], [*outage, *unknown]))
