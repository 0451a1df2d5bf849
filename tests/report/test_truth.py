"""The statement equals independently computed truth, to the second, on a real Prometheus.

October 2026 for three customers in three zones: Berlin (DST ends on the 25th: 745 h), UTC (744 h) and
Sydney (DST starts on the 4th: 743 h), with overlapping port outages, an outage across the month start and
one across the month end, an exporter restart (counter reset + 20-minute scrape gap), a 3-minute gap,
overlapping exclusions of two reasons, a recurring maintenance window, low coverage, and missed
notification deadlines (two on one day = one deduction).
"""

from __future__ import annotations

import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.promdata import serve_series
from tests.report import monthgen
from tests.report.monthgen import Customer, Run, Scenario, Service, ts
from threenines.cli import main
from threenines.config.exclusions import Exclusions, load_exclusions
from threenines.ledgers.audit import AuditLedger, Dispatch, Miss
from threenines.report.build import build_statement
from threenines.report.months import Month
from threenines.report.promclient import ClientConfig, PrometheusClient
from threenines.report.schema import ServiceStatement, Statement
from threenines.report.statement import CustomerSpec, Options

OCTOBER = Month(2026, 10)
ZONES = {"acme": "Europe/Berlin", "globex": "UTC", "initech": "Australia/Sydney"}


def _run(target: str, first_failed: str, recovered: str, pending: int = 300) -> Run:
    start = ts(first_failed)
    return Run(target, start, start + pending, ts(recovered))


DAY15 = (ts("2026-10-15T00:00:00+00:00"), ts("2026-10-15T08:00:00+00:00"))
DAY3 = (ts("2026-10-03T15:00:00+00:00"), ts("2026-10-03T16:00:00+00:00"))

ACME = Customer("acme", ZONES["acme"], [
    Service("acme", "connectivity", ("p1", "p2"), [
        _run("p1", "2026-10-07T00:30:00+00:00", "2026-10-07T02:00:00+00:00"),
        _run("p2", "2026-10-07T01:30:00+00:00", "2026-10-07T02:30:00+00:00"),
        _run("p1", "2026-10-25T00:10:00+00:00", "2026-10-25T01:20:00+00:00"),  # across the DST change
    ]),
    Service("acme", "power", ("power",), [_run("power", "2026-10-18T00:30:00+00:00", "2026-10-18T03:00:00+00:00")]),
], misses=[ts("2026-10-25T10:00:00+00:00"), ts("2026-10-25T22:58:30+01:00"), ts("2026-10-31T22:30:00+01:00")])

GLOBEX = Customer("globex", ZONES["globex"], [
    Service("globex", "connectivity", ("p1",), [
        _run("p1", "2026-09-30T23:40:00+00:00", "2026-10-01T00:20:00+00:00"),  # determined before the month
        _run("p1", "2026-10-10T10:30:00+00:00", "2026-10-10T12:30:00+00:00"),  # fully excluded
        _run("p1", "2026-10-20T08:00:00+00:00", "2026-10-20T08:20:00+00:00"),  # after the restart
    ]),
    Service("globex", "power", ("power",), unknown=[
        DAY15]),
])

INITECH = Customer("initech", ZONES["initech"], [
    Service("initech", "connectivity", ("p1",), [
        _run("p1", "2026-10-31T12:30:00+00:00", "2026-10-31T14:00:00+00:00"),  # open across the month end
    ]),
    Service("initech", "power", ("power",), unknown=[
        DAY3]),
], misses=[ts("2026-10-04T12:00:00+11:00"), ts("2026-10-04T20:00:00+11:00")])

RESTART_GAP = set(range(ts("2026-10-12T06:01:00+00:00"), ts("2026-10-12T06:20:00+00:00") + 1, 60))
SHORT_GAP = set(range(ts("2026-10-22T03:00:00+00:00"), ts("2026-10-22T03:02:00+00:00") + 1, 60))
SCENARIO = Scenario(ts("2026-09-30T06:00:00+00:00"), ts("2026-11-01T06:00:00+00:00"), RESTART_GAP | SHORT_GAP,
                    [ACME, GLOBEX, INITECH])

