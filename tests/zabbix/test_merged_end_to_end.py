"""Two real replica exporters (`threenines serve --vantage a|b`), a real Prometheus scraping both with the shipped
rules, and a real Zabbix 6.0 reading the merge through the template 'threenines merged by Prometheus', set up by
`threenines zabbix-sync --prometheus-url` (the replicas' own hosts too, as the per-vantage view).

Each replica reaches the customer's port over its own path: a's answers throughout (a loopback address), b's
runs through a site router in network namespaces (tests/ha/site_netns.py) with the router as b's canary, so the
test cuts the customer's link as b sees it, or b's own uplink. Expected states are the contract's words
(docs/design.md "Replica exporters", docs/ha.md "Merged views"):

* `merge: all`, b determines an outage while a says up: not every vantage with evidence says outage, so the
  merged state is up, and the SLA service stays OK although b's own host raises its sla-tagged problem;
* `merge: any` (both exclusions files, reloaded): one vantage says outage, so it is; the open outage's
  determination is b's (the earliest among the vantages that count), and the SLA service is in problem;
* back to `all`, then replica a dies: a dead replica has no evidence and holds nothing back, so b's outage is the
  merged one;
* b's customer link back, then b's uplink cut (its canary fails, b is blind) with a still dead: no vantage has
  evidence, which is unknown (never outage): "no vantage has evidence", no "service unavailable".
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from tests.foundation.exporter_process import sample, scrape, serve
from tests.ha.site_netns import site
from tests.support import REPO, free_port, http_post, running, wait_until
from tests.zabbix.stack import ZabbixStack
from threenines.cli import main
from threenines.zabbix.api import ZabbixApi
from threenines.zabbix.sync import object_name

pytestmark = pytest.mark.netns  # root: the site's network namespaces

PROMETHEUS = "/usr/bin/prometheus"
RULES = REPO / "prometheus" / "rules" / "threenines.rules.yml"
INTERVAL = 3  # the port's probe interval (threshold 2); b's canary every second, as the cadence rule demands
SCRAPE = 1  # Prometheus' scrape and rule evaluation interval
QUERY = 2  # Zabbix's query of Prometheus and scrape of each replica
CUSTOMER = "mrg_e2e"  # not the other tests' ids: they share this Zabbix
HOSTS = {"a": "threenines exporter mrg-a", "b": "threenines exporter mrg-b"}
MERGED_HOST = "threenines merged e2e"
SERVICE_UP = f'threenines.merged.customer_service.up["{CUSTOMER}","connectivity"]'
SERVICE_KNOWN = f'threenines.merged.customer_service.known["{CUSTOMER}","connectivity"]'
TARGET_UP = f'threenines.merged.target.up["{CUSTOMER}","connectivity","p1"]'
DETERMINED = f'threenines.merged.target.determined["{CUSTOMER}","connectivity","p1"]'
EXPORTERS = "threenines.merged.exporters"
UNAVAILABLE = f"{CUSTOMER} connectivity: service unavailable (merged)"
NO_EVIDENCE = f"{CUSTOMER} connectivity: no vantage has evidence"


def inventory(address: str, canary: str | None) -> str:
    canaries = f"    canaries: [{{id: router, address: '{canary}', interval: 1s, packets: 1, timeout: 300ms}}]\n"
    return f"""sites:
  - id: lab
{canaries if canary else ""}customers:
  - id: {CUSTOMER}
    site: lab
    timezone: UTC
    objective: 99.9%
    contacts: {{version: '1', notify: [{{email: noc@mrg.example}}]}}
    ping: {{interval: {INTERVAL}s, threshold: 2, packets: 1, timeout: 500ms}}
    ports: [{{id: p1, address: '{address}'}}]
