"""Runs every target's contract machine and the per-customer unions, and keeps the ledger in step.

Probers call `observe()`; a periodic `tick()` advances time for all targets (so counters move between
probes), folds final segments into the customer unions and writes the heartbeat. `snapshot()` returns
immutable views for the collector: it never touches the ledger.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from threenines.contract import (
    Checkpoint,
    CustomerServiceView,
    OutageEvent,
    ServiceUnion,
    TargetKey,
    TargetMachine,
    TargetView,
)
from threenines.inventory import Inventory
from threenines.ledger import Ledger

log = logging.getLogger(__name__)

# Evidence older than this many intervals is no evidence (DESIGN.md: "can't tell" is unknown).
HORIZON_INTERVALS = 1.5


@dataclass(frozen=True)
class TargetSpec:
    key: TargetKey
    threshold: int
    horizon: float


@dataclass(frozen=True)
class ContractSnapshot:
    taken_at: float
    targets: tuple[TargetView, ...]
    services: tuple[CustomerServiceView, ...]


def specs_from_inventory(inventory: Inventory) -> list[TargetSpec]:
    specs = []
    for customer in inventory.customers:
        for port in customer.ports:
            specs.append(TargetSpec(
                TargetKey(customer.id, "connectivity", port.id),
                port.policy.threshold,
                port.policy.interval * HORIZON_INTERVALS,
            ))
        if customer.power is not None:
            specs.append(TargetSpec(
                TargetKey(customer.id, "power", "power"),
                customer.power.policy.threshold,
                customer.power.policy.interval * HORIZON_INTERVALS,
            ))
    return specs


class ContractEngine:
    def __init__(self, ledger: Ledger | None = None,
                 on_event: Callable[[OutageEvent], None] | None = None) -> None:
        self._ledger = ledger
        self._listener = on_event  # told of every determination and end, after the ledger
        self._machines: dict[TargetKey, TargetMachine] = {}
        self._members: dict[tuple[str, str], list[TargetMachine]] = defaultdict(list)
        self._unions: dict[tuple[str, str], ServiceUnion] = {}

    # -- configuration ----------------------------------------------------------------------------

    def configure(self, specs: Iterable[TargetSpec], now: float) -> None:
        """Apply a (re)loaded inventory: add new targets, retune kept ones, end removed ones."""
        wanted = {spec.key: spec for spec in specs}
        for key in [k for k in self._machines if k not in wanted]:
            self._machines.pop(key).end(now, "removed")
        checkpoints = self._ledger.checkpoints() if self._ledger and not self._machines else {}
        alive_until = self._ledger.last_alive() if self._ledger and not self._machines else None
        known = self._ledger.known_targets() if self._ledger else set()
        new_keys = []
        for key, spec in wanted.items():
            machine = self._machines.get(key)
            if machine is not None:
                machine.threshold, machine.horizon = spec.threshold, spec.horizon
                continue
            # A target this ledger knew, starting after a restart: the time we were not running is unknown.
            start = alive_until if key in known and alive_until is not None and alive_until < now else now
            machine = TargetMachine(key, spec.threshold, spec.horizon, start, self._on_event, self._on_checkpoint)
            if key in checkpoints:
                machine.resume(checkpoints[key], now)
            machine.advance(now)
            self._machines[key] = machine
            if key not in known:
                new_keys.append(key)
        if self._ledger and new_keys:
            self._ledger.add_targets(new_keys, now)
        self._members.clear()
        for machine in self._machines.values():
            self._members[(machine.key.customer, machine.key.service)].append(machine)
        for group in list(self._unions):
            if group not in self._members:
                del self._unions[group]
        for group, members in self._members.items():
            if group not in self._unions:
                self._unions[group] = ServiceUnion(*group, min(m.finalized_until for m in members))

    @property
    def keys(self) -> frozenset[TargetKey]:
        return frozenset(self._machines)

    # -- evidence and time --------------------------------------------------------------------------

    def observe(self, key: TargetKey, at: float, ok: bool | None) -> None:
        machine = self._machines.get(key)
        if machine is None:
            return  # removed by a reload while its probe was in flight
        machine.observe(at, ok)

    def tick(self, now: float) -> None:
        for machine in self._machines.values():
            machine.advance(now)
        for group, union in self._unions.items():
            union.consume(self._members[group])
        if self._ledger is not None:
            self._ledger.flush()
            self._ledger.heartbeat(now)

    def snapshot(self, now: float) -> ContractSnapshot:
        return ContractSnapshot(
            taken_at=now,
            targets=tuple(m.view() for m in self._machines.values()),
            services=tuple(u.view(self._members[g]) for g, u in self._unions.items()),
        )

    def machine(self, key: TargetKey) -> TargetMachine:
        return self._machines[key]

    # -- sinks --------------------------------------------------------------------------------------

    def _on_event(self, event: OutageEvent) -> None:
        if event.kind == "determined":
            log.warning(
                "outage determined customer=%s service=%s target=%s first_failed_at=%.0f determined_at=%.0f",
                *event.key, event.first_failed_at, event.determined_at,
            )
        else:
            log.warning(
                "outage ended customer=%s service=%s target=%s ended_at=%.0f reason=%s",
                *event.key, event.at, event.end_reason,
            )
        if self._ledger is not None:
            self._ledger.record(event)
        if self._listener is not None:
            self._listener(event)

    def _on_checkpoint(self, key: TargetKey, checkpoint: Checkpoint | None) -> None:
        if self._ledger is not None:
            self._ledger.save_checkpoint(key, checkpoint)