EXCLUSIONS_YML = """\
exclusions:
  - id: CHG-1
    customer: acme
    services: [connectivity]
    start: 2026-10-07T01:00:00+02:00
    end: 2026-10-07T03:00:00+02:00
    reason: maintenance
    reference: CHG-1
    approved_by: noc@example.net
  - id: WEEKLY-POWER
    customer: acme
    services: [power]
    start: 2026-10-04T02:00:00+02:00
    end: 2026-10-04T04:00:00+02:00
    rrule: FREQ=WEEKLY;BYDAY=SU;COUNT=6
    reason: maintenance
    reference: CHG-2
    approved_by: noc@example.net
  - id: CUST-FAULT
    customer: globex
    services: [connectivity]
    start: 2026-10-10T10:00:00Z
    end: 2026-10-10T12:00:00Z
    reason: customer_fault
    reference: TICKET-9
    approved_by: support@example.net
  - id: CHG-3
    customer: globex
    services: [connectivity, power]
    start: 2026-10-10T11:00:00Z
    end: 2026-10-10T13:00:00Z
    reason: maintenance
    reference: CHG-3
    approved_by: noc@example.net
"""

# The same windows written out by hand (the recurring one: Sundays 02:00–04:00 Berlin time, CEST until the 25th).
TRUE_EXCLUSIONS = {
    ("acme", "connectivity"): {"maintenance": [(ts("2026-10-06T23:00:00+00:00"), ts("2026-10-07T01:00:00+00:00"))]},
    ("acme", "power"): {"maintenance": [(ts(f"2026-10-{d:02d}T02:00:00+02:00"), ts(f"2026-10-{d:02d}T04:00:00+02:00"))
                                        for d in (4, 11, 18)]},
    ("globex", "connectivity"): {
        "maintenance": [(ts("2026-10-10T11:00:00+00:00"), ts("2026-10-10T13:00:00+00:00"))],
        "customer_fault": [(ts("2026-10-10T10:00:00+00:00"), ts("2026-10-10T12:00:00+00:00"))]},
}


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory):
    # 1488h: the month and its margins in one block, so promtool parses the file once
    workdir = tmp_path_factory.mktemp("truth")
    with serve_series(monthgen.series(SCENARIO), workdir, max_block_duration="1488h") as server:
        yield server


@pytest.fixture(scope="module")
def statement(prom, tmp_path_factory: pytest.TempPathFactory) -> Statement:
    path = tmp_path_factory.mktemp("ledger") / "exclusions.yml"
    path.write_text(EXCLUSIONS_YML, encoding="utf-8")
    specs = [CustomerSpec(c.id, c.id.title(), c.timezone, 0.999, tuple(s.service for s in c.services))
             for c in SCENARIO.customers]
    client = PrometheusClient(ClientConfig(prom.url, timeout=30))
    return build_statement(client, OCTOBER, specs, load_exclusions(path), Options(scrape_interval=60))


def _service(statement: Statement, customer: str, service: str) -> ServiceStatement:
    [c] = [c for c in statement.customers if c.customer == customer]
    [s] = [s for s in c.services if s.service == service]
    return s


@pytest.mark.parametrize(("customer", "hours"), [("acme", 745), ("globex", 744), ("initech", 743)])
def test_months_follow_each_contract_zone_and_its_dst_change(statement: Statement, customer: str, hours: int) -> None:
    [c] = [c for c in statement.customers if c.customer == customer]
    assert c.seconds_in_month == hours * 3600
    assert c.start.startswith("2026-10-01T00:00:00")


@pytest.mark.parametrize(("customer", "service"), [(c.id, s.service) for c in SCENARIO.customers for s in c.services])
def test_outage_excluded_counted_and_unknown_seconds_equal_the_truth(statement: Statement, customer: str,
                                                                     service: str) -> None:
    [c] = [c for c in SCENARIO.customers if c.id == customer]
    [svc] = [s for s in c.services if s.service == service]
    start, end = OCTOBER.window(ZoneInfo(c.timezone))
    want = monthgen.truth(SCENARIO, svc, start, end, TRUE_EXCLUSIONS.get((customer, service), {}))
    got = _service(statement, customer, service)
    assert got.raw_outage_seconds == want["raw"]
    assert got.unknown_seconds == want["unknown"]
    assert got.counted_outage_seconds == want["counted"]
    for reason in monthgen.REASON_ORDER:
        assert got.excluded_seconds[reason] == want[reason], reason
    budget = (end - start) * 0.001
    assert got.rent_waived is (want["counted"] > budget)


