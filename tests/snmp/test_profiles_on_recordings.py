"""Profiles against snmpsim serving the project's own recordings. Expected values come from net-snmp's
snmpget of the same OID with the MIB's documented scaling (the oracle), never from the code under test."""

from __future__ import annotations

import pytest

from tests.snmp.agents import Agent, snmpget
from tests.snmp.helpers import read


def raw(agent: Agent, community: str, oid: str) -> int:
    return int(snmpget(agent.address, community, oid).split()[0])


def test_apc_8641_outlets_read_as_rpdu2_with_tenths_of_amps_and_tenths_of_kwh(own_agent: Agent) -> None:
    profile, reading = read(own_agent.host, own_agent.port, "apc-8641")
    assert profile.name == "apc-rpdu2"
    assert len(reading.outlets) == 24
    o1 = reading.outlet("1")
    assert o1 is not None and o1.on is True
    assert o1.current_amperes == pytest.approx(raw(own_agent, "apc-8641", "1.3.6.1.4.1.318.1.1.26.9.4.3.1.6.1") / 10)
    assert o1.power_watts == raw(own_agent, "apc-8641", "1.3.6.1.4.1.318.1.1.26.9.4.3.1.7.1")
    kwh_tenths = raw(own_agent, "apc-8641", "1.3.6.1.4.1.318.1.1.26.9.4.3.1.11.1")
    assert o1.energy_joules == pytest.approx(kwh_tenths / 10 * 3.6e6)
    phase = reading.phases[0]
    assert phase.voltage_volts == raw(own_agent, "apc-8641", "1.3.6.1.4.1.318.1.1.26.6.3.1.6.1")
    assert reading.problems == ()


def test_apc_8932_outlets_that_the_recording_has_off_read_off(own_agent: Agent) -> None:
    _, reading = read(own_agent.host, own_agent.port, "apc-8932")
    for outlet in reading.outlets:
        state = raw(own_agent, "apc-8932", f"1.3.6.1.4.1.318.1.1.26.9.2.3.1.5.{outlet.id}")
        assert outlet.on is (state == 2), outlet  # rPDU2OutletSwitchedStatusState: off(1) on(2)
    assert any(o.on is False for o in reading.outlets)


def test_apc_7902b_phase_voltage_minus_one_is_unknown_not_a_value(own_agent: Agent) -> None:
    _, reading = read(own_agent.host, own_agent.port, "apc-7902b")
    assert raw(own_agent, "apc-7902b", "1.3.6.1.4.1.318.1.1.26.6.3.1.6.1") == -1
    assert reading.phases[0].voltage_volts is None
    assert reading.phases[0].current_amperes == raw(own_agent, "apc-7902b", "1.3.6.1.4.1.318.1.1.26.6.3.1.5.1") / 10


def test_eaton_93e_reads_xups_and_treats_65535_runtime_as_unknown(own_agent: Agent) -> None:
    profile, reading = read(own_agent.host, own_agent.port, "eaton-93e-80")
    assert profile.name == "eaton-xups"
    assert reading.ups is not None
    assert reading.ups.output_source == "normal"
    assert reading.ups.status == "OL"
    assert reading.ups.battery_charge_ratio == raw(own_agent, "eaton-93e-80", "1.3.6.1.4.1.534.1.2.4.0") / 100
    assert raw(own_agent, "eaton-93e-80", "1.3.6.1.4.1.534.1.2.1.0") == 65535
    assert reading.ups.battery_runtime_seconds is None


def test_rfc1628_ups_on_battery_with_low_battery(own_agent: Agent) -> None:
    profile, reading = read(own_agent.host, own_agent.port, "ups-mib-on-battery")
    assert profile.name == "ups-mib"  # picked by its probe: the sysObjectID is not a UPS vendor's
    assert reading.ups is not None
    assert (reading.ups.output_source, reading.ups.battery_status, reading.ups.status) == ("battery", "low", "OB LB")
    assert reading.ups.battery_runtime_seconds == 4 * 60
    assert reading.ups.battery_charge_ratio == 0.18


def test_rfc1628_ups_output_none(own_agent: Agent) -> None:
    _, reading = read(own_agent.host, own_agent.port, "ups-mib-output-none")
    assert reading.ups is not None and reading.ups.output_source == "none" and reading.ups.status == "OFF LB"


