"""Both wires (the C one and the Python reference) on real ICMP: the same requests give the same counters."""

from __future__ import annotations

import asyncio
import math
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.netns import customer_port
from threenines.probes import ping, wire
from threenines.probes.ping import Pinger, Probe

pytestmark = pytest.mark.netns  # root: raw ICMP, network namespaces, nftables in them

WIRES = ["native", "python"]


def run(kind: str, body: Callable[[Pinger, list[Probe]], None], versions: tuple[int, ...] = (4,)) -> list[Probe]:
    """Open a privileged Pinger with the given wire, run `body`, close it; returns the finished probes."""
    finished: list[Probe] = []

    async def main() -> None:
        pinger = Pinger(finished.extend, privileged=True, wire=kind)
        pinger.open(versions)
        try:
            body(pinger, finished)
        finally:
            pinger.close()

    asyncio.run(main())
    return finished


def drain_until(pinger: Pinger, finished: list[Probe], count: int, expire: bool = True) -> None:
    for _ in range(200):  # bounded: at most 2 s
        if expire:
            pinger.expire()
        else:
            pinger.drain()
        if len(finished) >= count:
            return
        time.sleep(0.01)


def test_the_native_wire_is_built() -> None:
    # `make test` installs gcc and python3-dev, so the C wire must have been built: the exporter's default.
    assert ping.native_wire is not None, "threenines.probes._wire is missing: pip install -e . with gcc present"
    assert ping.wire_kind() == "native"


@pytest.mark.parametrize("kind", WIRES)
@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_an_answered_probe_counts_its_reply_and_rtt(kind: str, address: str) -> None:
    def body(pinger: Pinger, finished: list[Probe]) -> None:
        pinger.send(Probe("k", address, 1, 2.0, 0.1))
        drain_until(pinger, finished, 1)
        assert pinger.next_expiry() is None  # answered: nothing left to wake up for
        assert all(wire.in_flight == 0 for wire in pinger._wires.values())

    [probe] = run(kind, body, (4, 6))
    assert (probe.sent, probe.received, probe.outstanding, probe.ok, probe.loss_ratio) == (1, 1, 0, True, 0.0)
    assert probe.rtt_mean is not None and 0.0 <= probe.rtt_mean < 2.0
    # Whole nanoseconds (the difference of two integer stamps), written as such: not a difference of two
    # wall-clock doubles, whose text is 17 digits of the 0.24 µs they are quantized to near 1.7e9 s.
    nanoseconds = round(probe.rtt_mean * 1e9)
    assert probe.rtt_mean == nanoseconds / 1e9 and float(repr(probe.rtt_mean)) * 1e9 == pytest.approx(nanoseconds)
    assert len(repr(probe.rtt_mean).split("e")[0].replace(".", "").lstrip("0")) <= 10


@pytest.mark.parametrize("kind", WIRES)
@pytest.mark.parametrize("privileged", [True, False])
def test_ipv4_requests_leave_with_dont_fragment_and_id_zero(kind: str, privileged: bool) -> None:
    # DF spares the kernel's hashed IP ID table (a cache miss a destination); the ID is then 0 (RFC 6864).
    sysctl = Path("/proc/sys/net/ipv4/ping_group_range")
    saved = sysctl.read_text()
    try:
        sysctl.write_text("0 0\n")  # root's group: the unprivileged socket too
        requests_leave_with_dont_fragment(kind, privileged)
    finally:
        sysctl.write_text(saved)


def requests_leave_with_dont_fragment(kind: str, privileged: bool) -> None:
    seen = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)  # sees every ICMP packet, ours too
    to = "127.253.254.251"  # an address no other test or bench pings
    seen.settimeout(2.0)
    finished: list[Probe] = []

    async def main() -> None:
        pinger = Pinger(finished.extend, privileged=privileged, wire=kind)
        pinger.open((4,))
        try:
            pinger.send(Probe("k", to, 1, 2.0, 0.1))
            drain_until(pinger, finished, 1)
        finally:
            pinger.close()

    try:
        asyncio.run(main())
        for _ in range(1000):  # bounded: our request among any other ICMP on the host
            packet = seen.recv(256)
            header = (packet[0] & 0x0F) * 4
            if packet[header] == 8 and socket.inet_ntoa(packet[16:20]) == to:  # our echo request
                ident, flags = struct.unpack("!HH", packet[4:8])
                assert flags & 0x4000 and ident == 0
                break
        else:
            pytest.fail("our echo request was not seen on loopback")
    finally:
        seen.close()
    assert finished and finished[0].ok


