"""Issue 22, "wall-clock steps", with injected clocks: probes are scheduled and durations measured on the
monotonic clock, events are stamped in wall time anchored to it, and a step of the system clock is seen, counted
and moved onto without ever entering a duration (docs/design.md, "Clock steps"). The real `threenines serve`
under libfaketime: test_clock_steps_process.py."""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.foundation.exporter_process import inventory_text
from threenines.clock import AnchoredClock
from threenines.config.inventory import Port, TargetKey
from threenines.config.policies import ProbePolicy
from threenines.contract.engine import ContractEngine, TargetSpec
from threenines.contract.machine import OutageEvent
from threenines.ledgers.outages import OutageLedger
from threenines.probes.ping import Probe, wire_kind
from threenines.probes.ping_scheduler import LAG_BUCKETS, ProbeScheduler, phase
from threenines.report.collect import outages_from_ledger
from threenines.serve.process import Exporter, ServeOptions

HOUR = 3600.0
INTERVAL = 300.0
HORIZON = 1.5 * INTERVAL
KEY = TargetKey("acme", "connectivity", "uplink")
START = 1_800_000_000.0


class SystemClocks:
    """The host's clocks, moved by the test: `run` lets time pass, `step` sets the wall clock only."""

    def __init__(self) -> None:
        self.mono = 5000.0
        self.wall_minus_mono = START - self.mono

    def monotonic(self) -> float:
        return self.mono

    def wall(self) -> float:
        return self.mono + self.wall_minus_mono

    def run(self, seconds: float) -> None:
        self.mono += seconds

    def step(self, seconds: float) -> None:
        self.wall_minus_mono += seconds


def anchored() -> tuple[SystemClocks, AnchoredClock]:
    system = SystemClocks()
    return system, AnchoredClock(wall=system.wall, monotonic=system.monotonic)


# -- the clock ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("step", [-HOUR, HOUR])
def test_stamps_advance_with_elapsed_time_and_a_step_is_seen_once(step: float) -> None:
    system, clock = anchored()
    before = clock()
    assert before == START
    system.step(step)
    system.run(17)
    assert clock() - before == 17  # the step is in no difference of stamps
    assert clock.check() == step
    assert clock.check() is None  # seen once
    assert (clock.forward, clock.backward) == ((1, 0) if step > 0 else (0, 1))
    assert clock.last_step == step and clock.unapplied == step
    clock.reanchor(clock.deviation())
    assert clock() == system.wall() and clock.unapplied == 0
    assert clock.check() is None


def test_a_step_that_comes_back_before_it_is_moved_onto_leaves_nothing_to_move() -> None:
    system, clock = anchored()
    system.step(-HOUR)
    assert clock.check() == -HOUR
    system.run(600)
    system.step(HOUR)  # NTP sets it right again
    assert clock.check() == HOUR
    assert (clock.forward, clock.backward, clock.unapplied) == (1, 1, 0)
    assert clock() == system.wall()


def test_less_than_a_second_is_not_a_step_but_steps_add_up() -> None:
    system, clock = anchored()
    system.step(0.6)
    assert clock.check() is None
    system.step(0.6)
    assert clock.check() == pytest.approx(1.2)
    assert clock.forward == 1


def test_a_read_preempted_between_the_two_clocks_is_not_a_step() -> None:
    system = SystemClocks()
    preempted = iter([False, True])  # the second read (the first check's)

    def wall() -> float:
        value = system.wall()
        if next(preempted, False):
            system.run(5)  # the thread lost the CPU for 5 s between the wall and the monotonic read
        return value

    clock = AnchoredClock(wall=wall, monotonic=system.monotonic)
    assert clock.check() is None
    assert clock.deviation() == 0


# -- the scheduler ----------------------------------------------------------------------------------------


class AnsweringPinger:
    """The scheduler's pinger interface; every request is answered as it is sent."""

    def __init__(self, on_done: Callable[[list[Probe]], None]) -> None:
        self._on_done = on_done
        self.wire_kind = wire_kind()  # the scheduler's passes are this wire's (C when built)

    def send(self, probe: Probe) -> None:
        self.send_many([probe])

    def send_many(self, probes: list[Probe]) -> None:
        done = []
        for probe in probes:
            probe.remaining -= 1
            probe.sent += 1
            probe.received += 1
            if probe.finished:
                done.append(probe)
        if done:
            self._on_done(done)

    def expire(self, now: float) -> None:
        pass

    def next_expiry(self) -> float | None:
        return None

    def drain(self) -> None:
        pass


