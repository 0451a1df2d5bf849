"""The rules with the real promtool: they load, every promtool test passes, and every alert has a firing and a
non-firing case, the annotations and the routing labels."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support import REPO

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
RULES = REPO / "prometheus" / "rules"
RULE_FILES = sorted(RULES.glob("*.yml"))
TEST_FILES = sorted((RULES / "tests").glob("*_test.yml"))


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=120, check=False)


def alert_rules() -> list[dict]:
    return [rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"] if "alert" in rule]


def test_rule_files_load() -> None:
    result = promtool("check", "rules", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_prometheus_config_loads_with_its_rules() -> None:
    result = promtool("check", "config", REPO / "prometheus" / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(test_file: Path) -> None:
    result = promtool("test", "rules", test_file)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_non_firing_case() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "alerts never tested firing"
    assert names - quiet == {"ThreeninesWatchdog"}, "alerts never tested not firing (only the watchdog always fires)"


def test_every_alert_says_what_and_where_and_routes() -> None:
    anchors = set(re.findall(r"^### (\w+)", (REPO / "docs" / "alerting.md").read_text(), re.M))
    for rule in alert_rules():
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info", "none"), rule["alert"]
        assert rule["labels"]["audience"] in ("customer", "provider"), rule["alert"]
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor in {a.lower() for a in anchors}, f"{rule['alert']}: no runbook section for #{anchor}"
        assert rule["alert"].startswith("Threenines")


def test_only_the_determined_outage_pages_the_customer_at_once() -> None:
    customer = [rule for rule in alert_rules() if rule["labels"]["audience"] == "customer"]
    # The customer's own applications page through their own alert (docs/design.md, "Applications").
    assert [rule["alert"] for rule in customer] == ["ThreeninesServiceUnavailable", "ThreeninesApplicationUnavailable"]
    for rule in customer:
        assert "for" not in rule  # the exporter already applied the 2-probe rule
        assert "determined_at" in rule["annotations"]  # read by the audit webhook


def test_merge_policy_is_selected_one_way_everywhere() -> None:
    """Every rule, alert and dashboard picks the customers merged by `any` with the same clause
    (threenines.dashboards.merge.MERGED_BY_ANY): a copy that drifted would page by one policy and show another."""
    from threenines.dashboards.merge import MERGED_BY_ANY
    from threenines.exposition.catalogue import MERGE_POLICY_INFO

    for path in RULE_FILES:
        expressions = [rule["expr"] for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]
        for expr in expressions:
            flat = " ".join(expr.split())
            if f'{MERGE_POLICY_INFO.name}{{merge="any"}}' not in flat:
                continue
            assert flat.count(f'{MERGE_POLICY_INFO.name}{{merge="any"}}') == flat.count(MERGED_BY_ANY), (path, expr)
    assert sum(" ".join(path.read_text().split()).count(MERGED_BY_ANY) for path in RULE_FILES) >= 11
