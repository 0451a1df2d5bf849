"""The one event the contract is about, replayed on real SNMP agents: mains lost, the UPSes run on battery,
runtime falls, low battery, then every management card goes silent. One snmpsim per site serves its UPS and
its PDU (their cards die together when the agent is stopped); snmpset moves each UPS through the blackout.

Customer acme (feed A on site A, feed B on site B) loses both feeds this way: its power is down, with the
evidence per UPS in the metrics and a log line, and the contract engine determines the interruption; the outage
ledger's row starts at the moment the evidence gives (last reading + announced runtime), not at the poll that
found the silence.
Customer quiet's site goes silent while its UPS was on mains: unknown, never down. Time is injected."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.snmp.agents import FIXTURES, Agent, snmpset, snmpsim
from threenines.config.inventory import Inventory, TargetKey
from threenines.config.inventory_load import parse_inventory_text
from threenines.contract.engine import ContractEngine, specs_from_inventory
from threenines.contract.machine import OutageEvent
from threenines.contract.power_state import PowerPair, power_pair
from threenines.exposition.power import PowerCollector
from threenines.ledgers.outages import OutageLedger

UPS_SOURCE = "1.3.6.1.2.1.33.1.4.1.0"       # upsOutputSource: normal(3) battery(5)
UPS_BATTERY = "1.3.6.1.2.1.33.1.2.1.0"      # upsBatteryStatus: batteryNormal(2) batteryLow(3)
UPS_MINUTES = "1.3.6.1.2.1.33.1.2.3.0"      # upsEstimatedMinutesRemaining
UPS_INPUT = "1.3.6.1.2.1.33.1.3.3.1.3.1"    # upsInputVoltage, line 1
T0 = 1_800_000_000.0
INTERVAL = 60


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Agent]]:
    recordings = tmp_path_factory.mktemp("recordings")
    for site in ("a", "b", "q"):
        shutil.copyfile(FIXTURES / "blackout" / "ups.snmprec", recordings / f"ups-{site}.snmprec")
    shutil.copyfile(FIXTURES / "pdu-a.snmprec", recordings / "pdu-q.snmprec")
    pdus = {"a": FIXTURES / "pdu-a.snmprec", "b": FIXTURES / "pdu-b.snmprec", "q": recordings / "pdu-q.snmprec"}
    with contextlib.ExitStack() as stack:
        yield {site: stack.enter_context(snmpsim([recordings / f"ups-{site}.snmprec", pdus[site]],
                                                 tmp_path_factory.mktemp(f"site-{site}")))
               for site in ("a", "b", "q")}


def inventory(sites: dict[str, Agent]) -> Inventory:
    auths, devices = [], []
    for site, agent in sites.items():
        for kind in ("ups", "pdu"):
            os.environ[f"BLACKOUT_{kind.upper()}_{site.upper()}"] = f"{kind}-{site}"
            auths.append(f"  - {{id: {kind}-{site}, version: 2c, community: {{env: BLACKOUT_{kind.upper()}_"
                         f"{site.upper()}}}}}")
        devices.append(f'  - {{id: ups-{site}, type: ups, address: "{agent.address}", auth: ups-{site}, '
                       f"profile: ups-mib, interval: {INTERVAL}s, timeout: 300ms, retries: 0}}")
        devices.append(f'  - {{id: pdu-{site}, type: pdu, address: "{agent.address}", auth: pdu-{site}, '
                       f"profile: apc-rpdu2, input: ups-{site}, interval: {INTERVAL}s, timeout: 300ms, retries: 0}}")
    nl = "\n"
    return parse_inventory_text(f"""
auth:
{nl.join(auths)}
devices:
{nl.join(devices)}
customers:
  - id: acme
    timezone: UTC
    contacts: {{version: "1", notify: [{{email: noc@example.com}}]}}
    power:
      interval: {INTERVAL}s
      feeds:
        - {{id: A, pdu: pdu-a, outlets: ["1"]}}
        - {{id: B, pdu: pdu-b, outlets: ["1"]}}
  - id: quiet
    timezone: UTC
    contacts: {{version: "1", notify: [{{email: noc@example.com}}]}}
    power: {{interval: {INTERVAL}s, feeds: [{{id: A, pdu: pdu-q, outlets: ["1"]}}]}}
