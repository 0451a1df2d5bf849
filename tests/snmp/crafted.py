"""A v2c agent on 127.0.0.1 that serves a recording and answers chosen OIDs with crafted bytes.

snmpsim and snmpd encode through pyasn1 or net-snmp and cannot send a zero-length INTEGER, a truncated name
or an OID that goes backwards; the malformed replies of the adversarial run came from agents that did. This
one decodes requests with pyasn1 (independent of the code under test), answers GET, GETNEXT and GETBULK from
the recording, and lets a test replace the name or value TLV of any answered varbind. Its thread lives inside
a context manager, polls its socket with a timeout and is joined on exit.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api

V2C = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
Oid = tuple[int, ...]
# (answered OID, name content octets, value TLV) -> (name content octets, value TLV) actually sent
Craft = Callable[[Oid, bytes, bytes], tuple[bytes, bytes]]

NO_SUCH_OBJECT, END_OF_MIB_VIEW = b"\x80\x00", b"\x82\x00"
MAX_LIFETIME = 300.0  # seconds: a test that forgets to leave the context still ends the thread


def tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    length = bytes((n,)) if n < 0x80 else bytes((0x82,)) + n.to_bytes(2, "big")
    return bytes((tag,)) + length + content


def oid_content(oid: Oid) -> bytes:
    encoded = encoder.encode(V2C.ObjectIdentifier(oid))
    return encoded[2:] if encoded[1] < 0x80 else encoded[2 + (encoded[1] & 0x7F):]


def _value(tag: str, text: str) -> bytes:
    kind, _, variation = tag.partition(":")
    if variation:  # writecache|value=N: the recording's initial value
        text = text.removeprefix("value=")
    if kind == "4x":
        return encoder.encode(V2C.OctetString(hexValue=text))
    make = {"2": V2C.Integer32, "4": V2C.OctetString, "6": V2C.ObjectIdentifier, "64": V2C.IpAddress,
            "65": V2C.Counter32, "66": V2C.Gauge32, "67": V2C.TimeTicks, "70": V2C.Counter64}[kind]
    return encoder.encode(make(text if kind in ("4", "6", "64") else int(text)))


def load_recording(path: Path) -> dict[Oid, bytes]:
    """snmprec lines `oid|tag|value` → {OID: value TLV}."""
    out: dict[Oid, bytes] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        oid, tag, value = line.split("|", 2)
        out[tuple(int(arc) for arc in oid.split("."))] = _value(tag, value)
    return out


@dataclass
class CraftedAgent:
    values: dict[Oid, bytes]
    community: bytes
    craft: Craft = field(default=lambda oid, name, value: (name, value))
    port: int = 0
    requests: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _next(self, oid: Oid) -> Oid | None:
        return next((o for o in sorted(self.values) if o > oid), None)

    def _varbind(self, oid: Oid, value: bytes) -> bytes:
        name, value = self.craft(oid, oid_content(oid), value)
        return tlv(0x30, tlv(0x06, name) + value)

    def answer(self, data: bytes) -> bytes | None:
        message, _ = decoder.decode(data, asn1Spec=V2C.Message())
        if bytes(V2C.apiMessage.get_community(message)) != self.community:
            return None  # a wrong community is not answered, as real agents do
        pdu = V2C.apiMessage.get_pdu(message)
        request_id = int(V2C.apiPDU.get_request_id(pdu))
        names = [tuple(name) for name, _ in V2C.apiPDU.get_varbinds(pdu)]
        varbinds: list[bytes] = []
        if pdu.isSameTypeWith(V2C.GetRequestPDU()):
            for oid in names:
                found = self.values.get(oid)
                varbinds.append(self._varbind(oid, found) if found else tlv(0x30, tlv(0x06, oid_content(oid))
                                                                             + NO_SUCH_OBJECT))
        else:
            bulk = pdu.isSameTypeWith(V2C.GetBulkRequestPDU())
            repetitions = int(V2C.apiBulkPDU.get_max_repetitions(pdu)) if bulk else 1
            last = list(names)
            for _ in range(max(1, min(repetitions, 50))):
                for position, asked in enumerate(last):
                    following = self._next(asked)
                    if following is None:
                        varbinds.append(tlv(0x30, tlv(0x06, oid_content(asked)) + END_OF_MIB_VIEW))
                        continue
                    varbinds.append(self._varbind(following, self.values[following]))
                    last[position] = following
        body = (tlv(0x02, request_id.to_bytes(4, "big", signed=True)) + b"\x02\x01\x00\x02\x01\x00"
                + tlv(0x30, b"".join(varbinds)))
        return tlv(0x30, b"\x02\x01\x01" + tlv(0x04, self.community) + tlv(0xA2, body))


@contextlib.contextmanager
def crafted_agent(recording: Path, craft: Craft | None = None) -> Iterator[CraftedAgent]:
    """Serve the recording (community = file stem) on a free UDP port of 127.0.0.1 until the block ends."""
    agent = CraftedAgent(load_recording(recording), recording.name.split(".")[0].encode())
    if craft is not None:
        agent.craft = craft
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    agent.port = sock.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        deadline = time.monotonic() + MAX_LIFETIME
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                data, peer = sock.recvfrom(65535)
            except TimeoutError:
                continue
            reply = agent.answer(data)
            agent.requests += 1
            if reply is not None:
                sock.sendto(reply, peer)

    thread = threading.Thread(target=serve, name=f"crafted-agent-{agent.port}", daemon=True)
    thread.start()
    try:
        yield agent
    finally:
        stop.set()
        thread.join(timeout=5)
        sock.close()
