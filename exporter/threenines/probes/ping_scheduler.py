"""Runs contract probes on their schedule: spread over the interval, bounded in concurrency, never late-drifting.

Each target gets a stable phase inside its interval (a hash of its key), so N ports are spread evenly and
restarts do not line them up. A probe due at t is followed by one due at t + interval, whatever the
probe took; a probe that could not start for longer than an interval is skipped, not bunched. The schedule runs
on the monotonic clock: a step of the system clock (NTP, a VM restore) never moves a due probe. Results are
stamped by the exporter's anchored clock (clock.py).

One timer drives everything (the "pump"): it starts the probes that are due, sends follow-up echo requests,
expires the unanswered ones and reads replies, then sleeps until the next of those is due, but at least the
batch window. Targets with the same interval share a lane, a ring that stays in due order by construction, so
scheduling a probe costs O(1), with no heap, Task or timer per probe. The passes over the probes of a wake-up
(start the due ones, send them, fold the finished ones into their ports' records) are the wire's (`_wire.c`, in C
when built; `wire.py` is the reference): they read and write the ports' PortState, not their Python attributes.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from threenines.clock import AnchoredClock
from threenines.config.inventory import AnswersObserver, Observer, Port, Resolver, TargetKey, TokensObserver, one_by_one
from threenines.probes import wire as python_wire
from threenines.probes.ping import Pinger, Probe, native_wire
from threenines.probes.wire import EMPTY_RECORD, RECORD

log = logging.getLogger(__name__)

# Wake-ups are at least a batch window apart; probes due meanwhile start together (lag ≤ the window, by
# design). A timed wake-up of the event loop costs 25–150 µs of CPU on a VM, as much as several probes, so the
# window is as wide as the cadence allows: 1/100 of the shortest interval, between these bounds (1 s at the
# 5-minute contract cadence).
MAX_BATCH_WINDOW = 1.0
MIN_BATCH_WINDOW = 0.05
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
MAX_LAG_SAMPLES = 200_000


# A port's counters as published for the renderer: packed bytes (wire.RECORD), not a tuple. A record is built
# per probe and kept until a scrape renders it; as bytes it is one allocation the cyclic garbage collector never
# tracks (a tuple of 8 was two, and every young-generation collection walked it and its cold members).
# NaN stands for "none" (no answer yet).
_RECORD = RECORD
ProbeRecord = bytes
# (total, failures, errors, last_at, rtt, loss) of a record, NaN for none: for the renderer, which formats them
# without building a ScheduledPortView per port.
unpack_record = _RECORD.unpack


class ScheduledPortView(NamedTuple):
    key: TargetKey
    total: int
    failures: int
    errors: int
    last_at: float
    last_rtt: float | None
    last_loss: float | None

    @classmethod
    def decode(cls, key: TargetKey, record: ProbeRecord) -> ScheduledPortView:
        total, failures, errors, last_at, rtt, loss = _RECORD.unpack(record)
        return cls(key, total, failures, errors, last_at, None if rtt != rtt else rtt, None if loss != loss else loss)

    def encode(self) -> ProbeRecord:
        rtt, loss = self.last_rtt, self.last_loss
        return _RECORD.pack(self.total, self.failures, self.errors, self.last_at,
                            math.nan if rtt is None else rtt, math.nan if loss is None else loss)


if TYPE_CHECKING:  # the type checker reads the reference; _wire.c's PortState has the same members
    _PortState = python_wire.PortState
else:
    _PortState = native_wire.PortState if native_wire is not None else python_wire.PortState


class ScheduledPort(_PortState):
    """One scheduled port: its probe policy and its counters' record (mutated only on the event loop).

    Schedule lanes and probes carry this object itself, so a probe costs no lookup by key. Each finished probe
    folds its outcome into `record` (wire.fold_run), which is also what is published, by `slot`: hashing a
    TargetKey (a tuple of three strings, its hash computed at every use) to store a record and again to find its
    line cost ~1 µs a probe, a tenth of the exporter's CPU with two scrapers. What the wire's passes use (record,
    slot, token, probe, due, retired) is its PortState base, in C with the native wire.
    """

    __slots__ = ("address", "key", "policy")

    def __init__(self, key: TargetKey, port: Port) -> None:
        self.key = key
        self.address = port.address
        self.policy = port.policy
        self.due = 0.0  # monotonic time its next probe is due (its place in its lane)
        self.probe = None  # the last probe, reused by the next one once it has finished
        self.retired = False  # removed by a reload: a probe still in flight is dropped
        self.record = EMPTY_RECORD
        self.slot = -1  # its place in the scheduler's layout (the exposition's order), -1 when not in it
        self.token = None  # what the answers' sink resolved its key to; None: not resolved (yet)

    def view(self) -> ScheduledPortView:
        return ScheduledPortView.decode(self.key, self.record)


class LagHistogram:
    """Cumulative histogram of schedule lag; plain counters because only the loop thread writes."""

    def __init__(self) -> None:
        self.counts = [0] * (len(LAG_BUCKETS) + 1)
        self.total = 0.0
        self.samples: list[float] = []  # recent lags, bounded, for benchmark percentiles

    def observe(self, lags: list[float]) -> None:
        """The lags of the probes one wake-up started (one call a wake-up, not one a probe)."""
        # A bucket's count from the sorted lags, a bisection per bound instead of one per lag: bucket i holds the
        # lags in (LAG_BUCKETS[i-1], LAG_BUCKETS[i]], the last one those above every bound.
        ordered = sorted(lags)
        counts, below = self.counts, 0
        for index, bound in enumerate(LAG_BUCKETS):
            upto = bisect.bisect_right(ordered, bound)
            counts[index] += upto - below
            below = upto
        counts[-1] += len(ordered) - below
        self.total += sum(lags)
        samples = self.samples
        samples += lags
        if len(samples) > MAX_LAG_SAMPLES:
            del samples[:len(samples) - MAX_LAG_SAMPLES // 2]


def _due(port: ScheduledPort) -> float:
    return port.due


class _Lane:
    """The ports of one interval: a ring in order of due time, from `head` (wire.start_due moves it on)."""

    __slots__ = ("head", "interval", "ports")

    def __init__(self, interval: float, ports: list[ScheduledPort]) -> None:
        self.interval = interval
        self.ports = ports
        self.head = 0


def _itself(key: TargetKey) -> object:
    return key


def batch_window(intervals: Iterable[float]) -> float:
    return min(MAX_BATCH_WINDOW, max(MIN_BATCH_WINDOW, min(intervals, default=300.0) / 100))


def phase(key: TargetKey, interval: float) -> float:
    digest = hashlib.blake2b("\x1f".join(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * interval




class ProbeScheduler:
    def __init__(self, pinger_factory: Callable[[Callable[[list[Probe]], None]], Pinger], observe: Observer,
                 max_concurrent: int, clock: Callable[[], float] | None = None,
                 observe_answers: AnswersObserver | TokensObserver | None = None,
                 resolve: Resolver | None = None) -> None:
        """`observe_answers` takes a batch of answers as keys or, with `resolve`, as the tokens it gives
        (config.inventory.Resolver): each port's resolved once, at its first answer after a (re)configure."""
        self.pinger = pinger_factory(self._finished)
        self._observe = observe
        self._observe_answers = cast(TokensObserver, observe_answers if observe_answers is not None
                                     else one_by_one(observe))
        self._resolve: Resolver = resolve if resolve is not None else _itself
        # Results are stamped by `clock` (the exporter's AnchoredClock); the schedule runs on its monotonic base,
        # so a step of the system clock never delays or bunches probes. A plain callable (a test's fake time)
        # does both.
        stamps = clock if clock is not None else AnchoredClock()
        self._clock = stamps
        self._schedule_clock: Callable[[], float] = getattr(stamps, "monotonic", stamps)
        self._max_concurrent = max_concurrent
        self._lanes: list[_Lane] = []  # one an interval
        # packet_interval -> deque of (monotonic send time, probe): follow-up echo requests
        self._follow_ups: dict[float, deque[tuple[float, Probe]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self.window = MAX_BATCH_WINDOW
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = False
        self._kicked = False
        self.stats: dict[TargetKey, ScheduledPort] = {}
        # The ports whose records are published, in the order the exposition lists them; a record is published
        # under its port's index here (its slot).
        self.layout: tuple[TargetKey, ...] = ()
        # Records of the ports probed since the last snapshot, by slot, built as each probe finishes (its objects
        # are in the cache then; a tick that built them would touch thousands of objects last used seconds ago).
        self._records: dict[int, ProbeRecord] = {}
        self.lag = LagHistogram()
        self.in_flight = 0
        self.probes_started = 0
        self._multi_packet = False  # a policy sends more than one request a probe: follow-ups to queue
        passes: Any = native_wire if self.pinger.wire_kind == "native" else python_wire
        self._start_due: Callable[..., tuple[int, int]] = passes.start_due
        self._fold_run: Callable[..., int] = passes.fold_run

    def configure(self, ports: dict[TargetKey, Port], layout: Sequence[TargetKey] | None = None) -> None:
        """Adopt a (re)loaded set of ports; kept ports keep their place in the schedule. `layout`: the ports whose
        records are published, in their order (default: every port, in the order given); the records published
        next are every one of them, under their new slots."""
        now = self._schedule_clock()
        self.layout = tuple(ports if layout is None else layout)
        slots = {key: slot for slot, key in enumerate(self.layout)}
        for key in list(self.stats):
            if key not in ports:
                self.stats.pop(key).retired = True
        lanes: dict[float, list[ScheduledPort]] = {}
        for key, port in ports.items():
            stats = self.stats.get(key)
            interval = port.policy.interval
            new = stats is None
            if stats is None:
                stats = self.stats[key] = ScheduledPort(key, port)
            if new or stats.due > now + interval:  # new, or its interval shrank
                stats.due = now + phase(key, interval)
            stats.address, stats.policy = port.address, port.policy
            stats.slot = slots.get(key, -1)
            stats.token = None  # resolved again at its next answer: the sink may have (re)configured too
            stats.probe = None  # the next probe takes the (re)loaded address and policy
            lanes.setdefault(interval, []).append(stats)
        self._records = {stats.slot: stats.record for stats in self.stats.values() if stats.slot >= 0}
        self._lanes = [_Lane(interval, sorted(entries, key=_due)) for interval, entries in lanes.items()]
        self._multi_packet = any(port.policy.packets > 1 for port in ports.values())
        self.window = batch_window(lanes)
        self._rearm(now)

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = False
        self._rearm(self._schedule_clock())
        try:
            await stop.wait()
        finally:
            self._stopped = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    # -- the pump --------------------------------------------------------------------------------------

    def _pump(self) -> None:
        self._timer = None
        pinger = self.pinger
        mono = time.monotonic()
        pinger.expire(mono)  # reads the replies that arrived since the last wake-up first
        for follow_ups in self._follow_ups.values():
            while follow_ups and follow_ups[0][0] <= mono:
                _, queued = follow_ups.popleft()
                self._send(queued, mono)
        now = self._schedule_clock()
        lags: list[float] = []
        starting: list[Probe] = []
        renew: list[ScheduledPort] = []
        for lane in self._lanes:
            room = self._max_concurrent - self.in_flight
            if room <= 0:
                break
            lane.head, started = self._start_due(lane.ports, lane.head, now, lane.interval, room, starting, renew,
                                                 lags)
            self.in_flight += started
        for port in renew:  # the first probe, or the last one is still running (one that outlasts its interval)
            policy = port.policy
            probe = port.probe = Probe(port, port.address, policy.packets, policy.timeout, policy.packet_interval)
            starting.append(probe)
        if starting:
            self.probes_started += len(starting)
            self.lag.observe(lags)
            pinger.send_many(starting)
            if self._multi_packet:
                for probe in starting:
                    if probe.remaining:
                        self._follow_up(probe, mono)
        pinger.drain()  # on a short path the replies are already queued: save a trip through the loop
        self._rearm(now)

    def _send(self, probe: Probe, mono: float) -> None:
        self.pinger.send(probe)
        if probe.remaining:
            self._follow_up(probe, mono)

    def _follow_up(self, probe: Probe, mono: float) -> None:
        """Queue the probe's next echo request, `packet_interval` after this one."""
        lane = self._follow_ups.get(probe.packet_interval)
        if lane is None:
            lane = self._follow_ups[probe.packet_interval] = deque()
        lane.append((mono + probe.packet_interval, probe))

    def _rearm(self, now: float) -> None:
        """Sleep until the earliest due probe, follow-up or expiry (`now` is the schedule clock's)."""
        if self._loop is None or self._stopped:
            return
        mono = time.monotonic()
        delays = [lane.ports[lane.head].due - now for lane in self._lanes if lane.ports]
        if self.in_flight >= self._max_concurrent:
            delays = []  # saturated: a finished probe wakes the pump
        delays += [lane[0][0] - mono for lane in self._follow_ups.values() if lane]
        expiry = self.pinger.next_expiry()
        if expiry is not None:
            delays.append(expiry - mono)
        if not delays:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        at = self._loop.time() + max(self.window, min(delays))
        if self._timer is not None:
            if self._timer_at <= at:
                return
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._pump)

    # -- results ---------------------------------------------------------------------------------------

    def _finished(self, probes: list[Probe]) -> None:
        """The probes the pinger finished together (one drain's replies, one expiry's losses): one stamp for all,
        the moment their results were read."""
        if self.in_flight >= self._max_concurrent and not self._kicked and self._loop is not None:
            self._kicked = True  # a slot frees up: start the next due probe now, not at the next wake-up
            self._loop.call_soon(self._kick)
        self.in_flight -= len(probes)
        at = self._clock()
        fold_run, records = self._fold_run, self._records
        answered: list[object] = []  # passed on in one call; a failure or an error passes them on first, in order
        index, count = 0, len(probes)
        while True:
            index = fold_run(probes, index, at, records, answered)  # folded up to `index`, which needs more
            if index >= count:
                break
            probe = probes[index]
            index += 1
            port: ScheduledPort = probe.port
            ok = probe.ok
            if ok:  # answered, and its port's token is not resolved yet
                token = port.token = self._resolve(port.key)
                if token is not None:
                    answered.append(token)
                continue  # None: a target the sink does not know (its reload comes next): no evidence yet
            if answered:
                self._observe_answers(at, answered)
                answered = []
            self._observe(port.key, at, ok)
        if answered:
            self._observe_answers(at, answered)

    def _kick(self) -> None:
        self._kicked = False
        if self._stopped:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._pump()

    def changed_records(self) -> dict[int, ProbeRecord]:
        """Records of the ports probed since the last call, by slot (every port of the layout after configure)."""
        records, self._records = self._records, {}
        return records
