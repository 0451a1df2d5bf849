"""Runs every target's contract machine and the per-customer unions, and keeps the ledger in step.

Probers call `observe()`; a periodic `tick()` advances time for the targets whose counters move between
probes, folds final segments into the customer unions and writes the heartbeat. `changes()` returns
immutable views of what changed, for the collector: it never touches the ledger.
"""

from __future__ import annotations

import logging
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Protocol, cast

from threenines.config.inventory import Inventory, TargetKey
from threenines.contract.machine import (
    Checkpoint,
    CustomerServiceView,
    OutageEvent,
    ServiceUnion,
    TargetMachine,
    TargetView,
)

log = logging.getLogger(__name__)

# Evidence older than this many intervals is no evidence (docs/design.md §1, time accounting: "can't tell" is unknown).
HORIZON_INTERVALS = 1.5



class Recorder(Protocol):
    """Where the engine writes what it decided and reads what a restart resumes from: the outage ledger
    (threenines.ledgers.outages.OutageLedger). A protocol, so the contract does not import the ledgers."""

    def record(self, event: OutageEvent) -> None: ...
    def add_targets(self, keys: list[TargetKey], at: float) -> None: ...
    def save_checkpoint(self, key: TargetKey, checkpoint: Checkpoint | None) -> None: ...
    def heartbeat(self, at: float) -> None: ...
    def flush(self) -> None: ...
    def checkpoints(self) -> dict[TargetKey, Checkpoint]: ...
    def known_targets(self) -> set[TargetKey]: ...
    def last_alive(self) -> float | None: ...


@dataclass(frozen=True)
class TargetSpec:
    key: TargetKey
    threshold: int
    horizon: float


@dataclass(frozen=True)
class ContractChanges:
    """What changed since the previous call to `changes()`: everything after a (re)configure."""

    taken_at: float
    layout: tuple[TargetKey, ...] | None  # every target, in export order; None when the set is unchanged
    service_layout: tuple[tuple[str, str], ...] | None
    targets: dict[TargetKey, TargetView]
    services: dict[tuple[str, str], CustomerServiceView]
    # Unix time from which this process's counters count: the last heartbeat it resumed from (the downtime
    # before it is in the unknown counters) or its start. Time before it that no earlier process's scrape
    # showed is in no counter at all; the report counts it as unknown.
    accounting_start: float = 0.0


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
        for check in customer.applications:  # its own service: the connectivity and power unions stay as they are
            specs.append(TargetSpec(
                TargetKey(customer.id, "application", check.id),
                check.policy.threshold,
                check.policy.interval * HORIZON_INTERVALS,
            ))
    return specs


class _FreshLane:
    """The up targets with fresh evidence of one horizon, in order of their last evidence, as an entry per renewal:
    the evidence's stamp and the machine, in two deques (no tuple per entry).

    A renewal appends an entry and leaves the machine's older ones in place: moving it (an OrderedDict's
    move_to_end) cost a hash lookup and its neighbours' nodes, cold by then, at every probe. An entry is live while
    its machine is not active and its last evidence is still that stamp; the tick drops the others as they reach
    the head. Entries are appended in stamp order only, so the head is the oldest evidence.
    """

    __slots__ = ("machines", "times")

    def __init__(self) -> None:
        self.times: deque[float] = deque()
        self.machines: deque[TargetMachine] = deque()

    def join(self, machine: TargetMachine, evidence: float) -> bool:
        """An entry for the machine's evidence at the newest end; False, adding nothing, when older evidence is
        already in the lane (the entry would be out of order)."""
        return self.join_all((machine,), evidence)

    def join_all(self, machines: Sequence[TargetMachine], evidence: float) -> bool:
        """join() for each machine, all with this evidence: the order is checked once."""
        times = self.times
        if times and evidence < times[-1]:
            return False
        times.extend(repeat(evidence, len(machines)))
        self.machines.extend(machines)
        return True


