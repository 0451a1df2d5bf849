"""The contract state machine, read as the contract: docs/design.md §1."""

from __future__ import annotations

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
