"""Billing figures at the edges (issue 15), on a real backfilled Prometheus, against truth from the contract.

The contract: the outage starts at the first failed probe, and a month runs from local midnight on the 1st.
So a failure run that starts before midnight and is determined after it gives its first seconds to the
earlier month; time the exporter was not running is unknown, never outage, so an exclusion cannot subtract
it; a scrape Prometheus missed while the exporter ran loses nothing (the counters are cumulative). Each
case below is built with monthgen and its truth computed second by second by monthgen.truth, which knows
nothing of the report's code. Both scrape intervals the project ships (30 s in prometheus/prometheus.yml, 60 s
in the docs' examples) are tried, and the report learns the interval from the samples.
"""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.promdata import Series, serve_series
from tests.report import monthgen
from tests.report.monthgen import Customer, Run, Scenario, Service, ts
from threenines.cli import main
from threenines.config.exclusions import load_exclusions
from threenines.config.inventory import TargetKey
from threenines.contract.machine import OutageEvent
from threenines.ledgers.outages import OutageLedger
from threenines.report.build import build_statement, learn_scrape_interval
from threenines.report.months import Month
from threenines.report.promclient import ClientConfig, PrometheusClient
from threenines.report.schema import ServiceStatement, Statement
from threenines.report.statement import CustomerSpec, Options

OCTOBER, NOVEMBER = Month(2026, 10), Month(2026, 11)
PENDING = 300  # 2 failed probes at the 5-minute contract interval: determined one interval after the first


def _run(first_failed: str, recovered: str) -> Run:
    start = ts(first_failed)
    return Run("p1", start, start + PENDING, ts(recovered))


# Determined after midnight on 1 October: 180 s are September's, 1800 s October's.
ACROSS_START = _run("2026-09-30T23:57:00+00:00", "2026-10-01T00:30:00+00:00")
IN_MONTH = _run("2026-10-10T10:00:00+00:00", "2026-10-10T10:11:08+00:00")  # 668 s
# Determined after midnight on 1 November: 240 s are October's, 1200 s November's.
ACROSS_END = _run("2026-10-31T23:56:00+00:00", "2026-11-01T00:20:00+00:00")
# October: 1800 + 668 + 240 = 2708 s > 2678.4 s (99.9% of 744 h): rent waived. Counting each run in the month
# of its determination would give 1980 + 668 = 2648 s: objective met — the waiver flips.
# Its notification deadline for ACROSS_END passes at 00:06 on 1 November; another outage's passed 10 s before
# midnight on the 31st (the late dispatch, if any, came after midnight): one deduction day in each month.
EDGECO = Customer("edgeco", "UTC", [Service("edgeco", "connectivity", ("p1",), [ACROSS_START, IN_MONTH, ACROSS_END])],
                  misses=[ts("2026-10-31T23:59:50+00:00"), ACROSS_END.determined + 300])
# Midnight in the contract's zone, not UTC's: 23:58 Berlin summer time on 30 September is 21:58 UTC.
BERLINCO = Customer("berlinco", "Europe/Berlin", [Service("berlinco", "connectivity", ("p1",), [
    _run("2026-09-30T23:58:00+02:00", "2026-10-01T00:10:00+02:00")])])
# The exporter is down 06:00–06:20 inside this outage, and a maintenance window covers 06:00–06:30.
RESTARTCO = Customer("restartco", "UTC", [Service("restartco", "connectivity", ("p1",), [
    _run("2026-10-12T05:30:00+00:00", "2026-10-12T07:00:00+00:00")])])
# Prometheus (not the exporter) misses 08:00–08:30 inside this outage.
GAPCO = Customer("gapco", "UTC", [Service("gapco", "connectivity", ("p1",), [
    _run("2026-10-20T07:50:00+00:00", "2026-10-20T08:40:00+00:00")])])
CUSTOMERS = [EDGECO, BERLINCO, RESTARTCO, GAPCO]

DOWN = (ts("2026-10-12T06:00:00+00:00"), ts("2026-10-12T06:20:00+00:00"))  # exporter not running
UNSCRAPED = (ts("2026-10-20T08:00:00+00:00"), ts("2026-10-20T08:30:00+00:00"))  # Prometheus not scraping

EXCLUSIONS_YML = """\
exclusions:
  - id: CHG-7
    customer: restartco
    services: [connectivity]
    start: 2026-10-12T06:00:00Z
    end: 2026-10-12T06:30:00Z
    reason: maintenance
    reference: CHG-7
    approved_by: noc@example.net
"""
TRUE_EXCLUSIONS = {"restartco": {"maintenance": [(ts("2026-10-12T06:00:00+00:00"), ts("2026-10-12T06:30:00+00:00"))]}}


def _scenario(step: int) -> Scenario:
    # A grid time g stands for [g - step, g): these are the scrapes of the down/unscraped spans.
    missing = {g for g in range(DOWN[0] + step, DOWN[1] + 1, step)}
    unscraped = {g for g in range(UNSCRAPED[0] + step, UNSCRAPED[1] + 1, step)}
    return Scenario(ts("2026-09-30T18:00:00+00:00"), ts("2026-11-01T06:00:00+00:00"), missing, CUSTOMERS,
                    step=step, scrape_gaps=unscraped)


