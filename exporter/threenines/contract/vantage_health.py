"""Vantage health: is this exporter's own path to a site working? (docs/ha.md, "Vantage health")

A site may declare canaries, addresses the provider owns on the path to its customers (the upstream router, a
reference port). The exporter pings them beside the customers' ports, on a shorter cadence. While the latest
probe of every canary of a site went unanswered, this exporter (this vantage) is *blind* for the site: what it
sees is its own path failing, not the customers. A customer probe that fails then is no evidence: it reaches
the contract engine as None (could not probe), so it neither starts nor continues a failure run, and once the
evidence is older than the horizon the time is unknown, never outage. Probes that are answered still count as
up: an answer is evidence whatever the canaries say. Another vantage on another path carries the evidence
meanwhile (the report's merge and the alert rules treat unknown as no evidence).

The path's return is judged the same way: a customer probe that failed in the last seconds of the cut may end
after a canary already answered again, so for one probe's length (the site's longest port or application
probe) after the vantage stops being blind, a failure is still no evidence.

The race within one probe round: a port probed in the seconds after the cut and before the canaries notice
fails as evidence. The inventory refuses canaries that could not notice a cut before any port's second probe
(config.inventory_load._check_canaries), so such a failure is at most the first of a run, and the run's second
probe finds the vantage blind: a cut of the vantage's own path never determines an outage
(tests/ha/test_vantage_health.py shows it over arbitrary cuts and phases).

Pure: results come in as calls, the sink is the engine's observe. Used on the event loop only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple, cast

from threenines.config.inventory import (
    AnswersObserver,
    Inventory,
    Observer,
    Port,
    Resolver,
    TargetKey,
    TokensObserver,
    one_by_one,
)

CANARY_SERVICE = "canary"  # the service of a canary's scheduler key: TargetKey(site, "canary", canary id)



def probe_time(timeout: float, packets: int, packet_interval: float) -> float:
    """The longest an ICMP probe takes: its last echo request's timeout."""
    return timeout + (packets - 1) * packet_interval


def canary_key(site: str, canary: str) -> TargetKey:
    return TargetKey(site, CANARY_SERVICE, canary)


def canary_ports(inventory: Inventory) -> dict[TargetKey, Port]:
    """The canaries as the probe scheduler takes them (an address and a probe policy, like a port)."""
    return {canary_key(site.id, c.id): Port(c.id, c.address, c.policy) for site, c in inventory.canaries()}


class SiteHealth(NamedTuple):
    """One site's health as exported: blind now, since when, each canary's latest result (None: not probed yet)
    and how many customer failures were passed on as no evidence."""

    site: str
    blind: bool
    blind_since: float | None
    canaries: tuple[tuple[str, bool | None], ...]
    withheld_failures: int


