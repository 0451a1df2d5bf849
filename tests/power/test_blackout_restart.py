"""A real `threenines serve` restarted in the middle of a blackout keeps the inferred interruption.

One snmpsim serves a UPS (RFC 1628 recording, moved with snmpset to on battery, battery low, 1 minute left) and
the PDU it feeds; stopping the agent silences both cards, as the end of the battery does. The exporter infers the
UPS exhausted (the blackout rule) and determines the customer's power interruption; it is then stopped by PID
(SIGTERM) and started again on the same state directory while the cards are still silent. The second process
must find the same inference (same evidence, same moment) and keep the customer's power down — not unknown — and
the ledger must hold one open outage, not two. Without the devices' history across the restart the second
process would see only silence: unknown (tests/power/test_power_history.py shows that contrast directly)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.foundation.exporter_process import sample, scrape, serve
from tests.snmp.agents import FIXTURES, snmpset, snmpsim
from tests.support import free_port, wait_until
from threenines.ledgers.outages import OutageLedgerReader

UPS_SOURCE = "1.3.6.1.2.1.33.1.4.1.0"       # upsOutputSource: battery(5)
UPS_BATTERY = "1.3.6.1.2.1.33.1.2.1.0"      # upsBatteryStatus: batteryLow(3)
UPS_MINUTES = "1.3.6.1.2.1.33.1.2.3.0"      # upsEstimatedMinutesRemaining
UPS_INPUT = "1.3.6.1.2.1.33.1.3.3.1.3.1"    # upsInputVoltage, line 1
INTERVAL = 5  # seconds: the restored history is used within 2 intervals of the last write (docs/power.md)


def inventory(address: str) -> str:
    return f"""
auth:
  - {{id: u, version: 2c, community: {{env: RESTART_UPS}}}}
  - {{id: p, version: 2c, community: {{env: RESTART_PDU}}}}
devices:
  - {{id: ups-a, type: ups, address: "{address}", auth: u, profile: ups-mib, interval: {INTERVAL}s, timeout: 300ms,
      retries: 0}}
  - {{id: pdu-a, type: pdu, address: "{address}", auth: p, profile: apc-rpdu2, input: ups-a, interval: {INTERVAL}s,
      timeout: 300ms, retries: 0}}
customers:
  - id: acme
    timezone: UTC
    contacts: {{version: "1", notify: [{{email: noc@example.com}}]}}
    power: {{interval: {INTERVAL}s, feeds: [{{id: A, pdu: pdu-a, outlets: ["1"]}}]}}
"""


def inferred(port: int) -> float | None:
    """The moment the exporter's blackout rule holds ups-a exhausted from, while it does (low battery)."""
    text = scrape(port)
    if sample(text, "threenines_power_inferred_down", customer="acme", device="ups-a", evidence="low_battery") != 1:
        return None
    return sample(text, "threenines_power_inferred_down_since_timestamp_seconds", customer="acme", device="ups-a",
                  evidence="low_battery")


def test_a_restart_in_the_middle_of_a_blackout_keeps_the_interruption(tmp_path: Path) -> None:
    os.environ["RESTART_UPS"], os.environ["RESTART_PDU"] = "ups-restart", "pdu-a"
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    shutil.copyfile(FIXTURES / "blackout" / "ups.snmprec", recordings / "ups-restart.snmprec")
    state = tmp_path / "state"
    config = tmp_path / "inventory.yml"
    with snmpsim([recordings / "ups-restart.snmprec", FIXTURES / "pdu-a.snmprec"], tmp_path) as agent:
        for oid, value in ((UPS_SOURCE, 5), (UPS_BATTERY, 3), (UPS_MINUTES, 1), (UPS_INPUT, 0)):
            snmpset(agent.address, "ups-restart", oid, "i", str(value))
        config.write_text(inventory(agent.address))
        first, port = serve(tmp_path, config, state)
        with first:
            # On battery the customer is still powered; the UPS's last words are what the exporter read.
            wait_until(lambda: sample(scrape(port), "threenines_ups_battery_runtime_seconds", device="ups-a") == 60,
                       6 * INTERVAL, 0.5, "the UPS's last words: on battery, 1 minute left")
            wait_until(lambda: sample(scrape(port), "threenines_service_up", customer="acme", service="power") == 1,
                       6 * INTERVAL, 0.5, "acme powered while on battery")
            agent.process.stop()  # the battery ran out: the UPS's and the PDU's cards go silent together
            since = wait_until(lambda: inferred(port), 6 * INTERVAL, 0.5, "the blackout rule to hold")
            wait_until(lambda: sample(scrape(port), "threenines_service_up", customer="acme", service="power") == 0,
                       6 * INTERVAL, 0.5, "the interruption to be determined")
            text = scrape(port)
            last = {d: sample(text, "threenines_device_last_success_timestamp_seconds", device=d)
                    for d in ("ups-a", "pdu-a")}
        assert (state / "power-history.json").is_file()

        # The rule's moment rests on the last answers: not before them, not a minute (the runtime) after.
        assert all(v is not None for v in last.values())
        assert max(v for v in last.values() if v is not None) <= since < max(
            v for v in last.values() if v is not None) + 2 * INTERVAL

        second, port = serve(tmp_path, config, state, port=free_port())
        with second:
            again = wait_until(lambda: inferred(port), 6 * INTERVAL, 0.5, "the rule to hold after the restart")
            assert again == since
            # Evaluated after the restart (the counter of outage time moves), still down, and known.
            wait_until(lambda: sample(scrape(port), "threenines_service_known", customer="acme",
                                      service="power") == 1, 6 * INTERVAL, 0.5, "power known after the restart")
            assert sample(scrape(port), "threenines_service_up", customer="acme", service="power") == 0

    with OutageLedgerReader(state / "outages.sqlite") as ledger:
        outages = [o for o in ledger.outages() if o.key.service == "power"]
    # One outage, still open across the restart (its downtime is a gap in it, not its end).
    assert [(o.key.customer, o.ended_at) for o in outages] == [("acme", None)]
