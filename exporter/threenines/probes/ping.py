"""ICMP echo prober: one shared socket per address family, replies matched by identifier and sequence.

icmplib opens the sockets (raw when privileged, unprivileged ICMP datagram sockets otherwise). We do not
use its per-request receive loop: with one raw socket per ping in flight, every socket sees every ICMP packet
on the host, which costs 5–12× fping's CPU at fleet scale. One socket and a dispatch table cost O(1) per
reply.

The prober is callback-driven, not a coroutine per probe: at hundreds of probes a second an asyncio Task, a
future and a timer per probe cost more CPU than the ICMP exchange itself. The caller (the scheduler) sends,
calls `expire()` from its own periodic wake-up, and is told of each finished probe through `on_done`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from icmplib import ICMPv4Socket, ICMPv6Socket
from icmplib.exceptions import SocketPermissionError

log = logging.getLogger(__name__)

_ECHO_REQUEST = {4: 8, 6: 128}
_ECHO_REPLY = {4: 0, 6: 129}
_ERRORS = {4: (3, 11, 12), 6: (1, 2, 3, 4)}  # destination unreachable, time exceeded, ...
RECEIVE_BUFFER_BYTES = 16 * 1024 * 1024
_PAYLOAD = b"threenines-probe"  # 16 bytes: small, recognisable in a packet capture
_HEADER = struct.Struct("!BBHHH")
_IDENT_SEQ = struct.Struct("!HH")
# Linux raw-socket type filters (linux/icmp.h, linux/icmpv6.h): a set bit drops that ICMP type in the kernel,
# so the socket never wakes us for echo requests (on loopback it would see each of its own) or other noise.
_SOL_RAW = 255
_ICMP_FILTER = 1
_ICMP6_FILTER = 1
_DRAIN_LIMIT = 1024  # replies read per wake-up: one busy socket cannot starve the loop
# Enough for an echo reply and for an ICMP error quoting a request (outer IP header ≤ 60, ICMP 8, quoted IP
# header ≤ 60 or 40, quoted ICMP header 8); longer datagrams (someone else's big ping) are cut, and not ours.
_RECEIVE_BYTES = 256
# The kernel stamps each reply on arrival (SO_TIMESTAMPNS, linux/asm-generic/socket.h; Python has no name for
# it). Requests go out in batches and replies are read after the batch, so a clock read at recv would add the
# rest of the batch (milliseconds) to every RTT. The stamp is CLOCK_REALTIME, a struct timespec.
_SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@ll")
_ANCILLARY_BYTES = socket.CMSG_SPACE(_TIMESPEC.size)

# An unreachable host or network is the port being unavailable as seen from here: a failed probe.
# Anything else that stops a send (local firewall EPERM, no buffers) says nothing about the port.
_UNREACHABLE_ERRNOS = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}


class PingSetupError(Exception):
    """No ICMP socket can be opened; the message says how to fix it."""


class Probe:
    """One contract probe: `packets` echo requests; it answers when at least one reply arrives in time."""

    __slots__ = (
        "address",
        "error",
        "key",
        "outstanding",
        "packet_interval",
        "packets",
        "received",
        "remaining",
        "rtt_total",
        "sent",
        "timeout",
    )

    def __init__(self, key: object, address: str, packets: int, timeout: float, packet_interval: float) -> None:
        self.key = key
        self.address = address
        self.packets = packets
        self.timeout = timeout
        self.packet_interval = packet_interval
        self.remaining = packets  # requests not sent yet
        self.outstanding = 0  # requests sent, neither answered nor expired
        self.sent = 0
        self.received = 0
        self.rtt_total = 0.0
        self.error: str | None = None  # set when the probe could not be made: no evidence either way

    def restart(self) -> None:
        """Make a finished probe new again: a port's next probe reuses it instead of allocating another."""
        self.remaining = self.packets
        self.sent = self.received = 0
        self.rtt_total = 0.0
        self.error = None

    @property
    def finished(self) -> bool:
        return not self.remaining and not self.outstanding

    @property
    def ok(self) -> bool | None:
        if self.error is not None:
            return None
        return self.received > 0

    @property
    def loss_ratio(self) -> float:
        return 1.0 - self.received / self.sent if self.sent else 1.0

    @property
    def rtt_mean(self) -> float | None:
        return self.rtt_total / self.received if self.received else None