class VantageHealth:
    """Routes probe results: canaries update their site's health, customers' results go on to `sink`, a failure
    from a blind site as None."""

    def __init__(self, sink: Observer, sink_answers: AnswersObserver | None = None,
                 sink_resolve: Resolver | None = None, sink_tokens: TokensObserver | None = None) -> None:
        """`sink_resolve` and `sink_tokens`: the sink's tokens (config.inventory.Resolver), both or neither."""
        self._sink = sink
        self._sink_answers = sink_answers if sink_answers is not None else one_by_one(sink)
        self._sink_resolve = sink_resolve
        self._sink_tokens = sink_tokens
        self._canaries: frozenset[TargetKey] = frozenset()  # the canaries' scheduler keys
        self._site_of: dict[str, str] = {}  # customer -> its site, only for sites with canaries
        # site -> canary id -> its latest probe answered (True), did not (False), or not probed yet (None)
        self._results: dict[str, dict[str, bool | None]] = {}
        self._blind_since: dict[str, float] = {}  # the blind sites, since the result that made them blind
        self._seeing_since: dict[str, float] = {}  # when each site last stopped being blind
        self._grace: dict[str, float] = {}  # site -> the longest probe of its customers' ports and applications
        self._withheld: dict[str, int] = {}

    def configure(self, inventory: Inventory) -> None:
        """Adopt a (re)loaded inventory; canaries it keeps keep their latest result, so a reload neither makes
        nor clears blindness by itself."""
        results: dict[str, dict[str, bool | None]] = {}
        for site in inventory.sites:
            if site.canaries:
                old = self._results.get(site.id, {})
                results[site.id] = {c.id: old.get(c.id) for c in site.canaries}
        self._results = results
        self._canaries = frozenset(canary_key(site, canary) for site, ids in results.items() for canary in ids)
        self._site_of = {c.id: c.site for c in inventory.customers if c.site in results}
        grace = dict.fromkeys(results, 0.0)
        for customer in inventory.customers:
            if customer.site in grace:
                longest = max((*(probe_time(p.policy.timeout, p.policy.packets, p.policy.packet_interval)
                                 for p in customer.ports),
                               *(a.policy.timeout for a in customer.applications)), default=0.0)
                grace[customer.site] = max(grace[customer.site], longest)
        self._grace = grace
        self._withheld = {site: self._withheld.get(site, 0) for site in results}
        since = self._blind_since
        self._blind_since = {site: since[site] for site in results if site in since and self._all_failed(site)}

    def observe(self, key: TargetKey, at: float, ok: bool | None) -> None:
        """A probe result, from the scheduler (ports and canaries) or the application poller."""
        if key.service == CANARY_SERVICE:
            self._canary(key, at, ok)
            return
        if ok is False:
            site = self._site_of.get(key.customer)
            if site is not None and (site in self._blind_since
                                     or at <= self._seeing_since.get(site, -math.inf) + self._grace[site]):
                self._withheld[site] += 1
                ok = None  # the vantage's own path is down: no evidence about the customer
        self._sink(key, at, ok)

    def observe_answers(self, at: float, keys: Sequence[TargetKey]) -> None:
        """`observe(key, at, True)` for each key, in order. An answer is evidence whatever the canaries say: a
        batch without a canary passes on as it is."""
        if not self._canaries or self._canaries.isdisjoint(keys):  # (isdisjoint hashes every key, even when empty)
            self._sink_answers(at, keys)
            return
        for key in keys:
            self.observe(key, at, True)

    def resolve(self, key: TargetKey) -> object:
        """A prober's token for a target (config.inventory.Resolver): a canary's is its key, a customer's the
        sink's token for it (its key when the sink takes keys only)."""
        if key.service == CANARY_SERVICE or self._sink_resolve is None:
            return key
        return self._sink_resolve(key)

    def observe_tokens(self, at: float, tokens: Sequence[object]) -> None:
        """observe_answers for what `resolve` gave: the customers' tokens go on to the sink in runs, in order,
        and a canary (its token is its key) updates its site between them."""
        if self._sink_resolve is None or self._sink_tokens is None:
            self.observe_answers(at, cast(Sequence[TargetKey], tokens))
            return
        if not self._canaries:  # no canary is scheduled either (a reload configures both; a removed one's
            self._sink_tokens(at, tokens)  # probe in flight is dropped by the scheduler)
            return
        run: list[object] = []
        for token in tokens:
            if token.__class__ is TargetKey:  # a canary: no sink token is a key
                if run:
                    self._sink_tokens(at, run)
                    run = []
                self._canary(token, at, True)
            else:
                run.append(token)
        if run:
            self._sink_tokens(at, run)

    def blind(self, site: str) -> bool:
        return site in self._blind_since

    def snapshot(self) -> tuple[SiteHealth, ...]:
        return tuple(SiteHealth(site, site in self._blind_since, self._blind_since.get(site),
                                tuple(results.items()), self._withheld.get(site, 0))
                     for site, results in sorted(self._results.items()))

    def _canary(self, key: TargetKey, at: float, ok: bool | None) -> None:
        results = self._results.get(key.customer)
        if results is None or key.target not in results:
            return  # removed by a reload while its probe was in flight
        results[key.target] = ok is True  # a probe that could not be sent did not reach the canary either
        site = key.customer
        if self._all_failed(site):
            self._blind_since.setdefault(site, at)
        elif self._blind_since.pop(site, None) is not None:
            self._seeing_since[site] = at

    def _all_failed(self, site: str) -> bool:
        # Every canary probed and none answered; before each has a result the vantage is not judged blind.
        return all(result is False for result in self._results[site].values())
