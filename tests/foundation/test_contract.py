"""The contract state machine, read as the contract: docs/design.md §1."""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from threenines.config.inventory import TargetKey
from threenines.contract.engine import ContractEngine, TargetSpec
from threenines.contract.machine import OutageEvent, ServiceUnion, TargetMachine
from threenines.ledgers.outages import OutageLedger
from threenines.report.collect import outages_from_ledger

KEY = TargetKey("acme", "connectivity", "uplink")
INTERVAL = 300.0
HORIZON = 1.5 * INTERVAL


def machine(threshold: int = 2, start: float = 0.0) -> tuple[TargetMachine, list[OutageEvent]]:
    events: list[OutageEvent] = []
    return TargetMachine(KEY, threshold, HORIZON, start, events.append), events


def feed(m: TargetMachine, results: str, start: float = 0.0, step: float = INTERVAL) -> float:
    """Probe results as a string: '.' answered, 'x' failed, '?' no evidence; returns the next probe time."""
    at = start
    for char in results:
        m.observe(at, {".": True, "x": False, "?": None}[char])
        at += step
    return at


def test_two_missed_probes_determine_an_outage_from_the_first_failed_probe() -> None:
    m, events = machine()
    feed(m, "..xx")
    assert [e.kind for e in events] == ["determined"]
    assert events[0].first_failed_at == 600 and events[0].determined_at == 900
    assert not m.view().up and m.view().outage_seconds == 300  # retroactive to the first failed probe


def test_a_single_failed_probe_never_counts() -> None:
    m, events = machine()
    end = feed(m, "..x..x.x..")
    m.advance(end)
    assert events == [] and m.outage_seconds == 0
    assert m.up_seconds == end  # pending time resolved as up


def test_the_outage_ends_at_the_first_successful_probe() -> None:
    m, events = machine()
    feed(m, ".xxxx.")
    assert [(e.kind, e.at) for e in events] == [("determined", 600), ("ended", 1500)]
    assert m.outage_seconds == 1500 - 300
    assert m.view().up


def test_time_without_evidence_is_unknown_not_up() -> None:
    m, _ = machine()
    m.advance(100)
    assert m.unknown_seconds == 100 and not m.known
    m.observe(100, True)
    m.advance(100 + 2000)
    assert m.up_seconds == HORIZON and m.unknown_seconds == 100 + 2000 - HORIZON


def test_failures_separated_by_a_gap_in_evidence_are_not_consecutive() -> None:
    m, events = machine()
    m.observe(0, False)
    m.observe(0 + HORIZON + 1, False)
    assert events == []
    assert m.fail_count == 1


def test_a_threshold_of_three_needs_three_failures() -> None:
    m, events = machine(threshold=3)
    feed(m, ".xx.xxx")
    assert [(e.kind, e.first_failed_at, e.at) for e in events] == [("determined", 1200, 1800)]


def test_the_union_counts_overlapping_outages_once() -> None:
    a = TargetMachine(TargetKey("acme", "connectivity", "a"), 2, HORIZON, 0)
    b = TargetMachine(TargetKey("acme", "connectivity", "b"), 2, HORIZON, 0)
    union = ServiceUnion("acme", "connectivity", 0)
    feed(a, ".xxxx.....")            # outage [300, 1500)
    feed(b, "...xxxx...")            # outage [900, 2100)
    for m in (a, b):
        m.advance(3000)
    union.consume([a, b])
    assert a.outage_seconds == 1200 and b.outage_seconds == 1200
    assert union.outage_seconds == 2100 - 300
    assert union.outage_seconds + union.up_seconds + union.unknown_seconds == 3000


