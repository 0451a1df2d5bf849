"""The scheduler's passes over its ports and probes (start_due, fold_run, send_all) mean the same in both wires:
_wire.c's loops over C structs and wire.py's reference. Expected values come from what the schedule and the
record promise (docs/design.md), not from either implementation."""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import pytest

from threenines.probes import ping
from threenines.probes import wire as python_wire

MODULES = [pytest.param(ping.native_wire, id="native"), pytest.param(python_wire, id="python")]


def kinds(module: ModuleType) -> tuple[type, type]:
    """A probe class and a port class on the module's bases."""
    if module is None:
        pytest.fail("the native wire was not built (make test installs gcc and python3-dev)")

    class Probe(module.ProbeCounters):  # type: ignore[name-defined,misc]
        __slots__ = ()

        def __init__(self, port: Any, packets: int = 1, timeout: float = 1.0) -> None:
            self.port = port
            self.packets = packets
            self.timeout = timeout
            self.route = None
            self.restart()

    class Port(module.PortState):  # type: ignore[name-defined,misc]
        __slots__ = ("name",)

        def __init__(self, name: str, due: float = 0.0, slot: int = -1, token: object = None) -> None:
            self.name = name
            self.due = due
            self.record = python_wire.EMPTY_RECORD
            self.slot = slot
            self.token = token
            self.probe = None
            self.retired = False

    return Probe, Port


def answered(probe: Any, rtt: float = 0.002) -> Any:
    probe.remaining, probe.sent, probe.received, probe.rtt_total = 0, 1, 1, rtt
    return probe


def lost(probe: Any) -> Any:
    probe.remaining, probe.sent = 0, 1
    return probe


@pytest.mark.parametrize("module", MODULES)
def test_start_due_starts_the_due_ports_in_order_and_moves_each_an_interval_on(module: ModuleType) -> None:
    Probe, Port = kinds(module)
    # A lane of 5 ports at interval 100, as a ring from head 3: due 10, 20, 30 (head), then 40, 50 wrap around.
    ports = [Port("d", 40.0), Port("e", 50.0), Port("a", 10.0), Port("b", 20.0), Port("c", 30.0)]
    finished = answered(Probe(ports[2]))
    ports[2].probe = finished  # its last probe finished: restarted, not made again
    running = Probe(ports[3])
    running.remaining = 0
    running.outstanding = 1  # still waiting for its reply: the port gets a new probe
    ports[3].probe = running
    starting: list[Any] = []
    renew: list[Any] = []
    lags: list[float] = []
    head, started = module.start_due(ports, 2, 35.0, 100.0, 10, starting, renew, lags)
    assert (head, started) == (0, 3)  # a, b, c were due at 35; d (40) is next
    assert lags == [25.0, 15.0, 5.0]
    assert [port.due for port in ports] == [40.0, 50.0, 110.0, 120.0, 130.0]
    assert starting == [finished] and finished.remaining == 1 and finished.sent == finished.received == 0
    assert finished.rtt_total == 0.0 and finished.ok is False  # new counters: nothing answered yet
    assert [port.name for port in renew] == ["b", "c"]
    assert running.outstanding == 1  # left alone


@pytest.mark.parametrize("module", MODULES)
def test_start_due_starts_no_more_than_room_and_realigns_a_port_far_behind(module: ModuleType) -> None:
    _, Port = kinds(module)
    ports = [Port("a", 10.0), Port("b", 20.0), Port("c", 30.0)]
    starting: list[Any] = []
    renew: list[Any] = []
    lags: list[float] = []
    head, started = module.start_due(ports, 0, 1000.0, 100.0, 2, starting, renew, lags)
    assert (head, started) == (2, 2)  # room for two: c waits, at the head
    # More than an interval behind: due an interval from now, not a burst of catch-up probes.
    assert [port.due for port in ports] == [1100.0, 1100.0, 30.0]
    assert lags == [990.0, 980.0]
    # Every port due: each starts once, however far behind (the ring comes back to a port not due).
    head, started = module.start_due(ports, head, 1000.0, 100.0, 10, starting, renew, lags)
    assert (head, started) == (0, 1)
    assert module.start_due([], 0, 1000.0, 100.0, 10, starting, renew, lags) == (0, 0)