@pytest.mark.parametrize("step", [-HOUR, HOUR])
def test_a_step_of_the_wall_clock_neither_stops_nor_bunches_probes(step: float) -> None:
    system, clock = anchored()
    observed: dict[TargetKey, list[float]] = defaultdict(list)
    scheduler = ProbeScheduler(AnsweringPinger, lambda key, at, ok: observed[key].append(at), 64, clock)
    policy = ProbePolicy(interval=INTERVAL, threshold=2, packets=1, timeout=2.0)
    ports = {TargetKey("c", "connectivity", f"p{i}"): Port(f"p{i}", f"127.0.60.{i + 1}", policy) for i in range(30)}
    scheduler.configure(ports)
    seconds = int(2.5 * INTERVAL)
    for second in range(1, seconds + 1):  # the pump wakes once a second (the batch window at this cadence)
        system.run(1)
        if second == 100:
            system.step(step)
        scheduler._pump()
    for key in ports:
        first = phase(key, INTERVAL)
        expected = len([k for k in range(3) if first + k * INTERVAL <= seconds])
        stamps = observed[key]
        assert len(stamps) == expected, key  # old code: none for an hour (-1 h), or a burst (+1 h)
        assert stamps[0] - START == pytest.approx(first, abs=1.0)  # stamped on the anchored clock
        assert all(later - earlier == INTERVAL for earlier, later in itertools.pairwise(stamps))
    assert sum(scheduler.lag.counts[LAG_BUCKETS.index(1.0) + 1:]) == 0  # never more than the window late


# -- the contract engine -----------------------------------------------------------------------------------


def ledger_outage(path: Path) -> tuple[float, float, float, list[tuple[float, float]]]:
    with sqlite3.connect(path) as db:
        [(first_failed, determined, ended)] = db.execute(
            "SELECT first_failed_at, determined_at, ended_at FROM outages").fetchall()
        gaps = db.execute("SELECT gap_start, gap_end FROM outage_gaps ORDER BY gap_start").fetchall()
    return first_failed, determined, ended, gaps


def billed_seconds(path: Path) -> float:
    """The outage's seconds as the report reads them from the ledger: its bounds minus its gaps."""
    [[outage]] = outages_from_ledger(path, 0, 2**31).values()
    pieces = outage.pieces or ((outage.start, outage.end),)
    return sum(end - start for start, end in pieces)


@pytest.mark.parametrize("step", [-HOUR, HOUR])
def test_a_step_during_an_outage_adds_or_removes_no_outage_seconds(tmp_path: Path, step: float) -> None:
    ledger = OutageLedger(tmp_path / "outages.sqlite")
    engine = ContractEngine(ledger)
    engine.configure([TargetSpec(KEY, 2, HORIZON)], START)
    at = START
    for ok in (True, False, False):  # determined at the second failed probe
        engine.observe(KEY, at, ok)
        at += INTERVAL
    engine.tick(at - INTERVAL + 17)
    started = engine.machine(KEY).view()
    assert not started.up and started.outage_seconds == INTERVAL + 17
    engine.rebase(step, at - INTERVAL + 17)  # the stamps move onto the stepped system clock
    assert engine.machine(KEY).view() is started  # nothing exported moved
    engine.observe(KEY, at + step, False)
    engine.observe(KEY, at + INTERVAL + step, True)  # recovered
    engine.tick(at + INTERVAL + step)
    ledger.close()
    real = 3 * INTERVAL  # from the first failed probe to the first answered one
    assert engine.machine(KEY).view().outage_seconds == real
    first_failed, determined, ended, gaps = ledger_outage(tmp_path / "outages.sqlite")
    assert (first_failed, determined) == (started.outage_start, started.determined_at)  # the ledger key kept
    if step > 0:  # the end is on the corrected clock; the stretch the stamps skipped is a gap, not outage
        assert ended == START + 4 * INTERVAL + step
        assert gaps == [(START + 2 * INTERVAL + 17, START + 2 * INTERVAL + 17 + step)]
    else:  # the end stays in the outage's own stamps: it never ends before it began
        assert ended == START + 4 * INTERVAL and gaps == []
    assert billed_seconds(tmp_path / "outages.sqlite") == real  # old code: real + step


