"""One UDP socket per address family for every v1/v2c device: requests out, responses routed by request-id.

Each request waits at most `timeout` per try and `retries + 1` tries; a response is accepted only from the
address the request went to. Nothing here knows about secrets beyond the bytes it is handed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import socket
from typing import Any

from threenines.probes.snmp import ber

RECEIVE_BUFFER = 4 * 1024 * 1024  # many devices answer at once; a small buffer would drop their datagrams


class Timeout(Exception):
    pass


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, pending: dict[int, tuple[asyncio.Future[bytes], tuple[str, int]]]) -> None:
        self.pending = pending

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        try:
            entry = self.pending.get(ber.request_id(data))
        except ber.BerError:
            return  # not an SNMP response: ignore, the request times out if nothing valid comes
        if entry is not None and entry[1] == addr[:2] and not entry[0].done():
            entry[0].set_result(data)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors: the waiting request simply times out


class UdpRequester:
    """Sends SNMP requests and awaits their responses; bound to the event loop that first used it."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transports: dict[int, tuple[asyncio.DatagramTransport, socket.socket]] = {}
        self._pending: dict[int, tuple[asyncio.Future[bytes], tuple[str, int]]] = {}
        self._addresses: dict[tuple[str, int], tuple[int, tuple[str, int]]] = {}
        self._next_id = random.randrange(1, 2**30)

    def close(self) -> None:
        for transport, sock in self._transports.values():
            if self._loop is not None and not self._loop.is_closed():
                transport.close()
            else:
                sock.close()  # the loop that owned it is gone (asyncio.run returned): close the socket itself
        self._transports.clear()
        self._pending.clear()
        self._loop = None

    async def resolve(self, host: str, port: int) -> tuple[int, tuple[str, int]]:
        key = (host, port)
        known = self._addresses.get(key)
        if known is not None:
            return known
        try:
            ip = ipaddress.ip_address(host)
            # Canonical text: responses are matched against the address recvfrom() reports ("::1", not "0::1").
            resolved = (socket.AF_INET6 if ip.version == 6 else socket.AF_INET, (str(ip), port))
        except ValueError:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            family, _, _, _, sockaddr = infos[0]
            resolved = (family, (str(sockaddr[0]), int(sockaddr[1])))
        self._addresses[key] = resolved
        return resolved

    async def _transport(self, family: int) -> asyncio.DatagramTransport:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self.close()  # transports belong to one loop; a new loop (a new asyncio.run) gets new sockets
            self._loop = loop
        known = self._transports.get(family)
        if known is not None:
            return known[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self._pending), sock=sock)
        except BaseException:
            sock.close()
            raise
        self._transports[family] = (transport, sock)
        return transport

    def new_request_id(self) -> int:
        self._next_id = self._next_id % (2**31 - 1) + 1
        return self._next_id

    async def exchange(self, family: int, address: tuple[str, int], request_id: int, message: bytes,
                       timeout: float, retries: int) -> bytes:
        """Send and await the response with this request-id; Timeout after retries + 1 unanswered tries."""
        transport = await self._transport(family)
        loop = asyncio.get_running_loop()
        try:
            for _ in range(retries + 1):
                future: asyncio.Future[bytes] = loop.create_future()
                self._pending[request_id] = (future, address)
                transport.sendto(message, address)
                try:
                    async with asyncio.timeout(timeout):
                        return await future
                except TimeoutError:
                    continue
            raise Timeout
        finally:
            self._pending.pop(request_id, None)
