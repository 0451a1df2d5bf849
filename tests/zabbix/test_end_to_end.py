"""The exporter scraped by a real Zabbix 6.0 through the generated template: discovered items carry the values
the exporter serves; a customer port cut in a namespace raises the outage trigger for that customer only and
clears when the link returns; the Zabbix SLA counts that outage as the contract does, within a stated lag."""

from __future__ import annotations

import csv
import io
import shutil
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from tests.foundation.exporter_process import sample, scrape, serve
from tests.netns import customer_port
from tests.support import free_port, running, wait_until
from tests.zabbix.stack import ZabbixStack
from threenines.cli import main
from threenines.zabbix.api import ZabbixApi
from threenines.zabbix.sync import object_name

pytestmark = pytest.mark.netns  # root: a network namespace per customer port

INTERVAL = 2  # contract probe interval in this test (the contract's 5 min, shrunk)
THRESHOLD = 2
SCRAPE = 2  # Zabbix scrape interval of /metrics
HOST = "threenines exporter e2e"
ACME, GLOBEX = "acme_e2e", "globex_e2e"  # not the example inventory's ids: the sync tests share this Zabbix
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def _inventory(ns_address: str) -> str:
    return f"""
customers:
  - id: {ACME}
    timezone: Europe/Amsterdam
    objective: 99.9%
    contacts: {{version: '1', notify: [{{email: noc@acme.example}}]}}
    ping: {{interval: {INTERVAL}s, threshold: {THRESHOLD}, packets: 1, timeout: 500ms}}
    ports:
      - {{id: ns-port, address: '{ns_address}'}}
  - id: {GLOBEX}
    timezone: America/New_York
    objective: 99.95%
    contacts: {{version: '1', notify: [{{email: noc@globex.example}}]}}
    ping: {{interval: {INTERVAL}s, threshold: {THRESHOLD}, packets: 1, timeout: 500ms}}
    ports:
      - {{id: lo-port, address: 127.0.61.1}}
      - {{id: v6-port, address: '::1'}}
"""


def _items(api: ZabbixApi, hostids: list[str], key: str) -> dict[str, dict]:
    found = api.call("item.get", {"output": ["key_", "lastvalue", "lastclock", "state", "error"],
                                  "hostids": hostids, "search": {"key_": key}, "startSearch": True})
    return {i["key_"]: i for i in found}


def _problems(api: ZabbixApi, hostids: list[str] | None = None, **tags: str) -> list[dict]:
    return api.call("problem.get", {"output": ["name", "clock", "r_clock"], "selectTags": "extend",
                                    "tags": [{"tag": k, "operator": 1, "value": v} for k, v in tags.items()],
                                    "recent": False, **({"hostids": hostids} if hostids else {})})


def _caught_up(http_port: int) -> str | None:
    text = scrape(http_port)
    target = sample(text, "threenines_service_outage_seconds_total", customer=ACME)
    union = sample(text, "threenines_customer_service_outage_seconds_total", customer=ACME)
    return text if target and union == target else None


