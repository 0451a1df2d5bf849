"""Every PromQL expression of every panel, variables substituted, runs against a real Prometheus holding a
backfilled demo month (tests/grafana/demo_month.py) and returns data; the NOC and SLA numbers tell its story."""

from __future__ import annotations

import json
import math
import urllib.parse
from collections.abc import Iterator

import pytest

from tests.grafana.demo_month import END, START, STEP
from tests.grafana.grafana_queries import TimeRange, has_data, resolve_variables, run_target, substitute
from tests.grafana.importcheck import targets
from tests.grafana.merged_rules import serve_with_merged_rules
from tests.promdata import Prom
from threenines.dashboards import render_all
from threenines.dashboards.queries import graph_url, panel_queries

MODELS = {name: json.loads(text) for name, text in render_all().items()}
# The demo data is scraped every STEP seconds; Grafana's $__rate_interval is then 4 x STEP.
RATE_INTERVAL = f"{4 * STEP}s"
# Each dashboard's default time range, ending at the demo month's "now".
RANGE_START = {"now-6h": END - 6 * 3600, "now-24h": END - 86400, "now/M": START}
RULES_FROM = END - 2 * 86400


def window(model: dict) -> TimeRange:
    start = RANGE_START[model["time"]["from"]]
    # Grafana's $__interval: the range over ~200 points, never finer than the scrape interval.
    step = max(STEP, (END - start) // 200 // STEP * STEP)
    return TimeRange(start=start, end=END, step=step, rate_interval=RATE_INTERVAL)


@pytest.fixture(scope="module")
def prom(tmp_path_factory) -> Iterator[Prom]:
    from tests.grafana.demo_month import demo_month

    workdir = tmp_path_factory.mktemp("demo-month")
    # The NOC tiles and the SLA timeline read the merged-state recording rules. What these tests read of them is
    # at "now" (instant queries, the NOC's 6 h and 24 h ranges) or needs only some data in the month (the SLA
    # timeline's range query): evaluated over the last two days, not the month (the month took ~45 s of
    # promtool, most of this module's set-up). test_vantages_prometheus.py checks the merged values over time.
    with serve_with_merged_rules(demo_month(), workdir, RULES_FROM, END, STEP) as running:
        yield running


def _cases() -> list[tuple[str, int, str]]:
    return [(name, panel["id"], target["refId"]) for name, model in MODELS.items()
            for panel, target in targets(model)]


@pytest.mark.parametrize(("dashboard", "panel_id", "ref"), _cases())
def test_panel_query_returns_data(prom: Prom, dashboard: str, panel_id: int, ref: str):
    model = MODELS[dashboard]
    span = window(model)
    values, _ = resolve_variables(model, prom.url, span)
    panel, target = next((p, t) for p, t in targets(model) if p["id"] == panel_id and t["refId"] == ref)
    expr = substitute(target["expr"], values)
    result = run_target(prom.url, expr, bool(target.get("instant")), span)
    assert has_data(result), f"{dashboard} panel {panel_id} {panel['title']!r} query {ref} returned no data:\n{expr}"


@pytest.mark.parametrize("dashboard", sorted(MODELS))
def test_every_variable_has_values(prom: Prom, dashboard: str):
    _, options = resolve_variables(MODELS[dashboard], prom.url, window(MODELS[dashboard]))
    assert options["site"] == ["ams1", "fra1"]
    assert options["customer"] == ["acme", "globex", "initech"]


def _instant(prom: Prom, dashboard: str, title: str, ref: str = "A", **overrides: str) -> dict[tuple, float]:
    """The panel's instant query at "now", keyed by (customer, service, target) labels present."""
    model = MODELS[dashboard]
    span = window(model)
    values, _ = resolve_variables(model, prom.url, span)
    values.update(overrides)
    _, target = next((p, t) for p, t in targets(model) if p["title"] == title and t["refId"] == ref)
    result = run_target(prom.url, substitute(target["expr"], values), True, span)
    keys = ("customer", "service", "target", "device")
    return {tuple(one["metric"].get(k) for k in keys if k in one["metric"]): float(one["value"][1])
            for one in result["result"]}


def test_noc_tiles_say_up_down_or_unknown(prom: Prom):
    tiles = _instant(prom, "threenines-noc.json", "Service state per customer")
    assert tiles == {("acme", "connectivity"): 0, ("acme", "power"): 1, ("globex", "connectivity"): 0,
                     ("globex", "power"): 0, ("initech", "connectivity"): 0, ("initech", "power"): 2}


def test_noc_site_variable_narrows_the_tiles_to_that_site(prom: Prom):
    tiles = _instant(prom, "threenines-noc.json", "Service state per customer", site="fra1")
    assert {key[0] for key in tiles} == {"initech"}


def test_noc_open_outages_show_audited_maintenance_pending_and_overdue(prom: Prom):
    status = _instant(prom, "threenines-noc.json", "Open outages and notification status", ref="C")
    assert status == {("acme", "connectivity", "port-b"): 1, ("globex", "connectivity", "port-1"): 2,
                      ("globex", "power", "power"): 3, ("initech", "connectivity", "port-1"): 0,
                      # An application outage is notified like any other (docs/design.md "Applications").
                      ("globex", "application", "files"): 1}
    since = _instant(prom, "threenines-noc.json", "Open outages and notification status", ref="A")
    assert since[("initech", "connectivity", "port-1")] == 40 * 60


def test_noc_power_panels_find_the_battery_ups_the_hot_phase_and_the_silent_pdu(prom: Prom):
    assert set(_instant(prom, "threenines-noc.json", "UPSes on battery: runtime left")) == {("ups-b",)}
    hot = _instant(prom, "threenines-noc.json", "PDU phases near rated current")
    assert list(hot) == [("pdu-a",)] and 0.85 <= next(iter(hot.values())) < 0.87
    assert _instant(prom, "threenines-noc.json", "SNMP devices unreachable") == {("pdu-b",): 30 * 60 + STEP}


def _rows(prom: Prom, dashboard: str, title: str, ref: str = "A", **overrides: str) -> dict[tuple, tuple]:
    """The panel's instant query at "now" as (customer, target) → (value, reason label or None)."""
    model = MODELS[dashboard]
    span = window(model)
    values, _ = resolve_variables(model, prom.url, span)
    values.update(overrides)
    _, target = next((p, t) for p, t in targets(model) if p["title"] == title and t["refId"] == ref)
    result = run_target(prom.url, substitute(target["expr"], values), True, span)
    rows = [((one["metric"]["customer"], one["metric"]["target"]),
             (float(one["value"][1]), one["metric"].get("reason"))) for one in result["result"]]
    assert len(rows) == len(dict(rows)), f"{title} [{ref}]: more than one series per check: {rows}"
    return dict(rows)


APP_TILES = "Application checks per customer"
APP_TABLE = "Application checks: state, failure reason, last check, certificate"
APP_OUTAGES = "Application outages this month"


def test_noc_application_tiles_say_up_down_or_unknown_with_the_recent_failure_reason(prom: Prom):
    # demo_month.APP_CHECKS: globex's FTP server down for the last 15 min (timeout), initech's web check not made
    # for the last 30 min (local: unknown, not down), acme's two checks up (their failures are days old).
    assert _rows(prom, "threenines-noc.json", APP_TILES) == {
        ("acme", "www"): (1, None), ("acme", "mail"): (1, None),
        ("globex", "files"): (0, "timeout"), ("initech", "www"): (2, "local")}
    assert set(_rows(prom, "threenines-noc.json", APP_TILES, site="fra1")) == {("initech", "www")}
    # The billed services' tiles do not repeat the applications (their union is not a billed service here).
    tiles = _instant(prom, "threenines-noc.json", "Service state per customer")
    assert {key[1] for key in tiles} == {"connectivity", "power"}


def test_noc_application_table_has_kind_reason_counts_last_check_and_certificate_days(prom: Prom):
    noc = "threenines-noc.json"
    state = _rows(prom, noc, APP_TABLE, "A")
    assert {k: v[0] for k, v in state.items()} == {("acme", "www"): 1, ("acme", "mail"): 1, ("globex", "files"): 0,
                                                   ("initech", "www"): 2}
    # Failures in the last 15 minutes, by reason: the FTP checks at END-15, -10, -5 and END; the web check's
    # reason series exists since the month began, so increase() sees all of its (extrapolated) window.
    reasons = _rows(prom, noc, APP_TABLE, "B")
    assert set(reasons) == {("globex", "files"), ("initech", "www")}
    assert reasons[("globex", "files")][1] == "timeout" and reasons[("initech", "www")][1] == "local"
    assert reasons[("globex", "files")][0] >= 3 and reasons[("initech", "www")][0] >= 3
    # initech's last completed check was 35 min before END; the others ran at END.
    last = _rows(prom, noc, APP_TABLE, "C")
    assert last[("initech", "www")][0] == 35 * 60 and last[("acme", "www")][0] == 0
    certificate = {k: v[0] for k, v in _rows(prom, noc, APP_TABLE, "E").items()}
    assert certificate == {("acme", "www"): 40, ("acme", "mail"): 10, ("initech", "www"): 90}  # ftp: no TLS
    # Only acme's mail certificate is within the 14 days of ThreeninesApplicationCertificateExpiring.
    assert _rows(prom, noc, "TLS certificates expiring within 14 days") == {("acme", "mail"): (10, None)}


def test_sla_application_outages_count_and_time_per_check_and_say_what_is_billed(prom: Prom):
    sla = "threenines-sla.json"
    count = {k: v[0] for k, v in _rows(prom, sla, APP_OUTAGES, "A").items()}
    # acme www: one outage (4 failed checks on the 9th); acme mail: one failed check, below the threshold: none;
    # globex files: the outage open now; initech www: unknown, never down.
    assert count == {("acme", "www"): 1, ("acme", "mail"): 0, ("globex", "files"): 1, ("initech", "www"): 0}
    seconds = {k: v[0] for k, v in _rows(prom, sla, APP_OUTAGES, "B").items()}
    # From the first failed check: 20 min on the 9th, 15 min so far for the FTP server.
    assert seconds[("acme", "www")] == pytest.approx(1200, abs=5)
    assert seconds[("globex", "files")] == pytest.approx(900, abs=5)
    assert seconds[("acme", "mail")] == seconds[("initech", "www")] == 0
    unknown = {k: v[0] for k, v in _rows(prom, sla, APP_OUTAGES, "C").items()}
    assert unknown[("initech", "www")] == pytest.approx(1800, abs=5) and unknown[("acme", "www")] == 0
    billed = {k: v[0] for k, v in _rows(prom, sla, APP_OUTAGES, "D").items()}
    assert billed == {("acme", "www"): 0, ("acme", "mail"): 0, ("globex", "files"): 1, ("initech", "www"): 0}


def test_sla_billing_panels_leave_out_applications_that_are_not_billed(prom: Prom):
    # acme's www outage (20 min) is not provider outage time: acme's availability and budget rows are the
    # connectivity and power ones only. globex bills its applications: its application row is there.
    sla = "threenines-sla.json"
    availability = _instant(prom, sla, "Availability this month")
    assert ("acme", "application") not in availability and ("initech", "application") not in availability
    assert availability[("globex", "application")] == pytest.approx(1 - 900 / (END - START), abs=1e-5)
    budget = _instant(prom, sla, "Error budget this month", ref="A")
    assert ("acme", "application") not in budget
    assert budget[("globex", "application")] == pytest.approx(15, abs=0.1)
    assert {key[1] for key in _instant(prom, sla, "Evidence coverage this month")} == {
        "connectivity", "power", "application"}
    assert ("initech", "application") not in _instant(prom, sla, "Evidence coverage this month")


def test_sla_budget_counts_the_month_lost_by_acme(prom: Prom):
    outage_minutes = _instant(prom, "threenines-sla.json", "Error budget this month", ref="A")
    budget_minutes = _instant(prom, "threenines-sla.json", "Error budget this month", ref="B")
    # 31 days at 99.9%: 44.64 min. acme: 50 + 35 min of determined outages, plus port-b's 10 min open one.
    assert math.isclose(budget_minutes[("acme", "connectivity")], 44.64, rel_tol=1e-9)
    assert outage_minutes[("acme", "connectivity")] == pytest.approx(95, abs=1)
    assert outage_minutes[("acme", "power")] == 0
    availability = _instant(prom, "threenines-sla.json", "Availability this month")
    assert availability[("acme", "connectivity")] < 0.999 < availability[("acme", "power")]


def test_an_expression_without_data_is_caught(prom: Prom):
    # The guard the per-panel test relies on: a misspelled metric, or a NaN-only answer, is "no data".
    span = window(MODELS["threenines-noc.json"])
    assert not has_data(run_target(prom.url, "threenines_customer_service_upp", True, span))
    assert not has_data(run_target(prom.url, "histogram_quantile(0.5, threenines_service_up)", True, span))
    with pytest.raises(AssertionError, match="bad_data"):
        run_target(prom.url, "sum by (customer (threenines_service_up)", True, span)


def test_queries_printed_for_a_bare_prometheus_run_and_return_data(prom: Prom):
    # `threenines dashboards --queries` (for `threenines demo`): variables as "all", default ranges.
    span = window(MODELS["threenines-noc.json"])
    asked = 0
    for model in MODELS.values():
        for query in panel_queries(model, rate_interval=RATE_INTERVAL, now=END):
            assert has_data(run_target(prom.url, query.expr, True, span)), f"{query.panel} [{query.ref}]: {query.expr}"
            url = graph_url(prom.url, query)
            assert urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["g0.expr"] == [query.expr]
            asked += 1
    assert asked == len(_cases())
