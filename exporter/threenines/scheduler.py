"""Runs contract probes on their schedule: spread over the interval, bounded in concurrency, never late-drifting.

Each target gets a stable phase inside its interval (a hash of its key), so N ports are spread evenly and
restarts do not line them up. A probe due at t is followed by one due at t + interval, whatever the
probe took; a probe that could not start for longer than an interval is skipped, not bunched.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from threenines.contract import TargetKey
from threenines.inventory import Port
from threenines.probes.ping import Pinger, ProbeResult

log = logging.getLogger(__name__)

# Probes due within this window start together: one wake-up for a batch instead of one per probe.
BATCH_WINDOW = 0.01
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class ProbeStatsView(NamedTuple):
    key: TargetKey
    address: str
    total: int
    failures: int
    errors: int
    last_at: float
    last_rtt: float | None
    last_loss: float | None


@dataclass
class ProbeStats:
    """Per-port probe counters (mutated only on the event loop; copied into snapshots)."""

    key: TargetKey
    address: str
    total: int = 0
    failures: int = 0
    errors: int = 0
    last_at: float = 0.0
    last_rtt: float | None = None
    last_loss: float | None = None
    _view: ProbeStatsView | None = None

    def view(self) -> ProbeStatsView:
        """The same object until the next probe result: the renderer reuses its lines for it."""
        if self._view is None:
            self._view = ProbeStatsView(self.key, self.address, self.total, self.failures, self.errors,
                                        self.last_at, self.last_rtt, self.last_loss)
        return self._view


class LagHistogram:
    """Cumulative histogram of schedule lag; plain counters because only the loop thread writes."""

    def __init__(self) -> None:
        self.counts = [0] * (len(LAG_BUCKETS) + 1)
        self.total = 0.0
        self.samples: list[float] = []  # recent lags, bounded, for benchmark percentiles

    def observe(self, lag: float) -> None:
        for index, bound in enumerate(LAG_BUCKETS):
            if lag <= bound:
                self.counts[index] += 1
                break
        else:
            self.counts[-1] += 1
        self.total += lag
        self.samples.append(lag)
        if len(self.samples) > 200_000:
            del self.samples[:100_000]


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def phase(key: TargetKey, interval: float) -> float:
    digest = hashlib.blake2b("\x1f".join(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * interval


Observer = Callable[[TargetKey, float, bool | None], None]


class ProbeScheduler:
    def __init__(self, pinger: Pinger, observe: Observer, max_concurrent: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._pinger = pinger
        self._observe = observe
        self._clock = clock
        self._ports: dict[TargetKey, Port] = {}
        self._heap: list[tuple[float, int, TargetKey]] = []
        self._counter = itertools.count()
        self._waiter: asyncio.Future[None] | None = None
        self._slots = asyncio.Semaphore(max_concurrent)
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats: dict[TargetKey, ProbeStats] = {}
        self.lag = LagHistogram()
        self.in_flight = 0
        self.probes_started = 0

    def configure(self, ports: dict[TargetKey, Port]) -> None:
        """Adopt a (re)loaded set of ports; kept ports keep their place in the schedule."""
        now = self._clock()
        added = [key for key in ports if key not in self._ports]
        self._ports = dict(ports)
        for key in list(self.stats):
            if key not in ports:
                del self.stats[key]
        for key, port in ports.items():
            stats = self.stats.get(key)
            if stats is None:
                self.stats[key] = ProbeStats(key, port.address)
            elif stats.address != port.address:
                stats.address = port.address
                stats._view = None
        for key in added:
            heapq.heappush(self._heap, (now + phase(key, self._ports[key].policy.interval), next(self._counter), key))
        self._wake_up()

    async def run(self, stop: asyncio.Event) -> None:
        stop_watch = asyncio.ensure_future(stop.wait())
        stop_watch.add_done_callback(lambda _: self._wake_up())
        while not stop.is_set():
            now = self._clock()
            if not self._heap:
                await self._sleep(3600)
                continue
            due, _, key = self._heap[0]
            if due > now + BATCH_WINDOW:
                await self._sleep(due - now)
                continue
            heapq.heappop(self._heap)
            port = self._ports.get(key)
            if port is None:
                continue  # removed by a reload
            await self._slots.acquire()
            started = self._clock()
            self.lag.observe(max(0.0, started - due))
            interval = port.policy.interval
            next_due = due + interval
            if next_due <= started:
                # Far behind (overload, or the clock jumped): realign instead of a burst of catch-up probes.
                next_due = started + interval
            heapq.heappush(self._heap, (next_due, next(self._counter), key))
            task = asyncio.create_task(self._probe(key, port))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        stop_watch.cancel()
        for task in list(self._tasks):
            task.cancel()

    async def _sleep(self, seconds: float) -> None:
        # One future and one timer per sleep: at hundreds of probes a second this runs once per probe,
        # and asyncio.wait() over two fresh tasks cost more than the probe itself.
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(min(seconds, 3600), _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _wake_up(self) -> None:
        if self._waiter is not None:
            _resolve(self._waiter)

    async def _probe(self, key: TargetKey, port: Port) -> None:
        self.in_flight += 1
        self.probes_started += 1
        policy = port.policy
        try:
            result = await self._pinger.probe(port.address, policy.packets, policy.timeout, policy.packet_interval)
        except Exception:  # a prober bug must not kill the schedule: record no evidence
            log.exception("probe of %s/%s failed unexpectedly", key.customer, key.target)
            result = ProbeResult(0, 0, (), error="internal")
        finally:
            self.in_flight -= 1
            self._slots.release()
        at = self._clock()
        self._record(key, result, at)
        self._observe(key, at, result.ok)

    def _record(self, key: TargetKey, result: ProbeResult, at: float) -> None:
        stats = self.stats.get(key)
        if stats is None:
            return
        stats._view = None
        if result.error is not None:
            stats.errors += 1
            return
        stats.total += 1
        stats.failures += 0 if result.ok else 1
        stats.last_at = at
        stats.last_rtt = result.rtt_mean
        stats.last_loss = result.loss_ratio

    def snapshot(self) -> tuple[ProbeStatsView, ...]:
        return tuple(stats.view() for stats in self.stats.values())
