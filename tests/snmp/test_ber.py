"""The hand BER codec against an independent one: pysnmp/pyasn1 encode what we decode and decode what we encode."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder, encoder
from pyasn1.type import univ
from pysnmp.proto import api

from threenines.probes.snmp import ber
from threenines.probes.snmp.values import Missing

V2C = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
V1 = api.PROTOCOL_MODULES[api.SNMP_VERSION_1]

arcs = st.integers(min_value=0, max_value=2**32 - 1)
oids = st.builds(lambda first, second, rest: (first, second, *rest), st.integers(0, 2),
                 st.integers(0, 39), st.lists(arcs, min_size=0, max_size=14))


@given(oids)
def test_oid_encoding_is_pyasn1s(oid: tuple[int, ...]) -> None:
    encoded = encoder.encode(univ.ObjectIdentifier(oid))
    header = 2 if encoded[1] < 0x80 else 2 + (encoded[1] & 0x7F)
    assert ber.encode_oid(oid) == encoded[header:]
    assert ber.decode_oid(ber.encode_oid(oid)) == oid


@given(oids, st.lists(arcs, min_size=1, max_size=6))
def test_a_column_prefix_in_bytes_is_a_column_prefix_in_arcs(root: tuple[int, ...], row: list[int]) -> None:
    child = ber.encode_oid(root + tuple(row))
    prefix = ber.encode_oid(root)
    assert child.startswith(prefix)
    assert ber.decode_arcs(child[len(prefix):]) == tuple(row)


@given(oids, oids)
def test_byte_prefix_only_when_arc_prefix(a: tuple[int, ...], b: tuple[int, ...]) -> None:
    if len(a) > 2:  # the first two arcs share one sub-identifier
        assert ber.encode_oid(b).startswith(ber.encode_oid(a)) == (b[: len(a)] == a)


@settings(max_examples=50)
@given(st.integers(1, 2**31 - 1), st.integers(0, 100), st.lists(oids, min_size=1, max_size=30),
       st.binary(min_size=1, max_size=40))
def test_getbulk_request_decodes_in_pysnmp(request_id: int, repetitions: int, names: list, community: bytes) -> None:
    data = ber.request(1, community, ber.GETBULK, request_id, 0, repetitions,
                       [ber.null_varbind(ber.encode_oid(o)) for o in names])
    message, rest = decoder.decode(data, asn1Spec=V2C.Message())
    assert rest == b""
    pdu = V2C.apiMessage.get_pdu(message)
    assert bytes(V2C.apiMessage.get_community(message)) == community
    assert int(V2C.apiMessage.get_version(message)) == 1
    assert int(V2C.apiBulkPDU.get_request_id(pdu)) == request_id
    assert int(V2C.apiBulkPDU.get_max_repetitions(pdu)) == repetitions
    assert int(V2C.apiBulkPDU.get_non_repeaters(pdu)) == 0
    assert [tuple(n) for n, _ in V2C.apiBulkPDU.get_varbinds(pdu)] == names


def test_v1_get_request_decodes_in_pysnmp() -> None:
    data = ber.request(0, b"public", ber.GET, 7, 0, 0, [ber.null_varbind(ber.encode_oid((1, 3, 6, 1, 2, 1, 1, 2, 0)))])
    message, _ = decoder.decode(data, asn1Spec=V1.Message())
    pdu = V1.apiMessage.get_pdu(message)
    assert pdu.isSameTypeWith(V1.GetRequestPDU())
    assert int(V1.apiPDU.get_request_id(pdu)) == 7


def pysnmp_response(request_id: int, varbinds: list, status: int = 0, index: int = 0) -> bytes:
    pdu = V2C.ResponsePDU()
    V2C.apiPDU.set_defaults(pdu)
    V2C.apiPDU.set_request_id(pdu, request_id)
    V2C.apiPDU.set_error_status(pdu, status)
    V2C.apiPDU.set_error_index(pdu, index)
    V2C.apiPDU.set_varbinds(pdu, varbinds)
    message = V2C.Message()
    V2C.apiMessage.set_defaults(message)
    V2C.apiMessage.set_community(message, "public")
    V2C.apiMessage.set_pdu(message, pdu)
    return encoder.encode(message)


def test_every_value_type_pysnmp_encodes_decodes() -> None:
    base = (1, 3, 6, 1, 4, 1, 318, 1, 1, 26, 9, 4, 3, 1)
    cases = [
        (V2C.Integer32(-1), -1),
        (V2C.Integer32(2**31 - 1), 2**31 - 1),
        (V2C.OctetString(b"server-01\x00\xff"), b"server-01\x00\xff"),
        (V2C.ObjectIdentifier((1, 3, 6, 1, 4, 1, 318, 1, 3, 4, 6)), "1.3.6.1.4.1.318.1.3.4.6"),
        (V2C.IpAddress("127.0.0.1"), b"\x7f\x00\x00\x01"),
        (V2C.Counter32(2**32 - 1), 2**32 - 1),
        (V2C.Gauge32(2**31 + 5), 2**31 + 5),
        (V2C.TimeTicks(4294967295), 4294967295),
        (V2C.Counter64(2**64 - 1), 2**64 - 1),
        (V2C.Null(""), ber.NULL),
        (V2C.NoSuchObject(""), Missing.NO_SUCH_OBJECT),
        (V2C.NoSuchInstance(""), Missing.NO_SUCH_INSTANCE),
        (V2C.EndOfMibView(""), Missing.END_OF_MIB_VIEW),
    ]
    varbinds = [(V2C.ObjectIdentifier((*base, i, 200 + i)), value) for i, (value, _) in enumerate(cases)]
    data = pysnmp_response(123456, varbinds)
    assert ber.request_id(data) == 123456
    status, index, decoded = ber.response(data)
    assert (status, index) == (0, 0)
    assert [ber.decode_oid(name) for name, _ in decoded] == [(*base, i, 200 + i) for i in range(len(cases))]
    assert [value for _, value in decoded] == [expected for _, expected in cases]


@given(st.lists(st.tuples(st.lists(arcs, min_size=1, max_size=5), st.integers(-2**31, 2**31 - 1)), max_size=60),
       st.integers(0, 5), st.integers(0, 60))
def test_responses_of_any_size_decode(rows: list, status: int, index: int) -> None:
    root = (1, 3, 6, 1, 4, 1, 13742, 6, 5, 4, 3, 1, 4)
    varbinds = [(V2C.ObjectIdentifier(root + tuple(r)), V2C.Integer32(v)) for r, v in rows]
    got_status, got_index, decoded = ber.response(pysnmp_response(1, varbinds, status, index))
    assert (got_status, got_index) == (status, index)
    prefix = ber.encode_oid(root)
    assert [(ber.decode_arcs(n[len(prefix):]), v) for n, v in decoded] == [(tuple(r), v) for r, v in rows]


@pytest.mark.parametrize("garbage", [b"", b"\x30", b"\x30\x05\x02\x01", b"\x04\x03abc", b"\x30\x84\xff\xff\xff\xff"])
def test_garbage_is_a_ber_error_not_a_crash(garbage: bytes) -> None:
    with pytest.raises(ber.BerError):
        ber.response(garbage)
    with pytest.raises(ber.BerError):
        ber.request_id(garbage)


def test_truncated_response_is_a_ber_error() -> None:
    data = pysnmp_response(5, [(V2C.ObjectIdentifier((1, 3, 6, 1, 2, 1, 1, 2, 0)), V2C.OctetString(b"x" * 300))])
    for cut in (10, len(data) // 2, len(data) - 1):
        with pytest.raises(ber.BerError):
            ber.response(data[:cut])
