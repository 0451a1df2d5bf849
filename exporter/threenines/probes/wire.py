"""The prober's wire: one ICMP socket's echo requests in flight, matched to replies by sequence number.

This is the reference implementation. `_wire.c` is the same types and behaviour in C, built when the package
is installed with a compiler present, and used for CPU at fleet scale; this one runs where it was not built.
Both take the same arguments, keep the same counters and are tested against real loopback ICMP.

A wire sends a probe's requests, reads replies (`drain`), expires unanswered requests (`expire`) and hands
each probe that has finished (every request answered or expired) to `on_done`.
"""

from __future__ import annotations

import errno
import ipaddress
import math
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any

_ECHO_REQUEST = {4: 8, 6: 128}
ECHO_REPLY = {4: 0, 6: 129}
ERRORS = {4: (3, 11, 12), 6: (1, 2, 3, 4)}  # the ICMP errors that can answer an echo request
PAYLOAD = b"threenines-probe"  # 16 bytes: small, recognisable in a packet capture
_HEADER = struct.Struct("!BBHHH")
_IDENT_SEQ = struct.Struct("!HH")
DRAIN_LIMIT = 1024  # replies read per call: one busy socket cannot starve the event loop
# Enough for an echo reply and for an ICMP error quoting a request (outer IP header ≤ 60, ICMP 8, quoted IP
# header ≤ 60 or 40, quoted ICMP header 8); longer datagrams (someone else's big ping) are cut, and not ours.
RECEIVE_BYTES = 256
# The kernel stamps each reply on arrival (SO_TIMESTAMPNS, linux/asm-generic/socket.h; Python has no name for
# it). Requests go out in batches and replies are read after the batch, so a clock read at recv would add the
# rest of the batch (milliseconds) to every RTT. The stamp is CLOCK_REALTIME, a struct timespec: when the wall
# clock steps between a request and its reply, the wall-clock RTT is negative or beyond any timeout, and the reply
# is timed on the monotonic clock instead, as it is read (an upper bound: it includes the wait to be read).
SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@ll")
_ANCILLARY_BYTES = socket.CMSG_SPACE(_TIMESPEC.size)

# An unreachable host or network is the port being unavailable as seen from here: a failed probe.
# Anything else that stops a send (local firewall EPERM, no buffers) says nothing about the port.
_UNREACHABLE_ERRNOS = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}


# A port's counters as one packed record: total, failures and errors (int64), then the last probe's time, RTT
# and loss ratio (double, NaN for none), native byte order, no padding. The scheduler keeps one per port and
# publishes it to the renderer; a finished probe folds its outcome into it (ProbeCounters.fold). _wire.c and
# exposition/_port_lines.c read the same layout (RECORD_BYTES there), held equal by tests.
RECORD = struct.Struct("=3q3d")
EMPTY_RECORD = RECORD.pack(0, 0, 0, 0.0, math.nan, math.nan)


class ProbeCounters:
    """A probe's counters: what the wire updates as requests go out, come back or expire."""

    __slots__ = ("error", "outstanding", "packets", "port", "received", "remaining", "route", "rtt_total", "sent",
                 "timeout")

    def __init__(self) -> None:
        self.packets = 0
        self.timeout = 0.0
        self.port: Any = None  # the caller's record of the port probed (a PortState for the passes below)
        self.route: tuple[Any, Any] | None = None  # (wire, destination) once the Pinger resolved it
        self.restart()

    def restart(self) -> None:
        """Make the counters new again: a port's next probe reuses its finished one."""
        self.remaining = self.packets  # requests not sent yet
        self.outstanding = 0  # requests sent, neither answered nor expired
        self.sent = self.received = 0
        self.rtt_total = 0.0
        self.error: str | None = None  # why the probe could not be made: no evidence either way

    @property
    def finished(self) -> bool:
        """Every request answered or expired."""
        return not self.remaining and not self.outstanding

    @property
    def ok(self) -> bool | None:
        """True: answered; False: not; None: no evidence."""
        if self.error is not None:
            return None
        return self.received > 0

    @property
    def loss_ratio(self) -> float:
        return 1.0 - self.received / self.sent if self.sent else 1.0

    @property
    def rtt_mean(self) -> float | None:
        """Mean RTT of the answers, or None."""
        return self.rtt_total / self.received if self.received else None

    def fold(self, record: bytes, at: float) -> bytes:
        """The port's RECORD after this finished probe, whose result is stamped `at`: an answered or failed probe
        counts, with its time, RTT (NaN: none answered) and loss; one that could not be made is an error only, and
        the port's last time, RTT and loss stay those of its last probe."""
        total, failures, errors, last_at, rtt, loss = RECORD.unpack(record)
        if self.error is not None:
            return RECORD.pack(total, failures, errors + 1, last_at, rtt, loss)
        received = self.received
        return RECORD.pack(total + 1, failures if received else failures + 1, errors, at,
                           self.rtt_total / received if received else math.nan, self.loss_ratio)


