"""Poll every UPS/PDU of the inventory on its own schedule; say when a customer's power is due for evaluation.

Each device has its own task: polls are spread over the interval (stable offset from the device id), bounded
by a shared semaphore and a per-device deadline, so a dead or slow device only ever delays itself. Results
go into an immutable snapshot swapped in one assignment; the collector reads it without I/O. Each customer
with power feeds is due once per its policy interval: the poller tells its listener (`customer_due`), which
evaluates the power rule over the snapshot and hands the state to the contract (contract/power_state.py).
The poller itself knows nothing of the rule: it only polls and remembers.

Besides its schedule, a UPS and the PDUs it feeds are polled at once, and the listener told which devices were
just polled (`devices_polled`), when (a) a trap from the UPS says so (`trap()`: the trap is a hint, the poll is
the evidence), and (b) a UPS on battery announced a runtime shorter than its poll interval: at the moment that
runtime runs out, so that the blackout rule decides when the evidence says, not a poll interval later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from threenines.config.inventory import Customer, Device, Inventory
from threenines.config.power_topology import fed_by
from threenines.probes.power_history import HistoryFile, Remembered, encode
from threenines.probes.snmp.client import SnmpClient, SnmpFailure, Target
from threenines.probes.snmp.profiles import Profile, get_profile
from threenines.probes.snmp.reader import detect_profile, read_device
from threenines.probes.snmp.readings import DeviceReading

log = logging.getLogger(__name__)


class PowerListener(Protocol):
    """Who turns the poller's readings into customer power states (contract.power_state.PowerEvaluator)."""

    def customer_due(self, customer: Customer) -> object:
        """The customer's policy interval came round: evaluate and observe it now."""

    def devices_polled(self, devices: frozenset[str]) -> object:
        """These devices were just polled outside their schedule (trap, exhaustion): evaluate their customers."""


@dataclass(frozen=True)
class DeviceStatus:
    device: Device
    reading: DeviceReading | None = None  # from the last poll, None when it failed (or none yet)
    up: bool = False
    polled_at: float = 0.0
    last_success: float = 0.0
    duration: float = 0.0
    errors: tuple[tuple[str, int], ...] = ()  # reason → count since start
    last_reading: DeviceReading | None = None  # the reading of the last poll that answered (the history)
    silent_since: float | None = None  # the first failed poll after the last answer; None while it answers


@dataclass(frozen=True)
class PowerSnapshot:
    devices: tuple[DeviceStatus, ...] = ()
    # (device id, outlet id or name) → customer id, from the inventory's feeds
    outlet_customers: dict[tuple[str, str], str] = field(default_factory=dict)
    triggered: tuple[tuple[str, str, int], ...] = ()  # (ups, trigger, count) of extra group polls


# A trap storm must not become a poll storm: one group poll per UPS at most this often.
TRIGGER_MIN_SPACING = 5.0
# An exhaustion poll waits this long after the announced end of the battery (cards die a little after).
EXHAUSTION_MARGIN = 1.0
# The devices' history is written at most this often (and when the poller stops): a crash loses at most this
# much of it, and a fleet's polls cost one small file write per period, not one per poll.
HISTORY_FLUSH_SECONDS = 5.0


def deadline_for(device: Device) -> float:
    """Detect + GET + a few GETBULK rounds, each up to timeout × (retries + 1); never beyond the interval."""
    return min(device.interval, device.timeout * (device.retries + 1) * 4)


def target_for(device: Device, inventory: Inventory) -> Target:
    return Target(device.host, device.port, inventory.auth(device.auth), device.timeout, device.retries)


def exhaustion_poll_delay(reading: DeviceReading, interval: float) -> float | None:
    """Seconds until the battery a UPS on battery announced runs out, when that comes before its next poll."""
    ups = reading.ups
    if ups is None or ups.output_source != "battery" or ups.battery_runtime_seconds is None:
        return None
    # Not sooner than a trap may trigger: a UPS that keeps announcing 0 s must not be polled in a loop.
    delay = max(ups.battery_runtime_seconds + EXHAUSTION_MARGIN, TRIGGER_MIN_SPACING)
    return delay if delay < interval else None


def energy_went_back(before: DeviceReading | None, after: DeviceReading) -> bool:
    if before is None:
        return False
    old = {o.id: o.energy_joules for o in before.outlets}
    return any(o.energy_joules is not None and (old.get(o.id) or 0) > o.energy_joules for o in after.outlets)