def test_credits_count_days_with_a_missed_deadline_once(statement: Statement) -> None:
    for c in SCENARIO.customers:
        start, end = OCTOBER.window(ZoneInfo(c.timezone))
        [got] = [x for x in statement.customers if x.customer == c.id]
        assert got.notification.days == monthgen.missed_days(c, start, end)
    [initech] = [x for x in statement.customers if x.customer == "initech"]
    assert initech.notification.deduction_days == 1  # two misses on 4 October


def test_outage_bounds_are_exact_and_classified(statement: Statement) -> None:
    outages = _service(statement, "globex", "connectivity").outages
    assert [(o.start_unix, o.end_unix, o.end_exact) for o in outages] == [
        (r.first_failed, r.recovered, True) for r in GLOBEX.services[0].outages]
    assert [o.classification for o in outages] == ["counted", "excluded: maintenance, customer_fault", "counted"]
    assert outages[1].exclusion_ids == ["CHG-3", "CUST-FAULT"]
    assert _service(statement, "acme", "connectivity").rent_waived is True


def test_low_coverage_and_edge_outages_are_flagged_not_hidden(statement: Statement) -> None:
    review = statement.review
    assert any(item.startswith("globex: power: coverage") for item in review)
    # the outage determined before 1 October: bounds and counter agree on the in-month part
    assert not any("globex: connectivity: outage counter" in item for item in review)


def test_cli_discovers_customers_and_closes_the_month_immutably(prom, tmp_path: Path, capsys) -> None:
    ledger = tmp_path / "exclusions.yml"
    ledger.write_text(EXCLUSIONS_YML, encoding="utf-8")
    argv = ["report", "--close", "2026-10", "--prometheus", prom.url, "--exclusions", str(ledger),
            "--output-dir", str(tmp_path / "closed")]
    assert main(argv) == 0
    first = capsys.readouterr().out
    closed = json.loads((tmp_path / "closed" / "statement-2026-10.json").read_text())
    assert {c["customer"] for c in closed["statement"]["customers"]} == {"acme", "globex", "initech"}
    assert main(argv) == 0
    assert capsys.readouterr().out == first  # same month, same hash
    ledger.write_text(EXCLUSIONS_YML.replace("2026-10-10T13:00:00Z", "2026-10-10T12:10:00Z"), encoding="utf-8")
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert "globex" not in err or "excluded_seconds" in err
    assert "exclusions.sha256" in err


