"""Dashboards and their demo data use only metric names from the contract (docs/metrics.md).

The query test runs the dashboards against demo data written by the same hands; this keeps both honest:
a name misspelled in both would return data there and nothing in production.
"""

from __future__ import annotations

import json
import re

from tests.grafana.demo_month import demo_month
from tests.grafana.importcheck import targets
from tests.support import REPO
from threenines.dashboards import render_all

CONTRACT = set(re.findall(r"`(threenines_\w+)", (REPO / "docs" / "metrics.md").read_text(encoding="utf-8")))
# Series Prometheus itself adds for every scrape target.
PROMETHEUS_OWN = {"up", "scrape_duration_seconds"}
_HISTOGRAM_PARTS = re.compile(r"_(bucket|sum|count)$")


def _family(name: str) -> str:
    base = _HISTOGRAM_PARTS.sub("", name)
    return base if base in CONTRACT else name


def test_contract_lists_the_metric_families():
    assert {"threenines_customer_service_up", "threenines_notification_delay_seconds",
            "threenines_pdu_outlet_energy_joules_total"} <= CONTRACT


def test_every_metric_a_panel_queries_is_in_the_contract():
    used = set()
    for text in render_all().values():
        for _, target in targets(json.loads(text)):
            used |= {_family(name) for name in re.findall(r"\bthreenines_\w+", target["expr"])}
    assert used - CONTRACT == set()
    assert len(used) >= 40


def test_demo_month_writes_every_contract_family_and_nothing_else():
    written = {_family(series.name) for series in demo_month()}
    assert written - CONTRACT - PROMETHEUS_OWN == set()
    assert CONTRACT - written == set(), "the demo month lacks families of docs/metrics.md"
