"""Power through Zabbix: snmpsim UPS and PDUs polled by `threenines serve` (basic auth on /metrics, as its
--web.config.file sets it), scraped by a real Zabbix 6.0 through the generated template. The UPS on battery, a
dead SNMP device and a customer's outlet switched off become the template's triggers, for that device/customer
only; discovered items carry the exporter's values."""

from __future__ import annotations

import base64
import socket
import time
from pathlib import Path

import bcrypt
import pytest
import yaml

from tests.foundation.exporter_process import sample
from tests.snmp.agents import FIXTURES, snmpset, snmpsim
from tests.support import VENV_BIN, free_port, http_get, running, wait_until
from tests.zabbix.stack import ZabbixStack
from threenines.cli import main
from threenines.zabbix.api import ZabbixApi

STATE = "1.3.6.1.4.1.318.1.1.26.9.2.3.1.5"  # rPDU2OutletSwitchedStatusState: off(1) on(2)
HOST = "threenines exporter power-e2e"
CUSTOMER = "power-e2e"
PASSWORD = "zbx-pw-3e1f"


def _inventory(agent: str, dead_port: int) -> str:
    return f"""
auth:
  - {{id: a, version: 2c, community: {{env: ZBX_PDU_A}}}}
  - {{id: b, version: 2c, community: {{env: ZBX_PDU_B}}}}
  - {{id: u, version: 2c, community: {{env: ZBX_UPS}}}}
  - {{id: d, version: 2c, community: {{env: ZBX_DEAD}}}}
  - {{id: t, version: 2c, community: {{env: ZBX_UPS3}}}}
devices:
  - {{id: ups-3p, type: ups, address: "{agent}", auth: t, interval: 1s, timeout: 300ms, retries: 0}}
  - {{id: ups-z, type: ups, address: "{agent}", auth: u, interval: 1s, timeout: 300ms, retries: 0}}
  - {{id: pdu-za, type: pdu, address: "{agent}", auth: a, input: ups-z, interval: 1s, timeout: 300ms, retries: 0}}
  - {{id: pdu-zb, type: pdu, address: "{agent}", auth: b, profile: apc-rpdu2, interval: 1s, timeout: 300ms,
      retries: 0}}
  - {{id: dead-z, type: pdu, address: "127.0.0.1:{dead_port}", auth: d, interval: 1s, timeout: 300ms, retries: 0}}
customers:
  - id: {CUSTOMER}
    timezone: UTC
    contacts: {{version: "1", notify: [{{email: noc@example.com}}]}}
    power:
      interval: 1s
      feeds:
        - {{id: A, pdu: pdu-za, outlets: ["1"]}}
        - {{id: B, pdu: pdu-za, outlets: ["2"]}}
"""


def _scrape(port: int) -> str:
    credentials = base64.b64encode(f"zabbix:{PASSWORD}".encode()).decode()
    status, body = http_get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Basic {credentials}"})
    assert status == 200, status
    return body.decode()


def _items(api: ZabbixApi, hostid: str, key: str) -> dict[str, dict]:
    found = api.call("item.get", {"output": ["key_", "lastvalue", "lastclock"], "hostids": [hostid],
                                  "search": {"key_": key}, "startSearch": True})
    return {i["key_"]: i for i in found if i["lastclock"] != "0"}


def _problem_names(api: ZabbixApi, hostid: str) -> set[str]:
    return {p["name"] for p in api.call("problem.get", {"output": ["name"], "hostids": [hostid], "recent": False})}


