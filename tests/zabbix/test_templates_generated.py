"""The checked-in templates are exactly what the generator writes, and read only metrics the contract defines."""

from __future__ import annotations

import re

import yaml

from tests.support import REPO
from threenines.cli import main as threenines
from threenines.zabbix.templates import (
    DISCOVERIES,
    HTTP_TEMPLATE,
    MERGED_TEMPLATE,
    metric_names,
    template_files,
    uuid_for,
)

CONTRACT = (REPO / "docs" / "metrics.md").read_text(encoding="utf-8")


def test_checked_in_templates_match_the_generator() -> None:
    for template in template_files():
        checked_in = (REPO / "zabbix_templates" / template.filename).read_text(encoding="utf-8")
        assert checked_in == template.text, f"run `make zabbix-templates` to refresh {template.filename}"


def test_check_mode_reports_a_stale_file(tmp_path) -> None:
    assert threenines(["zabbix-templates", "-o", str(tmp_path)]) == 0
    assert threenines(["zabbix-templates", "--check", "-o", str(tmp_path)]) == 0
    stale = tmp_path / template_files()[0].filename
    stale.write_text(stale.read_text() + "# edited by hand\n")
    assert threenines(["zabbix-templates", "--check", "-o", str(tmp_path)]) == 1


def test_every_metric_the_templates_read_is_in_the_metric_contract() -> None:
    documented = set(re.findall(r"`(threenines_[a-z_]+)", CONTRACT))
    assert metric_names() - documented == set()


def test_discovery_macros_are_labels_the_contract_gives_those_metrics() -> None:
    label_rows = {"customer", "service", "target", "device", "outlet", "phase", "address", "source", "kind", "reason"}
    for rule in DISCOVERIES:
        assert set(rule.macros) <= label_rows, rule.key


