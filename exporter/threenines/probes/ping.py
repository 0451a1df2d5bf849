"""ICMP echo prober: one shared socket per address family, replies matched by identifier and sequence.

icmplib opens the sockets (raw when privileged, unprivileged ICMP datagram sockets otherwise). We do not
use its per-request receive loop: with one raw socket per ping in flight, every socket sees every ICMP packet
on the host, which costs 5–12× fping's CPU at fleet scale. One socket and a table indexed by sequence number
cost O(1) per reply.

The prober is callback-driven, not a coroutine per probe: at hundreds of probes a second an asyncio Task, a
future and a timer per probe cost more CPU than the ICMP exchange itself. The caller (the scheduler) sends,
calls `expire()` from its own periodic wake-up, and is told of the probes that finished through `on_done`, a
list at a time: the wires hand each finished probe to a list's `append` (a C call, no Python frame), and each
of the Pinger's operations ends by passing what it finished on in one call. The probes whose replies one
`drain` reads finish together, so their results take one pass of Python, not one call each.

Each socket's requests in flight are kept by a *wire* (`wire.py` is the reference in Python; `_wire.c` is
the same in C, used when it was built: side by side at 167 probes/s the exporter then uses 0.73× the CPU).
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
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icmplib import ICMPv4Socket, ICMPv6Socket
from icmplib.exceptions import SocketPermissionError

from threenines.probes import wire as python_wire

try:
    from threenines.probes import _wire as native_wire  # type: ignore[attr-defined]  # C extension, no stub
except ImportError:  # installed without a C compiler: the reference wire does the same work in Python
    native_wire = None

log = logging.getLogger(__name__)

RECEIVE_BUFFER_BYTES = 16 * 1024 * 1024
# linux/asm-generic/socket.h; Python 3.11 has no name for it
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33 if sys.platform.startswith("linux") else None)
# Linux raw-socket type filters (linux/icmp.h, linux/icmpv6.h): a set bit drops that ICMP type in the kernel,
# so the socket never wakes us for echo requests (on loopback it would see each of its own) or other noise.
_SOL_RAW = 255
_ICMP_FILTER = 1
_ICMP6_FILTER = 1
WIRE_ENV = "THREENINES_WIRE"  # "python" forces the reference wire (for comparison; the C one is the default)


def wire_kind(requested: str | None = None) -> str:
    """Which wire a Pinger uses: `requested`, else $THREENINES_WIRE, else the C one when it was built."""
    kind = requested or os.environ.get(WIRE_ENV) or ("native" if native_wire is not None else "python")
    if kind not in ("native", "python"):
        raise ValueError(f"{WIRE_ENV}={kind!r}: expected 'native' or 'python'")
    if kind == "native" and native_wire is None:
        raise ValueError("the native wire (threenines.probes._wire) was not built: install gcc and python3-dev, "
                         "then reinstall threenines; or use the reference wire (THREENINES_WIRE=python)")
    return kind


class PingSetupError(Exception):
    """No ICMP socket can be opened; the message says how to fix it."""


if TYPE_CHECKING:  # the type checker reads the reference wire; _wire.c's ProbeCounters has the same members
    _Counters = python_wire.ProbeCounters
else:
    _Counters = native_wire.ProbeCounters if native_wire is not None else python_wire.ProbeCounters


class Probe(_Counters):
    """One contract probe: `packets` echo requests; it answers when at least one reply arrives in time.

    Its counters (sent, received, outstanding, ...) and what they mean (ok, loss_ratio, rtt_mean, finished,
    restart) come from the wire's ProbeCounters base, where the wire updates them as replies arrive.
    """

    __slots__ = ("address", "packet_interval")

    def __init__(self, port: object, address: str, packets: int, timeout: float, packet_interval: float) -> None:
        self.port = port  # the caller's record of the port probed (the scheduler's ScheduledPort), handed back
        self.address = address
        self.packets = packets
        self.timeout = timeout
        self.packet_interval = packet_interval
        self.route = None  # (wire, destination): resolved at the first send
        self.restart()


class Pinger:
    """Sends echo requests and matches replies. Open inside a running event loop; close() when done."""

    def __init__(self, on_done: Callable[[list[Probe]], None], privileged: bool | None = None,
                 wire: str | None = None) -> None:
        self._on_done = on_done
        self._done: list[Probe] = []  # finished and not handed on yet; the wires append to this very list
        self._privileged = privileged
        self.wire_kind = wire_kind(wire)
        self._module: Any = native_wire if self.wire_kind == "native" else python_wire
        self._send_all: Callable[[list[Probe]], list[tuple[Probe, int | None]]] = self._module.send_all
        self._wires: dict[int, Any] = {}  # IP version -> wire
        self._sockets: dict[int, socket.socket] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._routes: dict[str, tuple[Any, object] | None] = {}  # address -> (wire, destination), parsed once

    @property
    def privileged(self) -> bool | None:
        wire = self._wires.get(4) or self._wires.get(6)
        return bool(wire.privileged) if wire is not None else None

    @property
    def replies_unmatched(self) -> int:
        """Replies to no request in flight (late, duplicated, or from an address we did not ping)."""
        return sum(wire.unmatched for wire in self._wires.values())

    def open(self, versions: tuple[int, ...] = (4, 6)) -> None:
        self._loop = asyncio.get_running_loop()
        for version in versions:
            if version not in self._wires:
                try:
                    self._open_family(version)
                except OSError as err:
                    if version == 6 and err.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                        log.warning("IPv6 is not available on this host; IPv6 ports will be unknown")
                        continue
                    raise
        self._routes.clear()  # an address that had no socket may have one now

    def _open_family(self, version: int) -> None:
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
            _enable_receive_stamps(sock)
            if version == 4:
                _set_dont_fragment(sock)
            ident = (os.getpid() & 0xFFFF) if privileged else sock.getsockname()[1]
            wire = self._module.Wire(sock, version, ident, privileged, self._done.append)
            self._sockets[version], self._wires[version] = sock, wire
            assert self._loop is not None
            self._loop.add_reader(sock.fileno(), self._readable, wire)
            log.info("ICMPv%d socket open (%s, %s wire)", version, "raw, privileged" if privileged else "unprivileged",
                     self.wire_kind)
            return
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
        for version, wire in self._wires.items():
            sock = self._sockets[version]
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(sock.fileno())
            wire.close()
            sock.close()
        self._wires.clear()
        self._sockets.clear()
        self._routes.clear()

    # -- sending --------------------------------------------------------------------------------------

    def send(self, probe: Probe) -> None:
        """Send the probe's next echo request. The caller spaces further requests by `packet_interval`."""
        self.send_many([probe])

    def send_many(self, probes: list[Probe]) -> None:
        """Send each probe's next echo request, in order (a probe's first, to a route not resolved yet, after the
        others); the probes that finish meanwhile (a request that could not leave) are handed on once, at the end."""
        done = self._done
        for probe, code in self._send_all(probes):  # the wire's loop: no bytecode a probe (wire.send_all)
            if code is None:  # no route yet: its address is parsed once for every probe to it
                address = probe.address
                route = self._routes[address] if address in self._routes else self._route(address)
                if route is None:  # no socket for its address family
                    python_wire.give_up(probe, "no_socket", done.append)
                    continue
                probe.route = route
                code = route[0].send(probe, route[1])
            if code is not None:
                if code < 0:
                    log.warning("65536 ICMP echo requests in flight on one socket: lower packets or timeouts, "
                                "or shard")
                else:
                    log.debug("ICMP send to %s failed: %s", probe.address, os.strerror(code))
        if done:
            self._hand_on()

    def _hand_on(self) -> None:
        """Pass the finished probes on, in one call. The list is copied first: `on_done` may send, and a send
        may finish a probe."""
        done = self._done
        batch = done[:]
        done.clear()
        self._on_done(batch)

    def _route(self, address: str) -> tuple[Any, object] | None:
        host, _, zone = address.partition("%")
        ip = ipaddress.ip_address(host)
        wire = self._wires.get(ip.version)
        route: tuple[Any, object] | None = None
        if wire is not None:
            if self.wire_kind == "python":
                route = (wire, (address, 0))
            else:
                try:
                    route = (wire, _sockaddr(ip, zone))
                except OSError as err:
                    log.warning("cannot route to %s: %s", address, err)
        self._routes[address] = route
        return route

    # -- expiry and receiving -----------------------------------------------------------------------

    def expire(self, now: float | None = None) -> None:
        """Count requests whose deadline passed as lost (monotonic `now`).

        Replies are read first: one that arrived in time but was not read yet is not lost.
        """
        if now is None:
            now = time.monotonic()
        wires = self._wires.values()
        for wire in wires:
            wire.drain()
        for wire in wires:
            wire.expire(now)
        if self._done:
            self._hand_on()

    def next_expiry(self) -> float | None:
        """Monotonic time of the earliest deadline of a request still unanswered."""
        heads = [at for wire in self._wires.values() if (at := wire.next_expiry()) is not None]
        return min(heads) if heads else None

    def drain(self) -> None:
        """Read every queued reply."""
        for wire in self._wires.values():
            wire.drain()
        if self._done:
            self._hand_on()

    def _readable(self, wire: Any) -> None:
        """The event loop saw replies queued on the wire's socket."""
        wire.drain()
        if self._done:
            self._hand_on()