def test_ups_on_battery_dead_device_and_customer_outlet_off_reach_zabbix(
        zabbix: ZabbixStack, api: ZabbixApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ZABBIX_PASSWORD", "zabbix")
    for name, community in (("ZBX_PDU_A", "pdu-a"), ("ZBX_PDU_B", "pdu-b"), ("ZBX_UPS", "ups-mib-on-battery"),
                            ("ZBX_DEAD", "nobody"), ("ZBX_UPS3", "eaton-93ps")):
        monkeypatch.setenv(name, community)
    recordings = [FIXTURES / "pdu-a.snmprec", FIXTURES / "pdu-b.snmprec", FIXTURES / "ups-mib-on-battery.snmprec",
                  FIXTURES / "eaton-93ps.snmprec"]
    with snmpsim(recordings, tmp_path) as agent:
        config = tmp_path / "inventory.yml"
        config.write_text(_inventory(agent.address, free_port(socket.SOCK_DGRAM)))
        (tmp_path / "web.yml").write_text(yaml.safe_dump({"basic_auth_users": {
            "zabbix": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()}}))
        (tmp_path / "metrics-password").write_text(PASSWORD)
        http_port = free_port()
        argv = [str(VENV_BIN / "threenines"), "serve", "--config", str(config), "--listen",
                f"127.0.0.1:{http_port}", "--state-dir", str(tmp_path / "state"), "--tick", "1",
                "--web.config.file", str(tmp_path / "web.yml")]
        with running(argv, tmp_path / "exporter.log"):
            wait_until(lambda: _scrape(http_port), 30, 0.2, "the exporter to answer with basic auth")
            assert http_get(f"http://127.0.0.1:{http_port}/metrics")[0] == 401
            code = main(["zabbix-sync", "--config", str(config), "--url", zabbix.api_url, "--user", "Admin",
                         "--exporter-url", f"http://127.0.0.1:{http_port}/metrics", "--host-name", HOST,
                         "--scrape-interval", "2s", "--import-templates", "--exporter-user", "zabbix",
                         "--exporter-password-file", str(tmp_path / "metrics-password")])
            assert code == 0, capsys.readouterr()
            [host] = api.call("host.get", {"output": ["hostid"], "filter": {"host": [HOST]}})
            hostid = host["hostid"]

            expected = {"UPS ups-z: on battery", "Device dead-z: SNMP device unreachable"}
            wait_until(lambda: expected <= _problem_names(api, hostid), 90, 1, "UPS and device problems")
            text = _scrape(http_port)
            assert sample(text, "threenines_ups_output_source", device="ups-z", source="battery") == 1
            ups = wait_until(lambda: (lambda i: i if len(i) >= 3 else None)(
                {**_items(api, hostid, "threenines.ups.source"), **_items(api, hostid, "threenines.ups.runtime"),
                 **_items(api, hostid, "threenines.ups.charge")}), 30, 1, "UPS items")
            assert ups['threenines.ups.source["ups-z"]']["lastvalue"] == "battery"
            assert float(ups['threenines.ups.runtime["ups-z"]']["lastvalue"]) == sample(
                text, "threenines_ups_battery_runtime_seconds", device="ups-z")
            assert float(ups['threenines.ups.charge["ups-z"]']["lastvalue"]) == sample(
                text, "threenines_ups_battery_charge_ratio", device="ups-z")

            # A 3-phase UPS exports one series per line: Zabbix's items take the lowest input voltage and the
            # highest load (a plain pattern matching three series made the items unsupported).
            lines = wait_until(lambda: (lambda i: i if len(i) == 2 else None)(
                {**_items(api, hostid, 'threenines.ups.input_voltage["ups-3p"]'),
                 **_items(api, hostid, 'threenines.ups.load["ups-3p"]')}), 30, 1, "the 3-phase UPS's items")
            text = _scrape(http_port)
            volts = [sample(text, "threenines_ups_input_voltage_volts", device="ups-3p", phase=p) for p in "123"]
            loads = [sample(text, "threenines_ups_output_load_ratio", device="ups-3p", phase=p) for p in "123"]
            assert None not in volts and None not in loads and len(set(loads)) == 3, (volts, loads)
            assert float(lines['threenines.ups.input_voltage["ups-3p"]']["lastvalue"]) == min(volts)
            assert float(lines['threenines.ups.load["ups-3p"]']["lastvalue"]) == max(loads)

            # Only outlets the inventory maps to a customer get the customer-outlet item and trigger.
            outlet_key = f'threenines.pdu.customer_outlet.on["{CUSTOMER}","pdu-za","1"]'
            wait_until(lambda: outlet_key in _items(api, hostid, "threenines.pdu.customer_outlet.on"), 30, 1,
                       "the customer's outlet item")
            customer_outlets = api.call("item.get", {"output": ["key_"], "hostids": [hostid],
                                                     "search": {"key_": "threenines.pdu.customer_outlet.on"}})
            assert sorted(i["key_"] for i in customer_outlets) == sorted([
                outlet_key, f'threenines.pdu.customer_outlet.on["{CUSTOMER}","pdu-za","2"]'])
            all_outlets = api.call("item.get", {"output": ["key_"], "hostids": [hostid],
                                                "search": {"key_": "threenines.pdu.outlet.on"}})
            assert len(all_outlets) > len(customer_outlets)
            assert not any("outlet" in name for name in _problem_names(api, hostid))

            # snmpsim's writecache is keyed by OID across recordings: this also switches pdu-zb's outlet 1 (which
            # no customer uses), so feed B is the other outlet of pdu-za.
            snmpset(agent.address, "pdu-a", f"{STATE}.1", "i", "1")
            try:
                wait_until(lambda: f"{CUSTOMER}: outlet pdu-za/1 off" in _problem_names(api, hostid), 30, 0.5,
                           "the customer-outlet problem")
                # Feed B still powers the customer: no power outage for the contract, even after the power
                # threshold (2 × 1 s) and two more scrapes have passed.
                time.sleep(2 + 2 * 2)
                assert sample(_scrape(http_port), "threenines_service_up", customer=CUSTOMER, service="power") == 1
                assert not any("service unavailable" in name for name in _problem_names(api, hostid))
            finally:
                snmpset(agent.address, "pdu-a", f"{STATE}.1", "i", "2")
            wait_until(lambda: f"{CUSTOMER}: outlet pdu-za/1 off" not in _problem_names(api, hostid), 30, 0.5,
                       "the outlet problem to clear")