@pytest.fixture(scope="module", params=[30, 60], ids=["30s", "60s"])
def month(request, tmp_path_factory: pytest.TempPathFactory):
    scenario = _scenario(request.param)
    workdir = tmp_path_factory.mktemp(f"edges{request.param}")
    with serve_series(monthgen.series(scenario), workdir, max_block_duration="1488h") as prom:
        ledger = workdir / "exclusions.yml"
        ledger.write_text(EXCLUSIONS_YML, encoding="utf-8")
        yield scenario, prom, ledger


def _specs() -> list[CustomerSpec]:
    return [CustomerSpec(c.id, c.id.title(), c.timezone, 0.999, ("connectivity",)) for c in CUSTOMERS]


def _statement(prom, ledger: Path, month: Month = OCTOBER, interval: float | None = None, **kwargs) -> Statement:
    client = PrometheusClient(ClientConfig(prom.url, timeout=30))
    return build_statement(client, month, _specs(), load_exclusions(ledger), Options(scrape_interval=interval),
                           **kwargs)


def _service(statement: Statement, customer: str) -> ServiceStatement:
    [c] = [c for c in statement.customers if c.customer == customer]
    return c.services[0]


@pytest.fixture(scope="module")
def october(month) -> Statement:
    _, prom, ledger = month
    return _statement(prom, ledger)


@pytest.mark.parametrize("customer", [c.id for c in CUSTOMERS])
def test_billing_fields_equal_the_truth_to_the_second(month, october: dict, customer: str) -> None:
    scenario = month[0]
    [c] = [c for c in CUSTOMERS if c.id == customer]
    start, end = OCTOBER.window(ZoneInfo(c.timezone))
    want = monthgen.truth(scenario, c.services[0], start, end, TRUE_EXCLUSIONS.get(customer, {}))
    got = _service(october, customer)
    assert (got.raw_outage_seconds, got.counted_outage_seconds, got.excluded_seconds["maintenance"],
            got.unknown_seconds) == (want["raw"], want["counted"], want["maintenance"], want["unknown"])
    assert got.rent_waived is (want["counted"] > (end - start) * 0.001)
    # the outage list says the same seconds as the billing fields
    assert sum(o.seconds_in_month for o in got.outages) == got.raw_outage_seconds
    assert not any("outage counter says" in item or "state gauge" in item for item in got.review), got.review


def test_a_run_across_a_month_edge_is_split_at_local_midnight_and_flips_the_waiver(october: Statement) -> None:
    got = _service(october, "edgeco")
    assert got.raw_outage_seconds == 1800 + 668 + 240
    assert got.rent_waived is True
    assert [o.seconds_in_month for o in got.outages] == [1800, 668, 240]
    assert _service(october, "berlinco").raw_outage_seconds == 600  # midnight in Berlin, not UTC


def test_a_missed_deadline_counts_on_the_day_it_passed(month, october: Statement) -> None:
    _, prom, ledger = month
    [c] = [c for c in october.customers if c.customer == "edgeco"]
    assert (c.notification.days, c.notification.exact) == (["2026-10-31"], True)
    november = _statement(prom, ledger, NOVEMBER, now=ts("2026-12-02T00:00:00+00:00"))
    [c] = [c for c in november.customers if c.customer == "edgeco"]
    assert c.notification.days == ["2026-11-01"]


def test_the_later_month_gets_only_its_own_seconds(month) -> None:
    _, prom, ledger = month
    # November is over at `now`; the data end on 1 November (coverage review), the run is whole in it.
    november = _statement(prom, ledger, NOVEMBER, now=ts("2026-12-02T00:00:00+00:00"))
    got = _service(november, "edgeco")
    assert got.raw_outage_seconds == got.counted_outage_seconds == 1200
    [outage] = got.outages
    assert (outage.start_unix, outage.end_unix, outage.seconds_in_month) == (
        ACROSS_END.first_failed, ACROSS_END.recovered, 1200)


def test_an_exporter_restart_inside_an_excluded_outage_excludes_only_outage_seconds(october: Statement) -> None:
    got = _service(october, "restartco")
    # outage 05:30–07:00 without the 20 unknown minutes: 70 min; excluded 06:20–06:30 only (06:00–06:20 was
    # never outage); counted 60 min; unknown 20 min
    assert (got.raw_outage_seconds, got.excluded_seconds["maintenance"], got.counted_outage_seconds,
            got.unknown_seconds) == (4200, 600, 3600, 1200)
    [outage] = got.outages
    assert (outage.start_unix, outage.end_unix) == (RESTARTCO.services[0].outages[0].first_failed,
                                                          RESTARTCO.services[0].outages[0].recovered)
    assert outage.classification == "partly excluded: maintenance"