def _report(config: Path, prom_port: int, capsys: pytest.CaptureFixture[str]) -> dict[str, float]:
    month = datetime.now(ZoneInfo("Europe/Amsterdam")).strftime("%Y-%m")
    capsys.readouterr()
    code = main(["report", "--month", month, "--prometheus", f"http://127.0.0.1:{prom_port}", "--config",
                 str(config), "--customer", ACME, "--format", "csv", "--scrape-interval", "1s",
                 "--allow-incomplete"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    [row] = [r for r in csv.DictReader(io.StringIO(captured.out)) if r["service"] == "connectivity"]
    return {k: float(row[k]) for k in ("raw_outage_seconds", "counted_outage_seconds")}


def _sla_downtime(api: ZabbixApi, customer: str) -> float:
    name = object_name(customer, "connectivity")
    [sla] = api.call("sla.get", {"output": ["slaid"], "filter": {"name": name}})
    [service] = api.call("service.get", {"output": ["serviceid"], "filter": {"name": name}})
    sli = api.call("sla.getsli", {"slaid": sla["slaid"], "serviceids": [service["serviceid"]], "periods": 1})
    return float(sli["sli"][-1][0]["downtime"])


def _service_status(api: ZabbixApi, customer: str) -> int:
    found = api.call("service.get", {"output": ["status"], "filter": {"name": object_name(customer, "connectivity")}})
    return int(found[0]["status"])


def test_zabbix_follows_the_exporter_and_raises_the_outage_for_that_customer_only(
        zabbix: ZabbixStack, api: ZabbixApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ZABBIX_PASSWORD", "zabbix")
    with customer_port() as port:
        config = tmp_path / "inventory.yml"
        config.write_text(_inventory(port.address))
        proc, http_port = serve(tmp_path, config)
        prom_port = free_port()
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [{"job_name": "threenines",
                                "static_configs": [{"targets": [f"127.0.0.1:{http_port}"]}]}]}))
        prom_argv = [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                     f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"]
        with proc, running(prom_argv, tmp_path / "prometheus.log", f"http://127.0.0.1:{prom_port}/-/ready"):
            code = main(["zabbix-sync", "--config", str(config), "--url", zabbix.api_url, "--user", "Admin",
                         "--exporter-url", f"http://127.0.0.1:{http_port}/metrics", "--host-name", HOST,
                         "--scrape-interval", f"{SCRAPE}s", "--import-templates", "--native-ping"])
            assert code == 0, capsys.readouterr()
            hosts = {h["host"]: h["hostid"] for h in api.call("host.get", {
                "output": ["host"], "search": {"host": [f"threenines ping {ACME}", f"threenines ping {GLOBEX}", HOST]},
                "searchByAny": True, "startSearch": True})}
            exporter_host = hosts[HOST]

            # Discovery, then values: the contract state of every target as the exporter serves it.
            up_key = 'threenines.service.up["{}","connectivity","{}"]'
            keys = [up_key.format(ACME, "ns-port"), up_key.format(GLOBEX, "lo-port")]
            wait_until(lambda: all(_items(api, [exporter_host], "threenines.service.up").get(k, {}).get("lastclock",
                                                                                                     "0") != "0"
                                   for k in keys), 90, 1, "Zabbix to discover the targets and fetch their state")
            text = scrape(http_port)
            up = _items(api, [exporter_host], "threenines.service.up")
            assert int(up[keys[0]]["lastvalue"]) == sample(text, "threenines_service_up", customer=ACME) == 1
            assert int(up[keys[1]]["lastvalue"]) == sample(text, "threenines_service_up", customer=GLOBEX) == 1
            wait_until(lambda: _items(api, [exporter_host], "threenines.customer_service.objective").get(
                f'threenines.customer_service.objective["{GLOBEX}","connectivity"]', {}).get("lastclock", "0") != "0",
                30, 1, "the objective item to get its value")
            objective = _items(api, [exporter_host], "threenines.customer_service.objective")
            assert float(objective[f'threenines.customer_service.objective["{GLOBEX}","connectivity"]']["lastvalue"]) \
                == sample(text, "threenines_customer_objective_ratio", customer=GLOBEX) == 0.9995
            assert _problems(api, customer=ACME) == _problems(api, customer=GLOBEX) == []

            # Cut acme's port: the exporter determines the outage; Zabbix raises it for acme only.
            port.down()
            problem = wait_until(lambda: [p for p in _problems(api, [exporter_host], customer=ACME,
                                                               threenines="outage")
                                          if p["name"] == f"{ACME} connectivity ns-port: service unavailable"],
                                 30, 0.5, "the outage problem for acme")[0]
            determined = sample(scrape(http_port), "threenines_service_determined_timestamp_seconds",
                                customer=ACME)
            started = sample(scrape(http_port), "threenines_service_outage_start_timestamp_seconds",
                             customer=ACME)
            assert determined > 0
            assert determined - 1 <= int(problem["clock"]) <= determined + SCRAPE + 5
            tags = {t["tag"]: t["value"] for t in problem["tags"]}
            assert (tags["customer"], tags["service"], tags["target"], tags["sla"]) == (
                ACME, "connectivity", "ns-port", f"{ACME}/connectivity")
            # Zabbix's own contract ping (native template) reaches the same determination.
            # (same name, other trigger: two problems for the one outage, one service in problem)
            wait_until(lambda: len(_problems(api, customer=ACME, threenines="outage")) == 2, 30, 0.5,
                       "the native ping's problem too")
            wait_until(lambda: _service_status(api, ACME) > 0, 15, 0.5, "the acme connectivity service's problem")
            assert _service_status(api, GLOBEX) == -1  # -1: OK
            # Zabbix's own pings of globex's ports (IPv4 and IPv6) answer.
            globex_pings = [hostid for name, hostid in hosts.items() if name.startswith(f"threenines ping {GLOBEX}")]
            assert len(globex_pings) == 2
            pings = wait_until(lambda: (lambda i: i if len(i) == 2 else None)(
                {k + h: v for h in globex_pings for k, v in _items(api, [h], "icmpping[").items()
                 if v["lastclock"] != "0"}), 20, 0.5, "globex's native pings")
            assert {v["lastvalue"] for v in pings.values()} == {"1"}
            time.sleep(2 * SCRAPE)
            assert _problems(api, customer=GLOBEX) == []

            # Restore: the problem clears.
            port.up()
            wait_until(lambda: _problems(api, customer=ACME, threenines="outage") == [], 40, 0.5,
                       "the outage problems to resolve")
            resolved = api.call("problem.get", {"output": ["r_clock"], "recent": True, "tags": [
                {"tag": "sla", "operator": 1, "value": f"{ACME}/connectivity"}]})
            assert len(resolved) == 2 and all(int(p["r_clock"]) > 0 for p in resolved)

            # The same outage in the Zabbix SLA and in `threenines report` (through Prometheus).
            text = wait_until(lambda: _caught_up(http_port), 6 * INTERVAL, 0.5, "the billed counter to settle")
            exporter_outage = sample(text, "threenines_customer_service_outage_seconds_total", customer=ACME)
            time.sleep(3)  # Prometheus scrapes every second: let it see the settled counter
            report = _report(config, prom_port, capsys)
            zabbix_downtime = _sla_downtime(api, ACME)
        # Zabbix opens its problem at determination, not at the first failed probe the contract counts from, and
        # each edge reaches Zabbix up to a scrape (plus the native ping's own probe) late: the expected Zabbix
        # figure is the report's minus the pending window, within 2 scrapes + 1 probe interval + 2 s.
        pending = determined - started
        print(f"outage: report raw {report['raw_outage_seconds']:.1f} s, exporter {exporter_outage:.1f} s, "
              f"pending {pending:.1f} s, Zabbix SLA downtime {zabbix_downtime:.0f} s")
        assert report["raw_outage_seconds"] == pytest.approx(exporter_outage, abs=1.0)
        assert zabbix_downtime == pytest.approx(report["raw_outage_seconds"] - pending, abs=2 * SCRAPE + INTERVAL + 2)
