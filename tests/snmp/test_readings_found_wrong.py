"""Readings found wrong on real devices, replayed by snmpsim from recordings written to reproduce them:
a Gauge32 runtime placeholder counted as an error on every poll, a 3-phase UPS read from line 1 only, and a
UPS in economy mode left unknown. Expected values come from net-snmp's snmpget (the oracle) and the MIB texts."""

from __future__ import annotations

import asyncio
import os

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from tests.snmp.agents import Agent, snmpget
from tests.snmp.helpers import read
from threenines.config.inventory import Inventory
from threenines.config.inventory_load import parse_inventory_text
from threenines.exposition.power import PowerCollector
from threenines.probes.power_poller import PowerPoller
from threenines.probes.snmp.decode import decode_value
from threenines.probes.snmp.profiles import get_profile


def one_ups(agent: Agent, community: str, profile: str = "auto") -> Inventory:
    os.environ["TEST_UPS_COMMUNITY"] = community
    return parse_inventory_text(f"""
auth: [{{id: a, version: 2c, community: {{env: TEST_UPS_COMMUNITY}}}}]
devices:
  - {{id: ups1, type: ups, address: "{agent.address}", auth: a, profile: {profile}, interval: 5s, timeout: 1s,
      retries: 1}}
  - {{id: pdu1, type: pdu, address: "{agent.address}", auth: a, profile: apc-rpdu2, input: ups1, interval: 5s,
      timeout: 1s, retries: 1}}
customers:
  - id: acme
    timezone: UTC
    contacts: {{version: "1", notify: [{{email: noc@example.com}}]}}
    power: {{interval: 5s, feeds: [{{id: A, pdu: pdu1, outlets: ["1"]}}]}}
""")


def metrics(poller: PowerPoller) -> str:
    registry = CollectorRegistry()
    registry.register(PowerCollector(poller.snapshot))
    return generate_latest(registry).decode()


def test_a_gauge32_runtime_placeholder_is_unknown_and_no_error_poll_after_poll(own_agent: Agent) -> None:
    assert snmpget(own_agent.address, "huawei-ups2000", "1.3.6.1.2.1.33.1.2.3.0") == "4294967295"
    inventory = one_ups(own_agent, "huawei-ups2000")
    poller = PowerPoller(inventory)
    ups = inventory.devices[0]

    async def two_polls():
        return [await poller.poll_once(ups), await poller.poll_once(ups)]

    polls = asyncio.run(two_polls())
    for status in polls:
        assert status.up and status.reading is not None and status.reading.ups is not None
        assert status.reading.ups.battery_runtime_seconds is None
        assert status.reading.ups.output_source == "normal"
        assert status.reading.problems == ()
    assert polls[-1].errors == ()  # before: ("bad_value", 2), one per poll of a healthy UPS
    text = metrics(poller)
    assert 'reason="bad_value"' not in text
    assert 'threenines_ups_battery_runtime_seconds{device="ups1"}' not in text


def test_the_unsigned_form_of_minus_one_is_a_placeholder_only_where_minus_one_is_and_outside_the_range() -> None:
    runtime = get_profile("ups-mib").scalars["battery_runtime_seconds"][0]
    assert decode_value(runtime, 4294967295) == (None, None)
    assert decode_value(runtime, 4294967294) == (None, "bad_value")  # other garbage is still garbage
    # Sentry4 energy lists -1 but its range holds 2^32 - 1: there it is a meter reading, not a placeholder.
    energy = get_profile("sentry4").outlets.columns["energy_joules"][0]  # type: ignore[union-attr]
    assert decode_value(energy, 4294967295) == (4294967295 * 3600, None)
    # A field without -1 among its placeholders keeps calling it out of range.
    charge = get_profile("ups-mib").scalars["battery_charge_ratio"][0]
    assert decode_value(charge, 4294967295) == (None, "bad_value")