@pytest.mark.parametrize("step", [-HOUR, HOUR])
def test_failures_either_side_of_a_step_are_consecutive_and_count_their_real_time(step: float) -> None:
    events: list[OutageEvent] = []
    engine = ContractEngine(on_event=events.append)
    engine.configure([TargetSpec(KEY, 2, HORIZON)], START)
    engine.observe(KEY, START, True)
    engine.observe(KEY, START + INTERVAL, False)
    engine.rebase(step, START + INTERVAL + 1)
    engine.observe(KEY, START + 2 * INTERVAL + step, False)  # one interval later, in the moved stamps
    engine.tick(START + 2 * INTERVAL + step)
    [determined] = events
    assert determined.first_failed_at == START + INTERVAL + step  # the run moved with the stamps
    assert determined.determined_at - determined.first_failed_at == INTERVAL
    view = engine.changes(START + 2 * INTERVAL + step).targets[KEY]
    assert (view.outage_seconds, view.unknown_seconds) == (INTERVAL, 0)  # old code: INTERVAL + step (or stale)


def test_stale_evidence_across_a_step_is_unknown_for_its_real_length() -> None:
    engine = ContractEngine()
    engine.configure([TargetSpec(KEY, 2, HORIZON)], START)
    engine.observe(KEY, START, True)
    engine.rebase(-HOUR, START + 100)
    engine.tick(START + 1000 - HOUR)  # no probe since START: 1000 s of which HORIZON were fresh
    view = engine.changes(START + 1000 - HOUR).targets[KEY]
    assert (view.known, view.unknown_seconds) == (False, 1000 - HORIZON)


KEYS = (TargetKey("acme", "connectivity", "a"), TargetKey("acme", "connectivity", "b"),
        TargetKey("globex", "connectivity", "a"))
histories = st.lists(
    st.tuples(st.integers(min_value=1, max_value=700),
              st.one_of(st.just("tick"), st.sampled_from([-HOUR, HOUR, -50.0, 50.0]),
                        st.tuples(st.sampled_from(KEYS), st.sampled_from([True, False, None])))),
    max_size=60)


def outage_lengths(events: list[OutageEvent]) -> list[tuple[float, float]]:
    """Per outage, in order: (determined - first failed, bounds minus gaps) — what the ledger bills."""
    gaps: dict[tuple, float] = defaultdict(float)
    out = []
    for event in events:
        outage = (event.key, event.determined_at)
        if event.kind == "gap":
            gaps[outage] += event.at - event.gap_start
        elif event.kind == "ended":
            out.append((event.determined_at - event.first_failed_at,
                        event.at - event.first_failed_at - gaps[outage]))
    return out


@settings(max_examples=300, deadline=None)
@given(histories, st.integers(min_value=1, max_value=3))
def test_steps_change_no_count_and_no_billed_second(history: list, threshold: int) -> None:
    """The same probes in elapsed time, one engine on stamps that steps move, one on stamps that never move."""
    plain_events: list[OutageEvent] = []
    moved_events: list[OutageEvent] = []
    plain, moved = ContractEngine(on_event=plain_events.append), ContractEngine(on_event=moved_events.append)
    specs = [TargetSpec(key, threshold, HORIZON) for key in KEYS]
    plain.configure(specs, START)
    moved.configure(specs, START)
    elapsed, offset = START, 0.0
    plain_views: dict = {}
    moved_views: dict = {}
    plain_services: dict = {}
    moved_services: dict = {}
    for gap, action in [*history, (1, "tick")]:
        elapsed += gap
        if isinstance(action, float):
            moved.rebase(action, elapsed + offset)
            offset += action
        elif action == "tick":
            plain.tick(elapsed)
            moved.tick(elapsed + offset)
            for engine, views, services, now in ((plain, plain_views, plain_services, elapsed),
                                                 (moved, moved_views, moved_services, elapsed + offset)):
                changes = engine.changes(now)
                views.update(changes.targets)
                services.update(changes.services)
        else:
            key, ok = action
            plain.observe(key, elapsed, ok)
            moved.observe(key, elapsed + offset, ok)
    for key in KEYS:
        want, got = plain_views[key], moved_views[key]
        assert (got.up, got.known) == (want.up, want.known), key
        assert got.outage_seconds == pytest.approx(want.outage_seconds), key
        assert got.unknown_seconds == pytest.approx(want.unknown_seconds), key
    for group, want in plain_services.items():
        got = moved_services[group]
        assert (got.up, got.known) == (want.up, want.known), group
        for field in ("outage_seconds", "unknown_seconds"):  # (up time is folded lazily: not exported)
            assert getattr(got, field) == pytest.approx(getattr(want, field)), (group, field)
    plain.configure([], elapsed)  # every open outage ends ("removed"): all of them are billed
    moved.configure([], elapsed + offset)
    got, want = outage_lengths(moved_events), outage_lengths(plain_events)
    assert len(got) == len(want)
    for got_one, want_one in zip(got, want, strict=True):
        assert got_one == pytest.approx(want_one)


