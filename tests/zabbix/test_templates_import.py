"""The generated templates import unchanged into a real Zabbix 6.0 and come out with what the contract says."""

from __future__ import annotations

from threenines.zabbix.api import ZabbixApi
from threenines.zabbix.templates import HTTP_TEMPLATE, MERGED_QUERY, MERGED_TEMPLATE, PING_TEMPLATE, template_files


def _import_all(api: ZabbixApi) -> None:
    for template in template_files():
        assert api.import_configuration(template.text)


def test_every_template_imports_through_configuration_import(api: ZabbixApi) -> None:
    _import_all(api)
    names = [HTTP_TEMPLATE, PING_TEMPLATE, MERGED_TEMPLATE]
    found = api.call("template.get", {"output": ["host"], "filter": {"host": names}})
    assert sorted(t["host"] for t in found) == sorted(names)


def test_importing_twice_is_accepted_and_changes_nothing(api: ZabbixApi) -> None:
    _import_all(api)
    before = api.call("configuration.export", {"format": "yaml", "options": {"templates": _template_ids(api)}})
    _import_all(api)
    after = api.call("configuration.export", {"format": "yaml", "options": {"templates": _template_ids(api)}})
    assert _without_date(before) == _without_date(after)


def test_outage_trigger_reads_service_up_once_and_carries_routing_tags(api: ZabbixApi) -> None:
    _import_all(api)
    triggers = api.call("triggerprototype.get", {
        "output": ["description", "expression"], "selectTags": "extend", "expandExpression": True,
        "templateids": _template_ids(api)[:1], "filter": {"description": "{#CUSTOMER} {#SERVICE} {#TARGET}: "
                                                                          "service unavailable"}})
    assert len(triggers) == 1
    trigger = triggers[0]
    assert trigger["expression"] == ('last(/threenines by HTTP/threenines.service.up["{#CUSTOMER}","{#SERVICE}",'
                                     '"{#TARGET}"])=0')
    tags = {t["tag"]: t["value"] for t in trigger["tags"]}
    assert tags == {"customer": "{#CUSTOMER}", "service": "{#SERVICE}", "target": "{#TARGET}", "threenines": "outage",
                    "sla": "{#CUSTOMER}/{#SERVICE}"}


def test_native_ping_trigger_fires_after_the_contracts_consecutive_misses(api: ZabbixApi) -> None:
    _import_all(api)
    ping = api.call("template.get", {"output": ["templateid"], "filter": {"host": PING_TEMPLATE},
                                     "selectMacros": "extend"})[0]
    macros = {m["macro"]: m["value"] for m in ping["macros"]}
    assert macros["{$THREENINES.PING.MISSES}"] == "#2"
    assert macros["{$THREENINES.PING.INTERVAL}"] == "5m"
    triggers = api.call("trigger.get", {"output": ["expression"], "templateids": [ping["templateid"]],
                                        "expandExpression": True})
    # expandExpression resolves the template's macros too: the server evaluates exactly this.
    assert [t["expression"] for t in triggers] == ["max(/threenines contract ping/icmpping[,3,200,,2000],#2)=0"]


def test_merged_outage_trigger_reads_the_merged_state_and_carries_the_sla_and_vantage_tags(api: ZabbixApi) -> None:
    _import_all(api)
    [merged] = api.call("template.get", {"output": ["templateid"], "filter": {"host": MERGED_TEMPLATE},
                                         "selectMacros": "extend"})
    triggers = api.call("triggerprototype.get", {
        "output": ["description", "expression", "priority"], "selectTags": "extend", "expandExpression": True,
        "templateids": [merged["templateid"]],
        "filter": {"description": "{#CUSTOMER} {#SERVICE}: service unavailable (merged)"}})
    assert [t["expression"] for t in triggers] == [
        'last(/threenines merged by Prometheus/threenines.merged.customer_service.up["{#CUSTOMER}","{#SERVICE}"])=0']
    assert triggers[0]["priority"] == "4"  # high
    assert {t["tag"]: t["value"] for t in triggers[0]["tags"]} == {
        "customer": "{#CUSTOMER}", "service": "{#SERVICE}", "threenines": "outage", "sla": "{#CUSTOMER}/{#SERVICE}",
        "vantage": "merged"}
    secret = [m for m in merged["macros"] if m["macro"] == "{$THREENINES.PROMETHEUS.AUTHORIZATION}"]
    assert [m["type"] for m in secret] == ["1"]  # secret text
    [query] = api.call("item.get", {"output": ["url", "query_fields", "headers"], "templateids": [merged["templateid"]],
                                    "filter": {"key_": "threenines.merged.query"}})
    assert query["url"] == "{$THREENINES.PROMETHEUS.URL}/api/v1/query"
    # 6.0's API gives query fields as [{name: value}] and headers as {name: value}: the query arrives whole.
    assert query["query_fields"] == [{"query": MERGED_QUERY}]
    assert query["headers"] == {"Authorization": "{$THREENINES.PROMETHEUS.AUTHORIZATION}"}


def _template_ids(api: ZabbixApi) -> list[str]:
    found = api.call("template.get", {"output": ["templateid", "host"],
                                      "filter": {"host": [HTTP_TEMPLATE, PING_TEMPLATE, MERGED_TEMPLATE]}})
    return [t["templateid"] for t in sorted(found, key=lambda t: t["host"] != HTTP_TEMPLATE)]


def _without_date(export: str) -> str:
    return "\n".join(line for line in export.splitlines() if not line.startswith("  date:"))