def test_restart_mid_outage_resumes_the_same_outage(tmp_path: Path) -> None:
    spec = [TargetSpec(KEY, 2, HORIZON)]
    ledger = OutageLedger(tmp_path / "outages.sqlite")
    engine = ContractEngine(ledger)
    engine.configure(spec, 0)
    for at, ok in ((0, True), (300, False), (600, False), (900, False)):
        engine.observe(KEY, at, ok)
        engine.tick(at)
    ledger.close()  # the process dies here (kill -9 leaves the same file behind)

    ledger = OutageLedger(tmp_path / "outages.sqlite")
    engine = ContractEngine(ledger)
    engine.configure(spec, 2000)  # down for 1100 s
    m = engine.machine(KEY)
    assert not m.view().up and not m.known
    assert m.unknown_seconds == 1100  # the time we were not running
    engine.observe(KEY, 2100, False)
    engine.observe(KEY, 2400, True)
    outages = ledger.outages()
    assert len(outages) == 1
    assert (outages[0].first_failed_at, outages[0].determined_at, outages[0].ended_at) == (300, 600, 2400)
    # Only evidence-backed time counts after the restart: [2100, 2400). Not running, then no probe yet:
    # [900, 2000) and [2000, 2100) are unknown.
    assert m.outage_seconds == 300
    assert m.unknown_seconds == 1100 + 100
    # The ledger says which seconds of the outage were not outage: from the last heartbeat to the first probe
    # after the restart. The report takes them out of the outage's pieces.
    assert ledger.outage_gaps() == [(KEY, 600, 900, 2100)]
    ledger.close()
    [[outage]] = outages_from_ledger(tmp_path / "outages.sqlite", 0, 10_000).values()
    assert outage.outage_pieces() == ((300, 900), (2100, 2400))


def test_restart_mid_run_keeps_the_failures_consecutive(tmp_path: Path) -> None:
    spec = [TargetSpec(KEY, 2, HORIZON)]
    ledger = OutageLedger(tmp_path / "outages.sqlite")
    engine = ContractEngine(ledger)
    engine.configure(spec, 0)
    engine.observe(KEY, 0, True)
    engine.observe(KEY, 300, False)
    engine.tick(310)
    ledger.close()
    ledger = OutageLedger(tmp_path / "outages.sqlite")
    engine = ContractEngine(ledger)
    engine.configure(spec, 320)
    engine.observe(KEY, 600, False)
    [outage] = ledger.outages()
    assert (outage.first_failed_at, outage.determined_at, outage.ended_at) == (300, 600, None)
    m = engine.machine(KEY)
    assert m.outage_seconds == 300 - 10  # [300, 600) less the 10 s we were not running
    assert m.unknown_seconds == 10


# -- a failure the evidence dates earlier (the power rule's blackout moment) ------------------------------
# The blackout timeline of tests/power/test_blackout_end_to_end.py, on the power policy: evaluations every 60 s,
# horizon 1.5 x 60 = 90 s, 2 consecutive. The UPSes' last readings at 180 announce 60 s of runtime; every card
# is silent at the evaluation at 270: power ended at 180 + 60 = 240 (docs/power.md, "From when").
P_INTERVAL = 60.0
P_HORIZON = 1.5 * P_INTERVAL
POWER = TargetKey("acme", "power", "power")


def power_machine(threshold: int = 2) -> tuple[TargetMachine, list[OutageEvent]]:
    events: list[OutageEvent] = []
    return TargetMachine(POWER, threshold, P_HORIZON, 0.0, events.append), events


def powered_until_180(m: TargetMachine) -> None:
    for at in (0.0, 60.0, 120.0, 180.0):
        m.observe(at, True)


def test_a_backdated_failure_is_an_outage_from_the_moment_the_evidence_says() -> None:
    m, events = power_machine()
    powered_until_180(m)
    m.observe(270, False, failed_since=240)
    assert (m.fail_start, m.up_seconds, m.pending_seconds) == (240, 240, 30)  # [240, 270) pending, not up
    m.observe(330, False, failed_since=240)
    assert [(e.kind, e.first_failed_at, e.determined_at) for e in events] == [("determined", 240, 330)]
    assert m.outage_seconds == 330 - 240 and m.up_seconds == 240  # recorded start and counted seconds agree
    assert m.view().outage_start == 240
    m.observe(390, True)
    assert [(e.kind, e.at) for e in events][1:] == [("ended", 390)]
    assert m.outage_seconds == 390 - 240 and m.unknown_seconds == 0


