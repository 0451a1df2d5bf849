"""Malformed SNMP answers are protocol errors, never numbers (issue 22).

A zero-length BER INTEGER (`02 00`) read as 0 made a PDU phase 0 V: a false power outage in the ledger. "inf" and
"nan" in enum columns, OIDs going backwards or leaving the subtree below the one asked, and truncated names
escaped the poll with `threenines_device_up 1` and no error counted. Each case from the adversarial run is here,
on the decoder and through the real UDP path (a crafted agent, or snmpsim where it can serve the case), and
hypothesis fuzzes the decoder.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.snmp.agents import FIXTURES, Agent
from tests.snmp.crafted import Craft, crafted_agent, oid_content, tlv
from tests.snmp.test_ber import V2C, pysnmp_response
from threenines.config.inventory import Inventory
from threenines.config.inventory_load import parse_inventory_text
from threenines.contract.power_state import power_pair
from threenines.exposition.power import PowerCollector
from threenines.probes.power_poller import DeviceStatus
from threenines.probes.snmp import ber
from threenines.probes.snmp.readings import REASONS
from threenines.probes.snmp.values import Missing

PHASE_VOLTAGE = (1, 3, 6, 1, 4, 1, 318, 1, 1, 26, 6, 3, 1, 6, 1)  # rPDU2PhaseStatusVoltage.1 of pdu-a: 230 V
OUTLET_CURRENT = (1, 3, 6, 1, 4, 1, 318, 1, 1, 26, 9, 4, 3, 1, 6)  # rPDU2OutletMeteredStatusCurrent
NAME = oid_content(PHASE_VOLTAGE)


def varbind(value: bytes, name: bytes = NAME) -> bytes:
    return tlv(0x30, tlv(0x06, name) + value)


def message(*varbinds: bytes, request_id: bytes = b"\x02\x01\x07", status: bytes = b"\x02\x01\x00",
            index: bytes = b"\x02\x01\x00") -> bytes:
    pdu = tlv(0xA2, request_id + status + index + tlv(0x30, b"".join(varbinds)))
    return tlv(0x30, b"\x02\x01\x01" + tlv(0x04, b"public") + pdu)


# -- the decoder ------------------------------------------------------------------------------------------------

MALFORMED_VARBINDS = {
    "zero-length INTEGER": varbind(b"\x02\x00"),
    "zero-length Gauge32": varbind(b"\x42\x00"),
    "zero-length Counter32": varbind(b"\x41\x00"),
    "zero-length TimeTicks": varbind(b"\x43\x00"),
    "zero-length Counter64": varbind(b"\x46\x00"),
    "INTEGER beyond Integer32": varbind(b"\x02\x05\x01\x00\x00\x00\x00"),
    "Gauge32 beyond 2^32 - 1": varbind(b"\x42\x05\x01\x00\x00\x00\x00"),
    "Counter64 beyond 2^64 - 1": varbind(b"\x46\x09\x01" + b"\x00" * 8),
    "a 2,100-octet INTEGER": varbind(tlv(0x02, b"\x01" * 2100)),
    "truncated name": varbind(b"\x02\x02\x00\xe6", name=NAME[:-1] + b"\x81"),
    "empty name": varbind(b"\x02\x02\x00\xe6", name=b""),
    "NULL with content": varbind(b"\x05\x01\x00"),
    "noSuchObject with content": varbind(b"\x80\x01\x00"),
    "IpAddress of 3 octets": varbind(b"\x40\x03\x7f\x00\x01"),
    "OID value, truncated arc": varbind(tlv(0x06, b"\x2b\x86")),
    "OID value, empty": varbind(b"\x06\x00"),
    "OID value, arc beyond 2^32 - 1": varbind(tlv(0x06, b"\x2b\x90\x80\x80\x80\x00")),
    "OID value, non-minimal arc": varbind(tlv(0x06, b"\x2b\x80\x01")),
    "value beyond its varbind": tlv(0x30, tlv(0x06, NAME) + b"\x02\x02\x00") + b"\xe6",
    "varbind with trailing octets": tlv(0x30, tlv(0x06, NAME) + b"\x02\x02\x00\xe6" + b"\x05\x00"),
    "varbind that is not a SEQUENCE": tlv(0x31, tlv(0x06, NAME) + b"\x02\x02\x00\xe6"),
}
MALFORMED_HEADERS = {
    "zero-length request-id": {"request_id": b"\x02\x00"},
    "zero-length error-status": {"status": b"\x02\x00"},
    "zero-length error-index": {"index": b"\x02\x00"},
    "error-status beyond the RFC's 18": {"status": b"\x02\x01\x63"},
    "negative error-index": {"index": b"\x02\x01\xff"},
}


def test_the_well_formed_twins_decode_to_the_numbers_they_carry() -> None:
    """The oracle for the cases below: one octet more (or less) and the same varbinds are honest values."""
    assert ber.response(message(varbind(b"\x02\x02\x00\xe6")))[2] == [(NAME, 230)]
    assert ber.response(message(varbind(b"\x02\x01\x00")))[2] == [(NAME, 0)]  # a real 0 V stays 0 V
    assert ber.response(message(varbind(b"\x42\x05\x00\xff\xff\xff\xff")))[2] == [(NAME, 2**32 - 1)]
    assert ber.response(message(varbind(b"\x42\x04\xff\xff\xff\xff")))[2] == [(NAME, 2**32 - 1)]  # no leading 0
    assert ber.response(message(varbind(b"\x05\x00")))[2] == [(NAME, ber.NULL)]
    assert ber.response(message(varbind(b"\x82\x00")))[2] == [(NAME, Missing.END_OF_MIB_VIEW)]


@pytest.mark.parametrize("case", sorted(MALFORMED_VARBINDS))
def test_a_malformed_varbind_is_a_ber_error_never_a_number(case: str) -> None:
    data = message(varbind(b"\x02\x01\x05"), MALFORMED_VARBINDS[case])
    with pytest.raises(ber.BerError):
        ber.response(data)


@pytest.mark.parametrize("case", sorted(MALFORMED_HEADERS))
def test_a_malformed_header_is_a_ber_error(case: str) -> None:
    data = message(varbind(b"\x02\x01\x05"), **MALFORMED_HEADERS[case])
    with pytest.raises(ber.BerError):
        ber.response(data)
    if case == "zero-length request-id":
        with pytest.raises(ber.BerError):
            ber.request_id(data)  # the transport drops it: no waiter is woken by it


def test_an_arc_of_60_kb_of_continuation_octets_is_refused_quickly() -> None:
    with pytest.raises(ber.BerError, match="beyond 2"):
        ber.decode_arcs(b"\xff" * 60_000 + b"\x01")


# Values as the decoder must return them, and their TLVs; a malformed TLV replaces one of them.
good_values = st.one_of(
    st.integers(-(2**31), 2**31 - 1).map(lambda v: (v, _encode(V2C.Integer32(v)))),
    st.integers(0, 2**32 - 1).map(lambda v: (v, _encode(V2C.Gauge32(v)))),
    st.integers(0, 2**64 - 1).map(lambda v: (v, _encode(V2C.Counter64(v)))),
    st.binary(max_size=20).map(lambda v: (v, _encode(V2C.OctetString(v)))),
    st.just((ber.NULL, b"\x05\x00")),
)


def _encode(value: object) -> bytes:
    from pyasn1.codec.ber import encoder

    return encoder.encode(value)


@settings(max_examples=300)
@given(st.lists(good_values, min_size=1, max_size=8), st.none() | st.tuples(st.integers(0, 7),
       st.sampled_from(sorted(MALFORMED_VARBINDS))))
def test_fuzz_no_number_from_a_malformed_varbind_and_every_number_from_well_formed_ones(
        values: list[tuple[object, bytes]], broken: tuple[int, str] | None) -> None:
    varbinds = [varbind(tlv_bytes) for _, tlv_bytes in values]
    if broken is not None:
        position = broken[0] % len(varbinds)
        varbinds[position] = MALFORMED_VARBINDS[broken[1]]
        with pytest.raises(ber.BerError):
            ber.response(message(*varbinds))
        return
    assert [value for _, value in ber.response(message(*varbinds))[2]] == [value for value, _ in values]


def _mutations() -> st.SearchStrategy[bytes]:
    base = pysnmp_response(77, [(V2C.ObjectIdentifier(PHASE_VOLTAGE), V2C.Integer32(230)),
                                (V2C.ObjectIdentifier((*OUTLET_CURRENT, 1)), V2C.Gauge32(12)),
                                (V2C.ObjectIdentifier((*OUTLET_CURRENT, 2)), V2C.OctetString(b"12.5"))])

    def mutate(edits: list[tuple[int, int, int]]) -> bytes:
        data = bytearray(base)
        for kind, position, byte in edits:
            position %= max(1, len(data))
            if kind == 0:
                data[position] = byte
            elif kind == 1:
                data.insert(position, byte)
            elif data:
                del data[position]
        return bytes(data)

    return st.lists(st.tuples(st.integers(0, 2), st.integers(0, 200), st.integers(0, 255)), min_size=1,
                    max_size=4).map(mutate)


@settings(max_examples=1000)
@given(st.one_of(st.binary(max_size=200), _mutations()))
@example(b"\x30\x03\x02\x01\x01")
@example(message(varbind(b"\x02\x00")))
def test_fuzz_the_decoder_raises_only_ber_error_and_numbers_are_in_their_types_range(data: bytes) -> None:
    for decode in (ber.request_id, ber.response):
        try:
            decoded = decode(data)
        except ber.BerError:
            continue
        if decode is ber.response:
            status, index, varbinds = decoded
            assert 0 <= status <= 18 and index >= 0
            for name, value in varbinds:
                assert name and not name[-1] & 0x80  # a whole OID
                if isinstance(value, int):
                    assert -(2**31) <= value <= 2**64 - 1


# -- through the real UDP path: the poller ---------------------------------------------------------------------------


def one_device(community: str, device: str, feeds_acme: bool = False) -> Inventory:
    """One v2c device `dev` (`device`: its YAML fields besides id and auth) and customer acme, fed by its outlet 1
    when feeds_acme, else with a port only."""
    variable = "TN_COMMUNITY_" + community.upper().replace("-", "_")
    os.environ[variable] = community
    acme = ('power: {interval: 5s, feeds: [{id: A, pdu: dev, outlets: ["1"]}]}' if feeds_acme
            else "ports: [{id: a, address: 192.0.2.1}]")
    return parse_inventory_text(f"""