# -- the serve process's rule: moved onto the system clock once no notification deadline is pending -----------


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[tuple[Exporter, SystemClocks]]:
    config = tmp_path / "inventory.yml"
    config.write_text(inventory_text({"uplink": "127.0.60.1"}, interval="300s", deadline="15m"))
    system, clock = anchored()
    exporter = Exporter(ServeOptions(config=config, listen="127.0.0.1:0", state_dir=tmp_path / "state"), clock)
    exporter.http.start()  # on 127.0.0.1, never asked: stop() expects a started server
    try:
        yield exporter, system
    finally:
        exporter.http.stop()
        notifier = getattr(exporter, "notifier", None)  # the exporter's own deliveries, where it has them
        for ledger in (exporter.ledger, exporter.audit.ledger, notifier.ledger if notifier is not None else None):
            if ledger is not None:
                ledger.close()


def dispatch(exporter: Exporter, determined_at: float) -> tuple[int, bytes]:
    alert = {"status": "firing", "labels": {"alertname": "ThreeninesServiceUnavailable", "customer": "acme",
                                            "service": "connectivity", "target": "uplink"},
             "annotations": {"determined_at": f"{determined_at:.3f}"}, "startsAt": "2027-01-15T08:00:00Z",
             "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "f1"}
    body = json.dumps({"version": "4", "groupKey": "{}:{}", "status": "firing", "receiver": "customer-acme",
                       "alerts": [alert]}).encode()
    return exporter.audit.handle(body, {})


@pytest.mark.parametrize("step", [-HOUR, HOUR])
def test_a_step_between_determination_and_dispatch_is_not_in_the_notification_delay(
        exporter: tuple[Exporter, SystemClocks], tmp_path: Path, step: float) -> None:
    exporter_, system = exporter
    clock = exporter_._clock
    key = TargetKey("acme", "connectivity", "uplink")

    def probe(ok: bool) -> None:
        exporter_.engine.observe(key, clock(), ok)
        exporter_._tick()

    for ok in (True, False, False):  # probes at 0, 300 (the first failed one), 600 (determined)
        probe(ok)
        system.run(INTERVAL)
    probe(False)
    determined_at = exporter_.engine.machine(key).determined_at
    assert determined_at == START + 2 * INTERVAL and exporter_.deadlines.pending == 1
    system.step(step)
    system.run(1)
    exporter_._tick()
    assert clock.forward + clock.backward == 1  # seen and counted ...
    assert clock.unapplied == step  # ... but the stamps wait: a notification deadline is pending
    assert list(exporter_.audit.ledger.misses()) == []  # old code, +1 h: the deadline "passed" at the step
    system.run(119)
    status, _ = dispatch(exporter_, determined_at)
    assert status == 200  # old code, -1 h: refused as determined in the future
    [row] = exporter_.audit.ledger.dispatches()
    assert (row.delay, row.late) == (INTERVAL + 120, False)  # old code, +1 h: late by an hour
    system.run(180)
    moved_at = None
    for round_ in range(5):  # the outage goes on; its deadline passes at 15 min and is decided then
        probe(round_ == 4)  # recovers at the last round
        system.run(INTERVAL)
        if moved_at is None and clock.unapplied == 0:
            moved_at = round_
    assert moved_at == 2  # the first tick after the one that decided the deadline
    assert clock() == system.wall()
    for miss in exporter_.audit.ledger.misses():  # (whether a dispatch is the notification is not ours here)
        assert miss.deadline_at == determined_at + 15 * 60
        assert miss.deadline_at <= miss.recorded_at <= miss.deadline_at + INTERVAL  # when it passed, not before
    real = 7 * INTERVAL  # from the first failed probe to the first answered one
    assert exporter_.engine.machine(key).view().outage_seconds == real
    assert billed_seconds(tmp_path / "state" / "outages.sqlite") == real  # old code: real + step
