"""`threenines zabbix-sync` against a real Zabbix 6.0: dry run changes nothing, the first run creates what the
inventory implies, the second run changes nothing, and an edit updates only what changed."""

from __future__ import annotations

import pytest

from tests.support import REPO
from tests.zabbix.stack import ZabbixStack
from threenines.cli import main
from threenines.config.inventory_load import load_inventory
from threenines.zabbix.api import ZabbixApi, ZabbixError
from threenines.zabbix.sync import object_name, ping_host_name

INVENTORY = REPO / "examples" / "inventory.yml"
EXCLUSIONS = REPO / "examples" / "exclusions.yml"
HOST = "threenines exporter sync-test"


def _sync(zabbix: ZabbixStack, capsys: pytest.CaptureFixture[str], *extra: str,
          exporter_url: str = "http://127.0.0.1:9839/metrics") -> list[str]:
    code = main(["zabbix-sync", "--config", str(INVENTORY), "--url", zabbix.api_url, "--user", "Admin",
                 "--exporter-url", exporter_url, "--host-name", HOST, "--import-templates", "--native-ping",
                 "--exclusions", str(EXCLUSIONS), *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    return captured.out.splitlines()


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZABBIX_PASSWORD", "zabbix")


def test_dry_run_prints_the_changes_and_changes_nothing(zabbix: ZabbixStack, api: ZabbixApi,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    lines = _sync(zabbix, capsys, "--dry-run")
    assert "would create sla 'threenines acme connectivity'" in "\n".join(lines)
    assert all(line.startswith("would ") for line in lines)
    assert api.call("sla.get", {"output": ["slaid"], "filter": {"name": [object_name("acme", "connectivity")]}}) == []
    assert api.call("host.get", {"output": ["hostid"], "filter": {"host": [HOST]}}) == []


def test_first_run_creates_hosts_services_and_slas_from_the_inventory(zabbix: ZabbixStack, api: ZabbixApi,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    _sync(zabbix, capsys)
    inventory = load_inventory(INVENTORY)
    for customer in inventory.customers:
        for service in customer.services:
            name = object_name(customer.id, service)
            (svc,) = api.call("service.get", {"output": ["name"], "filter": {"name": [name]},
                                              "selectProblemTags": "extend"})
            assert [(t["tag"], t["operator"], t["value"]) for t in svc["problem_tags"]] == [
                ("sla", "0", f"{customer.id}/{service}")]
            (sla,) = api.call("sla.get", {"output": "extend", "filter": {"name": [name]},
                                          "selectExcludedDowntimes": "extend", "selectServiceTags": "extend"})
            assert float(sla["slo"]) == pytest.approx(customer.objective * 100)
            assert (sla["period"], sla["timezone"], sla["status"]) == ("2", customer.timezone, "1")
            if (customer.id, service) == ("acme", "connectivity"):
                # CHG-2026-1042 (2 h maintenance) and CF-2026-10-10 (customer fault) from examples/exclusions.yml
                windows = sorted((d["name"], int(d["period_to"]) - int(d["period_from"]))
                                 for d in sla["excluded_downtimes"])
                assert windows == [("CF-2026-10-10 (customer_fault)", 7200), ("CHG-2026-1042 (maintenance)", 7200)]
            if (customer.id, service) == ("acme", "power"):
                assert len(sla["excluded_downtimes"]) == 13  # 12 Sundays + the customer-fault window
    (host,) = api.call("host.get", {"output": ["host"], "filter": {"host": [HOST]}, "selectMacros": "extend",
                                    "selectParentTemplates": ["host"]})
    assert [t["host"] for t in host["parentTemplates"]] == ["threenines by HTTP"]
    macros = {m["macro"]: m["value"] for m in host["macros"]}
    assert macros["{$THREENINES.URL}"] == "http://127.0.0.1:9839/metrics"
    ports = list(inventory.ports())
    ping_hosts = api.call("host.get", {"output": ["host"], "selectMacros": "extend", "selectInterfaces": ["ip"],
                                       "filter": {"host": [ping_host_name(c, p) for c, p in ports]}})
    assert len(ping_hosts) == len(ports)
    globex = next(h for h in ping_hosts if h["host"].startswith("threenines ping globex "))
    globex_macros = {m["macro"]: m["value"] for m in globex["macros"]}
    # globex's contract: every minute, 3 consecutive misses
    assert (globex_macros["{$THREENINES.PING.INTERVAL}"], globex_macros["{$THREENINES.PING.MISSES}"]) == ("60s", "#3")


def test_second_run_changes_nothing(zabbix: ZabbixStack, capsys: pytest.CaptureFixture[str]) -> None:
    _sync(zabbix, capsys)
    assert _sync(zabbix, capsys) == ["zabbix-sync: nothing to change"]


def test_an_edit_updates_only_what_changed_and_keeps_the_sites_own_macros(
        zabbix: ZabbixStack, api: ZabbixApi, capsys: pytest.CaptureFixture[str]) -> None:
    _sync(zabbix, capsys)
    (host,) = api.call("host.get", {"output": ["hostid"], "filter": {"host": [HOST]}, "selectMacros": "extend"})
    api.call("usermacro.create", {"hostid": host["hostid"], "macro": "{$SITE.OWN}", "value": "kept"})
    lines = _sync(zabbix, capsys, exporter_url="http://127.0.0.1:19839/metrics")
    assert lines[0].startswith(f"update host '{HOST}': macros=")
    assert len(lines) == 2  # the update and the summary
    (host,) = api.call("host.get", {"output": ["hostid"], "filter": {"host": [HOST]}, "selectMacros": "extend"})
    macros = {m["macro"]: m["value"] for m in host["macros"]}
    assert macros["{$THREENINES.URL}"] == "http://127.0.0.1:19839/metrics"
    assert macros["{$SITE.OWN}"] == "kept"
    assert _sync(zabbix, capsys, exporter_url="http://127.0.0.1:19839/metrics") == ["zabbix-sync: nothing to change"]


def test_the_exporter_password_becomes_a_secret_macro_and_is_never_printed(
        zabbix: ZabbixStack, api: ZabbixApi, capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    _sync(zabbix, capsys)
    password = tmp_path / "metrics-password"
    password.write_text("pw-7f3a9c\n")
    auth = ("--exporter-user", "zabbix", "--exporter-password-file", str(password))
    lines = _sync(zabbix, capsys, *auth)
    assert lines[0] == (f"update host '{HOST}': macros={{'{{$THREENINES.USER}}': 'zabbix'}}, "
                        "secret_macros={{$THREENINES.PASSWORD}: <secret>}")
    assert not any("pw-7f3a9c" in line for line in lines)
    (host,) = api.call("host.get", {"output": ["hostid"], "filter": {"host": [HOST]}, "selectMacros": "extend"})
    (macro,) = [m for m in host["macros"] if m["macro"] == "{$THREENINES.PASSWORD}"]
    assert macro["type"] == "1" and "value" not in macro  # secret: write-only through the API
    assert _sync(zabbix, capsys, *auth) == ["zabbix-sync: nothing to change"]


def test_a_rotated_password_is_written_again_and_then_left_alone(
        zabbix: ZabbixStack, api: ZabbixApi, capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    password = tmp_path / "metrics-password"
    auth = ("--exporter-user", "zabbix", "--exporter-password-file", str(password))
    password.write_text("pw-old-1\n")
    _sync(zabbix, capsys, *auth)
    password.write_text("pw-new-2\n")
    lines = _sync(zabbix, capsys, *auth)
    assert lines == [f"update host '{HOST}': secret_macros={{{{$THREENINES.PASSWORD}}: <secret>}}",
                     "zabbix-sync: applied 1 change(s)"]
    (host,) = api.call("host.get", {"output": ["hostid"], "filter": {"host": [HOST]}, "selectMacros": "extend"})
    macros = {m["macro"]: m for m in host["macros"]}
    assert macros["{$THREENINES.PASSWORD}"]["type"] == "1"
    assert not any("pw-new-2" in m.get("value", "") or "pw-old-1" in m.get("value", "") for m in macros.values())
    assert _sync(zabbix, capsys, *auth) == ["zabbix-sync: nothing to change"]


def test_a_refused_login_names_the_method_not_the_password(zabbix: ZabbixStack) -> None:
    with ZabbixApi(zabbix.api_url) as client, pytest.raises(ZabbixError) as refused:
        client.login("Admin", "wrong-pass-81c2")
    assert str(refused.value).startswith("user.login:")
    assert "wrong-pass-81c2" not in str(refused.value)
