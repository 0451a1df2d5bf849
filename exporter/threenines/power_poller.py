"""Poll every UPS/PDU of the inventory on its own schedule and feed the customer power state to the contract.

Each device has its own task: polls are spread over the interval (stable offset from the device id), bounded
by a shared semaphore and a per-device deadline, so a dead or slow device only ever delays itself. Results
go into an immutable snapshot swapped in one assignment; the collector reads it without I/O. Each customer
with power feeds is evaluated once per its policy interval and handed to `observe` (the contract engine).
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

from threenines.contract import TargetKey
from threenines.inventory import Customer, Device, Inventory
from threenines.power import customer_powered
from threenines.snmp.client import SnmpClient, SnmpFailure, Target
from threenines.snmp.profiles import Profile, get_profile
from threenines.snmp.reader import detect_profile, read_device
from threenines.snmp.readings import DeviceReading

log = logging.getLogger(__name__)

Observe = Callable[[TargetKey, float, "bool | None"], None]


@dataclass(frozen=True)
class DeviceStatus:
    device: Device
    reading: DeviceReading | None = None  # from the last poll, None when it failed (or none yet)
    up: bool = False
    polled_at: float = 0.0
    last_success: float = 0.0
    duration: float = 0.0
    errors: tuple[tuple[str, int], ...] = ()  # reason → count since start


@dataclass(frozen=True)
class PowerSnapshot:
    devices: tuple[DeviceStatus, ...] = ()
    # (device id, outlet id or name) → customer id, from the inventory's feeds
    outlet_customers: dict[tuple[str, str], str] = field(default_factory=dict)
    customers: tuple[tuple[str, bool | None], ...] = ()  # last evaluated power state per customer


def deadline_for(device: Device) -> float:
    """Detect + GET + a few GETBULK rounds, each up to timeout × (retries + 1); never beyond the interval."""
    return min(device.interval, device.timeout * (device.retries + 1) * 4)


def target_for(device: Device, inventory: Inventory) -> Target:
    return Target(device.host, device.port, inventory.auth(device.auth), device.timeout, device.retries)


def energy_went_back(before: DeviceReading | None, after: DeviceReading) -> bool:
    if before is None:
        return False
    old = {o.id: o.energy_joules for o in before.outlets}
    return any(o.energy_joules is not None and (old.get(o.id) or 0) > o.energy_joules for o in after.outlets)


class PowerPoller:
    def __init__(self, inventory: Inventory, observe: Observe, clock: Callable[[], float] = time.time,
                 client: SnmpClient | None = None, max_concurrency: int = 64) -> None:
        self.inventory = inventory
        self._observe = observe
        self._clock = clock
        self._client = client or SnmpClient()
        self._slots = asyncio.Semaphore(max_concurrency)
        self._devices = {d.id: d for d in inventory.devices}
        self._profiles: dict[str, Profile] = {}
        self._last_energy: dict[str, DeviceReading] = {}
        outlet_customers = {
            (feed.pdu, outlet): c.id
            for c in inventory.customers if c.power is not None
            for feed in c.power.feeds for outlet in feed.outlets
        }
        self._snapshot = PowerSnapshot(
            devices=tuple(DeviceStatus(d) for d in inventory.devices), outlet_customers=outlet_customers
        )
        from threenines.power_collector import PowerCollector

        self.collector = PowerCollector(self.snapshot)

    def snapshot(self) -> PowerSnapshot:
        return self._snapshot

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
                target = target_for(device, self.inventory)
                async with asyncio.timeout(deadline_for(device)):
                    profile = await self._profile(device, target)
                    reading = await read_device(self._client, target, profile)
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
        status = DeviceStatus(
            device=device, reading=reading, up=reading is not None, polled_at=now,
            last_success=now if reading is not None else old.last_success, duration=duration,
            errors=tuple(sorted(errors.items())),
        )
        statuses[index] = status
        self._snapshot = replace(snap, devices=tuple(statuses))  # one assignment: scrapes see old or new
        return status

    # -- customers ----------------------------------------------------------------------------------

    def evaluate(self, customer: Customer) -> bool | None:
        """The customer's power state from the latest readings that are still fresh (≤ 1.5 × interval old)."""
        now = self._clock()
        readings = {
            s.device.id: s.reading if s.up and now - s.polled_at <= 1.5 * s.device.interval else None
            for s in self._snapshot.devices
        }
        return customer_powered(customer, self._devices, readings)

    def observe_customer(self, customer: Customer) -> bool | None:
        state = self.evaluate(customer)
        at = self._clock()
        self._observe(TargetKey(customer.id, "power", "power"), at, state)
        snap = self._snapshot
        customers = dict(snap.customers)
        customers[customer.id] = state
        self._snapshot = replace(snap, customers=tuple(sorted(customers.items())))
        return state

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
        tasks = [
            asyncio.create_task(self._every(
                f"device:{d.id}", d.interval, stop, lambda d=d: self.poll_once(d), self._offset(d.id, d.interval)
            ), name=f"power-device-{d.id}")
            for d in self.inventory.devices
        ]
        for c in self.inventory.customers:
            if c.power is None:
                continue
            interval = c.power.policy.interval
            # Evaluate just after the devices' slot in the interval has had time to complete.
            first = interval * 0.999 if len(self.inventory.devices) else 0.0
            tasks.append(asyncio.create_task(
                self._every(f"customer:{c.id}", interval, stop, lambda c=c: self.observe_customer(c), first),
                name=f"power-customer-{c.id}",
            ))
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._client.close()
