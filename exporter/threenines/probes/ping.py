"""ICMP echo prober: one shared socket per address family, replies matched by identifier and sequence.

icmplib opens the sockets (raw when privileged, unprivileged ICMP datagram sockets otherwise). We do not
use its per-request receive loop: with one raw socket per ping in flight, every socket sees every ICMP packet
on the host, which costs 5–12× fping's CPU at fleet scale. One socket and a dispatch table cost O(1) per
reply.
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
from dataclasses import dataclass, field
from pathlib import Path

from icmplib import ICMPv4Socket, ICMPv6Socket
from icmplib.exceptions import SocketPermissionError

log = logging.getLogger(__name__)

_ECHO_REQUEST = {4: 8, 6: 128}
_ECHO_REPLY = {4: 0, 6: 129}
_ERRORS = {4: {3, 11, 12}, 6: {1, 2, 3, 4}}  # destination unreachable, time exceeded, ...
RECEIVE_BUFFER_BYTES = 16 * 1024 * 1024
_PAYLOAD = b"threenines-probe"  # 16 bytes: small, recognisable in a packet capture

# An unreachable host or network is the port being unavailable as seen from here: a failed probe.
# Anything else that stops a send (local firewall EPERM, no buffers) says nothing about the port.
_UNREACHABLE_ERRNOS = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}


class PingSetupError(Exception):
    """No ICMP socket can be opened; the message says how to fix it."""


@dataclass(frozen=True)
class ProbeResult:
    sent: int
    received: int
    rtts: tuple[float, ...]
    error: str | None = None  # set when the probe could not be made: no evidence either way

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
        return sum(self.rtts) / len(self.rtts) if self.rtts else None


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


@dataclass
class _Family:
    version: int
    sock: socket.socket
    privileged: bool
    ident: int
    # seq -> (future, monotonic send time, address, expiry timer)
    waiting: dict[int, tuple[asyncio.Future[float | None], float, str, asyncio.TimerHandle | None]] = field(
        default_factory=dict)
    next_seq: int = 0


class Pinger:
    """Sends echo requests and matches replies. Create inside a running event loop; close() when done."""

    def __init__(self, privileged: bool | None = None) -> None:
        self._privileged = privileged
        self._families: dict[int, _Family] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._versions: dict[str, int] = {}  # address -> IP version, parsed once
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
            ident = (os.getpid() & 0xFFFF) if privileged else sock.getsockname()[1]
            fam = _Family(version, sock, privileged, ident)
            assert self._loop is not None
            self._loop.add_reader(sock.fileno(), self._on_readable, fam)
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
        for fam in self._families.values():
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(fam.sock.fileno())
            fam.sock.close()
            for future, _, _, _ in fam.waiting.values():
                if not future.done():
                    future.cancel()
        self._families.clear()

    # -- probing --------------------------------------------------------------------------------------

    async def probe(self, address: str, packets: int, timeout: float, packet_interval: float) -> ProbeResult:
        """Send `packets` echo requests; the probe answers when at least one reply arrives in time."""
        version = self._versions.get(address)
        if version is None:
            version = self._versions[address] = ipaddress.ip_address(address).version
        fam = self._families.get(version)
        if fam is None:
            return ProbeResult(0, 0, (), error="no_socket")
        waits: list[asyncio.Future[float | None]] = []
        sent = 0
        for index in range(packets):
            if index:
                await asyncio.sleep(packet_interval)
            outcome = self._send(fam, address, timeout)
            if isinstance(outcome, str):
                if outcome == "unreachable":
                    sent += 1
                    continue
                return ProbeResult(sent, 0, (), error=outcome) if not sent else ProbeResult(sent, 0, ())
            sent += 1
            waits.append(outcome)
        if len(waits) == 1:  # the common contract probe: skip gather's bookkeeping
            rtt = await waits[0]
            rtts: tuple[float, ...] = (rtt,) if rtt is not None else ()
        else:
            rtts = tuple(rtt for rtt in await asyncio.gather(*waits) if rtt is not None) if waits else ()
        return ProbeResult(sent, len(rtts), rtts)

    def _send(self, fam: _Family, address: str, timeout: float) -> asyncio.Future[float | None] | str:
        assert self._loop is not None
        seq = self._claim_sequence(fam)
        header = struct.pack("!BBHHH", _ECHO_REQUEST[fam.version], 0, 0, fam.ident, seq)
        packet = header + _PAYLOAD
        if fam.version == 4:  # the kernel computes ICMPv6 checksums itself
            packet = struct.pack("!BBHHH", 8, 0, _checksum(packet), fam.ident, seq) + _PAYLOAD
        future: asyncio.Future[float | None] = self._loop.create_future()
        sent_at = time.monotonic()
        fam.waiting[seq] = (future, sent_at, address, None)
        try:
            fam.sock.sendto(packet, (address, 0))
        except OSError as err:
            del fam.waiting[seq]
            if err.errno in _UNREACHABLE_ERRNOS:
                return "unreachable"
            log.debug("ICMP send to %s failed: %s", address, err)
            return "send_failed"
        timer = self._loop.call_later(timeout, self._expire, fam, seq, future)
        fam.waiting[seq] = (future, sent_at, address, timer)
        return future

    def _claim_sequence(self, fam: _Family) -> int:
        for _ in range(65536):
            seq = fam.next_seq
            fam.next_seq = (seq + 1) & 0xFFFF
            if seq not in fam.waiting:
                return seq
        raise RuntimeError("65536 ICMP echo requests in flight on one socket")

    @staticmethod
    def _expire(fam: _Family, seq: int, future: asyncio.Future[float | None]) -> None:
        entry = fam.waiting.get(seq)
        if entry is not None and entry[0] is future:
            del fam.waiting[seq]
        if not future.done():
            future.set_result(None)

    def _on_readable(self, fam: _Family) -> None:
        # Drain what is queued, bounded so one busy socket cannot starve the loop.
        for _ in range(256):
            try:
                data, source = fam.sock.recvfrom(1500)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                log.debug("ICMP receive error: %s", err)
                return
            self._dispatch(fam, data, source[0])

    def _dispatch(self, fam: _Family, data: bytes, source: str) -> None:
        now = time.monotonic()
        if fam.version == 4 and fam.privileged:
            if len(data) < 20:
                return
            data = data[(data[0] & 0x0F) * 4:]  # raw IPv4 sockets include the IP header
        if len(data) < 8:
            return
        icmp_type = data[0]
        if icmp_type == _ECHO_REPLY[fam.version]:
            ident, seq = struct.unpack_from("!HH", data, 4)
            is_error = False
        elif icmp_type in _ERRORS[fam.version] and fam.privileged:
            inner = data[8:]
            if fam.version == 4:
                if len(inner) < 20:
                    return
                inner = inner[(inner[0] & 0x0F) * 4:]
            else:
                inner = inner[40:]
            if len(inner) < 8 or inner[0] != _ECHO_REQUEST[fam.version]:
                return
            ident, seq = struct.unpack_from("!HH", inner, 4)
            is_error = True
        else:
            return
        if ident != fam.ident and fam.privileged:
            return  # another process's ping on the shared raw socket
        entry = fam.waiting.get(seq)
        if entry is None:
            self.replies_unmatched += 1
            return
        future, sent_at, address, timer = entry
        if not is_error and source != address and not _same_address(source, address):
            self.replies_unmatched += 1
            return
        del fam.waiting[seq]
        if timer is not None:
            timer.cancel()
        if not future.done():
            future.set_result(None if is_error else now - sent_at)


def _grow_receive_buffer(sock: socket.socket) -> None:
    # Replies to a burst of probes arrive together; the default buffer (~200 KiB) drops them silently,
    # and a dropped reply would be a failed probe.
    for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if option is None:
            continue
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, RECEIVE_BUFFER_BYTES)
            return


def _same_address(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a.split("%")[0]) == ipaddress.ip_address(b)
    except ValueError:
        return False
