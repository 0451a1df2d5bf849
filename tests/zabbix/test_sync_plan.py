"""The desired Zabbix state is a pure function of the inventory and the exclusions ledger."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import REPO
from threenines.cli import main
from threenines.config.exclusions import load_exclusions
from threenines.config.inventory_load import load_inventory, parse_inventory_text
from threenines.zabbix.sync import (
    Change,
    ExcludedDowntime,
    Syncer,
    SyncOptions,
    authorization,
    desired_state,
    downtimes_from_ledger,
    fingerprint,
    month_start,
    ping_host_name,
)

NOW = 1795000000.0  # 2026-11-18


def test_native_ping_hosts_carry_each_ports_contract_policy() -> None:
    inventory = load_inventory(REPO / "examples" / "inventory.yml")
    desired = desired_state(inventory, SyncOptions("http://x/metrics", native_ping=True), NOW)
    globex = next(h for name, h in desired.hosts.items() if name.startswith("threenines ping globex"))
    assert globex["macros"]["{$THREENINES.PING.INTERVAL}"] == "60s"
    assert globex["macros"]["{$THREENINES.PING.MISSES}"] == "#3"
    uplink_b = desired.hosts["threenines ping acme uplink-b"]
    assert uplink_b["macros"]["{$THREENINES.PING.TIMEOUT}"] == "1000"  # the port's own timeout: 1s
    assert uplink_b["interface"] == "2001:db8::10"


def test_host_names_drop_characters_zabbix_refuses() -> None:
    inventory = parse_inventory_text("""
customers:
  - id: "cust:7"
    timezone: UTC
    contacts: {version: '1', notify: [{email: a@b.example}]}
    ports: [{id: "p:1", address: 192.0.2.1}]
