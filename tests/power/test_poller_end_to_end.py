"""End to end: snmpsim PDUs (A/B feeds) → PowerPoller → observe() and the collector. Switching an outlet off
with net-snmp's snmpset determines a power outage only when the other feed is down too; a dead device never
delays the others."""

from __future__ import annotations

import asyncio
import os
import socket
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from tests.snmp.agents import FIXTURES, Agent, snmpset, snmpsim
from tests.support import free_port
from threenines.config.inventory_load import parse_inventory_text
from threenines.contract.power_state import power_pair
from threenines.exposition.power import PowerCollector

STATE = "1.3.6.1.4.1.318.1.1.26.9.2.3.1.5"  # rPDU2OutletSwitchedStatusState: off(1) on(2)


@pytest.fixture(scope="module")
def pdus(tmp_path_factory: pytest.TempPathFactory):
    with snmpsim([FIXTURES / "pdu-a.snmprec", FIXTURES / "pdu-b.snmprec", FIXTURES / "ups-mib-on-battery.snmprec"],
                 tmp_path_factory.mktemp("pdus")) as agent:
        yield agent


def inventory(agent: Agent, dead_port: int):
    os.environ.update(PDU_A="pdu-a", PDU_B="pdu-b", UPS="ups-mib-on-battery", DEAD="nobody")
    return parse_inventory_text(f"""
auth:
  - {{id: a, version: 2c, community: {{env: PDU_A}}}}
  - {{id: b, version: 2c, community: {{env: PDU_B}}}}
  - {{id: u, version: 2c, community: {{env: UPS}}}}
  - {{id: d, version: 2c, community: {{env: DEAD}}}}
devices:
  - {{id: ups1, type: ups, address: "{agent.address}", auth: u, interval: 1s, timeout: 200ms, retries: 0}}
  - {{id: pdu-a, type: pdu, address: "{agent.address}", auth: a, input: ups1, interval: 1s, timeout: 200ms,
      retries: 0}}
  - {{id: pdu-b, type: pdu, address: "{agent.address}", auth: b, profile: apc-rpdu2, interval: 1s,
      timeout: 200ms, retries: 0}}
  - {{id: dead, type: pdu, address: "127.0.0.1:{dead_port}", auth: d, interval: 1s, timeout: 300ms, retries: 1}}
customers:
  - id: acme
    timezone: UTC
    contacts: {{version: "1", notify: [{{email: noc@example.com}}]}}
    power:
      interval: 1s
      feeds:
        - {{id: A, pdu: pdu-a, outlets: ["1"]}}
        - {{id: B, pdu: pdu-b, outlets: ["1"]}}
  - id: dark
    timezone: UTC
    contacts: {{version: "1", notify: [{{email: noc@example.com}}]}}
    power:
      interval: 1s
      feeds:
        - {{id: A, pdu: dead, outlets: ["1"]}}
""")


def test_outage_only_when_both_feeds_are_down_and_a_dead_pdu_is_unknown(pdus: Agent) -> None:
    inv = inventory(pdus, free_port(socket.SOCK_DGRAM))
    observed: list[tuple[str, bool | None]] = []
    poller, power = power_pair(inv, lambda key, at, ok: observed.append((key.customer, ok)))
    devices = {d.id: d for d in inv.devices}

    async def scenario() -> dict[str, object]:
        out: dict[str, object] = {}
        started = time.monotonic()
        polls = await asyncio.gather(*(poller.poll_once(d) for d in inv.devices))
        out["elapsed"] = time.monotonic() - started
        out["up"] = {s.device.id: s.up for s in polls}
        out["both_on"] = {c.id: power.observe_customer(c) for c in inv.customers}
        snmpset(pdus.address, "pdu-a", f"{STATE}.1", "i", "1")
        await poller.poll_once(devices["pdu-a"])
        out["a_off"] = power.observe_customer(inv.customer("acme"))
        snmpset(pdus.address, "pdu-b", f"{STATE}.1", "i", "1")
        await poller.poll_once(devices["pdu-b"])
        out["both_off"] = power.observe_customer(inv.customer("acme"))
        snmpset(pdus.address, "pdu-a", f"{STATE}.1", "i", "2")
        snmpset(pdus.address, "pdu-b", f"{STATE}.1", "i", "2")
        await poller.poll_once(devices["pdu-a"])
        out["restored"] = power.observe_customer(inv.customer("acme"))
        return out

    out = asyncio.run(scenario())
    assert out["up"] == {"ups1": True, "pdu-a": True, "pdu-b": True, "dead": False}
    assert out["both_on"] == {"acme": True, "dark": None}   # a PDU that cannot be read is unknown, not down
    assert out["a_off"] is True                              # feed B still powers the customer
    assert out["both_off"] is False                          # every feed down: power interruption
    assert out["restored"] is True
    assert ("acme", False) in observed and ("dark", None) in observed
    # The dead device (0.3 s × 2 tries) polled concurrently with the others: nobody waited for it serially.
    assert out["elapsed"] < 3

    registry = CollectorRegistry()
    registry.register(PowerCollector(poller.snapshot, power.snapshot))
    text = generate_latest(registry).decode()
    assert 'threenines_device_up{device="dead"} 0.0' in text
    assert 'threenines_device_poll_errors_total{device="dead",reason="timeout"} 1.0' in text
    assert 'threenines_pdu_outlet_on{customer="acme",device="pdu-b",outlet="1"} 0.0' in text  # last poll: off
    assert 'threenines_pdu_outlet_current_amperes{customer="acme",device="pdu-a",outlet="1"} 1.0' in text
    assert 'threenines_pdu_outlet_energy_joules_total{customer="",device="pdu-a",outlet="2"}' in text
    assert 'threenines_ups_output_source{device="ups1",source="battery"} 1.0' in text
    assert 'threenines_ups_output_source{device="ups1",source="normal"} 0.0' in text
    assert 'threenines_pdu_phase_voltage_volts{device="pdu-a",phase="1"} 230.0' in text
    assert "nobody" not in text  # the dead device's community


def test_run_schedules_polls_and_observations_until_stopped(pdus: Agent) -> None:
    inv = inventory(pdus, free_port(socket.SOCK_DGRAM))
    observed: list[tuple[str, float, bool | None]] = []
    poller, _ = power_pair(inv, lambda key, at, ok: observed.append((key.customer, at, ok)))

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(poller.run(stop))
        await asyncio.sleep(3.2)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(go())
    acme = [ok for customer, _, ok in observed if customer == "acme"]
    assert 2 <= len(acme) <= 4 and set(acme) == {True}
    assert all(s.polled_at for s in poller.snapshot().devices)