def _sockaddr(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, zone: str) -> bytes:
    """The packed struct sockaddr_in/sockaddr_in6 the native wire sends to (port 0: ICMP has none)."""
    if ip.version == 4:
        return struct.pack("=HH4s8x", socket.AF_INET, 0, ip.packed)
    scope = (int(zone) if zone.isdigit() else socket.if_nametoindex(zone)) if zone else 0
    return struct.pack("=HHI16sI", socket.AF_INET6, 0, 0, ip.packed, scope)


def _grow_receive_buffer(sock: socket.socket) -> None:
    # Replies to a burst of probes arrive together; the default buffer (~200 KiB) drops them silently,
    # and a dropped reply would be a failed probe.
    # SO_RCVBUFFORCE (root, CAP_NET_ADMIN) goes past net.core.rmem_max, which caps SO_RCVBUF.
    for option in (_SO_RCVBUFFORCE, socket.SO_RCVBUF):
        if option is None:
            continue
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, RECEIVE_BUFFER_BYTES)
            return


def _enable_receive_stamps(sock: socket.socket) -> None:
    # The kernel stamps each reply on arrival: RTTs then leave out how long a reply waited to be read.
    with contextlib.suppress(OSError):  # not Linux: replies are stamped when read, batch time included
        sock.setsockopt(socket.SOL_SOCKET, python_wire.SO_TIMESTAMPNS, 1)


# linux/in.h; Python 3.11 has no names for them. PROBE sets DF on every packet without refusing one larger than the
# path MTU known (an echo request is 44 bytes, never fragmented).
_IP_MTU_DISCOVER = 10
_IP_PMTUDISC_PROBE = 3


def _set_dont_fragment(sock: socket.socket) -> None:
    # An IPv4 packet without DF from an unconnected socket takes its IP ID from the kernel's shared, hashed ID
    # table (__ip_select_ident: a cache miss per destination, and a random number): 2 % of the exporter's CPU at
    # 16,700 ports. With DF set the ID is 0 (RFC 6864: an atomic datagram's ID is not used).
    with contextlib.suppress(OSError):  # not Linux: the kernel picks IDs as it does for any ping
        sock.setsockopt(socket.IPPROTO_IP, _IP_MTU_DISCOVER, _IP_PMTUDISC_PROBE)


def _filter_icmp_types(sock: socket.socket, version: int) -> None:
    """Let only echo replies and the errors that can answer an echo request reach a raw socket."""
    wanted = (python_wire.ECHO_REPLY[version], *python_wire.ERRORS[version])
    with contextlib.suppress(OSError):  # not Linux, or an old kernel: the wire filters instead
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

