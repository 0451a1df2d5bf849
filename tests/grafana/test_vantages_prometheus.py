"""The SLA month and NOC panels with two replica exporters (vantages), on a real Prometheus, under each merge
policy the exporters can export (`all`, `any`): the merged figures are the ones the rule's words give (docs/ha.md
"Merged views"), worked out here by hand from the fixture's stories (tests/grafana/vantage_day.py), not from the
code under test. With one exporter the same panels give what they gave before vantages:
test_queries_prometheus.py's demo month, unchanged."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
import yaml

from tests.grafana.grafana_queries import TimeRange, resolve_variables, run_target, substitute
from tests.grafana.importcheck import targets
from tests.grafana.merged_rules import RULES, serve_with_merged_rules
from tests.grafana.vantage_day import B_DEAD, END, START, STEP, vantage_day
from tests.promdata import Prom
from threenines.dashboards import merge, render_all

ALL, ANY = "all", "any"  # threenines_merge_policy_info{merge}: the exporters' exclusions policy.merge
MODELS = {name: json.loads(text) for name, text in render_all().items()}
NOC, SLA = "threenines-noc.json", "threenines-sla.json"
DAY = 86400
# b's exporter missed 60 of the window's 1441 scrapes (10:40-11:40): its no-evidence share of the day.
B_NO_EVIDENCE = DAY * 60 / 1441


def window(dashboard: str, step: int | None = None) -> TimeRange:
    start = START if MODELS[dashboard]["time"]["from"] == "now/M" else END - 6 * 3600
    return TimeRange(start=start, end=END, step=step or 7 * STEP, rate_interval=f"{4 * STEP}s")


@pytest.fixture(scope="module", params=[ALL, ANY])
def merge_policy(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def prom(tmp_path_factory, merge_policy: str) -> Iterator[Prom]:
    with serve_with_merged_rules(vantage_day(merge_policy), tmp_path_factory.mktemp(f"vantages-{merge_policy}"),
                                 START, END, STEP) as running:
        yield running


def _query(prom: Prom, dashboard: str, title: str, ref: str = "A", *, instant: bool = True,
           step: int | None = None) -> list[dict]:
    model = MODELS[dashboard]
    span = window(dashboard, step)
    values, _ = resolve_variables(model, prom.url, span)
    _, target = next((p, t) for p, t in targets(model) if p["title"] == title and t["refId"] == ref)
    return run_target(prom.url, substitute(target["expr"], values), instant, span)["result"]


def _instant(prom: Prom, dashboard: str, title: str, ref: str = "A", keys: tuple[str, ...] = ("customer",)
             ) -> dict[tuple, float]:
    rows = [(tuple(one["metric"].get(k) for k in keys), float(one["value"][1]))
            for one in _query(prom, dashboard, title, ref)]
    assert len(rows) == len(dict(rows)), f"{title} [{ref}]: more than one series per {keys}: {rows}"
    return dict(rows)


def test_noc_tiles_merge_the_vantages(prom: Prom, merge_policy: str):
    # acme: both up at END. globex: a down, b blind for ams2 (its up holds nothing back) -> DOWN.
    # initech: a up, b down -> UP under `all` (not every vantage with evidence says down), DOWN under `any`.
    assert _instant(prom, NOC, "Service state per customer") == {
        ("acme",): 1, ("globex",): 0, ("initech",): {ALL: 1, ANY: 0}[merge_policy]}


def test_noc_shows_each_vantage_unmerged(prom: Prom):
    assert _instant(prom, NOC, "Service state per vantage", keys=("customer", "vantage")) == {
        ("acme", "a"): 1, ("acme", "b"): 1, ("globex", "a"): 0, ("globex", "b"): 1,
        ("initech", "a"): 1, ("initech", "b"): 0}


def test_noc_open_outages_are_the_merged_ones(prom: Prom, merge_policy: str):
    # globex's: determined by a at 23:40 (first failed 23:35). initech's is b's alone (determined 23:50, first
    # failed 23:45): open merged only under `any`.
    keys = ("customer", "target")
    since = {("globex", "p9"): 20 * 60}
    started = {("globex", "p9"): 1000 * (END - 25 * 60)}
    # Deadline 900 s, nothing audited: globex 1200 s since determination, OVERDUE (0); initech 600 s, pending (1).
    status = {("globex", "p9"): 0}
    if merge_policy == ANY:
        since[("initech", "p3")] = 10 * 60
        started[("initech", "p3")] = 1000 * (END - 15 * 60)
        status[("initech", "p3")] = 1
    assert _instant(prom, NOC, "Open outages and notification status", "A", keys) == since
    assert _instant(prom, NOC, "Open outages and notification status", "B", keys) == started
    assert _instant(prom, NOC, "Open outages and notification status", "C", keys) == status


def test_sla_month_figures_are_merged_by_the_rule(prom: Prom, merge_policy: str):
    outage = _instant(prom, SLA, "Error budget this month", "A")
    if merge_policy == ALL:
        # acme: min(a: 5400 + 0, b: 1200 + B_NO_EVIDENCE) - min(0, B_NO_EVIDENCE) = 1200 + B_NO_EVIDENCE = 4797.5 s.
        # The exact merge (the report) is 70 min: b's dead hour runs 10 min past a's recovery, and the rule,
        # merging whole-window totals, cannot tell where it lies. It stays between that and a's 90 min.
        assert outage[("acme",)] == pytest.approx((1200 + B_NO_EVIDENCE) / 60, abs=0.05)
        assert 70 < outage[("acme",)] < 90
        # globex: min(1500 + 0, 0 + B_NO_EVIDENCE) - 0 = 1500 s, exact; initech: min(0, 900 + ...) = 0, exact.
        assert outage[("globex",)] == pytest.approx(25, abs=0.05)
        assert outage[("initech",)] == 0
    else:
        # max over vantages of outage seconds. acme: max(5400, 1200) = 90 min, exact (a's outage covers b's: the
        # report's 10:00-11:30); globex: a's 25 min; initech: b's 15 min (open since 23:45), exact.
        assert outage[("acme",)] == pytest.approx(90, abs=0.05)
        assert outage[("globex",)] == pytest.approx(25, abs=0.05)
        assert outage[("initech",)] == pytest.approx(15, abs=0.05)
    # Unknown: min over vantages of the no-evidence time; a had evidence all day.
    assert _instant(prom, SLA, "Error budget this month", "D") == {("acme",): 0, ("globex",): 0, ("initech",): 0}
    assert _instant(prom, SLA, "Error budget this month", "B") == pytest.approx(
        {("acme",): 43.2, ("globex",): 43.2, ("initech",): 43.2})  # 30 days at 99.9%, one row per customer
    availability = _instant(prom, SLA, "Availability this month")
    acme = {ALL: 1200 + B_NO_EVIDENCE, ANY: 5400}[merge_policy]
    assert availability[("acme",)] == pytest.approx(1 - acme / DAY, abs=1e-6)
    assert _instant(prom, SLA, "Evidence coverage this month") == {("acme",): 1, ("globex",): 1, ("initech",): 1}


def test_sla_timeline_is_the_merged_state(prom: Prom, merge_policy: str):
    result = _query(prom, SLA, "Outage timeline", instant=False, step=STEP)
    timeline = {one["metric"]["customer"]: {int(t): float(v) for t, v in one["values"]} for one in result}

    def at(hour: int, minute: int) -> float:
        return timeline["acme"][START + hour * 3600 + minute * 60]

    assert at(10, 10) == 0  # both vantages down
    # b recovered at 10:20, a still says down: `all` not every vantage with evidence says down, `any` one does
    assert at(10, 25) == {ALL: 1, ANY: 0}[merge_policy]
    # b unreachable from 10:40 (its last sample leaves Prometheus' 5-minute lookback at 10:44): a alone decides
    assert B_DEAD[0] < START + 10 * 3600 + 50 * 60 < B_DEAD[1] and at(10, 50) == 0
    assert at(11, 35) == 1  # a recovered at 11:30
    # initech at 23:55: b down (determined 23:50), a up
    assert timeline["globex"][END - 15 * 60] == 0
    assert timeline["initech"][END - 5 * 60] == {ALL: 1, ANY: 0}[merge_policy]


def test_the_dashboards_read_only_rules_that_are_recorded():
    recorded = {rule["record"] for group in yaml.safe_load(RULES.read_text())["groups"]
                for rule in group["rules"] if "record" in rule}
    assert set(merge.RULES) <= recorded
    used = {name for model in MODELS.values() for _, target in targets(model)
            for name in re.findall(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", target["expr"])}
    assert used and used <= recorded, used - recorded