@pytest.mark.parametrize("kind", WIRES)
def test_an_unanswered_request_expires_as_a_lost_packet(kind: str) -> None:
    def body(pinger: Pinger, finished: list[Probe]) -> None:
        # 127.0.0.1 answers; a probe with a zero timeout cannot be answered in time and must expire as lost.
        pinger.send(Probe("late", "127.0.0.1", 1, 0.0, 0.1))
        pinger.send(Probe("ok", "127.0.0.1", 1, 1.0, 0.1))
        drain_until(pinger, finished, 2)

    by_key = {probe.port: probe for probe in run(kind, body)}
    assert (by_key["ok"].sent, by_key["ok"].received, by_key["ok"].ok) == (1, 1, True)
    assert (by_key["late"].sent, by_key["late"].received, by_key["late"].ok) == (1, 0, False)
    assert by_key["late"].loss_ratio == 1.0


@pytest.mark.parametrize("kind", WIRES)
def test_rtt_is_when_the_reply_arrived_not_when_it_was_read(kind: str) -> None:
    # Replies are read after a whole batch is sent; the kernel's arrival stamp keeps that out of the RTT.
    def body(pinger: Pinger, finished: list[Probe]) -> None:
        pinger.send(Probe("k", "127.0.0.1", 1, 5.0, 0.1))
        time.sleep(0.3)  # block the loop: the reply (microseconds away on loopback) waits unread
        pinger.drain()

    [probe] = run(kind, body)
    assert probe.received == 1
    assert probe.rtt_mean is not None and probe.rtt_mean < 0.1  # read 0.3 s after it arrived


@pytest.mark.parametrize("kind", WIRES)
def test_a_sequence_number_still_in_flight_is_not_reused(kind: str) -> None:
    def body(pinger: Pinger, finished: list[Probe]) -> None:
        wire = pinger._wires[4]
        first = Probe("first", "127.0.0.1", 1, 5.0, 0.1)
        pinger.send(first)  # its reply is queued, not read: the request is still in flight
        wire.next_seq = (wire.next_seq - 1) & 0xFFFF  # the next send would take the same sequence number
        pinger.send(Probe("second", "127.0.0.2", 1, 5.0, 0.1))
        assert wire.in_flight == 2
        drain_until(pinger, finished, 2, expire=False)
        assert wire.unmatched == 0

    by_key = {probe.port: probe for probe in run(kind, body)}
    assert by_key["first"].received == by_key["second"].received == 1


def forged_echo_reply(source: str, destination: str, ident: int, seq: int) -> bytes:
    icmp = struct.pack("!BBHHH", 0, 0, 0, ident, seq) + b"threenines-probe"
    total = sum(struct.unpack(f"!{len(icmp) // 2}H", icmp))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    icmp = icmp[:2] + struct.pack("!H", ~total & 0xFFFF) + icmp[4:]
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0, 0, 64, socket.IPPROTO_ICMP, 0,
                         socket.inet_aton(source), socket.inet_aton(destination))
    return header + icmp


@pytest.mark.parametrize("kind", WIRES)
def test_a_reply_from_another_address_does_not_answer_the_request(kind: str) -> None:
    # The customer's link is cut, so only a stray reply arrives: the right identifier and sequence number, but
    # from 127.0.0.3. It must not count as the port answering.
    with customer_port() as port:
        port.down()

        def body(pinger: Pinger, finished: list[Probe]) -> None:
            wire = pinger._wires[4]
            forged = forged_echo_reply("127.0.0.3", "127.0.0.1", wire.ident, wire.next_seq)
            pinger.send(Probe("k", port.address, 1, 0.5, 0.1))
            with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:
                raw.sendto(forged, ("127.0.0.1", 0))
            drain_until(pinger, finished, 1)
            assert wire.unmatched == 1

        [probe] = run(kind, body)
    assert (probe.sent, probe.received, probe.ok) == (1, 0, False)