def test_uuids_are_v4_shaped_and_unique() -> None:
    uuids: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "uuid" in node:
                uuids.append(node["uuid"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for template in template_files():  # the shared template group has the same uuid in every file
        walk(yaml.safe_load(template.text)["zabbix_export"]["templates"])
    assert len(uuids) == len(set(uuids))
    for value in uuids:
        assert re.fullmatch(r"[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}", value), value
    assert uuid_for("x") == uuid_for("x") != uuid_for("y")


def test_prometheus_pattern_steps_take_the_three_parameters_of_zabbix_6_0() -> None:
    document = yaml.safe_load(template_files()[0].text)
    template = document["zabbix_export"]["templates"][0]
    assert template["template"] == HTTP_TEMPLATE
    items = template["items"] + [p for rule in template["discovery_rules"] for p in rule["item_prototypes"]]
    steps = [step for item in items for step in item.get("preprocessing", [])]
    assert steps and all(len(s["parameters"]) == 3 for s in steps if s["type"] == "PROMETHEUS_PATTERN")
    up = next(i for i in items if i["key"].startswith("threenines.service.up["))
    assert up["preprocessing"][0]["parameters"] == [
        'threenines_service_up{customer="{#CUSTOMER}",service="{#SERVICE}",target="{#TARGET}"}', "value", ""]


def _http_template() -> dict:
    return yaml.safe_load(template_files()[0].text)["zabbix_export"]["templates"][0]


def _rule(key: str) -> dict:
    return next(r for r in _http_template()["discovery_rules"] if r["key"] == key)


def test_application_checks_are_discovered_apart_from_the_billed_services() -> None:
    # docs/design.md "Applications": each check is a contract target (service="application") that is notified but
    # is not the provider's service, so the contract-target discovery (whose trigger says "service unavailable"
    # and feeds the billed SLA) leaves it out, and "billed customer services" are those with an objective.
    assert _rule("threenines.service.discovery")["preprocessing"][0]["parameters"] == [
        'threenines_service_up{service!="application"}']
    assert _rule("threenines.customer_service.discovery")["preprocessing"][0]["parameters"] == [
        "threenines_customer_objective_ratio"]
    apps = _rule("threenines.application.discovery")
    assert apps["preprocessing"][0]["parameters"] == ["threenines_application_info"]
    assert [m["lld_macro"] for m in apps["lld_macro_paths"]] == ["{#CUSTOMER}", "{#TARGET}", "{#KIND}"]
    items = {i["key"]: i for i in apps["item_prototypes"]}
    up = items['threenines.application.up["{#CUSTOMER}","{#TARGET}"]']
    assert up["preprocessing"][0]["parameters"] == [
        'threenines_service_up{customer="{#CUSTOMER}",target="{#TARGET}",service="application"}', "value", ""]
    known = items['threenines.application.known["{#CUSTOMER}","{#TARGET}"]']
    assert known["preprocessing"][0]["parameters"][0] == (
        'threenines_service_known{customer="{#CUSTOMER}",target="{#TARGET}",service="application"}')
    [unavailable, unknown] = apps["trigger_prototypes"]
    assert unavailable["expression"] == (
        'last(/threenines by HTTP/threenines.application.up["{#CUSTOMER}","{#TARGET}"])=0')
    tags = {t["tag"]: t["value"] for t in unavailable["tags"]}
    # Not a "threenines=outage" (the provider's outage); the sla tag feeds an SLA service only where
    # zabbix-sync made one: for a customer with applications_billable.
    assert tags == {"customer": "{#CUSTOMER}", "service": "application", "target": "{#TARGET}",
                    "threenines": "application", "sla": "{#CUSTOMER}/application"}
    assert "service unavailable" not in unavailable["name"] and unknown["priority"] == "WARNING"


def test_failure_reasons_are_items_of_the_failures_since_the_previous_scrape() -> None:
    rule = _rule("threenines.application.failure.discovery")
    assert rule["preprocessing"][0]["parameters"] == ["threenines_application_check_failures_total"]
    [item] = rule["item_prototypes"]
    assert item["key"] == 'threenines.application.failures["{#CUSTOMER}","{#TARGET}","{#REASON}"]'
    assert [step["type"] for step in item["preprocessing"]] == ["PROMETHEUS_PATTERN", "SIMPLE_CHANGE"]
    assert item["preprocessing"][0]["parameters"][0] == (
        'threenines_application_check_failures_total{customer="{#CUSTOMER}",target="{#TARGET}",'
        'reason="{#REASON}"}')


def test_certificate_trigger_fires_within_the_macro_days_of_expiry() -> None:
    rule = _rule("threenines.application.certificate.discovery")
    assert rule["preprocessing"][0]["parameters"] == ["threenines_application_certificate_expiry_timestamp_seconds"]
    [trigger] = rule["trigger_prototypes"]
    assert trigger["expression"] == (
        'last(/threenines by HTTP/threenines.application.certificate_expiry["{#CUSTOMER}","{#TARGET}"])-now()'
        '<{$THREENINES.APP.CERT.DAYS:"{#TARGET}"}*86400')
    macros = {m["macro"]: m["value"] for m in _http_template()["macros"]}
    assert macros["{$THREENINES.APP.CERT.DAYS}"] == "14"  # as ThreeninesApplicationCertificateExpiring


RULES = REPO / "prometheus" / "rules" / "threenines.rules.yml"


def _merged_template() -> dict:
    text = next(t.text for t in template_files() if t.name == MERGED_TEMPLATE)
    return yaml.safe_load(text)["zabbix_export"]["templates"][0]


def _walk_strings(node: object) -> list[str]:
    if isinstance(node, dict):
        return [s for value in node.values() for s in _walk_strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in _walk_strings(value)]
    return [node] if isinstance(node, str) else []


def test_the_merged_template_asks_prometheus_one_instant_query_of_recorded_rules() -> None:
    template = _merged_template()
    [master] = [i for i in template["items"] if i["type"] == "HTTP_AGENT"]
    assert master["url"] == "{$THREENINES.PROMETHEUS.URL}/api/v1/query"
    [query] = master["query_fields"]
    assert query["name"] == "query"
    # Every name the template reads is a rule recorded in the shipped rules (not a name of its own).
    recorded = {rule["record"] for group in yaml.safe_load(RULES.read_text())["groups"]
                for rule in group["rules"] if "record" in rule}
    read = set(re.findall(r"[a-z_]+:[a-z_]+:[a-z_]+", "\n".join(_walk_strings(template))))
    assert read and read <= recorded, read - recorded
    assert read == set(re.findall(r"[a-z_]+:[a-z_]+:[a-z_]+", query["value"]))
    # Every other item is a dependent item of that one query, read with JSONPath.
    items = template["items"] + [p for rule in template["discovery_rules"] for p in rule["item_prototypes"]]
    dependents = [i for i in items if i is not master]
    assert dependents and all(i["master_item"] == {"key": master["key"]} for i in dependents)
    assert all([s["type"] for s in i["preprocessing"]] == ["JSONPATH"] for i in dependents)


def test_the_merged_template_authenticates_with_one_secret_header_macro() -> None:
    template = _merged_template()
    [master] = [i for i in template["items"] if i["type"] == "HTTP_AGENT"]
    assert master["headers"] == [{"name": "Authorization", "value": "{$THREENINES.PROMETHEUS.AUTHORIZATION}"}]
    assert "authtype" not in master  # basic auth of Zabbix's own would be replaced by the header
    macros = {m["macro"]: m for m in template["macros"]}
    assert macros["{$THREENINES.PROMETHEUS.AUTHORIZATION}"]["type"] == "SECRET_TEXT"
    assert macros["{$THREENINES.PROMETHEUS.AUTHORIZATION}"]["value"] == ""
    assert macros["{$THREENINES.PROMETHEUS.URL}"]["value"] == "http://127.0.0.1:9090"


def test_the_merged_outage_problem_feeds_an_sla_service_and_says_it_is_merged() -> None:
    rules = {r["key"]: r for r in _merged_template()["discovery_rules"]}
    services = rules["threenines.merged.customer_service.discovery"]
    assert services["preprocessing"][0]["parameters"] == [
        "$.data.result[?(@.metric.__name__ == 'customer_service:threenines_customer_service_up:merged'"
        " && @.metric.service != 'application')]"]
    triggers = {t["name"]: t for t in services["trigger_prototypes"]}
    outage = triggers["{#CUSTOMER} {#SERVICE}: service unavailable (merged)"]
    assert outage["priority"] == "HIGH"
    assert outage["expression"] == (
        'last(/threenines merged by Prometheus/threenines.merged.customer_service.up["{#CUSTOMER}","{#SERVICE}"])=0')
    assert {t["tag"]: t["value"] for t in outage["tags"]} == {
        "customer": "{#CUSTOMER}", "service": "{#SERVICE}", "threenines": "outage", "sla": "{#CUSTOMER}/{#SERVICE}",
        "vantage": "merged"}
    unknown = triggers["{#CUSTOMER} {#SERVICE}: no vantage has evidence"]
    assert unknown["priority"] == "WARNING"
    assert {t["tag"]: t["value"] for t in unknown["tags"]}["threenines"] == "unknown"
    assert "sla" not in {t["tag"] for t in unknown["tags"]}  # unknown time is never outage
    # Applications: their own rule, never called a service outage (as in 'threenines by HTTP').
    apps = rules["threenines.merged.application.discovery"]
    [unavailable] = [t for t in apps["trigger_prototypes"] if t["priority"] == "HIGH"]
    assert "service unavailable" not in unavailable["name"]
    assert {t["tag"]: t["value"] for t in unavailable["tags"]}["threenines"] == "application"
    # Per target: state, evidence and the open outage's determination, no problem of its own.
    targets = rules["threenines.merged.target.discovery"]
    assert [p["key"].split("[")[0] for p in targets["item_prototypes"]] == [
        "threenines.merged.target.up", "threenines.merged.target.known", "threenines.merged.target.determined"]
    assert "trigger_prototypes" not in targets


def test_a_merged_item_selects_its_series_by_name_and_every_label() -> None:
    rules = {r["key"]: r for r in _merged_template()["discovery_rules"]}
    determined = rules["threenines.merged.target.discovery"]["item_prototypes"][2]
    assert determined["preprocessing"][0]["parameters"] == [
        "$.data.result[?(@.metric.__name__ == 'customer_service_target:threenines_service_determined_timestamp_"
        "seconds:merged' && @.metric.customer == '{#CUSTOMER}' && @.metric.service == '{#SERVICE}' && "
        "@.metric.target == '{#TARGET}')].value[1].first()"]
    assert determined["preprocessing"][0]["error_handler"] == "CUSTOM_ERROR"
    assert (determined["units"], determined["value_type"]) == ("unixtime", "FLOAT")