"""


def items(api: ZabbixApi, hostid: str) -> dict[str, dict]:
    found = api.call("item.get", {"output": ["key_", "lastvalue", "lastclock", "state", "error"],
                                  "hostids": [hostid], "search": {"key_": "threenines.merged."}, "startSearch": True})
    return {i["key_"]: i for i in found}


def problems(api: ZabbixApi, hostid: str) -> dict[str, dict]:
    found = api.call("problem.get", {"output": ["name", "clock", "severity"], "selectTags": "extend",
                                     "hostids": [hostid], "recent": False,
                                     "tags": [{"tag": "customer", "operator": 1, "value": CUSTOMER}]})
    return {p["name"]: p for p in found}


def service_status(api: ZabbixApi) -> int:
    [found] = api.call("service.get", {"output": ["status"],
                                       "filter": {"name": object_name(CUSTOMER, "connectivity")}})
    return int(found["status"])  # -1: OK, else the problem's severity


def merged_after(api: ZabbixApi, hostid: str, moment: float) -> dict[str, dict]:
    """The merged items once Zabbix has a value for each that Prometheus evaluated after `moment`: the replica's
    scrape, the rule's evaluation and Zabbix's query each within their interval."""
    ready = moment + 2 * SCRAPE + 1

    def fresh() -> dict[str, dict] | None:
        found = items(api, hostid)
        keys = (SERVICE_UP, SERVICE_KNOWN, TARGET_UP, DETERMINED, EXPORTERS)
        return found if all(int(found.get(k, {}).get("lastclock", 0)) >= ready for k in keys) else None

    return wait_until(fresh, 30, 0.5, f"merged values evaluated after {moment:.0f}")


def set_policy(exclusions: Path, ports: dict[str, int], policy: str) -> None:
    exclusions.write_text(f"policy:\n  merge: {policy}\n")
    for port in ports.values():
        assert http_post(f"http://127.0.0.1:{port}/-/reload")[0] == 200
        assert sample(scrape(port), "threenines_merge_policy_info", merge=policy) == 1


def test_zabbix_shows_the_merged_state_by_the_billing_policy_and_feeds_the_sla_from_it(
        zabbix: ZabbixStack, api: ZabbixApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ZABBIX_PASSWORD", "zabbix")
    exclusions = tmp_path / "exclusions.yml"
    exclusions.write_text("policy:\n  merge: all\n")
    with site() as lab:
        configs = {"a": tmp_path / "a.yml", "b": tmp_path / "b.yml"}
        configs["a"].write_text(inventory("127.0.62.1", None))
        configs["b"].write_text(inventory(lab.customer, lab.canary))
        replicas = {}
        for vantage in ("a", "b"):
            (tmp_path / vantage).mkdir()
            replicas[vantage] = serve(tmp_path / vantage, configs[vantage],
                                      extra=["--vantage", vantage, "--exclusions", str(exclusions)])
        (replica_a, port_a), (replica_b, port_b) = replicas["a"], replicas["b"]
        ports = {"a": port_a, "b": port_b}
        prom_port = free_port()
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": f"{SCRAPE}s", "scrape_timeout": f"{SCRAPE}s",
                       "evaluation_interval": f"{SCRAPE}s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "threenines", "static_configs": [
                {"targets": [f"127.0.0.1:{port}" for port in ports.values()]}]}]}))
        prom_argv = [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                     f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"]
        with replica_a as process_a, replica_b, running(prom_argv, tmp_path / "prometheus.log",
                                                        f"http://127.0.0.1:{prom_port}/-/ready"):
            for port in ports.values():
                wait_until(lambda p=port: sample(scrape(p), "threenines_customer_service_known") == 1, 20, 0.2,
                           "both replicas to have evidence")
            for vantage in ("a", "b"):
                code = main(["zabbix-sync", "--config", str(configs[vantage]), "--url", zabbix.api_url, "--user",
                             "Admin", "--exporter-url", f"http://127.0.0.1:{ports[vantage]}/metrics", "--host-name",
                             HOSTS[vantage], "--scrape-interval", f"{QUERY}s", "--prometheus-url",
                             f"http://127.0.0.1:{prom_port}", "--prometheus-interval", f"{QUERY}s",
                             "--merged-host-name", MERGED_HOST, "--import-templates"])
                out = capsys.readouterr().out
                assert code == 0, out
            # The second replica's run adds its own host and changes no service, SLA or the merged host.
            assert f"create host '{HOSTS['b']}'" in out
            assert not [line for line in out.splitlines() if line.startswith(("create service", "update service",
                                                                              "create sla", "update sla"))]
            assert f"'{MERGED_HOST}'" not in out
            hosts = {h["host"]: h["hostid"] for h in api.call("host.get", {
                "output": ["host"], "filter": {"host": [MERGED_HOST, *HOSTS.values()]}})}
            merged = hosts[MERGED_HOST]

            # Both vantages up: discovered, and up with evidence.
            values = merged_after(api, merged, time.time())
            assert {k: values[k]["lastvalue"] for k in (SERVICE_UP, SERVICE_KNOWN, TARGET_UP, DETERMINED, EXPORTERS)} \
                == {SERVICE_UP: "1", SERVICE_KNOWN: "1", TARGET_UP: "1", DETERMINED: "0", EXPORTERS: "2"}, values
            assert problems(api, merged) == {}

            # merge: all. b's view of the customer's link fails; b determines the outage, a still says up.
            lab.customer_link(False)
            text_b = wait_until(lambda: (lambda t: t if sample(t, "threenines_service_up", target="p1") == 0
                                         else None)(scrape(port_b)), 4 * INTERVAL, 0.2, "b to determine the outage")
            determined_b = sample(text_b, "threenines_service_determined_timestamp_seconds", target="p1")
            assert determined_b and sample(scrape(port_a), "threenines_service_up", target="p1") == 1
            # Zabbix sees b's own outage on b's host (with the sla tag) ...
            wait_until(lambda: f"{CUSTOMER} connectivity p1: service unavailable" in problems(api, hosts[HOSTS["b"]]),
                       30, 0.5, "b's own host to raise its problem")
            # ... and the merge says up: not every vantage with evidence says outage.
            values = merged_after(api, merged, determined_b)
            assert (values[SERVICE_UP]["lastvalue"], values[TARGET_UP]["lastvalue"], values[DETERMINED]["lastvalue"]) \
                == ("1", "1", "0")
            assert problems(api, merged) == {}
            # The SLA service takes the merged view only: b's sla-tagged problem leaves it OK.
            time.sleep(3)  # ServiceManagerSyncFrequency=2
            assert service_status(api) == -1

            # merge: any. One vantage with evidence says outage: it is one.
            switched = time.time()
            set_policy(exclusions, ports, "any")
            problem = wait_until(lambda: problems(api, merged).get(UNAVAILABLE), 30, 0.5, "the merged outage")
            assert {t["tag"]: t["value"] for t in problem["tags"]} == {
                "customer": CUSTOMER, "service": "connectivity", "threenines": "outage",
                "sla": f"{CUSTOMER}/connectivity", "vantage": "merged", "class": "application"}  # + template's
            assert problem["severity"] == "4"  # high
            values = merged_after(api, merged, switched)
            assert (values[SERVICE_UP]["lastvalue"], values[TARGET_UP]["lastvalue"]) == ("0", "0")
            # The open outage's determination: b's, the earliest among the vantages that count.
            assert float(values[DETERMINED]["lastvalue"]) == pytest.approx(determined_b, abs=0.01)
            wait_until(lambda: service_status(api) > 0, 15, 0.5, "the SLA service to be in problem")

            # Back to `all`: a's up holds the outage back again.
            set_policy(exclusions, ports, "all")
            wait_until(lambda: UNAVAILABLE not in problems(api, merged), 30, 0.5, "the merged outage to clear")
            wait_until(lambda: service_status(api) == -1, 15, 0.5, "the SLA service to be OK")

            # Replica a dies: a dead replica has no evidence and holds nothing back; b's outage is the merged one.
            killed = time.time()
            process_a.stop()
            wait_until(lambda: UNAVAILABLE in problems(api, merged), 30, 0.5, "the merged outage without a")
            values = merged_after(api, merged, killed)
            assert (values[SERVICE_UP]["lastvalue"], values[EXPORTERS]["lastvalue"]) == ("0", "1")
            assert float(values[DETERMINED]["lastvalue"]) == pytest.approx(determined_b, abs=0.01)
            wait_until(lambda: service_status(api) > 0, 15, 0.5, "the SLA service to be in problem")

            # b's link back: the outage ends. Then b's own uplink fails (its canary too): b is blind, a is dead,
            # so no vantage has evidence: unknown, never outage.
            lab.customer_link(True)
            wait_until(lambda: UNAVAILABLE not in problems(api, merged), 30, 0.5, "the merged outage to end")
            lab.uplink(False)
            wait_until(lambda: sample(scrape(port_b), "threenines_service_known", target="p1") == 0, 6 * INTERVAL,
                       0.2, "b's evidence to go stale while blind")
            assert sample(scrape(port_b), "threenines_vantage_blind", site="lab") == 1
            blind = time.time()
            unknown = wait_until(lambda: problems(api, merged).get(NO_EVIDENCE), 30, 0.5, "'no vantage has evidence'")
            assert {t["tag"]: t["value"] for t in unknown["tags"]}["threenines"] == "unknown"
            assert unknown["severity"] == "2"  # warning
            values = merged_after(api, merged, blind)
            assert (values[SERVICE_UP]["lastvalue"], values[SERVICE_KNOWN]["lastvalue"]) == ("1", "0")
            assert UNAVAILABLE not in problems(api, merged)
            lab.uplink(True)
            wait_until(lambda: NO_EVIDENCE not in problems(api, merged), 30, 0.5, "evidence to return")