def give_up(probe: Any, reason: str, on_done: Callable[[Any], object]) -> None:
    """Stop sending; without one request out, the probe is no evidence (`reason` says why)."""
    probe.remaining = 0
    if not probe.sent:
        probe.error = reason
    if probe.finished:
        on_done(probe)


# -- The scheduler's passes over its ports and probes ----------------------------------------------------------
# _wire.c has them as loops over C structs, with no bytecode a probe (1.6 µs of user CPU a probe less at fleet scale:
# attributes of objects last touched an interval ago). Same arguments, same results.


class PortState:
    """What the scheduler's passes read and write of a port. Like _wire.c's, it sets nothing itself: the
    scheduler's port (ping_scheduler.ScheduledPort) gives every member its first value."""

    __slots__ = ("due", "probe", "record", "retired", "slot", "token")

    record: bytes  # the port's counters (RECORD)
    slot: int  # its index in the exposition's layout, -1 when not in it
    token: object  # what the answers' sink resolved its key to; None: not resolved (yet)
    probe: Any  # its last probe, reused once finished
    due: float  # monotonic time its next probe is due
    retired: bool  # removed by a reload: a probe still in flight is dropped


def start_due(ports: list[Any], head: int, now: float, interval: float, room: int, starting: list[Any],
              renew: list[Any], lags: list[float]) -> tuple[int, int]:
    """Start up to `room` probes of a lane: `ports` is a ring in order of due time from index `head`. Each port due
    at `now` or before moves to the ring's end, due one interval later (or one interval from now, far behind); its
    lag goes to `lags`; its finished probe is restarted and goes to `starting`, or, without one, the port goes to
    `renew` (the caller makes its probe). Returns the new head and how many ports were due."""
    count, started = len(ports), 0
    if count and not 0 <= head < count:
        raise IndexError("start_due: head out of the lane")
    while count and started < room:
        port = ports[head]
        due = port.due
        if due > now:
            break
        head = 0 if head + 1 == count else head + 1
        lags.append(now - due if now > due else 0.0)
        port.due = due + interval if due + interval > now else now + interval  # far behind: realign, no burst
        started += 1
        probe = port.probe
        if probe is not None and probe.finished:
            probe.restart()
            starting.append(probe)
        else:  # the first, or the last one is still running (a probe that outlasts its interval)
            renew.append(port)
    return head, started


def send_all(probes: list[Any]) -> list[tuple[Any, int | None]]:
    """Send each probe's next echo request through its route (wire, destination), in order. Returns the probes
    that did not go as routed: (probe, None) without a route yet, (probe, code) when Wire.send returned one."""
    rest: list[tuple[Any, int | None]] = []
    for probe in probes:
        route = probe.route
        if route is None:
            rest.append((probe, None))
            continue
        code = route[0].send(probe, route[1])
        if code is not None:
            rest.append((probe, code))
    return rest