Waiting = tuple[Probe, float]  # (probe, wall-clock send time: the kernel's receive stamps are wall-clock)


class _Family:
    __slots__ = (
        "checksum_base",
        "header_skip",
        "ident",
        "next_seq",
        "privileged",
        "reply_type",
        "sock",
        "stamped",
        "version",
        "waiting",
    )

    def __init__(self, version: int, sock: socket.socket, privileged: bool, ident: int, stamped: bool) -> None:
        self.version = version
        self.sock = sock
        self.privileged = privileged
        self.ident = ident
        self.waiting: dict[int, Waiting] = {}
        self.next_seq = 0
        # Only the sequence number changes between IPv4 requests: sum the rest of the checksum once.
        header = _HEADER.pack(_ECHO_REQUEST[version], 0, 0, ident, 0) + _PAYLOAD
        self.checksum_base = sum(struct.unpack(f"!{len(header) // 2}H", header))
        self.header_skip = version == 4 and privileged  # raw IPv4 sockets deliver the IP header too
        self.reply_type = _ECHO_REPLY[version]
        self.stamped = stamped  # the kernel stamps replies on arrival


class Pinger:
    """Sends echo requests and matches replies. Open inside a running event loop; close() when done."""

    def __init__(self, on_done: Callable[[Probe], None], privileged: bool | None = None) -> None:
        self._on_done = on_done
        self._privileged = privileged
        self._families: dict[int, _Family] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._routes: dict[str, tuple[int, tuple[str, int]]] = {}  # address -> (IP version, sockaddr), parsed once
        # Expiry lanes, one per timeout value: appended in send order, so each stays sorted by deadline.
        self._expiries: dict[float, deque[tuple[float, _Family, int, Waiting]]] = {}
        self.replies_unmatched = 0

    @property
    def privileged(self) -> bool | None:
        fam = self._families.get(4) or self._families.get(6)
        return fam.privileged if fam else None

    def open(self, versions: tuple[int, ...] = (4, 6)) -> None:
        self._loop = asyncio.get_running_loop()
        for version in versions:
            if version not in self._families:
                try:
                    self._families[version] = self._open_family(version)
                except OSError as err:
                    if version == 6 and err.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                        log.warning("IPv6 is not available on this host; IPv6 ports will be unknown")
                        continue
                    raise

    def _open_family(self, version: int) -> _Family:
        cls = ICMPv4Socket if version == 4 else ICMPv6Socket
        modes = [self._privileged] if self._privileged is not None else [True, False]
        last: Exception | None = None
        for privileged in modes:
            try:
                icmp = cls(privileged=privileged)
            except SocketPermissionError as err:
                last = err
                continue
            sock = icmp.sock
            # The wrapper would close the socket when garbage collected: take ownership.
            icmp._sock = None
            sock.setblocking(False)
            _grow_receive_buffer(sock)
            if privileged:
                _filter_icmp_types(sock, version)
            ident = (os.getpid() & 0xFFFF) if privileged else sock.getsockname()[1]
            fam = _Family(version, sock, privileged, ident, stamped=_enable_receive_stamps(sock))
            assert self._loop is not None
            self._loop.add_reader(sock.fileno(), self.drain, fam)
            log.info("ICMPv%d socket open (%s)", version, "raw, privileged" if privileged else "unprivileged")
            return fam
        groups: list[str] = []
        with contextlib.suppress(OSError):
            groups = Path("/proc/sys/net/ipv4/ping_group_range").read_text().split()
        raise PingSetupError(
            f"cannot open an ICMPv{version} socket: not privileged (no root / CAP_NET_RAW) and this user's group "
            f"(gid {os.getgid()}) is outside net.ipv4.ping_group_range ({' '.join(groups) or 'unknown'}). "
            "Fix one of: run as root; `setcap cap_net_raw+ep` on the Python binary; or allow unprivileged ICMP "
            'with `sysctl -w net.ipv4.ping_group_range="0 2147483647"`.'
        ) from last

    def close(self) -> None:
        """Close the sockets; probes still in flight are dropped without a result."""
        for fam in self._families.values():
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(fam.sock.fileno())
            fam.sock.close()
            fam.waiting.clear()
        self._families.clear()
        self._expiries.clear()

    # -- sending --------------------------------------------------------------------------------------

    def send(self, probe: Probe) -> None:
        """Send the probe's next echo request. The caller spaces further requests by `packet_interval`."""
        probe.remaining -= 1
        address = probe.address
        route = self._routes.get(address)
        if route is None:
            route = self._routes[address] = (ipaddress.ip_address(address).version, (address, 0))
        fam = self._families.get(route[0])
        if fam is None:
            self._give_up(probe, "no_socket")
            return
        seq = fam.next_seq
        fam.next_seq = (seq + 1) & 0xFFFF
        if seq in fam.waiting:  # still in flight after a wrap-around: look further
            seq = self._claim_sequence(fam)
        if seq is None:
            log.warning("65536 ICMP echo requests in flight on one socket: lower packets or timeouts, or shard")
            self._give_up(probe, "send_failed")
            return
        if fam.version == 4:  # the kernel computes ICMPv6 checksums itself
            total = fam.checksum_base + seq
            total = (total >> 16) + (total & 0xFFFF)
            total += total >> 16
            packet = _HEADER.pack(8, 0, ~total & 0xFFFF, fam.ident, seq) + _PAYLOAD
        else:
            packet = _HEADER.pack(128, 0, 0, fam.ident, seq) + _PAYLOAD
        sent_at = time.time()
        try:
            fam.sock.sendto(packet, route[1])
        except OSError as err:
            if err.errno in _UNREACHABLE_ERRNOS:
                probe.sent += 1  # a request that cannot leave towards the port is a lost one
                if probe.finished:
                    self._on_done(probe)
                return
            log.debug("ICMP send to %s failed: %s", address, err)
            self._give_up(probe, "send_failed")
            return
        probe.sent += 1
        probe.outstanding += 1
        deadline = time.monotonic() + probe.timeout
        entry = (probe, sent_at)
        fam.waiting[seq] = entry
        lane = self._expiries.get(probe.timeout)
        if lane is None:
            lane = self._expiries[probe.timeout] = deque()
        lane.append((deadline, fam, seq, entry))

    def _give_up(self, probe: Probe, reason: str) -> None:
        """Stop sending; without one request out, the probe is no evidence."""
        probe.remaining = 0
        if not probe.sent:
            probe.error = reason
        if probe.finished:
            self._on_done(probe)

    @staticmethod
    def _claim_sequence(fam: _Family) -> int | None:
        waiting = fam.waiting
        for _ in range(65536):
            seq = fam.next_seq
            fam.next_seq = (seq + 1) & 0xFFFF
            if seq not in waiting:
                return seq
        return None

    # -- expiry -----------------------------------------------------------------------------------------

    def expire(self, now: float | None = None) -> None:
        """Count requests whose deadline passed as lost (monotonic `now`).

        Replies are read first: one that arrived in time but was not read yet is not lost.
        """
        if now is None:
            now = time.monotonic()
        self.drain()
        for lane in self._expiries.values():
            while lane and lane[0][0] <= now:
                _, fam, seq, entry = lane.popleft()
                if fam.waiting.get(seq) is not entry:
                    continue  # answered already
                del fam.waiting[seq]
                probe = entry[0]
                probe.outstanding -= 1
                if probe.finished:
                    self._on_done(probe)

    def next_expiry(self) -> float | None:
        """Monotonic time of the earliest deadline of a request still unanswered."""
        heads = []
        for lane in self._expiries.values():
            while lane and lane[0][1].waiting.get(lane[0][2]) is not lane[0][3]:
                lane.popleft()  # answered: do not wake up for it
            if lane:
                heads.append(lane[0][0])
        return min(heads) if heads else None

    # -- receiving ----------------------------------------------------------------------------------------

    def drain(self, fam: _Family | None = None) -> None:
        """Read every queued reply (all families when none is named)."""
        for each in (fam,) if fam is not None else tuple(self._families.values()):
            recvmsg = each.sock.recvmsg
            stamped = each.stamped
            for _ in range(_DRAIN_LIMIT):
                try:
                    data, ancillary, _flags, source = recvmsg(_RECEIVE_BYTES, _ANCILLARY_BYTES)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as err:
                    log.debug("ICMP receive error: %s", err)
                    break
                if stamped and ancillary:
                    seconds, nanoseconds = _TIMESPEC.unpack_from(ancillary[0][2])
                    arrived = seconds + nanoseconds * 1e-9
                else:
                    arrived = time.time()
                self._dispatch(each, data, source[0], arrived)

    def _dispatch(self, fam: _Family, data: bytes, source: str, arrived: float) -> None:
        start = (data[0] & 0x0F) * 4 if fam.header_skip and data else 0  # raw IPv4 delivers the IP header
        if len(data) < start + 8:
            return
        icmp_type = data[start]
        if icmp_type == fam.reply_type:
            ident, seq = _IDENT_SEQ.unpack_from(data, start + 4)
            is_error = False
        elif fam.privileged and icmp_type in _ERRORS[fam.version]:
            inner = start + 8  # the quoted request: its IP header, then its ICMP header
            inner += (data[inner] & 0x0F) * 4 if fam.version == 4 and len(data) > inner else 40
            if len(data) < inner + 8 or data[inner] != _ECHO_REQUEST[fam.version]:
                return
            ident, seq = _IDENT_SEQ.unpack_from(data, inner + 4)
            is_error = True
        else:
            return
        if ident != fam.ident and fam.privileged:
            return  # another process's ping on the shared raw socket
        entry = fam.waiting.get(seq)
        if entry is None:
            self.replies_unmatched += 1
            return
        probe, sent_at = entry
        if not is_error and source != probe.address and not _same_address(source, probe.address):
            self.replies_unmatched += 1
            return
        del fam.waiting[seq]  # its expiry-lane entry is skipped when it comes due
        probe.outstanding -= 1
        rtt = arrived - sent_at
        if not is_error and rtt <= probe.timeout:
            probe.received += 1
            probe.rtt_total += rtt if rtt > 0.0 else 0.0  # a wall-clock step backwards: not a negative RTT
        if probe.finished:
            self._on_done(probe)


