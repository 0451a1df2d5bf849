"""The few BER shapes SNMP v1/v2c messages use, encoded and decoded by hand.

pyasn1's generic decoder builds a typed object per TLV and costs ~20 µs per varbind, which made it most of
the poller's CPU (see bench/README.md, "SNMP fleet"). SNMP's community messages need only INTEGER, OCTET
STRING, NULL, OBJECT IDENTIFIER, the application types and the v2 exception markers, so this module reads
them straight from the datagram. OIDs stay encoded (bytes) on the hot path: a column's rows are recognised
by a byte prefix, and only the row index after it is turned into numbers. SNMPv3 keeps going through pysnmp.
"""

from __future__ import annotations

from collections.abc import Iterable

from threenines.probes.snmp.values import Missing

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
    """A datagram that is not a well-formed SNMP v1/v2c message. Never a number: a malformed value fails the
    whole answer (a zero-length INTEGER read as 0 would be a PDU phase at 0 V, a false power outage)."""


# RFC 2578 §3.5 and §7.1: sub-identifiers are at most 2^32 - 1, an OID has at most 128 of them. Bounding both
# also bounds the work an agent can make us do (one arc of 60 kB of continuation bytes is a huge integer).
MAX_ARC = 2**32 - 1
MAX_ARCS = 128
_INT32 = (-(2**31), 2**31 - 1)
_UINT32 = (0, 2**32 - 1)
_UINT64 = (0, 2**64 - 1)
_ERROR_STATUS = (0, 18)  # RFC 3416: noError(0) .. inconsistentName(18)
_ERROR_INDEX = (0, 2**31 - 1)


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
    """Sub-identifiers in base 128 (a row index after a column's prefix); BerError for a truncated arc, a
    non-minimal one (a leading 0x80 would break matching rows by byte prefix) or one beyond 2^32 - 1."""
    arcs: list[int] = []
    value = 0
    starting = True
    for byte in content:
        if starting and byte == 0x80:
            raise BerError("non-minimal OID sub-identifier")
        value = (value << 7) | (byte & 0x7F)
        if value > MAX_ARC:
            raise BerError("OID sub-identifier beyond 2^32 - 1")
        starting = not byte & 0x80
        if starting:
            arcs.append(value)
            value = 0
    if not starting:
        raise BerError("truncated OID")
    if len(arcs) > MAX_ARCS:
        raise BerError(f"OID of more than {MAX_ARCS} sub-identifiers")
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


def _header(data: bytes, i: int, limit: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the TLV at i, which must lie within [i, limit)."""
    if i + 2 > limit:
        raise BerError("truncated")
    tag = data[i]
    length = data[i + 1]
    i += 2
    if length & 0x80:
        n = length & 0x7F
        if not 0 < n <= 4:
            raise BerError("bad length")
        if i + n > limit:
            raise BerError("truncated")
        length = int.from_bytes(data[i:i + n], "big")
        i += n
    end = i + length
    if end > limit:
        raise BerError("truncated")
    return tag, i, end


def _expect(data: bytes, i: int, limit: int, tag: int, what: str) -> tuple[int, int]:
    got, start, end = _header(data, i, limit)
    if got != tag:
        raise BerError(f"{what}: tag 0x{got:02x}, expected 0x{tag:02x}")
    return start, end


def _number(data: bytes, start: int, end: int, signed: bool, bounds: tuple[int, int], what: str) -> int:
    # Zero content octets are no number at all (X.690 §8.3.1), not 0.
    if start == end:
        raise BerError(f"zero-length {what}")
    value = int.from_bytes(data[start:end], "big", signed=signed)
    if not bounds[0] <= value <= bounds[1]:
        raise BerError(f"{what} out of range")
    return value


def _integer_at(data: bytes, i: int, limit: int, bounds: tuple[int, int], what: str) -> tuple[int, int]:
    """(value, end) of the INTEGER TLV at i."""
    start, end = _expect(data, i, limit, 0x02, what)
    return _number(data, start, end, True, bounds, what), end


def _pdu(data: bytes) -> tuple[int, int, int]:
    """(request-id, offset after it, PDU end) of a response message."""
    stop = len(data)
    start, stop = _expect(data, 0, stop, 0x30, "message")
    _, end = _integer_at(data, start, stop, (0, 3), "version")
    _, end = _expect(data, end, stop, 0x04, "community")
    pdu, start, stop = _header(data, end, stop)
    if pdu != RESPONSE:
        raise BerError("not a response PDU")
    request_id, end = _integer_at(data, start, stop, _INT32, "request-id")
    return request_id, end, stop


def request_id(data: bytes) -> int:
    """The request-id of a response, read without decoding its varbinds (to route it to its waiter)."""
    return _pdu(data)[0]


_UNSIGNED_BOUNDS = {0x41: _UINT32, 0x42: _UINT32, 0x43: _UINT32, 0x46: _UINT64, 0x47: _UINT32}


def response(data: bytes) -> tuple[int, int, list[tuple[bytes, Value]]]:
    """(error-status, error-index, [(OID content octets, value)]) of a v1/v2c response message.

    Values: int, bytes, dotted-OID str, a Missing exception marker, or NULL (None). Every TLV must lie within
    the one that holds it, names must be whole OIDs and numbers within their type's range, or BerError.
    """
    _, end, pdu_end = _pdu(data)
    status, end = _integer_at(data, end, pdu_end, _ERROR_STATUS, "error-status")
    index, end = _integer_at(data, end, pdu_end, _ERROR_INDEX, "error-index")
    i, stop = _expect(data, end, pdu_end, 0x30, "varbind list")
    out: list[tuple[bytes, Value]] = []
    append = out.append
    header = _header
    while i < stop:
        tag, start, i = header(data, i, stop)               # one varbind; i moves past it
        name_tag, name_start, name_end = header(data, start, i)
        if tag != 0x30 or name_tag != 0x06:
            raise BerError("varbind without a SEQUENCE and an OID")
        if name_end == name_start or data[name_end - 1] & 0x80:
            raise BerError("truncated OID in a varbind name")
        tag, s, end = header(data, name_end, i)
        if end != i:
            raise BerError("varbind with trailing octets")
        name = data[name_start:name_end]
        if tag == 0x02:
            if s == end:
                raise BerError("zero-length INTEGER")  # no number at all (X.690 §8.3.1), not 0
            value = int.from_bytes(data[s:end], "big", signed=True)
            if not -0x80000000 <= value <= 0x7FFFFFFF:
                raise BerError("INTEGER beyond Integer32")
            append((name, value))
        elif tag in _BYTES:
            if tag == 0x40 and end - s != 4:
                raise BerError("IpAddress of other than 4 octets")
            append((name, data[s:end]))
        elif tag in _UNSIGNED:
            # Read unsigned: agents that drop the leading zero of values >= 2^31 are common and unambiguous.
            append((name, _number(data, s, end, False, _UNSIGNED_BOUNDS[tag], "unsigned integer")))
        elif tag == 0x06:
            append((name, ".".join(map(str, decode_oid(data[s:end])))))
        elif tag in _EXCEPTIONS or tag == 0x05:
            if end != s:
                raise BerError("NULL or exception marker with content")
            append((name, _EXCEPTIONS.get(tag, NULL)))
        else:
            append((name, NULL))  # a type SNMP does not define (BOOLEAN, BIT STRING, ...): no reading, no number
    return status, index, out