class ContractEngine:
    """Work per tick is proportional to the targets that need it, not to the fleet.

    A target that is up with fresh evidence exports constant values until its next probe, so it sits in a
    *fresh lane* (one per horizon, ordered by last evidence) and a tick only looks at the lane's head to see
    whose evidence went stale. Everything else — down, failing, stale, never probed — is *active* and
    advanced every tick, with the unions of its customer service. A target whose evidence is older than its
    lane's newest (another source observed it late) waits in the active set for its next renewal, so a lane
    never needs an insertion out of order.
    """

    def __init__(self, ledger: Recorder | None = None,
                 on_event: Callable[[OutageEvent], None] | None = None) -> None:
        self._ledger = ledger
        self._listener = on_event  # told of every determination and end, after the ledger
        self._machines: dict[TargetKey, TargetMachine] = {}
        self._members: dict[tuple[str, str], list[TargetMachine]] = defaultdict(list)
        self._unions: dict[tuple[str, str], ServiceUnion] = {}
        self._fresh: dict[float, _FreshLane] = {}
        self._active: dict[TargetKey, TargetMachine] = {}
        self._touched: set[tuple[str, str]] = set()  # groups whose union needs folding at the next tick
        self._changed: dict[TargetKey, TargetMachine] = {}  # exported values may have changed
        self._service_views: dict[tuple[str, str], CustomerServiceView] = {}
        self._changed_services: set[tuple[str, str]] = set()
        self._relayout = True
        self.accounting_start = 0.0

    # -- configuration ----------------------------------------------------------------------------

    def configure(self, specs: Iterable[TargetSpec], now: float) -> None:
        """Apply a (re)loaded inventory: add new targets, retune kept ones, end removed ones."""
        wanted = {spec.key: spec for spec in specs}
        for key in [k for k in self._machines if k not in wanted]:
            self._machines.pop(key).end(now, "removed")
        checkpoints = self._ledger.checkpoints() if self._ledger and not self._machines else {}
        alive_until = self._ledger.last_alive() if self._ledger and not self._machines else None
        if not self._machines:
            self.accounting_start = alive_until if alive_until is not None and alive_until < now else now
        known = self._ledger.known_targets() if self._ledger else set()
        new_keys = []
        machines: dict[TargetKey, TargetMachine] = {}
        # One float object per distinct horizon: every answer reads its machine's and hashes it to find the
        # fresh lane, and a float of its own per target would be one more cache miss per probe.
        horizons: dict[float, float] = {}
        for key, spec in wanted.items():
            horizon = horizons.setdefault(spec.horizon, spec.horizon)
            machine = self._machines.get(key)
            if machine is not None:
                machine.threshold, machine.horizon = spec.threshold, horizon
                machines[key] = machine
                continue
            # A target this ledger knew, starting after a restart: the time we were not running is unknown.
            start = alive_until if key in known and alive_until is not None and alive_until < now else now
            machine = TargetMachine(key, spec.threshold, horizon, start, self._on_event, self._on_checkpoint)
            if key in checkpoints:
                machine.resume(checkpoints[key], now)
            machine.advance(now)
            machines[key] = machine
            if key not in known:
                new_keys.append(key)
        self._machines = machines  # in inventory order: the export order
        if self._ledger and new_keys:
            self._ledger.add_targets(new_keys, now)
        self._members.clear()
        for machine in self._machines.values():
            self._members[(machine.key.customer, machine.key.service)].append(machine)
        for group in list(self._unions):
            if group not in self._members:
                del self._unions[group]
                self._service_views.pop(group, None)
        for group, members in self._members.items():
            if group not in self._unions:
                self._unions[group] = ServiceUnion(*group, min(m.finalized_until for m in members))
        # Re-sort every target into the fresh lanes or the active set (horizons may have changed).
        self._active = {}
        self._lay_lanes(self._machines.values())
        self._touched = set(self._members)
        self._changed = dict(self._machines)
        self._changed_services = set(self._members)
        self._relayout = True

    @property
    def keys(self) -> frozenset[TargetKey]:
        return frozenset(self._machines)

    # -- evidence and time --------------------------------------------------------------------------

    def observe(self, key: TargetKey, at: float, ok: bool | None, failed_since: float | None = None) -> None:
        """A target's evidence at `at`; `failed_since`: a failure the evidence dates earlier (TargetMachine.observe).

        The run reaches back no further than the time already accounted. An up target with fresh evidence
        that is alone in its service (power) is accounted only at its observations, a reload or a clock step
        (it waits in its fresh lane), so its backdated run reaches back as far as its previous observation;
        a target whose service has an active member is accounted at every tick as well.
        """
        if ok is True:  # failed_since only qualifies a failure
            self.observe_answers(at, (key,))
            return
        machine = self._machines.get(key)
        if machine is not None:  # else removed by a reload while its probe was in flight
            self._observe(machine, at, ok, failed_since)

    def resolve(self, key: TargetKey) -> TargetMachine | None:
        """The token `observe_tokens` takes for a target (config.inventory.Resolver): its machine, None if unknown.
        A machine stays the target's for as long as the target is in the inventory."""
        return self._machines.get(key)

    def observe_answers(self, at: float, keys: Sequence[TargetKey]) -> None:
        """`observe(key, at, True)` for each key, in order, in one pass: the probes one read of the socket answered."""
        machines = self._machines
        self.observe_tokens(at, [machine for key in keys if (machine := machines.get(key)) is not None])

    def observe_tokens(self, at: float, tokens: Sequence[object]) -> None:
        """observe_answers for the machines `resolve` gave (a removed one is skipped: its probe was in flight).

        Most are the common case, an answer while up with fresh evidence (TargetMachine.observe_up): the machine
        takes a new entry at its lane's newest end, and nothing exported changes.
        """
        active = self._active
        renewed: dict[float, list[TargetMachine]] = {}  # horizon -> the machines that take a lane entry at `at`
        for machine in cast(Sequence[TargetMachine], tokens):  # cast once, not a function call a token
            if machine.removed:
                continue  # removed by a reload while its probe was in flight
            if not machine.observe_up(at, True):
                self._observe(machine, at, True, None)
            elif active and machine.key in active:
                self._classify(machine, renewed=True)  # leaves the active set for its lane
            else:
                horizon = machine.horizon
                same = renewed.get(horizon)
                if same is None:
                    renewed[horizon] = [machine]
                else:
                    same.append(machine)
        # All at one stamp: a lane takes the batch in one step, or none of it (older evidence is in it already).
        for horizon, joining in renewed.items():
            lane = self._fresh.get(horizon)
            if lane is None or not lane.join_all(joining, at):
                for machine in joining:
                    self._classify(machine, renewed=True)  # not in a lane, or observed out of the lane's order

    def _observe(self, machine: TargetMachine, at: float, ok: bool | None, failed_since: float | None) -> None:
        """Every case but an answer while up and fresh."""
        key = machine.key
        evidence = machine.last_evidence
        machine.observe(at, ok, failed_since)
        if machine._view is None:
            self._changed[key] = machine
        was_active = key in self._active
        self._classify(machine, renewed=machine.last_evidence != evidence)
        if was_active or machine.segments or key in self._active:
            self._touched.add((key.customer, key.service))

    def _lay_lanes(self, machines: Iterable[TargetMachine]) -> None:
        """New fresh lanes for these machines (the active set's stay active), each lane in order of evidence."""
        self._fresh = {}
        for machine in sorted(machines, key=lambda m: m.last_evidence or 0.0):
            self._classify(machine, renewed=True)

    def _classify(self, machine: TargetMachine, renewed: bool = False) -> None:
        """Put the machine in the active set or its fresh lane; `renewed`: it has new evidence (or, in configure,
        no lane entry yet)."""
        key = machine.key
        evidence = machine.last_evidence
        if (machine.down or machine.fail_count or evidence is None
                or machine.accrued_to > evidence + machine.horizon):
            self._active[key] = machine  # its lane entries are dead now
            return
        lane = self._fresh.get(machine.horizon)
        if lane is None:
            lane = self._fresh[machine.horizon] = _FreshLane()
        # Lanes stay in order of last evidence: a machine joins with the newest (or, in configure, in sorted
        # order) when it leaves the active set or its evidence is renewed; an observation without evidence
        # leaves its entry where it is, or its staleness would hide behind newer entries. Evidence older than
        # the lane's newest would be out of order: the machine stays active until its next renewal.
        if self._active.pop(key, None) is None and not renewed:
            return  # in its lane already, under this evidence
        if not lane.join(machine, evidence):
            self._active[key] = machine

    def tick(self, now: float) -> None:
        active = self._active
        for horizon, lane in self._fresh.items():
            times, machines = lane.times, lane.machines
            while times and times[0] + horizon < now:
                evidence, machine = times.popleft(), machines.popleft()
                if machine.last_evidence != evidence or machine.key in active:
                    continue  # a dead entry: renewed since (a newer entry follows), or active already
                active[machine.key] = machine  # its evidence went stale: unknown from here
        for key, machine in active.items():
            machine.advance(now)
            if machine._view is None:
                self._changed[key] = machine
            self._touched.add((key.customer, key.service))
        # A group with no active member ends this tick fully folded (its watermark is now): it leaves the set
        # until an observation or an active member brings it back.
        for group in self._touched:
            members = self._members.get(group)
            if not members:
                continue
            for machine in members:
                machine.advance(now)
            union = self._unions[group]
            union.consume(members)
            view = union.view(members)
            if view != self._service_views.get(group):
                self._service_views[group] = view
                self._changed_services.add(group)
        self._touched = set()
        if self._ledger is not None:
            self._ledger.flush()
            self._ledger.heartbeat(now)

    def rebase(self, shift: float, at: float) -> None:
        """The exporter's stamps are moved by `shift` at `at` (clock.py): move every target and union with them.

        A tick at `at` first classifies everything up to the move in the stamps it passed in. Nothing exported
        changes (counters are elapsed time; an open outage keeps its start and determination stamps); the fresh
        lanes are laid again from the moved evidence, in the same order (every target moves by the same amount).
        Called on the loop, between ticks.
        """
        self.tick(at)
        for key, machine in self._machines.items():
            machine.rebase(shift, at)
            if machine._view is None:
                self._changed[key] = machine
        for union in self._unions.values():
            union.rebase(shift)
        self._lay_lanes([machine for key, machine in self._machines.items() if key not in self._active])

    def changes(self, now: float) -> ContractChanges:
        """Views of what changed since the last call; the first call after configure has everything."""
        layout = service_layout = None
        if self._relayout:
            layout = tuple(self._machines)
            service_layout = tuple(self._unions)
            self._relayout = False
        for group in self._changed_services:
            if group not in self._service_views and group in self._unions:
                self._service_views[group] = self._unions[group].view(self._members[group])
        changes = ContractChanges(
            taken_at=now,
            layout=layout,
            service_layout=service_layout,
            targets={key: machine.view() for key, machine in self._changed.items()},
            services={g: self._service_views[g] for g in self._changed_services if g in self._service_views},
            accounting_start=self.accounting_start,
        )
        self._changed = {}
        self._changed_services = set()
        return changes

    def machine(self, key: TargetKey) -> TargetMachine:
        return self._machines[key]

    # -- sinks --------------------------------------------------------------------------------------

    def _on_event(self, event: OutageEvent) -> None:
        if event.kind == "determined":
            log.warning(
                "outage determined customer=%s service=%s target=%s first_failed_at=%.3f determined_at=%.3f",
                *event.key, event.first_failed_at, event.determined_at,
            )
        elif event.kind == "gap":
            log.warning(
                "no evidence inside an open outage customer=%s service=%s target=%s from=%.3f until=%.3f",
                *event.key, event.gap_start, event.at,
            )
        else:
            log.warning(
                "outage ended customer=%s service=%s target=%s ended_at=%.3f reason=%s",
                *event.key, event.at, event.end_reason,
            )
        if self._ledger is not None:
            self._ledger.record(event)
        if self._listener is not None:
            self._listener(event)

    def _on_checkpoint(self, key: TargetKey, checkpoint: Checkpoint | None) -> None:
        if self._ledger is not None:
            self._ledger.save_checkpoint(key, checkpoint)