def _grow_receive_buffer(sock: socket.socket) -> None:
    # Replies to a burst of probes arrive together; the default buffer (~200 KiB) drops them silently,
    # and a dropped reply would be a failed probe.
    for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if option is None:
            continue
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, RECEIVE_BUFFER_BYTES)
            return


def _enable_receive_stamps(sock: socket.socket) -> bool:
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    except OSError:  # not Linux: replies are stamped when read, so RTTs include the batch's sending time
        return False
    return True


def _filter_icmp_types(sock: socket.socket, version: int) -> None:
    """Let only echo replies and the errors that can answer an echo request reach a raw socket."""
    wanted = (_ECHO_REPLY[version], *_ERRORS[version])
    with contextlib.suppress(OSError):  # not Linux, or an old kernel: the dispatch filters in Python instead
        if version == 4:
            mask = 0xFFFFFFFF
            for icmp_type in wanted:
                mask &= ~(1 << icmp_type)
            sock.setsockopt(_SOL_RAW, _ICMP_FILTER, struct.pack("=I", mask))
        else:
            words = [0xFFFFFFFF] * 8
            for icmp_type in wanted:
                words[icmp_type >> 5] &= ~(1 << (icmp_type & 31))
            sock.setsockopt(socket.IPPROTO_ICMPV6, _ICMP6_FILTER, struct.pack("=8I", *words))


def _same_address(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a.split("%")[0]) == ipaddress.ip_address(b)
    except ValueError:
        return False