def test_a_backdated_run_is_fresh_from_the_evidence_not_from_the_moment_it_dates() -> None:
    # A 20 s runtime: power ended at 200, 70 s (more than half an interval) before the evaluation that saw it.
    # The run's evidence is the evaluation at 270, so the next one at 330 is consecutive.
    m, events = power_machine()
    powered_until_180(m)
    m.observe(270, False, failed_since=200)
    m.observe(330, False, failed_since=200)
    assert [(e.kind, e.first_failed_at, e.determined_at) for e in events] == [("determined", 200, 330)]
    assert m.outage_seconds == 130 and m.up_seconds == 200 and m.known


def test_a_backdated_run_never_reaches_into_time_already_accounted() -> None:
    # An evaluation at 255 that could not tell (one card silent, the other not yet polled) accounted [180, 255)
    # as up under the reading of 180: those seconds stay up; the run starts at 255.
    m, events = power_machine()
    powered_until_180(m)
    m.observe(255, None)
    up_before = m.up_seconds
    m.observe(270, False, failed_since=240)
    m.observe(330, False, failed_since=240)
    assert up_before == 255 and m.up_seconds == 255
    assert [(e.first_failed_at, e.determined_at) for e in events] == [(255, 330)]
    assert m.outage_seconds == 330 - 255


def test_unknown_time_stays_unknown_under_a_backdated_failure() -> None:
    m, events = power_machine()
    m.observe(0, True)
    m.advance(200)  # fresh until 90, then no evidence
    assert (m.up_seconds, m.unknown_seconds) == (90, 110)
    m.observe(210, False, failed_since=150)
    m.observe(270, False, failed_since=150)
    assert (m.up_seconds, m.unknown_seconds) == (90, 110)
    assert [(e.first_failed_at, e.determined_at) for e in events] == [(200, 270)]
    assert m.outage_seconds == 70


def test_a_backdated_failure_inside_a_run_or_an_outage_changes_nothing() -> None:
    m, events = power_machine()
    powered_until_180(m)
    m.observe(240, False)
    m.observe(300, False, failed_since=200)  # the run began at 240: "consecutive" is not rewritten
    m.observe(360, False, failed_since=100)
    assert [(e.first_failed_at, e.determined_at) for e in events] == [(240, 300)]
    assert m.outage_seconds == 360 - 240


def test_with_a_threshold_of_one_the_outage_is_determined_at_once_from_the_moment() -> None:
    m, events = power_machine(threshold=1)
    powered_until_180(m)
    m.observe(270, False, failed_since=240)
    assert [(e.first_failed_at, e.determined_at) for e in events] == [(240, 270)]
    assert m.outage_seconds == 30


def test_a_moment_at_or_after_the_evidence_is_the_evidence_time() -> None:
    m, events = power_machine(threshold=1)
    powered_until_180(m)
    m.observe(270, False, failed_since=270)
    m.observe(300, True)
    m.observe(330, False, failed_since=400)
    assert [(e.kind, e.first_failed_at) for e in events] == [("determined", 270), ("ended", 270),
                                                             ("determined", 330)]


def test_a_restart_mid_run_keeps_the_backdated_start(tmp_path: Path) -> None:
    spec = [TargetSpec(POWER, 2, P_HORIZON)]
    ledger = OutageLedger(tmp_path / "outages.sqlite")
    engine = ContractEngine(ledger)
    engine.configure(spec, 0)
    for at in (0.0, 60.0, 120.0, 180.0):
        engine.observe(POWER, at, True)
    engine.observe(POWER, 270, False, failed_since=240)
    engine.tick(270)
    ledger.close()  # the process dies at 270 and is back at 280
    ledger = OutageLedger(tmp_path / "outages.sqlite")
    engine = ContractEngine(ledger)
    engine.configure(spec, 280)
    engine.observe(POWER, 330, False, failed_since=240)
    [outage] = ledger.outages()
    assert (outage.first_failed_at, outage.determined_at, outage.ended_at) == (240, 330, None)
    m = engine.machine(POWER)
    assert m.outage_seconds == (270 - 240) + (330 - 280) and m.unknown_seconds == 10  # not running: unknown
    ledger.close()