@pytest.mark.parametrize("kind", WIRES)
def test_an_icmp_error_answers_the_request_as_a_failure(kind: str) -> None:
    # The customer host rejects echo requests with "host unreachable": the probe fails on that error at once,
    # it does not wait for its timeout (nothing here calls expire).
    with customer_port() as port:
        rules = ("add table inet tn; add chain inet tn input { type filter hook input priority 0; }; "
                 "add rule inet tn input icmp type echo-request reject with icmp type host-unreachable")
        subprocess.run(["ip", "netns", "exec", port.namespace, "nft", rules], check=True, timeout=15)

        def body(pinger: Pinger, finished: list[Probe]) -> None:
            pinger.send(Probe("k", port.address, 1, 30.0, 0.1))
            drain_until(pinger, finished, 1, expire=False)

        [probe] = run(kind, body)
    assert (probe.sent, probe.received, probe.outstanding, probe.ok, probe.error) == (1, 0, 0, False, None)


@pytest.mark.parametrize("kind", WIRES)
def test_a_send_after_close_gives_up_without_evidence(kind: str) -> None:
    finished: list[Probe] = []

    async def main() -> None:
        pinger = Pinger(finished.extend, privileged=True, wire=kind)
        pinger.open((4,))
        probe = Probe("k", "127.0.0.1", 1, 1.0, 0.1)
        pinger.send(probe)
        pinger.close()  # the request in flight is dropped without a result
        assert finished == []
        probe.restart()
        pinger.send(probe)  # its route still names the closed wire

    asyncio.run(main())
    [probe] = finished
    assert (probe.sent, probe.ok, probe.error) == (0, None, "no_socket")


@pytest.mark.parametrize("kind", WIRES)
def test_several_packets_per_probe_are_counted_together(kind: str) -> None:
    def body(pinger: Pinger, finished: list[Probe]) -> None:
        probe = Probe("k", "127.0.0.1", 3, 2.0, 0.0)
        for _ in range(3):
            pinger.send(probe)
        assert probe.remaining == 0 and probe.sent == 3
        drain_until(pinger, finished, 1)

    [probe] = run(kind, body)
    assert (probe.sent, probe.received, probe.loss_ratio) == (3, 3, 0.0)


def test_the_native_wire_checks_its_arguments() -> None:
    assert ping.native_wire is not None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        wire = ping.native_wire.Wire(sock, 4, os.getpid(), False, lambda probe: None)
        with pytest.raises(TypeError):
            wire.send(object(), b"\x00" * 16)
        with pytest.raises(ValueError, match="sockaddr"):
            wire.send(Probe("k", "127.0.0.1", 1, 1.0, 0.1), b"\x00" * 28)
        with pytest.raises(ValueError, match="16-bit"):
            wire.next_seq = 70000
        with pytest.raises(ValueError, match="version"):
            ping.native_wire.Wire(sock, 5, 1, False, lambda probe: None)


def test_an_unknown_wire_name_is_refused() -> None:
    with pytest.raises(ValueError, match="THREENINES_WIRE"):
        ping.wire_kind("fast")


@pytest.mark.parametrize("kind", WIRES)
def test_the_counters_mean_the_same_in_both_wires(kind: str) -> None:
    counters = (ping.native_wire if kind == "native" else ping.python_wire).ProbeCounters()
    counters.packets = 3
    counters.restart()
    assert (counters.remaining, counters.finished, counters.ok, counters.loss_ratio, counters.rtt_mean) == (
        3, False, False, 1.0, None)
    counters.remaining, counters.sent, counters.received, counters.rtt_total = 0, 3, 2, 0.3
    assert (counters.finished, counters.ok) == (True, True)
    assert (counters.loss_ratio, counters.rtt_mean) == (pytest.approx(1 / 3), pytest.approx(0.15))
    counters.error = "no_socket"
    assert counters.ok is None  # could not be made: no evidence either way
    counters.restart()
    assert (counters.error, counters.ok, counters.remaining, counters.sent) == (None, False, 3, 0)