class PowerPoller:
    def __init__(self, inventory: Inventory, listener: PowerListener | None = None,
                 clock: Callable[[], float] = time.time, client: SnmpClient | None = None,
                 max_concurrency: int = 64, history: Path | None = None) -> None:
        self.inventory = inventory
        # Set once before run(); None: devices are polled and exposed, no customer is evaluated.
        self.listener = listener
        self._clock = clock
        self._client = client or SnmpClient()
        self._slots = asyncio.Semaphore(max_concurrency)
        self._devices = {d.id: d for d in inventory.devices}
        self._profiles: dict[str, Profile] = {}
        self._last_energy: dict[str, DeviceReading] = {}
        self._running = False
        self._extra: set[asyncio.Task[None]] = set()  # trap and exhaustion group polls in flight
        self._timers: dict[str, asyncio.TimerHandle] = {}  # ups → its pending exhaustion poll
        self._last_group_poll: dict[str, float] = {}  # ups → monotonic time of its last extra group poll
        # The devices' history across restarts (power_history.py); None: kept in memory only.
        self._history = HistoryFile(history) if history is not None else None
        self._history_dirty = False
        outlet_customers = {
            (feed.pdu, outlet): c.id
            for c in inventory.customers if c.power is not None
            for feed in c.power.feeds for outlet in feed.outlets
        }
        self._snapshot = PowerSnapshot(
            devices=tuple(DeviceStatus(d) for d in inventory.devices), outlet_customers=outlet_customers
        )

    def snapshot(self) -> PowerSnapshot:
        return self._snapshot

    # -- history across restarts ----------------------------------------------------------------------------

    def restore(self) -> int:
        """Take back what the previous process remembered of the devices not polled yet (run() does, first).
        Returns how many devices got their history back."""
        if self._history is None:
            return 0
        found = self._history.load(self._devices, self._clock())
        snap = self._snapshot
        statuses = []
        restored = 0
        for s in snap.devices:
            old = found.get(s.device.id)
            if old is not None and s.polled_at == 0 and s.last_success == 0:
                s = replace(s, last_reading=old.last_reading, last_success=old.last_success,
                            silent_since=old.silent_since)
                restored += 1
            statuses.append(s)
        self._snapshot = replace(snap, devices=tuple(statuses))
        return restored

    def _history_bytes(self) -> bytes:
        self._history_dirty = False
        entries = (Remembered(s.device.id, s.last_reading, s.last_success, s.silent_since)
                   for s in self._snapshot.devices if s.last_success or s.silent_since is not None)
        return encode(entries, self._clock())

    async def _flush_history(self) -> None:
        if self._history is not None and self._history_dirty:
            await asyncio.to_thread(self._history.save, self._history_bytes())

    # -- one device ---------------------------------------------------------------------------------

    async def _profile(self, device: Device, target: Target) -> Profile:
        if device.profile != "auto":
            return get_profile(device.profile)
        profile = self._profiles.get(device.id)
        if profile is None:
            profile = self._profiles[device.id] = await detect_profile(self._client, target, device.kind)
            log.info("device=%s profile=%s (auto-detected)", device.id, profile.name)
        return profile

    async def poll_once(self, device: Device) -> DeviceStatus:
        """Poll one device now (bounded by its deadline) and publish the result in the snapshot."""
        started = time.monotonic()
        reading: DeviceReading | None = None
        reasons: list[str] = []
        async with self._slots:
            try:
                async with asyncio.timeout(deadline_for(device)):
                    reading = await self._read(device)
            except SnmpFailure as err:
                reasons.append(err.reason)
                log.warning("device=%s poll failed reason=%s: %s", device.id, err.reason, err)
            except TimeoutError:
                reasons.append("timeout")
                log.warning("device=%s poll failed reason=timeout: deadline %.1fs passed", device.id,
                            deadline_for(device))
            except KeyError as err:  # unknown profile name
                reasons.append("no_profile")
                log.warning("device=%s poll failed reason=no_profile: %s", device.id, err)
            except Exception as err:
                # What the client did not foresee is still a failed poll: counted, the device unknown. Only the
                # type and where it was raised are logged: a library's message may quote a secret it refused.
                reasons.append("protocol")
                frame = traceback.extract_tb(err.__traceback__)[-1]
                log.error("device=%s poll failed reason=protocol: unexpected %s at %s:%d", device.id,
                          type(err).__name__, frame.filename, frame.lineno)
        if reading is not None:
            reasons.extend(p.reason for p in reading.problems)
            if energy_went_back(self._last_energy.get(device.id), reading):
                reasons.append("counter_wrap")
            self._last_energy[device.id] = reading
        return self._publish(device, reading, time.monotonic() - started, reasons)

    async def _read(self, device: Device) -> DeviceReading:
        if device.nut is not None:
            from threenines.probes.nut import read_nut

            return await read_nut(device.host, device.port, device.nut, device.timeout)
        target = target_for(device, self.inventory)
        profile = await self._profile(device, target)
        return await read_device(self._client, target, profile)

    def _publish(self, device: Device, reading: DeviceReading | None, duration: float,
                 reasons: list[str]) -> DeviceStatus:
        now = self._clock()
        snap = self._snapshot
        statuses = list(snap.devices)
        index = next(i for i, s in enumerate(statuses) if s.device.id == device.id)
        old = statuses[index]
        errors = dict(old.errors)
        for reason in reasons:
            errors[reason] = errors.get(reason, 0) + 1
        silent_since = None if reading is not None else (old.silent_since if old.silent_since is not None else now)
        status = DeviceStatus(
            device=device, reading=reading, up=reading is not None, polled_at=now,
            last_success=now if reading is not None else old.last_success, duration=duration,
            errors=tuple(sorted(errors.items())),
            last_reading=reading if reading is not None else old.last_reading, silent_since=silent_since,
        )
        statuses[index] = status
        self._snapshot = replace(snap, devices=tuple(statuses))  # one assignment: scrapes see old or new
        self._history_dirty = True
        if reading is not None and device.kind == "ups":
            self._schedule_exhaustion_poll(device, reading)
        return status

    # -- polls the schedule does not make: traps and the announced end of a battery ----------------------------

    def ups_at(self, address: str) -> list[Device]:
        """The UPSes polled at this address (a trap's source)."""
        return [d for d in self.inventory.devices if d.kind == "ups" and d.host == address]

    def trap(self, address: str) -> list[str]:
        """A trap came from `address`: poll each UPS there and the PDUs it feeds now, then evaluate their
        customers. Returns the UPS ids a group poll was started for (rate-limited per UPS). Call it on the
        poller's event loop."""
        return [ups.id for ups in self.ups_at(address) if self._start_group_poll(ups, "trap")]

    def _start_group_poll(self, ups: Device, trigger: str) -> bool:
        last = self._last_group_poll.get(ups.id)
        if last is not None and time.monotonic() - last < TRIGGER_MIN_SPACING:
            return False
        self._last_group_poll[ups.id] = time.monotonic()
        task = asyncio.get_running_loop().create_task(self.poll_group(ups, trigger),
                                                      name=f"power-{trigger}-{ups.id}")
        self._extra.add(task)
        task.add_done_callback(self._extra.discard)
        return True

    async def poll_group(self, ups: Device, trigger: str) -> None:
        """Poll a UPS and every PDU it feeds at once, then have the customers they power evaluated."""
        group = [ups, *(self._devices[d] for d in sorted(fed_by(ups.id, self._devices)))]
        log.info("device=%s polled on %s with %d device(s) it feeds", ups.id, trigger, len(group) - 1)
        await asyncio.gather(*(self.poll_once(d) for d in group))
        snap = self._snapshot
        counts = {(u, t): n for u, t, n in snap.triggered}
        counts[(ups.id, trigger)] = counts.get((ups.id, trigger), 0) + 1
        self._snapshot = replace(snap, triggered=tuple((u, t, n) for (u, t), n in sorted(counts.items())))
        if self.listener is not None:
            self.listener.devices_polled(frozenset(d.id for d in group))

    def _schedule_exhaustion_poll(self, ups: Device, reading: DeviceReading) -> None:
        if not self._running:
            return
        previous = self._timers.pop(ups.id, None)
        if previous is not None:
            previous.cancel()
        delay = exhaustion_poll_delay(reading, ups.interval)
        if delay is None:
            return

        def fire() -> None:
            self._timers.pop(ups.id, None)
            if self._running:
                self._start_group_poll(ups, "exhaustion")

        self._timers[ups.id] = asyncio.get_running_loop().call_later(delay, fire)

    # -- schedule -----------------------------------------------------------------------------------

    @staticmethod
    def _offset(key: str, interval: float) -> float:
        return interval * (zlib.crc32(key.encode()) / 2**32)

    async def _every(self, key: str, interval: float, stop: asyncio.Event, job: Callable[..., object],
                     first: float) -> None:
        start = time.monotonic() + first
        tick = 0
        while not stop.is_set():
            delay = start + tick * interval - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    return
            try:
                result = job()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:  # one device's bug must not end its schedule or anyone else's
                log.exception("power job %s failed", key)
            # Skip ticks already missed rather than bursting to catch up.
            tick = max(tick + 1, int((time.monotonic() - start) // interval) + 1)

    async def run(self, stop: asyncio.Event) -> None:
        self.restore()
        tasks = [
            asyncio.create_task(self._every(
                f"device:{d.id}", d.interval, stop, lambda d=d: self.poll_once(d), self._offset(d.id, d.interval)
            ), name=f"power-device-{d.id}")
            for d in self.inventory.devices
        ]
        listener = self.listener
        for c in self.inventory.customers:
            if c.power is None or listener is None:
                continue
            interval = c.power.policy.interval
            # Evaluate just after the devices' slot in the interval has had time to complete.
            first = interval * 0.999 if len(self.inventory.devices) else 0.0
            tasks.append(asyncio.create_task(
                self._every(f"customer:{c.id}", interval, stop, lambda c=c: listener.customer_due(c), first),
                name=f"power-customer-{c.id}",
            ))
        if self._history is not None:
            tasks.append(asyncio.create_task(self._every("history", HISTORY_FLUSH_SECONDS, stop, self._flush_history,
                                                         HISTORY_FLUSH_SECONDS), name="power-history"))
        self._running = True
        try:
            await stop.wait()
        finally:
            self._running = False
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
            tasks.extend(list(self._extra))
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._client.close()
            if self._history is not None:  # what the last polls found, for the next process
                self._history.save(self._history_bytes())
