"""The probe scheduler on real loopback ICMP: spacing, bounds, multi-packet probes (the wires: test_wire.py)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from threenines.config.inventory import Port, TargetKey
from threenines.config.policies import ProbePolicy
from threenines.probes.ping import Pinger, Probe
from threenines.probes.ping_scheduler import LAG_BUCKETS, LagHistogram, ProbeScheduler, ScheduledPortView
from threenines.probes.wire import EMPTY_RECORD


def run_scheduler(ports: dict[TargetKey, Port], max_concurrent: int, seconds: float, clock_offset: float = 0.0,
                  ) -> tuple[list[tuple[TargetKey, float, bool | None]], ProbeScheduler, int]:
    """Run a real scheduler for `seconds`; returns observations, the scheduler and the most probes in flight.

    clock_offset moves the scheduler's clock after the schedule is made: every port is then overdue at once.
    """
    observed: list[tuple[TargetKey, float, bool | None]] = []
    peak = 0

    async def main() -> ProbeScheduler:
        nonlocal peak
        offset = 0.0
        scheduler = ProbeScheduler(lambda done: Pinger(done), lambda *args: observed.append(args), max_concurrent,
                                   clock=lambda: time.time() + offset)
        send_many = scheduler.pinger.send_many

        def counting_send(probes: Iterable[Probe]) -> None:
            nonlocal peak
            peak = max(peak, scheduler.in_flight)
            send_many(probes)

        scheduler.pinger.send_many = counting_send  # type: ignore[method-assign]
        scheduler.pinger.open((4, 6))
        scheduler.configure(ports)
        offset = clock_offset  # the schedule was made on the true clock
        stop = asyncio.Event()
        task = asyncio.create_task(scheduler.run(stop))
        await asyncio.sleep(seconds)
        stop.set()
        await task
        scheduler.pinger.close()
        return scheduler

    scheduler = asyncio.run(main())
    return observed, scheduler, peak


def ports_on_loopback(count: int, policy: ProbePolicy) -> dict[TargetKey, Port]:
    return {TargetKey("c", "connectivity", f"p{i}"): Port(f"p{i}", f"127.0.60.{i + 1}", policy) for i in range(count)}


def test_every_port_is_probed_once_per_interval_on_its_phase() -> None:
    ports = ports_on_loopback(40, ProbePolicy(interval=1.0, threshold=2, packets=1, timeout=0.5))
    observed, scheduler, _ = run_scheduler(ports, max_concurrent=64, seconds=3.2)
    per_port = {key: [at for k, at, ok in observed if k == key] for key in ports}
    assert all(ok is True for _, _, ok in observed)
    assert all(3 <= len(times) <= 4 for times in per_port.values()), {k.target: len(v) for k, v in per_port.items()}
    for times in per_port.values():  # due + interval: consecutive probes one interval apart (batching aside)
        for earlier, later in itertools.pairwise(times):
            assert abs(later - earlier - 1.0) < scheduler.window + 0.05
    firsts = sorted(times[0] for times in per_port.values())
    assert firsts[-1] - firsts[0] > 0.5  # spread over the interval, not a thundering herd
    assert scheduler.lag.counts[-1] == 0  # nothing started more than 30 s late
    stats = [ScheduledPortView.decode(scheduler.layout[slot], record)
             for slot, record in scheduler.changed_records().items()]
    assert {view.total for view in stats} <= {3, 4} and all(v.failures == 0 for v in stats)


def test_a_burst_of_due_probes_never_exceeds_the_concurrency_bound() -> None:
    # The clock jumps 10 s ahead of the schedule: every port is overdue at once.
    ports = ports_on_loopback(40, ProbePolicy(interval=1.0, threshold=2, packets=1, timeout=0.5))
    observed, scheduler, peak = run_scheduler(ports, max_concurrent=4, seconds=1.5, clock_offset=10)
    assert peak == 4
    assert {key for key, _, _ in observed} == set(ports)  # everyone got a turn
    late = scheduler.lag.counts[LAG_BUCKETS.index(10.0)] + scheduler.lag.counts[LAG_BUCKETS.index(30.0)]
    assert late == 40  # the first round 9-10 s late; then realigned, not bunched into catch-up probes
    assert sum(scheduler.lag.counts) == len(observed) > 40  # a second round started, and it was on time:
    assert sum(scheduler.lag.counts[LAG_BUCKETS.index(1.0):]) == 40


def test_a_multi_packet_probe_sends_every_packet_and_counts_the_answers() -> None:
    policy = ProbePolicy(interval=5.0, threshold=2, packets=3, timeout=0.5, packet_interval=0.1)
    key = TargetKey("c", "connectivity", "v6")
    observed, scheduler, _ = run_scheduler({key: Port("v6", "::1", policy)}, max_concurrent=1, seconds=5.5)
    assert [ok for _, _, ok in observed] == [True]
    view = ScheduledPortView.decode(key, scheduler.changed_records()[scheduler.layout.index(key)])
    assert (view.total, view.failures, view.last_loss) == (1, 0, 0.0)
    assert 0 < view.last_rtt < 0.5


def test_a_batch_passes_its_answers_on_at_once_and_keeps_the_order_of_results() -> None:
    """The probes one read finishes take one stamp; answers go on in one call, but a failure or an error in the
    batch passes the answers before it on first, so every target's results keep their order."""
    calls: list[tuple] = []
    scheduler = ProbeScheduler(lambda done: Pinger(done), lambda key, at, ok: calls.append(("one", key, at, ok)), 4,
                               clock=lambda: 1000.0, observe_answers=lambda at, keys: calls.append(("answers", at,
                                                                                                     list(keys))))
    policy = ProbePolicy(interval=60.0, threshold=2, packets=1, timeout=0.5)
    ports = ports_on_loopback(5, policy)
    scheduler.configure(ports)
    keys = list(ports)
    probes = []
    for key, outcome in zip(keys, [True, True, False, None, True], strict=True):
        port = scheduler.stats[key]
        probe = Probe(port, port.address, 1, 0.5, 1.0)
        probe.remaining, probe.sent, probe.received = 0, 1, int(outcome is True)
        if outcome is None:
            probe.error = "send_failed"
        probes.append(probe)
    scheduler.in_flight = len(probes)
    scheduler._finished(probes)
    assert calls == [("answers", 1000.0, keys[:2]), ("one", keys[2], 1000.0, False), ("one", keys[3], 1000.0, None),
                     ("answers", 1000.0, keys[4:])]
    views = {scheduler.layout[slot]: ScheduledPortView.decode(scheduler.layout[slot], record)
             for slot, record in scheduler.changed_records().items()}
    assert [(views[k].total, views[k].failures, views[k].errors) for k in keys] == [
        (1, 0, 0), (1, 0, 0), (1, 1, 0), (0, 0, 1), (1, 0, 0)]
    assert scheduler.in_flight == 0


