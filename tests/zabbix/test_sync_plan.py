"""The desired Zabbix state is a pure function of the inventory and the exclusions ledger."""

from __future__ import annotations

from tests.support import REPO
from threenines.config.exclusions import load_exclusions
from threenines.config.inventory_load import load_inventory, parse_inventory_text
from threenines.zabbix.sync import (
    Change,
    ExcludedDowntime,
    SyncOptions,
    authorization,
    desired_state,
    downtimes_from_ledger,
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
