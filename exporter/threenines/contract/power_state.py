"""The customers' power state: the power rule (contract/power.py) over the poller's device snapshot, into the
contract engine.

The poller (probes/power_poller.py) polls and remembers; it tells this evaluator when a customer is due (its
policy interval) and which devices a trap or an exhausted battery just had polled. The evaluator takes the
readings that are still fresh and the devices' histories, applies the feed logic and the blackout rule, calls
`observe(TargetKey(customer, "power", "power"), at, state)` — with `failed_since=` the moment the rule dates
the end of power, when the customer is down by the rule only (docs/power.md, "From when") — keeps the last
state per customer and the inferences a down state rests on (for the collector), and logs the review trail of
those inferences.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple, Protocol

from threenines.config.inventory import Customer, Inventory, TargetKey
from threenines.config.power_topology import devices_of
from threenines.contract.engine import HORIZON_INTERVALS
from threenines.contract.power import (
    DeviceHistory,
    Exhaustion,
    PowerVerdict,
    customer_verdict,
    exhaustions,
    feed_powered,
)
from threenines.probes.power_poller import PowerPoller, PowerSnapshot
from threenines.probes.snmp.client import SnmpClient
from threenines.probes.snmp.readings import DeviceReading

log = logging.getLogger(__name__)


class Observe(Protocol):
    """ContractEngine.observe. `failed_since` is passed (as a keyword) only when the evidence dates the failure
    before `at`, so a plain `(key, at, ok)` observer works for everything else."""

    def __call__(self, key: TargetKey, at: float, ok: bool | None, failed_since: float | None = None) -> None: ...


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class CustomerPowerSnapshot:
    customers: tuple[tuple[str, bool | None], ...] = ()  # last evaluated power state per customer
    # (customer, the exhaustion it rests on) while a customer is down by the blackout rule only
    inferred: tuple[tuple[str, Exhaustion], ...] = ()


class PowerEvaluator:
    """The poller's listener: evaluates customers over `devices()` (the poller's snapshot) and observes them."""

    def __init__(self, inventory: Inventory, devices: Callable[[], PowerSnapshot], observe: Observe,
                 clock: Callable[[], float] = time.time) -> None:
        self.inventory = inventory
        self._devices_snapshot = devices
        self._observe = observe
        self._clock = clock
        self._devices = {d.id: d for d in inventory.devices}
        self._snapshot = CustomerPowerSnapshot()
        self._logged: dict[str, tuple[str, ...]] = {}  # customer → the inferences last logged for it

    def snapshot(self) -> CustomerPowerSnapshot:
        return self._snapshot

    def verdict(self, customer: Customer) -> PowerVerdict:
        """The customer's power state from the latest readings that are still fresh (≤ HORIZON_INTERVALS ×
        interval old), and the blackout rule over the devices' histories (a silence counts only while its poll
        is fresh)."""
        return self._evaluate(customer, self._clock())[0]

    def _evaluate(self, customer: Customer, now: float) -> tuple[PowerVerdict, float | None]:
        """The verdict at `now`, and the moment the customer's power ended when the evidence dates it earlier."""
        readings: dict[str, DeviceReading | None] = {}
        history: dict[str, DeviceHistory] = {}
        for s in self._devices_snapshot().devices:
            fresh = s.polled_at > 0 and now - s.polled_at <= HORIZON_INTERVALS * s.device.interval
            readings[s.device.id] = s.reading if s.up and fresh else None
            history[s.device.id] = DeviceHistory(s.last_reading, s.last_success or None,
                                                 s.silent_since if fresh and not s.up else None)
        verdict = customer_verdict(customer, self._devices, readings, exhaustions(self._devices, history))
        return verdict, self._down_since(customer, verdict, readings)

    def _down_since(self, customer: Customer, verdict: PowerVerdict,
                    readings: dict[str, DeviceReading | None]) -> float | None:
        """When the customer is down by the blackout rule alone: the moment its last feed lost power, the
        latest of the exhaustions it rests on (each feed died at its UPS's moment; the customer when the last
        did). None when any feed is measured down by a reading (a UPS answering output none, a dead inlet):
        that feed's end is known only to its poll, so the evaluation's time stands, as for any measurement."""
        if verdict.state is not False or not verdict.inferred or customer.power is None:
            return None
        if any(feed_powered(feed, self._devices, readings) is False for feed in customer.power.feeds):
            return None
        return max(e.since for e in verdict.inferred)

    def evaluate(self, customer: Customer) -> bool | None:
        return self.verdict(customer).state

    def observe_customer(self, customer: Customer) -> bool | None:
        at = self._clock()
        verdict, down_since = self._evaluate(customer, at)
        key = TargetKey(customer.id, "power", "power")
        if down_since is not None and down_since < at:
            # The outage starts where the evidence says power ended (ledger first_failed_at), not at this poll.
            self._observe(key, at, verdict.state, failed_since=down_since)
        else:
            self._observe(key, at, verdict.state)
        snap = self._snapshot
        customers = dict(snap.customers)
        customers[customer.id] = verdict.state
        inferred = [(c, e) for c, e in snap.inferred if c != customer.id]
        inferred.extend((customer.id, e) for e in verdict.inferred)
        self._snapshot = replace(snap, customers=tuple(sorted(customers.items())),
                                 inferred=tuple(sorted(inferred, key=lambda item: (item[0], item[1].ups))))
        self._log_inference(customer, verdict)
        return verdict.state

    # -- PowerListener --------------------------------------------------------------------------------------

    def customer_due(self, customer: Customer) -> bool | None:
        return self.observe_customer(customer)

    def devices_polled(self, devices: frozenset[str]) -> None:
        for customer in self.inventory.customers:
            if customer.power is not None and devices_of(customer, self._devices) & devices:
                self.observe_customer(customer)

    def _log_inference(self, customer: Customer, verdict: PowerVerdict) -> None:
        """One line when a customer's down state starts (or stops) resting on the blackout rule: the review
        trail beside the ledger's outage row."""
        key = tuple(f"{e.ups}:{e.evidence}:{e.since!r}" for e in verdict.inferred)
        if self._logged.get(customer.id, ()) == key:
            return
        self._logged[customer.id] = key
        for e in verdict.inferred:
            log.warning(
                "customer=%s power=down inferred=blackout ups=%s evidence=%s since=%s last_reading=%s "
                "silent_since=%s runtime_seconds=%s", customer.id, e.ups, e.evidence, _iso(e.since),
                _iso(e.last_reading_at), _iso(e.silent_since),
                "unknown" if e.runtime_seconds is None else f"{e.runtime_seconds:g}")
        if not key:
            log.info("customer=%s power inference ended: state=%s", customer.id,
                     {True: "up", False: "down", None: "unknown"}[verdict.state])


class PowerPair(NamedTuple):
    poller: PowerPoller
    evaluator: PowerEvaluator


def power_pair(inventory: Inventory, observe: Observe, clock: Callable[[], float] = time.time,
               client: SnmpClient | None = None, history: Path | None = None) -> PowerPair:
    """A poller for the inventory's devices and the evaluator it reports to (neither started); `history`: the
    file that keeps the devices' history across restarts (probes/power_history.py)."""
    poller = PowerPoller(inventory, clock=clock, client=client, history=history)
    evaluator = PowerEvaluator(inventory, poller.snapshot, observe, clock)
    poller.listener = evaluator
    return PowerPair(poller, evaluator)