lag = st.one_of(st.sampled_from(LAG_BUCKETS), st.floats(0.0, 60.0, allow_nan=False))


@given(st.lists(st.lists(lag, max_size=30), max_size=5))
def test_the_lag_histogram_counts_each_lag_under_the_first_bound_it_does_not_exceed(wake_ups) -> None:
    """Prometheus' `le`: a lag equal to a bound is in that bound's bucket; above every bound, in +Inf only."""
    histogram = LagHistogram()
    for lags in wake_ups:
        histogram.observe(lags)
    lags = [value for batch in wake_ups for value in batch]
    bounds = [-1.0, *LAG_BUCKETS, float("inf")]
    assert histogram.counts == [sum(1 for value in lags if low < value <= high)
                                for low, high in itertools.pairwise(bounds)]
    assert histogram.total == pytest.approx(sum(lags))


def test_records_are_published_by_their_place_in_the_layout_and_only_for_the_ports_in_it() -> None:
    """The exposition lists `layout`'s ports; a record goes out under its port's index there. A port outside the
    layout (a canary) is probed without a record; a new layout republishes every record under the new places."""
    scheduler = ProbeScheduler(lambda done: Pinger(done), lambda key, at, ok: None, 4, clock=lambda: 1000.0)
    ports = ports_on_loopback(4, ProbePolicy(interval=60.0, threshold=2, packets=1, timeout=0.5))
    keys = list(ports)
    scheduler.configure(ports, layout=(keys[2], keys[0], keys[1]))  # keys[3]: not in the layout
    assert scheduler.changed_records() == dict.fromkeys(range(3), EMPTY_RECORD)
    probes = []
    for key in (keys[0], keys[3]):
        port = scheduler.stats[key]
        probe = Probe(port, port.address, 1, 0.5, 1.0)
        probe.remaining, probe.sent, probe.received = 0, 1, 1
        probes.append(probe)
    scheduler.in_flight = 2
    scheduler._finished(probes)
    published = scheduler.changed_records()
    assert list(published) == [1] and ScheduledPortView.decode(keys[0], published[1]).total == 1
    scheduler.configure(ports, layout=(keys[3], keys[0]))
    republished = scheduler.changed_records()
    assert set(republished) == {0, 1} and ScheduledPortView.decode(keys[0], republished[1]).total == 1
    assert ScheduledPortView.decode(keys[3], republished[0]).total == 1  # probed before, published now


def test_answers_go_on_as_the_sinks_tokens_resolved_once_a_port_and_again_after_a_configure() -> None:
    sink: dict[TargetKey, object] = {}  # the sink's tokens: it knows no target yet
    asked: list[TargetKey] = []
    batches: list[list[object]] = []

    def resolve(key: TargetKey) -> object:
        asked.append(key)
        return sink.get(key)

    scheduler = ProbeScheduler(lambda done: Pinger(done), lambda key, at, ok: None, 4, clock=lambda: 1000.0,
                               observe_answers=lambda at, tokens: batches.append(list(tokens)), resolve=resolve)
    ports = ports_on_loopback(1, ProbePolicy(interval=60.0, threshold=2, packets=1, timeout=0.5))
    (key,) = ports
    scheduler.configure(ports)

    def answer() -> None:
        port = scheduler.stats[key]
        probe = Probe(port, port.address, 1, 0.5, 1.0)
        probe.remaining, probe.sent, probe.received = 0, 1, 1
        scheduler.in_flight = 1
        scheduler._finished([probe])

    answer()  # unknown to the sink: no evidence, and asked again next time
    sink[key] = "machine"
    answer()
    answer()
    assert batches == [["machine"], ["machine"]] and asked == [key, key]
    sink[key] = "machine after a reload"
    scheduler.configure(ports)
    answer()
    assert batches[-1] == ["machine after a reload"] and asked == [key, key, key]