""")
    [(customer, port)] = list(inventory.ports())
    assert ping_host_name(customer, port) == "threenines ping cust_7 p_1"


def test_one_sla_per_customer_and_service_with_the_contract_zone_and_objective() -> None:
    inventory = load_inventory(REPO / "examples" / "inventory.yml")
    desired = desired_state(inventory, SyncOptions("http://x/metrics"), NOW)
    acme = inventory.customer("acme")
    assert set(desired.slas) == {f"threenines {c.id} {s}" for c in inventory.customers for s in c.services}
    sla = desired.slas["threenines acme power"]
    assert (sla["slo"], sla["period"], sla["timezone"]) == ("99.9000", "2", "Europe/Amsterdam")
    assert sla["service_tags"] == [{"tag": "sla", "operator": "0", "value": "acme/power"}]
    assert sla["effective_date"] == month_start(NOW, acme.zone)


def test_exclusions_become_excluded_downtimes_only_for_the_services_they_name() -> None:
    inventory = load_inventory(REPO / "examples" / "inventory.yml")
    ledger = load_exclusions(REPO / "examples" / "exclusions.yml", {c.id: c.zone for c in inventory.customers})
    downtimes = downtimes_from_ledger(inventory, ledger, (NOW - 90 * 86400, NOW + 90 * 86400))
    connectivity = [d.name for d in downtimes[("acme", "connectivity")]]
    assert connectivity == ["CHG-2026-1042 (maintenance)", "CF-2026-10-10 (customer_fault)"]
    power = downtimes[("acme", "power")]
    assert len(power) == 13 and all(d.end - d.start == 7200 for d in power)
    assert downtimes[("globex", "connectivity")] == []


def test_a_change_never_prints_a_secret() -> None:
    change = Change("create", "host", "h", {"secret_macros": {"{$THREENINES.PASSWORD}": "s3cr3t-value"},
                                           "excluded_downtimes": [ExcludedDowntime("MW-1", 0, 3600)]})
    text = change.describe()
    assert "s3cr3t-value" not in text
    assert "{$THREENINES.PASSWORD}: <secret>" in text
    assert "MW-1 1970-01-01T00:00Z..1970-01-01T01:00Z" in text


def test_with_prometheus_the_merged_host_feeds_the_services_and_the_secret_is_never_printed() -> None:
    inventory = load_inventory(REPO / "examples" / "inventory.yml")
    options = SyncOptions("http://a:9839/metrics", host_name="threenines exporter a", import_templates=True,
                          prometheus_url="https://prom.example:9090/", prometheus_interval="30s",
                          prometheus_authorization=authorization(token="tok-5d1e"))
    desired = desired_state(inventory, options, NOW)
    merged = desired.hosts["threenines merged"]
    assert merged["template"] == "threenines merged by Prometheus"
    assert merged["macros"] == {"{$THREENINES.PROMETHEUS.URL}": "https://prom.example:9090",
                                "{$THREENINES.PROMETHEUS.INTERVAL}": "30s"}
    assert merged["secret_macros"] == {"{$THREENINES.PROMETHEUS.AUTHORIZATION}": "Bearer tok-5d1e"}
    # The imported templates' digest stays on the exporter host; the replica's own host is still made.
    assert "{$THREENINES.TEMPLATES.SHA256}" in desired.hosts["threenines exporter a"]["macros"]
    # Every service takes only problems that carry both its sla tag and vantage=merged (the replicas' hosts
    # raise the same sla tag from their own view).
    assert desired.services["threenines acme connectivity"]["problem_tags"] == [
        {"tag": "sla", "operator": "0", "value": "acme/connectivity"},
        {"tag": "vantage", "operator": "0", "value": "merged"}]
    assert "tok-5d1e" not in Change("create", "host", "threenines merged",
                                    {k: v for k, v in merged.items() if v}).describe()


def test_without_prometheus_the_services_take_the_sla_tag_alone() -> None:
    inventory = load_inventory(REPO / "examples" / "inventory.yml")
    desired = desired_state(inventory, SyncOptions("http://x/metrics"), NOW)
    assert set(desired.hosts) == {"threenines exporter"}
    assert desired.services["threenines acme power"]["problem_tags"] == [
        {"tag": "sla", "operator": "0", "value": "acme/power"}]


def test_the_merged_host_alone_carries_the_templates_digest() -> None:
    inventory = load_inventory(REPO / "examples" / "inventory.yml")
    desired = desired_state(inventory, SyncOptions(None, prometheus_url="http://p:9090", import_templates=True), NOW)
    assert set(desired.hosts) == {"threenines merged"}
    assert "{$THREENINES.TEMPLATES.SHA256}" in desired.hosts["threenines merged"]["macros"]


def test_prometheus_authorization_is_basic_or_bearer() -> None:
    # RFC 7617: base64 of user ":" password.
    assert authorization("zabbix", "s3cret") == "Basic emFiYml4OnMzY3JldA=="
    assert authorization(token="abc") == "Bearer abc"
    assert authorization() is None


def test_a_basic_auth_user_without_a_password_is_refused() -> None:
    with pytest.raises(ValueError, match="needs its password"):
        authorization("zabbix")


@pytest.mark.parametrize("given", [(), ("--prometheus-password-file", "EMPTY")])
def test_zabbix_sync_refuses_a_prometheus_user_without_a_password(
        given: tuple[str, ...], tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").write_text("\n")
    extra = [str(tmp_path / "empty") if g == "EMPTY" else g for g in given]
    # Refused before any Zabbix is asked: the URL is a closed loopback port.
    code = main(["zabbix-sync", "--config", str(REPO / "examples" / "inventory.yml"), "--url", "http://127.0.0.1:9",
                 "--prometheus-url", "http://127.0.0.1:9090", "--prometheus-user", "zabbix", *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: --prometheus-user needs --prometheus-password-file" if not given
                          else "error: --prometheus-password-file ") and "Traceback" not in err


AUTH = "{$THREENINES.PROMETHEUS.AUTHORIZATION}"


class _Recorded:
    """Zabbix 6.0's host.get answer for the merged host as it stands: a secret macro comes back without a value."""

    def __init__(self, macros: list[dict[str, str]]) -> None:
        self.macros = macros

    def call(self, method: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        assert method == "host.get"
        return [{"hostid": "10601", "host": "threenines merged", "parentTemplates": [
            {"host": "threenines merged by Prometheus"}], "groups": [{"name": "threenines"}], "interfaces": [],
            "macros": [{"hostmacroid": str(i), **m} for i, m in enumerate(self.macros, 1)]}]


def _merged_plan(token: str, macros: list[dict[str, str]]) -> list[Change]:
    inventory = load_inventory(REPO / "examples" / "inventory.yml")
    options = SyncOptions(None, prometheus_url="http://p:9090", prometheus_interval="1m",
                          prometheus_authorization=authorization(token=token))
    return Syncer(_Recorded(macros), desired_state(inventory, options, NOW), options)._plan_hosts()  # type: ignore[arg-type]


def _stands(written_token: str | None, fingerprinted: bool = True) -> list[dict[str, str]]:
    macros = [{"macro": "{$THREENINES.PROMETHEUS.URL}", "value": "http://p:9090", "type": "0"},
              {"macro": "{$THREENINES.PROMETHEUS.INTERVAL}", "value": "1m", "type": "0"}]
    if written_token is not None:
        macros.append({"macro": AUTH, "type": "1"})  # write-only: no value
        if fingerprinted:
            macros.append({"macro": "{$THREENINES.PROMETHEUS.AUTHORIZATION.FINGERPRINT}",
                           "value": fingerprint(f"Bearer {written_token}"), "type": "0"})
    return macros


def test_the_secret_written_before_is_left_alone() -> None:
    assert _merged_plan("tok-1", _stands("tok-1")) == []


def test_a_rotated_token_rewrites_the_secret_macro_and_the_plan_says_so_without_it() -> None:
    [change] = _merged_plan("tok-2", _stands("tok-1"))
    assert (change.action, change.name, change.fields) == ("update", "threenines merged",
                                                          {"secret_macros": {AUTH: "Bearer tok-2"}})
    assert change.describe() == ("update host 'threenines merged': "
                                 "secret_macros={{$THREENINES.PROMETHEUS.AUTHORIZATION}: <secret>}")


def test_a_secret_without_its_fingerprint_is_rewritten_once() -> None:
    # Written by a zabbix-sync before fingerprints: its value is unknown, so it is written again.
    [change] = _merged_plan("tok-1", _stands("tok-1", fingerprinted=False))
    assert change.fields == {"secret_macros": {AUTH: "Bearer tok-1"}}


def test_a_fingerprint_holds_no_secret_and_differs_per_salt() -> None:
    first, second = fingerprint("Bearer tok-5d1e"), fingerprint("Bearer tok-5d1e")
    assert "tok-5d1e" not in first and first != second
    assert first.startswith("scrypt$") and len(first) <= 2048  # a Zabbix 6.0 macro value's limit