counts = st.integers(0, 2**53)
stamps = st.floats(0.0, 4e9, allow_nan=False)
maybe = st.one_of(st.just(math.nan), st.floats(0.0, 5.0, allow_nan=False))


@settings(max_examples=300, deadline=None)
@given(counts, counts, counts, stamps, maybe, maybe, st.integers(0, 5), st.integers(0, 5), stamps,
       st.sampled_from([None, "no_socket", "send_failed"]), st.floats(0.0, 10.0, allow_nan=False))
def test_a_finished_probe_folds_into_its_ports_record_alike_in_both_wires(
        total: int, failures: int, errors: int, last_at: float, rtt: float, loss: float, sent: int, received: int,
        at: float, error: str | None, rtt_total: float) -> None:
    """The port's counters after a probe, from the words: a probe that could not be made is an error and
    nothing else; any other counts, a failure when nothing answered, and its time, mean RTT and loss are the
    port's last (no RTT when nothing answered)."""
    received = min(received, sent)
    record = wire.RECORD.pack(total, failures, errors, last_at, rtt, loss)
    if error is not None:
        want = (total, failures, errors + 1, last_at, rtt, loss)
    else:
        want = (total + 1, failures + (received == 0), errors, at,
                rtt_total / received if received else math.nan, 1.0 - received / sent if sent else 1.0)
    for module in (ping.native_wire, wire):
        counters = module.ProbeCounters()
        counters.sent, counters.received, counters.rtt_total, counters.error = sent, received, rtt_total, error
        folded = counters.fold(record, at)
        got = wire.RECORD.unpack(folded)
        assert got[:4] == want[:4], module
        assert all(g == w or (g != g and w != w) for g, w in zip(got[4:], want[4:], strict=True)), module


def test_the_native_fold_refuses_a_record_of_another_size() -> None:
    with pytest.raises(ValueError, match="48 bytes"):
        ping.native_wire.ProbeCounters().fold(b"short", 1.0)


def test_without_the_c_wire_the_exporter_probes_with_the_python_one() -> None:
    # An install without a compiler: _wire cannot be imported, so Probe's counters and the wire are Python.
    script = """
import asyncio, sys
sys.modules["threenines.probes._wire"] = None  # what an install without a compiler looks like
from threenines.probes import ping
finished = []
async def main():
    pinger = ping.Pinger(finished.extend, privileged=True)
    pinger.open((4,))
    pinger.send(ping.Probe("k", "127.0.0.1", 1, 2.0, 0.0))
    pinger.send(ping.Probe("j", "127.0.0.2", 1, 0.0, 0.0))  # a zero timeout: expires as lost
    for _ in range(200):
        pinger.expire()
        if len(finished) == 2:
            break
        await asyncio.sleep(0.01)
    pinger.close()
    counters = type(finished[0]).__mro__[1].__module__
    print(pinger.wire_kind, counters, sorted((p.port, p.sent, p.received) for p in finished))
asyncio.run(main())
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(" ", 2) == ["python", "threenines.probes.wire",
                                           "[('j', 1, 0), ('k', 1, 1)]\n"]


@pytest.mark.parametrize("kind", WIRES)
def test_an_address_family_without_a_socket_gives_no_evidence(kind: str) -> None:
    def body(pinger: Pinger, finished: list[Probe]) -> None:
        pinger.send(Probe("v6", "::1", 1, 1.0, 0.1))  # only the IPv4 socket is open

    [probe] = run(kind, body, (4,))
    assert (probe.sent, probe.ok, probe.error, probe.finished) == (0, None, "no_socket", True)