def test_a_three_phase_ups_reports_every_line_and_the_highest_load_is_there_to_alert_on(own_agent: Agent) -> None:
    loads = [int(snmpget(own_agent.address, "eaton-93ps", f"1.3.6.1.2.1.33.1.4.4.1.5.{line}")) for line in (1, 2, 3)]
    volts = [int(snmpget(own_agent.address, "eaton-93ps", f"1.3.6.1.4.1.534.1.3.4.1.2.{line}")) for line in (1, 2, 3)]
    assert loads == [7, 19, 29]
    assert int(snmpget(own_agent.address, "eaton-93ps", "1.3.6.1.4.1.534.1.4.1.0")) == 7  # xupsOutputLoad: line 1
    profile, reading = read(own_agent.host, own_agent.port, "eaton-93ps")
    assert profile.name == "eaton-xups"
    assert reading.ups is not None
    assert reading.ups.line_values("output_load_ratio") == (("1", 0.07), ("2", 0.19), ("3", 0.29))
    assert reading.ups.line_values("input_voltage_volts") == tuple((str(i + 1), float(v)) for i, v in enumerate(volts))
    assert reading.problems == ()
    poller = PowerPoller(one_ups(own_agent, "eaton-93ps"))
    asyncio.run(poller.poll_once(poller.inventory.devices[0]))
    text = metrics(poller)
    for line, load in (("1", 0.07), ("2", 0.19), ("3", 0.29)):
        assert f'threenines_ups_output_load_ratio{{device="ups1",phase="{line}"}} {load}' in text
    assert 'threenines_ups_input_voltage_volts{device="ups1",phase="3"} 233.0' in text


def test_a_real_3_phase_eaton_93e_recording_reads_per_line_from_both_mibs(own_agent: Agent) -> None:
    # The BSD-licensed snmpsim-data recording: RFC 1628 loads 21/16/12 %, XUPS input 227/227/233 V.
    for profile_name in ("eaton-xups", "ups-mib"):
        _, reading = read(own_agent.host, own_agent.port, "eaton-93e-80", profile=profile_name)
        assert reading.ups is not None
        assert reading.ups.line_values("output_load_ratio") == (("1", 0.21), ("2", 0.16), ("3", 0.12))
        assert reading.ups.line_values("input_voltage_volts") == (("1", 227.0), ("2", 227.0), ("3", 233.0))


def test_a_single_phase_ups_reports_its_one_line_as_phase_1(own_agent: Agent) -> None:
    _, reading = read(own_agent.host, own_agent.port, "ups-mib-on-battery")
    assert reading.ups is not None
    assert reading.ups.line_values("output_load_ratio") == (("1", 0.37),)
    assert reading.ups.line_values("input_voltage_volts") == (("1", 0.0),)


@pytest.mark.parametrize(("profile", "source", "powered"), [
    ("auto", "normal", True),       # tripplite-ups reads tlpUpsOutputSource economy(9): on mains
    ("ups-mib", "other", None),     # RFC 1628 alone says `other`: unknown (was the only reading before)
])
def test_a_ups_in_economy_mode_is_on_mains_when_the_vendor_mib_says_so(own_agent: Agent, profile: str, source: str,
                                                                      powered: bool | None) -> None:
    assert snmpget(own_agent.address, "tripplite-eco", "1.3.6.1.2.1.33.1.4.1.0") == "1"  # other(1)
    assert snmpget(own_agent.address, "tripplite-eco", "1.3.6.1.4.1.850.1.1.3.1.3.3.1.1.1.1") == "9"  # economy
    chosen, reading = read(own_agent.host, own_agent.port, "tripplite-eco", profile=profile)
    assert chosen.name == ("tripplite-ups" if profile == "auto" else profile)
    assert reading.ups is not None and reading.ups.output_source == source
    assert reading.problems == ()
    if profile == "auto":
        assert reading.ups.battery_low_runtime_seconds == 120.0  # upsConfigLowBattTime 2 min
    # The power model: a silent PDU behind it is unknown either way; the UPS itself supplies or is unknown.
    from threenines.contract.power import device_supplies

    inventory = one_ups(own_agent, "tripplite-eco", profile)
    devices = {d.id: d for d in inventory.devices}
    assert device_supplies("ups1", devices, {"ups1": reading}) is powered