def test_garbage_values_become_unknown_with_a_reason(own_agent: Agent) -> None:
    _, reading = read(own_agent.host, own_agent.port, "ups-mib-garbage")
    assert reading.ups is not None
    assert reading.ups.output_source is None          # 9 is outside the enum
    assert reading.ups.battery_charge_ratio is None   # -1 is outside 0..100
    assert reading.ups.battery_runtime_seconds is None  # 65535: placeholder, not an error
    assert reading.ups.line_values("input_voltage_volts") == ()  # noSuchObject
    assert reading.ups.line_values("output_load_ratio") == (("1", 0.37),)
    reasons = {(p.reason, p.field) for p in reading.problems}
    assert reasons == {("bad_value", "output_source"), ("bad_value", "battery_charge_ratio")}


def test_sentry4_outlet_states_and_hundredths_of_amps(own_agent: Agent) -> None:
    profile, reading = read(own_agent.host, own_agent.port, "sentry4-outlets")
    assert profile.name == "sentry4"
    by_name = {o.name: o for o in reading.outlets}
    assert [by_name[f"AA{i}"].on for i in range(1, 5)] == [True, True, False, None]
    current = raw(own_agent, "sentry4-outlets", "1.3.6.1.4.1.1718.4.1.8.3.1.3.1.1.1")
    assert by_name["AA1"].current_amperes == current / 100
    assert by_name["AA4"].current_amperes is None  # -1 = not measured
    assert reading.phases[0].voltage_volts == pytest.approx(230.1)


def test_sentry3_outlet_status_zero_is_off(own_agent: Agent) -> None:
    profile, reading = read(own_agent.host, own_agent.port, "sentry3")
    assert profile.name == "sentry3"
    assert [o.on for o in reading.outlets] == [True, False, False]
    assert reading.phases[0].current_amperes == 5.12
    assert reading.phases[0].voltage_volts == pytest.approx(208.4)


def test_raritan_decimal_digits_and_switching_state(own_agent: Agent) -> None:
    profile, reading = read(own_agent.host, own_agent.port, "raritan-switching")
    assert profile.name == "raritan-pdu2"
    assert [o.id for o in reading.outlets] == ["1", "2", "3", "4"]
    assert [o.on for o in reading.outlets] == [True, False, True, True]
    digits = raw(own_agent, "raritan-switching", "1.3.6.1.4.1.13742.6.3.5.4.1.7.1.1.1")
    value = raw(own_agent, "raritan-switching", "1.3.6.1.4.1.13742.6.5.4.3.1.4.1.1.1")
    assert reading.outlets[0].current_amperes == value / 10**digits == 1.25
    assert reading.outlets[1].energy_joules == 2 * 123456 * 3600  # activeEnergy Wh → J
    assert reading.phases[0].current_amperes == 4.321


@pytest.mark.parametrize("version", ["1", "2c"])
def test_v1_getnext_walk_and_v2c_getbulk_walk_agree(own_agent: Agent, version: str) -> None:
    _, reading = read(own_agent.host, own_agent.port, "apc-8641", profile="apc-rpdu2", version=version)
    _, bulk = read(own_agent.host, own_agent.port, "apc-8641", profile="apc-rpdu2", version="2c")
    assert reading == bulk


def test_legacy_rpdu_table_agrees_with_rpdu2_despite_opposite_enums(own_agent: Agent) -> None:
    # rPDUOutletStatusOutletState is on(1)/off(2), rPDU2OutletSwitchedStatusState off(1)/on(2): same outlets.
    _, legacy = read(own_agent.host, own_agent.port, "apc-8641", profile="apc-rpdu")
    _, modern = read(own_agent.host, own_agent.port, "apc-8641", profile="apc-rpdu2")
    assert len(legacy.outlets) == 24
    assert [(o.id, o.on) for o in legacy.outlets] == [(o.id, o.on) for o in modern.outlets]
    assert legacy.phases[0].current_amperes == raw(own_agent, "apc-8641", "1.3.6.1.4.1.318.1.1.12.2.3.1.1.2.1") / 10