def fold_run(probes: list[Any], start: int, at: float, records: dict[int, bytes], answered: list[object]) -> int:
    """From index `start`, fold each finished probe into its port's record, stamped `at` (a retired port's is
    dropped), and store the record in `records` under the port's slot (when it has one); an answered probe whose
    port has a token appends the token to `answered`. Stops at the first probe that needs more (a failure or an
    error, or an answer without a token yet), folded already, and returns its index; len(probes) when none does."""
    for index in range(max(start, 0), len(probes)):
        probe = probes[index]
        port = probe.port
        if port.retired:
            continue
        record = port.record = probe.fold(port.record, at)
        if port.slot >= 0:
            records[port.slot] = record
        token = port.token
        if probe.error is not None or not probe.received or token is None:
            return index
        answered.append(token)
    return len(probes)


class Wire:
    """Wire(sock, version, ident, privileged, on_done): one ICMP socket's requests in flight.

    The socket (non-blocking) stays the caller's: it closes it, after `close()` here.
    """

    def __init__(self, sock: socket.socket, version: int, ident: int, privileged: bool,
                 on_done: Callable[[Any], object]) -> None:
        if version not in (4, 6):
            raise ValueError(f"version must be 4 or 6, not {version}")
        self._sock: socket.socket | None = sock
        self.version = version
        self.privileged = bool(privileged)
        self.ident = ident & 0xFFFF
        self.next_seq = 0
        self.unmatched = 0
        self._on_done = on_done
        # seq -> (probe, wall-clock send time in ns, address, monotonic send time)
        self._waiting: dict[int, tuple[Any, int, str, float]] = {}
        # Expiry lanes, one per timeout value: appended in send order, so each stays sorted by deadline.
        self._expiries: dict[float, deque[tuple[float, int, tuple[Any, int, str, float]]]] = {}
        self._header_skip = version == 4 and self.privileged  # raw IPv4 sockets deliver the IP header too
        # Only the sequence number changes between IPv4 requests: sum the rest of the checksum once.
        header = _HEADER.pack(_ECHO_REQUEST[version], 0, 0, self.ident, 0) + PAYLOAD
        self._checksum_base = sum(struct.unpack(f"!{len(header) // 2}H", header))

    @property
    def in_flight(self) -> int:
        return len(self._waiting)

    # -- sending --------------------------------------------------------------------------------------

    def send(self, probe: Any, destination: tuple[str, int]) -> int | None:
        """Send the probe's next echo request. Returns None, the errno of a send that failed for a local reason
        (the probe gave up), or -1 when all 65536 sequence numbers are in flight."""
        probe.remaining -= 1
        if self._sock is None:
            return self._give_up(probe, "no_socket", None)
        waiting = self._waiting
        seq = self.next_seq
        self.next_seq = (seq + 1) & 0xFFFF
        if seq in waiting:  # still in flight after a wrap-around: look further
            claimed = self._claim_sequence()
            if claimed is None:
                return self._give_up(probe, "send_failed", -1)
            seq = claimed
        if self.version == 4:  # the kernel computes ICMPv6 checksums itself
            total = self._checksum_base + seq
            total = (total >> 16) + (total & 0xFFFF)
            total += total >> 16
            packet = _HEADER.pack(8, 0, ~total & 0xFFFF, self.ident, seq) + PAYLOAD
        else:
            packet = _HEADER.pack(128, 0, 0, self.ident, seq) + PAYLOAD
        sent_at = time.time_ns()  # integer ns: an RTT is their exact difference (as in _wire.c)
        try:
            self._sock.sendto(packet, destination)
        except OSError as err:
            if err.errno in _UNREACHABLE_ERRNOS:
                probe.sent += 1  # a request that cannot leave towards the port is a lost one
                if probe.finished:
                    self._on_done(probe)
                return None
            return self._give_up(probe, "send_failed", err.errno)
        probe.sent += 1
        probe.outstanding += 1
        sent_mono = time.monotonic()
        entry = (probe, sent_at, destination[0], sent_mono)
        waiting[seq] = entry
        lane = self._expiries.get(probe.timeout)
        if lane is None:
            lane = self._expiries[probe.timeout] = deque()
        lane.append((sent_mono + probe.timeout, seq, entry))
        return None

    def _give_up(self, probe: Any, reason: str, result: int | None) -> int | None:
        give_up(probe, reason, self._on_done)
        return result

    def _claim_sequence(self) -> int | None:
        waiting = self._waiting
        for _ in range(65536):
            seq = self.next_seq
            self.next_seq = (seq + 1) & 0xFFFF
            if seq not in waiting:
                return seq
        return None

    # -- expiry -----------------------------------------------------------------------------------------

    def expire(self, now: float) -> None:
        """Count requests whose monotonic deadline is <= now as lost."""
        waiting = self._waiting
        for lane in self._expiries.values():
            while lane and lane[0][0] <= now:
                _, seq, entry = lane.popleft()
                if waiting.get(seq) is not entry:
                    continue  # answered already
                del waiting[seq]
                probe = entry[0]
                probe.outstanding -= 1
                if probe.finished:
                    self._on_done(probe)

    def next_expiry(self) -> float | None:
        """Monotonic deadline of the earliest unanswered request, or None."""
        heads = []
        waiting = self._waiting
        for lane in self._expiries.values():
            while lane and waiting.get(lane[0][1]) is not lane[0][2]:
                lane.popleft()  # answered: do not wake up for it
            if lane:
                heads.append(lane[0][0])
        return min(heads) if heads else None

    def close(self) -> None:
        """Forget every request in flight (no result); later sends give up."""
        self._sock = None
        self._waiting.clear()
        self._expiries.clear()

    # -- receiving ----------------------------------------------------------------------------------------

    def drain(self) -> None:
        """Read and match every queued reply."""
        for _ in range(DRAIN_LIMIT):
            if self._sock is None:
                return
            try:
                data, ancillary, _flags, source = self._sock.recvmsg(RECEIVE_BYTES, _ANCILLARY_BYTES)
            except OSError:  # nothing queued (EAGAIN), or an error the next read will see again
                return
            arrived = None
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    seconds, nanoseconds = _TIMESPEC.unpack_from(value)
                    arrived = seconds * 1_000_000_000 + nanoseconds
            self._take_reply(data, source[0], time.time_ns() if arrived is None else arrived)

    def _take_reply(self, data: bytes, source: str, arrived: int) -> None:
        start = (data[0] & 0x0F) * 4 if self._header_skip and data else 0
        if len(data) < start + 8:
            return
        icmp_type = data[start]
        if icmp_type == ECHO_REPLY[self.version]:
            ident, seq = _IDENT_SEQ.unpack_from(data, start + 4)
            is_error = False
        elif self.privileged and icmp_type in ERRORS[self.version]:
            inner = start + 8  # the quoted request: its IP header, then its ICMP header
            inner += (data[inner] & 0x0F) * 4 if self.version == 4 and len(data) > inner else 40
            if len(data) < inner + 8 or data[inner] != _ECHO_REQUEST[self.version]:
                return
            ident, seq = _IDENT_SEQ.unpack_from(data, inner + 4)
            is_error = True
        else:
            return
        if self.privileged and ident != self.ident:
            return  # another process's ping on the shared raw socket
        entry = self._waiting.get(seq)
        if entry is None or (not is_error and not _same_address(source, entry[2])):
            self.unmatched += 1
            return
        del self._waiting[seq]  # its expiry-lane entry is skipped when it comes due
        probe, sent_at, _, sent_mono = entry
        probe.outstanding -= 1
        rtt = (arrived - sent_at) / 1e9  # the double nearest the nanoseconds, whose text is those digits
        if not is_error and not 0.0 <= rtt <= probe.timeout:  # the wall clock stepped meanwhile, or it is late
            rtt = time.monotonic() - sent_mono
        if not is_error and rtt <= probe.timeout:
            probe.received += 1
            probe.rtt_total += rtt
        if probe.finished:
            self._on_done(probe)


def _same_address(source: str, destination: str) -> bool:
    if source == destination:
        return True
    try:
        return ipaddress.ip_address(source.split("%")[0]) == ipaddress.ip_address(destination.split("%")[0])
    except ValueError:
        return False