""")


def ups_state(agent: Agent, site: str, source: int, battery: int, minutes: int, volts: int) -> None:
    for oid, value in ((UPS_SOURCE, source), (UPS_BATTERY, battery), (UPS_MINUTES, minutes), (UPS_INPUT, volts)):
        snmpset(agent.address, f"ups-{site}", oid, "i", str(value))


def metrics(pair: PowerPair) -> str:
    registry = CollectorRegistry()
    registry.register(PowerCollector(pair.poller.snapshot, pair.evaluator.snapshot))
    return generate_latest(registry).decode()


def test_a_blackout_is_an_interruption_with_its_evidence_and_mere_silence_stays_unknown(
        sites: dict[str, Agent], caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    inv = inventory(sites)
    now = [T0]
    observed: list[tuple[str, float, bool | None, float | None]] = []
    events: list[OutageEvent] = []
    # The contract engine (2 consecutive observations, horizon 1.5 intervals) and its outage ledger, fed by the
    # evaluator as `threenines serve` wires them.
    ledger = OutageLedger(tmp_path / "outages.sqlite")
    engine = ContractEngine(ledger, on_event=events.append)
    engine.configure(specs_from_inventory(inv), T0)

    def observe(key: TargetKey, at: float, ok: bool | None, failed_since: float | None = None) -> None:
        observed.append((key.customer, at, ok, failed_since))
        engine.observe(key, at, ok, failed_since)

    poller, power = pair = power_pair(inv, observe, clock=lambda: now[0])

    async def step(at: float) -> dict[str, bool | None]:
        now[0] = at
        await asyncio.gather(*(poller.poll_once(d) for d in inv.devices))
        states = {c.id: power.observe_customer(c) for c in inv.customers}
        engine.tick(at)
        return states

    async def scenario() -> list[dict[str, bool | None]]:
        states = [await step(T0)]                                   # everyone on mains
        for site in ("a", "b"):
            ups_state(sites[site], site, source=5, battery=2, minutes=10, volts=0)
        states.append(await step(T0 + 60))                          # mains lost: on battery, 10 min
        for site in ("a", "b"):
            ups_state(sites[site], site, source=5, battery=2, minutes=3, volts=0)
        states.append(await step(T0 + 120))                         # runtime falling
        ups_state(sites["a"], "a", source=5, battery=3, minutes=1, volts=0)  # A: low battery, 1 min
        ups_state(sites["b"], "b", source=5, battery=2, minutes=1, volts=0)  # B: 1 min <= its 2 min threshold
        states.append(await step(T0 + 180))
        for agent in sites.values():                                # every card goes silent
            agent.process.stop()
        states.append(await step(T0 + 270))
        states.append(await step(T0 + 330))
        return states

    with caplog.at_level(logging.INFO, logger="threenines.contract.power_state"):
        states = asyncio.run(scenario())

    assert [s["acme"] for s in states] == [True, True, True, True, False, False]
    assert [s["quiet"] for s in states] == [True, True, True, True, None, None]  # silence alone: unknown
    # The interruption is determined by the contract's rule (2 consecutive observations, at T0+270 and T0+330)
    # from the moment the evidence says power ended: the last readings (T0+180) + the 60 s of runtime they
    # announced = T0+240, 30 s before the poll that found every card silent.
    down_since = T0 + 180 + 60
    assert [o for o in observed if o[0] == "acme" and o[2] is False] == [
        ("acme", T0 + 270, False, down_since), ("acme", T0 + 330, False, down_since)]
    determined = [e for e in events if e.kind == "determined"]
    assert [(e.key.customer, e.first_failed_at, e.determined_at) for e in determined] == [
        ("acme", down_since, T0 + 330)]
    [outage] = ledger.outages()
    assert (outage.key, outage.first_failed_at, outage.determined_at, outage.ended_at) == (
        TargetKey("acme", "power", "power"), down_since, T0 + 330, None)
    # Its seconds are counted from the same moment, in the target and in the customer's service.
    changes = engine.changes(T0 + 330)
    assert changes.targets[TargetKey("acme", "power", "power")].outage_seconds == T0 + 330 - down_since
    assert changes.services[("acme", "power")].outage_seconds == T0 + 330 - down_since
    assert engine.machine(TargetKey("quiet", "power", "power")).down is False
    assert not any(o[3] is not None for o in observed if o[0] == "quiet")
    ledger.close()

    verdict = power.verdict(inv.customer("acme"))
    assert [(e.ups, e.evidence) for e in verdict.inferred] == [("ups-a", "low_battery"), ("ups-b", "runtime_low")]
    # The evidence's moment: last reading (T0+180) + the 60 s it announced, before the poll that found silence.
    assert {e.ups: e.since for e in verdict.inferred} == {"ups-a": T0 + 240, "ups-b": T0 + 240}

    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(metrics(pair)) for s in family.samples
               if s.name.startswith("threenines_power_inferred_down")}
    expected = {}
    for ups, evidence in (("ups-a", "low_battery"), ("ups-b", "runtime_low")):
        labels = (("customer", "acme"), ("device", ups), ("evidence", evidence))
        expected[("threenines_power_inferred_down", labels)] = 1.0
        expected[("threenines_power_inferred_down_since_timestamp_seconds", labels)] = T0 + 240
    assert samples == expected  # nothing for quiet
    lines = [r.getMessage() for r in caplog.records if "inferred=blackout" in r.getMessage()]
    assert len(lines) == 2  # once per UPS when the state starts resting on it, not at every evaluation
    assert "customer=acme power=down inferred=blackout ups=ups-a evidence=low_battery since=2027-01-15T08:04:00.000Z" \
        in lines[0]
    assert "silent_since=2027-01-15T08:04:30.000Z runtime_seconds=60" in lines[0]
