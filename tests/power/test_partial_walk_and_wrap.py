"""An agent that stalls mid-walk and an energy counter that really wraps, on real snmpsim agents.

The stalling PDU has its own snmpsim process (snmpsim's delay variation blocks the whole process), so the
healthy PDU on another agent shows that nothing else is disturbed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from tests.snmp.agents import FIXTURES, Agent, snmpget, snmpset, snmpsim
from threenines.config.inventory import Inventory
from threenines.config.inventory_load import parse_inventory_text
from threenines.contract.power_state import PowerPair, power_pair
from threenines.exposition.power import PowerCollector
from threenines.probes.snmp.client import SnmpClient, Target

WH_1 = "1.3.6.1.4.1.534.6.6.7.6.5.1.4.0.1"  # EATON-EPDU-MIB outletWh, outlet 1 (Unsigned32, watt-hours)


@pytest.fixture(scope="module")
def stalling(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    with snmpsim([FIXTURES / "pdu-stall.snmprec"], tmp_path_factory.mktemp("stall")) as agent:
        yield agent


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    with snmpsim([FIXTURES / "epdu-wrap.snmprec"], tmp_path_factory.mktemp("healthy")) as agent:
        yield agent


def inventory(stalling: Agent, healthy: Agent) -> Inventory:
    os.environ.update(STALL_COMMUNITY="pdu-stall", WRAP_COMMUNITY="epdu-wrap")
    return parse_inventory_text(f"""
auth:
  - {{id: s, version: 2c, community: {{env: STALL_COMMUNITY}}}}
  - {{id: w, version: 2c, community: {{env: WRAP_COMMUNITY}}}}
devices:
  - {{id: stall, type: pdu, address: "{stalling.address}", auth: s, profile: apc-rpdu2, interval: 5s,
      timeout: 300ms, retries: 0}}
  - {{id: epdu, type: pdu, address: "{healthy.address}", auth: w, interval: 5s, timeout: 1s, retries: 1}}
customers:
  - id: on-stall
    timezone: UTC
    contacts: {{version: "1", notify: [{{email: noc@example.com}}]}}
    power: {{interval: 5s, feeds: [{{id: A, pdu: stall, outlets: ["1"]}}]}}
  - id: on-epdu
    timezone: UTC
    contacts: {{version: "1", notify: [{{email: noc@example.com}}]}}
    power: {{interval: 5s, feeds: [{{id: A, pdu: epdu, outlets: ["1"]}}]}}
""")


class CountingClient(SnmpClient):
    """The project's client, counting the requests each agent answered (to show the walk stopped midway)."""

    def __init__(self) -> None:
        super().__init__()
        self.answered: dict[int, int] = {}

    async def _exchange(self, target: Target, *args, **kwargs):  # type: ignore[no-untyped-def]
        answer = await super()._exchange(target, *args, **kwargs)
        self.answered[target.port] = self.answered.get(target.port, 0) + 1
        return answer


def metrics(pair: PowerPair) -> str:
    registry = CollectorRegistry()
    registry.register(PowerCollector(pair.poller.snapshot, pair.evaluator.snapshot))
    return generate_latest(registry).decode()


def test_agent_stalling_mid_walk_makes_that_device_unknown_and_no_other(stalling: Agent, healthy: Agent) -> None:
    # The oracle for "mid-walk": the first rows answer at once (net-snmp), row 40 is the one that stalls.
    assert snmpget(stalling.address, "pdu-stall", "1.3.6.1.4.1.318.1.1.26.9.4.3.1.6.1") == "4"
    inv = inventory(stalling, healthy)
    client = CountingClient()
    poller, power = pair = power_pair(inv, lambda key, at, ok: None, client=client)

    async def go() -> tuple[dict[str, bool], dict[str, bool | None]]:
        polls = await asyncio.gather(*(poller.poll_once(d) for d in inv.devices))
        return ({s.device.id: s.up for s in polls},
                {c.id: power.observe_customer(c) for c in inv.customers})

    up, customers = asyncio.run(go())
    assert up == {"stall": False, "epdu": True}
    assert customers == {"on-stall": None, "on-epdu": True}  # unknown, not down; the other one unaffected
    assert client.answered[stalling.port] >= 1  # the walk's first GETBULK was answered: it stopped midway
    text = metrics(pair)
    assert 'threenines_device_up{device="stall"} 0.0' in text
    assert 'threenines_device_poll_errors_total{device="stall",reason="timeout"} 1.0' in text
    assert 'threenines_device_up{device="epdu"} 1.0' in text
    assert 'device="epdu",reason=' not in text
    # No half-read table is published: the stalled PDU has no outlet series at all.
    assert 'threenines_pdu_outlet_on{customer="on-stall"' not in text


def test_a_real_unsigned32_wrap_is_counted_and_the_device_stays_up(stalling: Agent, healthy: Agent) -> None:
    inv = inventory(stalling, healthy)
    poller, _ = pair = power_pair(inv, lambda key, at, ok: None)
    epdu = next(d for d in inv.devices if d.id == "epdu")
    snmpset(healthy.address, "epdu-wrap", WH_1, "u", "4294967290")

    async def poll() -> object:
        return await poller.poll_once(epdu)

    before = asyncio.run(poll())
    # 10 Wh later the 32-bit counter has passed 2^32 - 1: the agent now reports 4.
    snmpset(healthy.address, "epdu-wrap", WH_1, "u", "4")
    assert snmpget(healthy.address, "epdu-wrap", WH_1) == "4"
    after = asyncio.run(poll())
    assert before.up and after.up  # type: ignore[attr-defined]
    assert before.reading.outlet("1").energy_joules == 4294967290 * 3600  # type: ignore[attr-defined]
    assert after.reading.outlet("1").energy_joules == 4 * 3600  # type: ignore[attr-defined]
    text = metrics(pair)
    assert 'threenines_device_poll_errors_total{device="epdu",reason="counter_wrap"} 1.0' in text
    assert 'threenines_device_up{device="epdu"} 1.0' in text
    # Outlet 2's counter did not move backwards and still reads.
    assert 'threenines_pdu_outlet_energy_joules_total{customer="",device="epdu",outlet="2"} 4.444416e+08' in text