auth:
  - {{id: c, version: 2c, community: {{env: {variable}}}}}
devices:
  - {{id: dev, auth: c, {device}}}
customers:
  - {{id: acme, timezone: UTC, contacts: {{version: "1", notify: [{{email: noc@example.com}}]}}, {acme}}}
""")


def pdu_inventory(address: str) -> Inventory:
    return one_device("pdu-a", f'type: pdu, address: "{address}", profile: apc-rpdu2, interval: 5s, '
                      "timeout: 500ms, retries: 0", feeds_acme=True)


def poll(inventory: Inventory) -> tuple[DeviceStatus, bool | None, str]:
    poller, power = power_pair(inventory, lambda key, at, ok: None)

    async def go() -> tuple[DeviceStatus, bool | None]:
        status = await poller.poll_once(inventory.devices[0])
        powered = [c for c in inventory.customers if c.power is not None]
        return status, power.observe_customer(powered[0]) if powered else None

    status, powered = asyncio.run(go())
    registry = CollectorRegistry()
    registry.register(PowerCollector(poller.snapshot, power.snapshot))
    return status, powered, generate_latest(registry).decode()


def replace_value(oid: tuple[int, ...], value: bytes) -> Craft:
    return lambda answered, name, original: (name, value) if answered == oid else (name, original)


def replace_name(oid: tuple[int, ...], name: Callable[[bytes], bytes]) -> Craft:
    return lambda answered, original, value: (name(original), value) if answered == oid else (original, value)


def test_the_untouched_crafted_agent_reads_like_snmpsim() -> None:
    with crafted_agent(FIXTURES / "pdu-a.snmprec") as agent:
        status, powered, _text = poll(pdu_inventory(agent.address))
    assert status.up and status.errors == () and powered is True
    assert status.reading is not None and status.reading.phases[0].voltage_volts == 230
    assert [o.current_amperes for o in status.reading.outlets] == [1.0, 2.0, 3.0, 4.0]


CRAFTED = {
    # the adversarial case: 02 00 for the phase voltage was 0 V, so the PDU had no input and the customer none
    "zero-length INTEGER phase voltage": replace_value(PHASE_VOLTAGE, b"\x02\x00"),
    "zero-length Gauge32 phase voltage": replace_value(PHASE_VOLTAGE, b"\x42\x00"),
    # a walk that jumps back out of its column below the OID asked ended the column quietly: outlets 3-4 unread
    "walk leaves the subtree backwards": replace_name((*OUTLET_CURRENT, 3),
                                                      lambda _: oid_content((1, 3, 6, 1, 2, 1, 1, 1, 0))),
    "walk repeats a row": replace_name((*OUTLET_CURRENT, 3), lambda _: oid_content((*OUTLET_CURRENT, 1))),
    "walk answers the column itself": replace_name((*OUTLET_CURRENT, 3), lambda _: oid_content(OUTLET_CURRENT)),
    "truncated name mid-walk": replace_name((*OUTLET_CURRENT, 3), lambda name: name[:-1] + b"\x83"),
    "name running on past its row mid-walk": replace_name(PHASE_VOLTAGE, lambda name: name + b"\x81"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_a_malformed_answer_counts_a_protocol_error_and_the_power_state_is_unknown(case: str) -> None:
    with crafted_agent(FIXTURES / "pdu-a.snmprec", CRAFTED[case]) as agent:
        status, powered, text = poll(pdu_inventory(agent.address))
        assert agent.requests >= 1
    assert not status.up and status.reading is None
    assert status.errors == (("protocol", 1),)
    assert powered is None  # unknown: never the false "down" a 0 V phase gave
    assert 'threenines_device_up{device="dev"} 0.0' in text
    assert 'threenines_device_poll_errors_total{device="dev",reason="protocol"} 1.0' in text
    assert "threenines_pdu_phase_voltage_volts{" not in text  # no half-read or invented value is published


UPS_OUTPUT_SOURCE = (1, 3, 6, 1, 2, 1, 33, 1, 4, 1, 0)  # a scalar of the ups-mib profile: read with one GET
UPS_BATTERY_STATUS = (1, 3, 6, 1, 2, 1, 33, 1, 2, 1, 0)
CRAFTED_GET = {
    "truncated name": replace_name(UPS_OUTPUT_SOURCE, lambda name: name[:-1] + bytes((name[-1] | 0x80,))),
    "another OID than asked": replace_name(UPS_OUTPUT_SOURCE, lambda _: oid_content(UPS_BATTERY_STATUS)),
    "zero-length INTEGER": replace_value(UPS_OUTPUT_SOURCE, b"\x02\x00"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED_GET))
def test_a_malformed_get_answer_counts_a_protocol_error(case: str) -> None:
    with crafted_agent(FIXTURES / "ups-mib-on-battery.snmprec", CRAFTED_GET[case]) as agent:
        inventory = one_device("ups-mib-on-battery", f'type: ups, address: "{agent.address}", profile: ups-mib, '
                               "interval: 5s, timeout: 500ms, retries: 0")
        status, _, text = poll(inventory)
    assert not status.up and status.errors == (("protocol", 1),)
    assert 'threenines_device_poll_errors_total{device="dev",reason="protocol"} 1.0' in text


def test_inf_and_nan_strings_are_bad_values_counted_and_unknown(own_agent: Agent) -> None:
    inventory = one_device("ups-mib-nonfinite", f'type: ups, address: "{own_agent.address}", interval: 5s, '
                           "timeout: 1s, retries: 1")
    status, _, text = poll(inventory)
    assert status.up and status.reading is not None and status.reading.ups is not None  # the agent did answer
    ups = status.reading.ups
    assert (ups.output_source, ups.battery_status, ups.battery_charge_ratio) == (None, None, None)
    assert ups.line_values("input_voltage_volts") == ()
    assert ups.line_values("output_load_ratio") == (("1", 0.37),)  # a number sent as a string still reads
    assert {(p.reason, p.field) for p in status.reading.problems} == {
        ("bad_value", "output_source"), ("bad_value", "battery_status"), ("bad_value", "battery_charge_ratio"),
        ("bad_value", "lines[1].input_voltage_volts")}
    assert status.errors == (("bad_value", 4),)
    assert 'threenines_device_poll_errors_total{device="dev",reason="bad_value"} 4.0' in text
    values = [sample.value for family in text_string_to_metric_families(text) for sample in family.samples]
    assert values and all(math.isfinite(v) for v in values)  # no infinite or NaN reading in any family


def test_reasons_stay_the_small_fixed_set() -> None:
    assert REASONS == ("timeout", "auth", "protocol", "no_such_object", "bad_value", "counter_wrap", "no_profile",
                       "config", "stale")
