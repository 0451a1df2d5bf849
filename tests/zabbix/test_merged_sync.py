"""`threenines zabbix-sync --prometheus-url` alone (no exporter host) against a real Zabbix 6.0 and a real Prometheus
that asks for basic auth (its --web.config.file): the merged host's query gets through with the secret header
macro zabbix-sync writes, a Prometheus that scrapes no exporter says so, and the services take the merged view."""

from __future__ import annotations

import base64

import bcrypt
import pytest
import yaml

from tests.support import free_port, http_get, running, wait_until
from tests.zabbix.stack import ZabbixStack
from threenines.cli import main
from threenines.zabbix.api import ZabbixApi
from threenines.zabbix.sync import object_name

PROMETHEUS = "/usr/bin/prometheus"
HOST = "threenines merged sync-test"
PASSWORD = "pw-merged-4b7e"
INVENTORY = """customers:
  - id: mrg_sync
    timezone: UTC
    contacts: {version: '1', notify: [{email: noc@mrg.example}]}
    ports: [{id: p1, address: 192.0.2.1}]
"""


def test_the_merged_host_queries_a_prometheus_behind_basic_auth_and_feeds_the_services(
        zabbix: ZabbixStack, api: ZabbixApi, tmp_path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ZABBIX_PASSWORD", "zabbix")
    (tmp_path / "inventory.yml").write_text(INVENTORY)
    (tmp_path / "password").write_text(PASSWORD + "\n")
    (tmp_path / "web.yml").write_text(yaml.safe_dump({"basic_auth_users": {
        "zabbix": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()}}))
    (tmp_path / "prometheus.yml").write_text("global: {scrape_interval: 1s}\nscrape_configs: []\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": "Basic " + base64.b64encode(f"zabbix:{PASSWORD}".encode()).decode()}
    argv = [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}", f"--web.config.file={tmp_path / 'web.yml'}"]
    with running(argv, tmp_path / "prometheus.log"):
        wait_until(lambda: http_get(f"{url}/-/ready", headers=auth)[0] == 200, 30, 0.2, "Prometheus to be ready")
        assert http_get(f"{url}/-/ready")[0] == 401  # the header is what lets Zabbix in

        def sync(*extra: str) -> list[str]:
            code = main(["zabbix-sync", "--config", str(tmp_path / "inventory.yml"), "--url", zabbix.api_url,
                         "--user", "Admin", "--prometheus-url", url, "--prometheus-user", "zabbix",
                         "--prometheus-password-file", str(tmp_path / "password"), "--prometheus-interval", "2s",
                         "--merged-host-name", HOST, "--import-templates", *extra])
            captured = capsys.readouterr()
            assert code == 0, captured.out + captured.err
            assert PASSWORD not in captured.out + captured.err
            assert auth["Authorization"].split()[1] not in captured.out + captured.err
            return captured.out.splitlines()

        created = f"create host '{HOST}': template=threenines merged by Prometheus, macros={{" \
            f"'{{$THREENINES.PROMETHEUS.URL}}': '{url}', '{{$THREENINES.PROMETHEUS.INTERVAL}}': '2s', "
        first = sync()
        assert [line for line in first if line.startswith(created)], first
        assert [line for line in first if "secret_macros={{$THREENINES.PROMETHEUS.AUTHORIZATION}: <secret>}" in line]
        assert sync() == ["zabbix-sync: nothing to change"]

        [host] = api.call("host.get", {"output": ["hostid"], "filter": {"host": [HOST]}, "selectMacros": "extend",
                                       "selectParentTemplates": ["host"]})
        assert [t["host"] for t in host["parentTemplates"]] == ["threenines merged by Prometheus"]
        [secret] = [m for m in host["macros"] if m["macro"] == "{$THREENINES.PROMETHEUS.AUTHORIZATION}"]
        assert secret["type"] == "1" and "value" not in secret  # secret text: write-only

        # Through the auth: an answer, and it says that no exporter is scraped.
        def exporters() -> dict | None:
            [item] = api.call("item.get", {"output": ["lastvalue", "lastclock", "error"], "hostids": [host["hostid"]],
                                           "filter": {"key_": "threenines.merged.exporters"}})
            return item if item["lastclock"] != "0" else None

        item = wait_until(exporters, 30, 0.5, "the merged host's first query")
        assert (item["lastvalue"], item["error"]) == ("0", ""), item
        wait_until(lambda: api.call("problem.get", {"output": ["name"], "hostids": [host["hostid"]]}), 20, 0.5,
                   "the merged host's problem")
        assert [p["name"] for p in api.call("problem.get", {"output": ["name"], "hostids": [host["hostid"]]})] == [
            "threenines merged: no replica exporter answers Prometheus"]

    [service] = api.call("service.get", {"output": ["name"], "selectProblemTags": "extend",
                                         "filter": {"name": [object_name("mrg_sync", "connectivity")]}})
    assert sorted((t["tag"], t["value"]) for t in service["problem_tags"]) == [
        ("sla", "mrg_sync/connectivity"), ("vantage", "merged")]