@pytest.mark.parametrize("fmt", ["csv", "table", "json", "html"])
def test_every_format_renders_the_same_month(prom, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"statement.{fmt}"
    assert main(["report", "--month", "2026-10", "--prometheus", prom.url, "--format", fmt,
                 "--output", str(out), "--customer", "acme"]) == 0
    text = out.read_text()
    assert "acme" in text and "globex" not in text


def test_queries_split_by_customer_give_the_same_statement(prom, statement: Statement, tmp_path: Path) -> None:
    # Shards of 50k samples are one customer per month-long query here (44,640 samples/series):
    # the sharded, concurrent path must bill exactly what one query per question bills.
    path = tmp_path / "exclusions.yml"
    path.write_text(EXCLUSIONS_YML, encoding="utf-8")
    specs = [CustomerSpec(c.id, c.id.title(), c.timezone, 0.999, tuple(s.service for s in c.services))
             for c in SCENARIO.customers]
    client = PrometheusClient(ClientConfig(prom.url, timeout=30, concurrency=3, stats=True))
    sharded = build_statement(client, OCTOBER, specs, load_exclusions(path),
                              Options(scrape_interval=60, samples_per_shard=50_000))
    # (the exclusions file's path differs)
    assert {**sharded.to_dict(), "exclusions": None} == {**statement.to_dict(), "exclusions": None}
    assert sharded.exclusions.sha256 == statement.exclusions.sha256
    month_long = [t for t in client.trace if "count_over_time(threenines_customer_service_up{" in t.query]
    assert len(month_long) == 3  # one per customer (each zone is its own window)
    assert max(t.samples or 0 for t in month_long) <= 2 * 50_000


def _dispatch(customer: str, dispatched_at: int, delay: float, first: bool = True) -> Dispatch:
    return Dispatch(dispatched_at=dispatched_at, receiver=f"customer-{customer}", fingerprint=f"f{dispatched_at}",
                    alertname="ThreeninesOutage", customer=customer, service="connectivity", target="p1",
                    determined_at=dispatched_at - delay, starts_at="", ends_at="", resolved=False,
                    contact_version="1", deadline=900.0, delay=delay, first=first, late=delay > 900, group_key="g")


def _miss(customer: str, deadline_at: int) -> Miss:
    return Miss(customer, "connectivity", "p1", deadline_at - 900.0, deadline_at, deadline_at + 10.0, "late")


def test_audit_ledger_gives_the_misses_and_disagreements_with_the_metric_are_reviewed(prom, tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    ledger = AuditLedger(path)
    for c in SCENARIO.customers:  # the misses the metric also shows, as the exporter's deadline watch writes them
        for m in c.misses:
            ledger.append_miss(_miss(c.id, m))
    ledger.append_miss(_miss("globex", ts("2026-10-05T12:00:00+00:00")))  # not in the metric
    ledger.append([_dispatch("globex", ts("2026-10-06T12:00:00+00:00"), 1200, first=False)])  # a repeat
    ledger.append([_dispatch("globex", ts("2026-10-07T12:00:00+00:00"), 300)])  # in time
    ledger.close()
    specs = [CustomerSpec(c.id, c.id.title(), c.timezone, 0.999, tuple(s.service for s in c.services))
             for c in SCENARIO.customers]
    client = PrometheusClient(ClientConfig(prom.url, timeout=30))
    statement = build_statement(client, OCTOBER, specs, Exclusions(), Options(scrape_interval=60), audit_ledger=path)
    for c in SCENARIO.customers:
        start, end = OCTOBER.window(ZoneInfo(c.timezone))
        [got] = [x for x in statement.customers if x.customer == c.id]
        assert got.notification.source.startswith("audit-ledger")
        want = monthgen.missed_days(c, start, end) + (["2026-10-05"] if c.id == "globex" else [])
        assert got.notification.days == want
    review = [item for item in statement.review if "notifications:" in item]
    assert len(review) == 1 and review[0].startswith(
        "globex: notifications: the audit ledger has 1 missed deadline(s) in the month, "
        'threenines_notification_deadline_missed_timestamp_seconds{customer="globex"} shows 0'), review


def test_the_metric_and_the_audit_ledger_give_the_same_days_to_the_second(prom, statement: Statement,
                                                                          tmp_path: Path) -> None:
    # A deadline that passed at 22:58:30 Berlin time on the 25th is that day's, however late the scrape.
    path = tmp_path / "audit.sqlite"
    ledger = AuditLedger(path)
    for c in SCENARIO.customers:
        for m in c.misses:
            ledger.append_miss(_miss(c.id, m))
    ledger.close()
    specs = [CustomerSpec(c.id, c.id.title(), c.timezone, 0.999, tuple(s.service for s in c.services))
             for c in SCENARIO.customers]
    client = PrometheusClient(ClientConfig(prom.url, timeout=30))
    by_ledger = build_statement(client, OCTOBER, specs, Exclusions(), Options(), audit_ledger=path)
    for a, b in zip(statement.customers, by_ledger.customers, strict=True):
        assert a.notification.days == b.notification.days
        assert a.notification.exact and b.notification.exact
    assert not [item for item in by_ledger.review if "notifications:" in item]


def test_cli_names_a_missing_audit_ledger(prom, tmp_path: Path, capsys) -> None:
    argv = ["report", "--month", "2026-10", "--prometheus", prom.url, "--audit-ledger", str(tmp_path / "no.sqlite")]
    assert main(argv) == 1
    assert "no.sqlite: no such audit ledger" in capsys.readouterr().err