def test_the_engine_folds_a_backdated_outage_into_the_customer_service(tmp_path: Path) -> None:
    ledger = OutageLedger(tmp_path / "outages.sqlite")
    engine = ContractEngine(ledger)
    engine.configure([TargetSpec(POWER, 2, P_HORIZON)], 0)
    exported: list[tuple[float, float, float, float]] = []
    targets: dict = {}
    services: dict = {}
    previous = 0
    for at, ok, since in ((0, True, None), (60, True, None), (120, True, None), (180, True, None),
                          (270, False, 240.0), (330, False, 240.0), (390, True, None)):
        for tick in range(previous + 15, at, 15):  # the loop's 15 s ticks between evaluations
            engine.tick(tick)
        engine.observe(POWER, at, ok, failed_since=since)
        engine.tick(at)
        changes = engine.changes(at)  # what a scrape renders
        targets.update(changes.targets)
        services.update(changes.services)
        target, service = targets[POWER], services[("acme", "power")]
        exported.append((target.outage_seconds, target.unknown_seconds, service.outage_seconds,
                         service.unknown_seconds))
        previous = at
    for before, after in itertools.pairwise(exported):
        assert all(b <= a for b, a in zip(before, after, strict=True))  # counters never go down
    assert exported[-1] == (150, 0, 150, 0)  # [240, 390): the ledger's interval, counted once
    [outage] = ledger.outages()
    assert (outage.first_failed_at, outage.determined_at, outage.ended_at) == (240, 330, 390)
    ledger.close()


# -- properties -----------------------------------------------------------------------------------------

results = st.lists(st.tuples(st.floats(min_value=1, max_value=1000), st.sampled_from([True, False, None])),
                   min_size=0, max_size=60)


def run_history(history: list[tuple[float, bool | None]], threshold: int) -> tuple[TargetMachine, list, float]:
    m, events = machine(threshold)
    at = 0.0
    for gap, ok in history:
        at += gap
        m.observe(at, ok)
    end = at + 1
    m.advance(end)
    return m, events, end


@settings(max_examples=300, deadline=None)
@given(results, st.integers(min_value=1, max_value=4))
def test_outage_up_unknown_and_pending_partition_wall_time(history, threshold) -> None:
    m, _, end = run_history(history, threshold)
    total = m.up_seconds + m.outage_seconds + m.unknown_seconds + m.pending_seconds
    assert abs(total - end) < 1e-6


@settings(max_examples=300, deadline=None)
@given(st.lists(st.booleans(), max_size=60), st.integers(min_value=1, max_value=4),
       st.floats(min_value=1, max_value=HORIZON))
def test_ledger_intervals_and_counters_agree(results_list, threshold, step) -> None:
    # Evidence never goes stale here, so every second of every recorded outage is outage time.
    m, events = machine(threshold)
    end = feed(m, "".join("." if ok else "x" for ok in results_list), step=step)
    m.advance(end)
    intervals = {}
    for event in events:
        if event.kind == "determined":
            intervals[event.determined_at] = [event.first_failed_at, end]
        else:
            intervals[event.determined_at][1] = event.at
    assert abs(sum(b - a for a, b in intervals.values()) - m.outage_seconds) < 1e-6


@settings(max_examples=300, deadline=None)
@given(st.lists(st.booleans(), max_size=60), st.integers(min_value=2, max_value=4))
def test_flaps_shorter_than_the_threshold_count_nothing(results_list, threshold) -> None:
    text = "".join("." if ok else "x" for ok in results_list)
    if "x" * threshold in text:
        text = text.replace("x" * threshold, "x" * (threshold - 1) + ".")
    m, events = machine(threshold)
    m.advance(feed(m, text))
    assert events == [] and m.outage_seconds == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(results, min_size=1, max_size=3), st.integers(min_value=1, max_value=3))