def test_a_scrape_gap_while_the_exporter_ran_is_not_unknown(october: Statement) -> None:
    got = _service(october, "gapco")
    assert got.unknown_seconds == 1200  # the restart's 20 minutes only, not Prometheus' 30
    [outage] = got.outages
    assert (outage.end_unix, outage.end_exact) == (GAPCO.services[0].outages[0].recovered, True)


def test_the_scrape_interval_is_learned_and_a_wrong_flag_is_overridden_with_a_warning(month,
                                                                                      october: Statement) -> None:
    scenario, prom, ledger = month
    assert october.scrape_interval_seconds == scenario.step
    wrong = 60 if scenario.step == 30 else 30
    flagged = _statement(prom, ledger, interval=wrong)
    assert any(f"--scrape-interval {wrong}s disagrees with the data ({scenario.step}s" in w
               for w in flagged.warnings)
    assert flagged.customers == october.customers


def test_a_preview_says_so_in_every_format_and_cannot_be_closed(month, tmp_path: Path, capsys) -> None:
    _, prom, ledger = month
    preview = _statement(prom, ledger, NOVEMBER, now=ts("2026-11-01T05:00:00+00:00"), allow_incomplete=True)
    assert preview.status == "preview" and "2026-11 in UTC is not over" in preview.preview_reasons
    # September is over, but the data begin on its last day: a preview too, whatever the clock says
    base = ["report", "--month", "2026-09", "--prometheus", prom.url, "--allow-incomplete", "--customer", "edgeco"]
    for fmt, marker in (("table", "PREVIEW, NOT FINAL"), ("csv", ",preview,"), ("html", "PREVIEW, NOT FINAL"),
                        ("json", '"status": "preview"')):
        out = tmp_path / f"s.{fmt}"
        assert main([*base, "--format", fmt, "--output", str(out)]) == 0
        assert marker in out.read_text(), fmt
    final = tmp_path / "final.json"
    assert main(["report", "--month", "2026-10", "--prometheus", prom.url, "--format", "json", "--output",
                 str(final)]) == 0
    assert '"status": "final"' in final.read_text()
    capsys.readouterr()
    closed = tmp_path / "closed"
    assert main(["report", "--close", "2026-09", "--prometheus", prom.url, "--allow-incomplete", "--output-dir",
                 str(closed)]) == 1
    assert "cannot be a preview" in capsys.readouterr().err
    assert not closed.exists()


def test_the_outage_ledger_holds_the_seconds_before_a_crash_that_no_scrape_showed(month, tmp_path: Path) -> None:
    _, prom, exclusions = month
    # The exporter's own ledger: it lived 40 s past its last scrape at 06:00 (its last heartbeat) and, after
    # the restart, first probed at 06:20; Prometheus' counters end at the 06:00 scrape.
    [run] = RESTARTCO.services[0].outages
    key = TargetKey("restartco", "connectivity", "p1")
    crashed, resumed = DOWN[0] + 40, DOWN[1]
    ledger = OutageLedger(tmp_path / "outages.sqlite")
    ledger.record(OutageEvent("determined", key, run.determined, run.first_failed, run.determined))
    ledger.record(OutageEvent("gap", key, resumed, run.first_failed, run.determined, gap_start=crashed))
    ledger.record(OutageEvent("ended", key, run.recovered, run.first_failed, run.determined, "recovered"))
    ledger.close()
    got = _service(_statement(prom, exclusions, outage_ledger=tmp_path / "outages.sqlite"), "restartco")
    # outage [05:30, 06:00:40) and [06:20, 07:00): 1840 + 2400 s; the maintenance window 06:00–06:30 holds
    # 40 + 600 s of it
    assert (got.raw_outage_seconds, got.excluded_seconds["maintenance"], got.counted_outage_seconds) == (
        1840 + 2400, 40 + 600, 1840 + 2400 - 640)
    [outage] = got.outages
    assert (outage.source, outage.start_unix, outage.end_unix) == ("ledger", run.first_failed,
                                                                            run.recovered)


@pytest.mark.parametrize("step", [1, 15, 30])
def test_the_scrape_interval_of_series_younger_than_an_hour_is_their_spacing(tmp_path: Path, step: int) -> None:
    # A new exporter's first report: 20 minutes of samples. Counting samples per hour read 1,200 samples of a
    # 1 s scrape as a 3 s interval (and 30 s of data as 120 s); the spacing of the samples is the interval.
    first = ts("2026-10-31T23:40:00+00:00")  # it started 20 minutes before the month's end
    samples = [(first + i * step + 0.137 * (i % 3), 1.0) for i in range(1200 // step)]
    series = [Series("threenines_customer_service_up", {"customer": c, "service": "connectivity",
                                                        "instance": "ex:9839", "job": "threenines"}, samples)
              for c in ("a", "b", "c")]
    with serve_series(series, tmp_path) as prom:
        client = PrometheusClient(ClientConfig(prom.url))
        start, end = OCTOBER.window(ZoneInfo("UTC"))
        assert learn_scrape_interval(client, start, end) == step
