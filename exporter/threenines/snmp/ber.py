"""The few BER shapes SNMP v1/v2c messages use, encoded and decoded by hand.

pyasn1's generic decoder builds a typed object per TLV and costs ~20 µs per varbind, which made it most of
the poller's CPU (see bench/README.md, "SNMP fleet"). SNMP's community messages need only INTEGER, OCTET
STRING, NULL, OBJECT IDENTIFIER, the application types and the v2 exception markers, so this module reads
them straight from the datagram. OIDs stay encoded (bytes) on the hot path: a column's rows are recognised
by a byte prefix, and only the row index after it is turned into numbers. SNMPv3 keeps going through pysnmp.
"""

from __future__ import annotations

from collections.abc import Iterable

from threenines.snmp.values import Missing

Oid = tuple[int, ...]

GET, GETNEXT, RESPONSE, GETBULK = 0xA0, 0xA1, 0xA2, 0xA5
NO_SUCH_NAME, TOO_BIG = 2, 1
# NULL in a response is not one of v2's exception markers: the agent has the object but no value for it.
NULL = None
_UNSIGNED = frozenset((0x41, 0x42, 0x43, 0x46, 0x47))  # Counter32, Gauge32, TimeTicks, Counter64, UInteger32
_BYTES = frozenset((0x04, 0x40, 0x44))                 # OCTET STRING, IpAddress, Opaque
_EXCEPTIONS = {0x80: Missing.NO_SUCH_OBJECT, 0x81: Missing.NO_SUCH_INSTANCE, 0x82: Missing.END_OF_MIB_VIEW}

Value = int | bytes | str | Missing | None


class BerError(ValueError):
    """A datagram that is not a well-formed SNMP v1/v2c message."""


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + _length(len(content)) + content


def _integer(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def encode_oid(oid: Oid) -> bytes:
    """The content octets of an OBJECT IDENTIFIER (no tag, no length)."""
    if len(oid) < 2 or oid[0] > 2 or (oid[0] < 2 and oid[1] >= 40):
        raise BerError(f"not an OID: {oid}")
    out = bytearray()
    for arc in (oid[0] * 40 + oid[1], *oid[2:]):
        if arc < 0x80:
            out.append(arc)
            continue
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return bytes(out)


def decode_arcs(content: bytes) -> Oid:
    """Sub-identifiers in base 128 (a row index after a column's prefix)."""
    arcs: list[int] = []
    value = 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if content and content[-1] & 0x80:
        raise BerError("truncated OID")
    return tuple(arcs)


def decode_oid(content: bytes) -> Oid:
    arcs = decode_arcs(content)
    if not arcs:
        raise BerError("empty OID")
    first = arcs[0]
    head = divmod(first, 40) if first < 80 else (2, first - 80)
    return (*head, *arcs[1:])


def null_varbind(oid_content: bytes) -> bytes:
    """One request varbind: the OID (content octets) with a NULL value."""
    name = b"\x06" + _length(len(oid_content)) + oid_content
    return b"\x30" + _length(len(name) + 2) + name + b"\x05\x00"


def request(version: int, community: bytes, pdu: int, request_id: int, a: int, b: int,
            varbinds: Iterable[bytes]) -> bytes:
    """A v1/v2c message. a, b: error-status and error-index, or non-repeaters and max-repetitions for GETBULK."""
    body = _integer(request_id) + _integer(a) + _integer(b) + _tlv(0x30, b"".join(varbinds))
    return _tlv(0x30, _integer(version) + _tlv(0x04, community) + _tlv(pdu, body))


def _header(data: bytes, i: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the TLV at i."""
    tag = data[i]
    length = data[i + 1]
    i += 2
    if length & 0x80:
        n = length & 0x7F
        if not 0 < n <= 4:
            raise BerError("bad length")
        length = int.from_bytes(data[i:i + n], "big")
        i += n
    end = i + length
    if end > len(data):
        raise BerError("truncated")
    return tag, i, end


def request_id(data: bytes) -> int:
    """The request-id of a response, read without decoding its varbinds (to route it to its waiter)."""
    try:
        _, start, _ = _header(data, 0)
        _, _, end = _header(data, start)             # version
        _, _, end = _header(data, end)               # community
        pdu, start, _ = _header(data, end)
        tag, start, end = _header(data, start)
        if pdu != RESPONSE or tag != 0x02:
            raise BerError("not a response")
        return int.from_bytes(data[start:end], "big", signed=True)
    except IndexError:
        raise BerError("truncated") from None


def response(data: bytes) -> tuple[int, int, list[tuple[bytes, Value]]]:
    """(error-status, error-index, [(OID content octets, value)]) of a v1/v2c response message.

    Values: int, bytes, dotted-OID str, a Missing exception marker, or NULL (None).
    """
    try:
        _, start, _ = _header(data, 0)
        _, _, end = _header(data, start)             # version
        _, _, end = _header(data, end)               # community
        pdu, start, _ = _header(data, end)
        if pdu != RESPONSE:
            raise BerError("not a response PDU")
        _, _, end = _header(data, start)             # request-id
        _, s, end = _header(data, end)
        status = int.from_bytes(data[s:end], "big", signed=True)
        _, s, end = _header(data, end)
        index = int.from_bytes(data[s:end], "big", signed=True)
        tag, i, stop = _header(data, end)
        if tag != 0x30:
            raise BerError("no varbind list")
        out: list[tuple[bytes, Value]] = []
        append = out.append
        while i < stop:
            _, start, i = _header(data, i)           # one varbind; i moves past it
            tag, name_start, name_end = _header(data, start)
            if tag != 0x06:
                raise BerError("varbind without an OID")
            tag, s, end = _header(data, name_end)
            name = data[name_start:name_end]
            if tag == 0x02:
                append((name, int.from_bytes(data[s:end], "big", signed=True)))
            elif tag in _BYTES:
                append((name, data[s:end]))
            elif tag in _UNSIGNED:
                append((name, int.from_bytes(data[s:end], "big")))
            elif tag == 0x06:
                append((name, ".".join(map(str, decode_oid(data[s:end])))))
            elif tag in _EXCEPTIONS:
                append((name, _EXCEPTIONS[tag]))
            else:
                append((name, NULL))
        return status, index, out
    except IndexError:
        raise BerError("truncated") from None