@pytest.mark.parametrize("module", MODULES)
def test_fold_run_folds_answers_and_stops_where_the_caller_has_more_to_do(module: ModuleType) -> None:
    Probe, Port = kinds(module)
    a, b, c, d, e = (Port("a", slot=0, token="A"), Port("b", slot=1, token="B"), Port("c", slot=-1, token="C"),
                     Port("d", slot=3, token="D"), Port("e", slot=4, token=None))
    gone = Port("gone", slot=2, token="G")
    gone.retired = True  # removed by a reload while its probe was in flight
    probes = [answered(Probe(a), 0.004), answered(Probe(gone)), answered(Probe(c), 0.001), lost(Probe(b)),
              answered(Probe(d)), answered(Probe(e))]
    records: dict[int, bytes] = {}
    tokens: list[object] = []
    assert module.fold_run(probes, 0, 500.0, records, tokens) == 3  # b failed: the caller observes it
    assert tokens == ["A", "C"]  # c has no slot (not published) but is evidence all the same
    assert set(records) == {0, 1} and records[0] == python_wire.RECORD.pack(1, 0, 0, 500.0, 0.004, 0.0)
    assert records[1] == b.record  # b is folded before the caller observes it
    assert gone.record == python_wire.EMPTY_RECORD and 2 not in records
    total, failures, errors, last_at, rtt, loss = python_wire.RECORD.unpack(b.record)
    assert (total, failures, errors, last_at, loss) == (1, 1, 0, 500.0, 1.0) and math.isnan(rtt)
    assert module.fold_run(probes, 4, 500.0, records, tokens) == 5  # e answered, without a token yet
    assert tokens == ["A", "C", "D"] and set(records) == {0, 1, 3, 4}
    assert module.fold_run(probes, 6, 500.0, records, tokens) == 6


@pytest.mark.parametrize("module", MODULES)
def test_fold_run_stops_at_a_probe_that_could_not_be_made(module: ModuleType) -> None:
    Probe, Port = kinds(module)
    port = Port("a", slot=0, token="A")
    probe = Probe(port)
    probe.remaining = 0
    probe.error = "no_socket"  # no evidence either way: an error, and its last time stays
    records: dict[int, bytes] = {}
    tokens: list[object] = []
    assert module.fold_run([probe], 0, 500.0, records, tokens) == 0 and tokens == []
    assert python_wire.RECORD.unpack(records[0])[:4] == (0, 0, 1, 0.0)


@pytest.mark.parametrize("module", MODULES)
def test_send_all_hands_back_the_probes_without_a_route(module: ModuleType) -> None:
    Probe, Port = kinds(module)
    probes = [Probe(Port("a")), Probe(Port("b"))]
    assert module.send_all(probes) == [(probes[0], None), (probes[1], None)]
    assert all(probe.remaining == 1 and probe.sent == 0 for probe in probes)  # nothing sent


def test_the_native_passes_check_their_arguments() -> None:
    native = ping.native_wire
    assert native is not None
    Probe, Port = kinds(native)
    with pytest.raises(TypeError):
        native.start_due((), 0, 0.0, 1.0, 1, [], [], [])
    with pytest.raises(TypeError, match="PortState"):
        native.start_due([object()], 0, 0.0, 1.0, 1, [], [], [])
    with pytest.raises(IndexError):
        native.start_due([Port("a")], 1, 0.0, 1.0, 1, [], [], [])
    with pytest.raises(TypeError, match="PortState"):
        native.fold_run([Probe(object())], 0, 0.0, {}, [])
    with pytest.raises(TypeError, match="route"):
        probe = Probe(Port("a"))
        probe.route = ("not a wire", b"")
        native.send_all([probe])