def test_the_union_is_bounded_by_its_members(histories, threshold) -> None:
    machines = []
    end = 0.0
    for index, history in enumerate(histories):
        m = TargetMachine(TargetKey("c", "connectivity", str(index)), threshold, HORIZON, 0)
        at = 0.0
        for gap, ok in history:
            at += gap
            m.observe(at, ok)
        end = max(end, at)
        machines.append(m)
    for m in machines:
        m.advance(end + 1)
    for m in machines:  # resolve pending so the watermark reaches the end
        m.end(end + 1, "removed")
    union = ServiceUnion("c", "connectivity", 0)
    union.consume(machines)
    assert union.counted_until == end + 1
    assert abs(union.up_seconds + union.outage_seconds + union.unknown_seconds - (end + 1)) < 1e-6
    assert union.outage_seconds >= max(m.outage_seconds for m in machines) - 1e-6
    assert union.outage_seconds <= sum(m.outage_seconds for m in machines) + 1e-6


# Histories with failures the evidence dates earlier, and ticks (advance) in between: (gap, ok, back) observes
# at the previous time + gap, with failed_since = at - back when back is set; (gap, "tick", _) advances.
backdated = st.lists(
    st.tuples(st.floats(min_value=1, max_value=1000),
              st.sampled_from([True, False, None, "tick"]),
              st.one_of(st.none(), st.floats(min_value=0, max_value=2000))),
    min_size=0, max_size=60)


def run_backdated(history: list, threshold: int, step_cap: float | None = None
                  ) -> tuple[TargetMachine, list[OutageEvent], float, list[tuple[float, float]]]:
    """Replays the history; returns the machine, its events, the end, and its (outage, unknown) after each step."""
    m, events = machine(threshold)
    counters = []
    at = 0.0
    for gap, ok, back in history:
        at += gap if step_cap is None else min(gap, step_cap)
        if ok == "tick":
            m.advance(at)
        else:
            m.observe(at, ok, failed_since=None if back is None or ok is not False else at - back)
        counters.append((m.outage_seconds, m.unknown_seconds))
    end = at + 1
    m.advance(end)
    counters.append((m.outage_seconds, m.unknown_seconds))
    return m, events, end, counters


@settings(max_examples=300, deadline=None)
@given(backdated, st.integers(min_value=1, max_value=4))
def test_backdated_failures_keep_the_partition_and_the_counters_monotonic(history, threshold) -> None:
    m, events, end, counters = run_backdated(history, threshold)
    assert abs(m.up_seconds + m.outage_seconds + m.unknown_seconds + m.pending_seconds - end) < 1e-6
    for (outage_before, unknown_before), (outage_after, unknown_after) in itertools.pairwise(counters):
        assert outage_after >= outage_before and unknown_after >= unknown_before
    for event in events:
        assert event.first_failed_at <= event.determined_at


@settings(max_examples=300, deadline=None)
@given(backdated, st.integers(min_value=1, max_value=4))
def test_backdated_outages_are_recorded_from_where_they_are_counted(history, threshold) -> None:
    # Evidence never lapses (every step a probe's result, within the horizon): the ledger's intervals are the
    # outage counter.
    history = [(gap, ok if isinstance(ok, bool) else True, back) for gap, ok, back in history]
    m, events, end, _ = run_backdated(history, threshold, step_cap=HORIZON)
    intervals = {}
    for event in events:
        if event.kind == "determined":
            intervals[event.determined_at] = [event.first_failed_at, end]
        elif event.kind == "ended":
            intervals[event.determined_at][1] = event.at
    assert abs(sum(b - a for a, b in intervals.values()) - m.outage_seconds) < 1e-6


@settings(max_examples=200, deadline=None)
@given(backdated, st.integers(min_value=1, max_value=3))
def test_a_service_of_one_target_counts_every_backdated_second(history, threshold) -> None:
    # The union folds as it goes (as the engine's ticks do): a backdated run never starts before its watermark.
    m, _ = machine(threshold)
    union = ServiceUnion("acme", "connectivity", 0)
    at = 0.0
    for gap, ok, back in history:
        at += gap
        if ok == "tick":
            m.advance(at)
        else:
            m.observe(at, ok, failed_since=None if back is None or ok is not False else at - back)
        union.consume([m])
    m.end(at + 1, "removed")
    union.consume([m])
    assert union.counted_until == at + 1
    assert abs(union.outage_seconds - m.outage_seconds) < 1e-6
    assert abs(union.unknown_seconds - m.unknown_seconds) < 1e-6
