"""The statement's two evidence sections, on a real backfilled Prometheus and a real outage ledger, through
`threenines report` (docs/report.md, "Power interruptions resting on inference" and "Applications").

October 2026, UTC, scrapes every 60 s, power evaluated every 60 s with the contract's 2-consecutive rule. The
expected figures are the scenario's timeline read with the contract's words, written out below, never the
report's code:

* blackco, A/B feeds from UPS ups-a and ups-b. Mains lost on 14 October 01:00. ups-b last answered at 01:18:30
  on battery announcing 60 s of runtime (below its low-battery threshold: `runtime_low`, without output from
  01:19:30); ups-a last answered at 01:19:00 on battery with low battery and 60 s (`low_battery`, from 01:20:00).
  Then both UPSes and all their PDUs are silent. The first evaluation holding every feed down is 01:20:40 (the
  contract's outage starts there), the second determines it at 01:21:40; mains and cards are back and the
  evaluation of 03:00:20 finds power. The contract's power interruption (mains AND UPS without power) is
  therefore billed [01:20:40, 03:00:20) = 5980 s > 2678.4 s budget (99.9 % of 744 h): rent waived, and it rests
  on inference: the statement lists both UPSes, their last words and moments, and asks for review.
* quietco: its UPS and PDUs go silent on 16 October 10:00–11:00 with no last words (it answered "on mains" until
  then): the power is unknown for 3600 s, never outage, and nothing is inferred.
* appco (applications not billable) and billco (billable), the application checks against connectivity:
  - appco www 5 Oct 10:00–10:30, ports up throughout: 1800 s customer_fault evidence;
  - appco port outage 12 Oct 14:00–15:00, www 14:05–14:55: 3000 s inside the connectivity outage;
  - appco port outage 20 Oct 20:00–20:30, mail 19:50–20:40: split 1800 s inside, 1200 s ports answered;
  - appco connectivity unknown 22 Oct 03:00–03:20 (no ping could be sent), mail 02:50–03:30: 1200 s unknown,
    1200 s ports answered;
  - billco www 8 Oct 09:00–09:40, ports up: 2400 s, billed as the "application" service, of which 09:00–09:20
    is excluded as customer_fault by the exclusions ledger: 1200 s counted.
  appco's billing (connectivity 3600 + 1800 = 5400 s) is the same whether or not it has application checks.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.promdata import Series, serve_series
from tests.report import monthgen
from tests.report.monthgen import Customer, Run, Scenario, Service, ts
from threenines.cli import main
from threenines.config.inventory import TargetKey
from threenines.contract.machine import OutageEvent
from threenines.ledgers.outages import OutageLedger
from threenines.report.months import Month

OCTOBER = Month(2026, 10)
UTC = ZoneInfo("UTC")
PENDING = 300  # the ports' contract: 2 failed probes 5 minutes apart


def _run(target: str, first_failed: str, recovered: str, pending: int = PENDING) -> Run:
    start = ts(first_failed)
    return Run(target, start, start + pending, ts(recovered))


# --- the blackout (power evaluated every 60 s, threshold 2) ---
FIRST_FAILED = ts("2026-10-14T01:20:40+00:00")
DETERMINED = FIRST_FAILED + 60
RECOVERED = ts("2026-10-14T03:00:20+00:00")
BLACKOUT = Run("power", FIRST_FAILED, DETERMINED, RECOVERED)
# (device, evidence, the rule's moment: last reading + the runtime it announced)
LAST_WORDS = [("ups-a", "low_battery", ts("2026-10-14T01:19:00+00:00") + 60),
              ("ups-b", "runtime_low", ts("2026-10-14T01:18:30+00:00") + 60)]
BLACKCO = Customer("blackco", "UTC", [Service("blackco", "connectivity", ("p1",)),
                                      Service("blackco", "power", ("power",), [BLACKOUT])])
SILENCE = (ts("2026-10-16T10:00:00+00:00"), ts("2026-10-16T11:00:00+00:00"))
QUIETCO = Customer("quietco", "UTC", [Service("quietco", "connectivity", ("p1",)),
                                      Service("quietco", "power", ("power",), unknown=[SILENCE])])

# --- applications ---
APP_PORT = [_run("p1", "2026-10-12T14:00:00+00:00", "2026-10-12T15:00:00+00:00"),
            _run("p1", "2026-10-20T20:00:00+00:00", "2026-10-20T20:30:00+00:00")]
CONN_UNKNOWN = (ts("2026-10-22T03:00:00+00:00"), ts("2026-10-22T03:20:00+00:00"))
APP_RUNS = [_run("www", "2026-10-05T10:00:00+00:00", "2026-10-05T10:30:00+00:00"),
            _run("www", "2026-10-12T14:05:00+00:00", "2026-10-12T14:55:00+00:00"),
            _run("mail", "2026-10-20T19:50:00+00:00", "2026-10-20T20:40:00+00:00"),
            _run("mail", "2026-10-22T02:50:00+00:00", "2026-10-22T03:30:00+00:00")]
APPCO = Customer("appco", "UTC", [Service("appco", "connectivity", ("p1",), APP_PORT, unknown=[CONN_UNKNOWN]),
                                  Service("appco", "application", ("www", "mail"), APP_RUNS)])
BILL_RUN = _run("www", "2026-10-08T09:00:00+00:00", "2026-10-08T09:40:00+00:00")
BILLCO = Customer("billco", "UTC", [Service("billco", "connectivity", ("p1",)),
                                    Service("billco", "application", ("www",), [BILL_RUN])])
CUSTOMERS = [BLACKCO, QUIETCO, APPCO, BILLCO]
SCENARIO = Scenario(ts("2026-09-30T06:00:00+00:00"), ts("2026-11-01T06:00:00+00:00"), set(), CUSTOMERS)

EXCLUSIONS_YML = """\
exclusions:
  - id: CF-BILL
    customer: billco
    services: [application]
    start: 2026-10-08T09:00:00Z
    end: 2026-10-08T09:20:00Z
    reason: customer_fault
    reference: TICKET-12
    approved_by: support@example.net
"""
BUDGET = 744 * 3600 * 0.001  # 99.9 % of October in UTC


def _series() -> list[Series]:
    out = []
    for one in monthgen.series(SCENARIO):
        # The exporter exports an application objective only with applications_billable (docs/design.md):
        # appco's applications are not billable.
        if one.name == "threenines_customer_objective_ratio" and one.labels == {"customer": "appco",
                                                                                "service": "application"}:
            continue
        out.append(one)
    # The exporter's inference gauges (docs/metrics.md): present from the evaluation that first held the feeds down
    # by the rule until the evaluation that found power, i.e. at the scrapes in [first failed, recovered).
    shown = [g for g in SCENARIO.grid() if FIRST_FAILED <= g < RECOVERED]
    for device, evidence, since in LAST_WORDS:
        labels = {"customer": "blackco", "device": device, "evidence": evidence}
        out.append(Series("threenines_power_inferred_down", labels, [(g, 1) for g in shown]))
        out.append(Series("threenines_power_inferred_down_since_timestamp_seconds", labels,
                          [(g, since) for g in shown]))
    return out


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory):
    with serve_series(_series(), tmp_path_factory.mktemp("sections"), max_block_duration="1488h") as server:
        yield server


@pytest.fixture(scope="module")
def exclusions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("exclusions") / "exclusions.yml"
    path.write_text(EXCLUSIONS_YML, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The exporter's outage ledger for the same timeline, written by the exporter's own ledger class."""
    path = tmp_path_factory.mktemp("ledger") / "outages.sqlite"
    book = OutageLedger(path)
    for c in CUSTOMERS:
        for svc in c.services:
            for run in svc.outages:
                key = TargetKey(c.id, svc.service, run.target)
                book.record(OutageEvent("determined", key, run.determined, run.first_failed, run.determined))
                book.record(OutageEvent("ended", key, run.recovered, run.first_failed, run.determined, "recovered"))
    book.close()
    return path


def _report(prom, tmp_path: Path, fmt: str, *extra: str) -> str:
    out = tmp_path / f"statement.{fmt}"
    assert main(["report", "--month", "2026-10", "--prometheus", prom.url, "--format", fmt, "--output", str(out),
                 *extra]) == 0
    return out.read_text(encoding="utf-8")


@pytest.fixture(scope="module", params=["prometheus", "ledger"])
def statement(request, prom, exclusions: Path, ledger: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    extra = ["--exclusions", str(exclusions)] + (["--ledger", str(ledger)] if request.param == "ledger" else [])
    data = json.loads(_report(prom, tmp_path_factory.mktemp("json"), "json", *extra))
    assert data["bounds_source"] == request.param
    return data


def _customer(statement: dict, customer: str) -> dict:
    [c] = [c for c in statement["customers"] if c["customer"] == customer]
    return c


def _service(statement: dict, customer: str, service: str) -> dict:
    [s] = [s for s in _customer(statement, customer)["services"] if s["service"] == service]
    return s


def _iso(t: int) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(t, UTC).isoformat()


def test_a_blackout_of_both_feeds_is_billed_as_a_power_interruption_with_its_evidence(statement: dict) -> None:
    power = _service(statement, "blackco", "power")
    assert power["raw_outage_seconds"] == RECOVERED - FIRST_FAILED == 5980
    assert power["counted_outage_seconds"] == 5980
    assert power["rent_waived"] is True and BUDGET < 5980
    [outage] = power["outages"]
    assert (outage["start_unix"], outage["end_unix"], outage["classification"]) == (FIRST_FAILED, RECOVERED,
                                                                                     "counted")
    # the evidence, oldest moment first: device, evidence kind, since
    assert [(e["device"], e["evidence"], e["since_unix"], e["since"]) for e in outage["inferred_from"]] == [
        ("ups-b", "runtime_low", LAST_WORDS[1][2], "2026-10-14T01:19:30+00:00"),
        ("ups-a", "low_battery", LAST_WORDS[0][2], "2026-10-14T01:20:00+00:00")]
    # seen from the first scrape after the first evaluation to the last before the recovering one
    assert {(e["first_seen"], e["last_seen"]) for e in outage["inferred_from"]} == {
        ("2026-10-14T01:21:00+00:00", "2026-10-14T03:00:00+00:00")}
    [item] = [r for r in statement["review"] if r.startswith("blackco: power: outage")]
    assert "rests on inference" in item and "ups-a said low_battery" in item and "ups-b said runtime_low" in item
    # billed from the first evaluation with the whole evidence, 70 s after the earliest moment the rule gives
    assert "70.0 s after the rule's moment" in item
    # the other outages of the month carry no such list
    assert all("inferred_from" not in o for c in statement["customers"] for s in c["services"]
               for o in s["outages"] if (c["customer"], s["service"]) != ("blackco", "power"))


def test_devices_that_merely_went_silent_leave_the_power_unknown_not_out(statement: dict) -> None:
    power = _service(statement, "quietco", "power")
    assert (power["raw_outage_seconds"], power["counted_outage_seconds"], power["outages"]) == (0, 0, [])
    assert power["unknown_seconds"] == SILENCE[1] - SILENCE[0] == 3600
    assert power["rent_waived"] is False
    assert not [r for r in statement["review"] if r.startswith("quietco") and "inference" in r]


def test_application_outages_are_listed_and_set_against_connectivity(statement: dict) -> None:
    appco = _customer(statement, "appco")
    assert [s["service"] for s in appco["services"]] == ["connectivity"]  # not billable: no billing row
    section = appco["applications"]
    assert section["billable"] is False
    got = [(o["check"], o["start_unix"], o["end_unix"], o["seconds_in_month"], o["ports_answered_seconds"],
            o["inside_connectivity_outage_seconds"], o["connectivity_unknown_seconds"], o["classification"],
            o["billed"]) for o in section["outages"]]
    assert got == [
        ("www", APP_RUNS[0].first_failed, APP_RUNS[0].recovered, 1800, 1800, 0, 0, "customer_fault evidence", False),
        ("www", APP_RUNS[1].first_failed, APP_RUNS[1].recovered, 3000, 0, 3000, 0, "inside connectivity outage",
         False),
        ("mail", APP_RUNS[2].first_failed, APP_RUNS[2].recovered, 3000, 1200, 1800, 0,
         "partly inside connectivity outage", False),
        ("mail", APP_RUNS[3].first_failed, APP_RUNS[3].recovered, 2400, 1200, 0, 1200,
         "partly customer_fault evidence", False),
    ]
    assert (section["outage_seconds"], section["ports_answered_seconds"],
            section["inside_connectivity_outage_seconds"], section["connectivity_unknown_seconds"]) == (
        10200, 4200, 4800, 1200)
    assert section["review"] == []  # nothing of it is billed
    # the billing of the customer's connectivity is that of the contract's ports alone
    start, end = OCTOBER.window(UTC)
    want = monthgen.truth(SCENARIO, APPCO.services[0], start, end, {})
    conn = _service(statement, "appco", "connectivity")
    assert (conn["raw_outage_seconds"], conn["counted_outage_seconds"], conn["unknown_seconds"]) == (
        want["raw"], want["counted"], want["unknown"]) == (5400, 5400, 1200)


def test_billable_applications_count_as_the_contract_says_and_carry_their_evidence(statement: dict) -> None:
    billco = _customer(statement, "billco")
    app = _service(statement, "billco", "application")
    assert (app["raw_outage_seconds"], app["excluded_seconds"]["customer_fault"], app["counted_outage_seconds"]) == (
        2400, 1200, 1200)
    assert app["objective_met"] is True and BUDGET >= 1200
    [line] = billco["applications"]["outages"]
    assert (line["classification"], line["ports_answered_seconds"], line["billed"]) == (
        "customer_fault evidence", 2400, True)
    [item] = billco["applications"]["review"]
    assert item.startswith("application: www outage 2026-10-08T09:00:00+00:00") and "customer_fault" in item
    assert f"billco: {item}" in statement["review"]


def test_customers_without_these_sections_publish_the_statement_as_before(statement: dict) -> None:
    quietco = _customer(statement, "quietco")
    assert "applications" not in quietco
    assert "applications" not in _customer(statement, "blackco")
    assert statement["schema"] == "threenines.statement/1"


def test_table_csv_and_html_show_both_sections(prom, exclusions: Path, tmp_path: Path) -> None:
    table = _report(prom, tmp_path, "table", "--exclusions", str(exclusions))
    assert "INFERRED (blackout rule) from UPS ups-a low_battery, without output since 2026-10-14T01:20:00+00:00" \
        in table
    assert "appco applications: not billed: 4 outage(s), 10200 s" in table
    assert "mail 2026-10-20T19:50:00+00:00 - 2026-10-20T20:40:00+00:00: 3000 s, partly inside connectivity outage" \
        in table
    rows = list(csv.DictReader(io.StringIO(_report(prom, tmp_path, "csv", "--exclusions", str(exclusions)))))
    by = {(r["customer"], r["service"]): r for r in rows}
    assert sorted(by) == [("appco", "connectivity"), ("billco", "application"), ("billco", "connectivity"),
                          ("blackco", "connectivity"), ("blackco", "power"), ("quietco", "connectivity"),
                          ("quietco", "power")]
    assert by[("appco", "connectivity")]["applications"].startswith("not billed: 4 outage(s), 10200 s: ports "
                                                                    "answered 4200 s")
    assert by[("blackco", "power")]["applications"] == ""
    assert "rests on inference" in by[("blackco", "power")]["review"]
    assert by[("blackco", "power")]["counted_outage_seconds"] == "5980.0"
    html = _report(prom, tmp_path, "html", "--exclusions", str(exclusions))
    assert "<th>inferred from (review)</th>" in html
    assert "UPS ups-b: runtime_low, without output since 2026-10-14T01:19:30+00:00" in html
    assert "<h3>Applications (not billed: the contract excludes them)</h3>" in html
    assert "<td>inside connectivity outage</td>" in html


INVENTORY = """\
customers:
  - id: appco
    name: App Co
    timezone: UTC
    contacts: {version: "1", notify: [{email: noc@appco.example}]}
    ports: [{id: p1, address: 192.0.2.10}]
    applications:
      - id: www
        http: {url: "https://www.appco.example/"}
      - id: mail
        smtp: {address: "192.0.2.25:25"}
  - id: billco
    name: Bill Co
    timezone: UTC
    contacts: {version: "1", notify: [{email: noc@billco.example}]}
    ports: [{id: p1, address: 192.0.2.11}]
    applications_billable: true
    applications:
      - id: www
        http: {url: "https://www.billco.example/"}
"""


def test_the_inventory_decides_what_is_billed(prom, tmp_path: Path) -> None:
    # The contract's policy is the inventory's applications_billable: turned around here (appco billable, billco
    # not), the same outages are billed for appco and only listed for billco.
    config = tmp_path / "inventory.yml"
    config.write_text(INVENTORY.replace("    applications_billable: true\n", "").replace(
        "    applications:\n      - id: www\n        http: {url: \"https://www.appco.example/\"}",
        "    applications_billable: true\n    applications:\n      - id: www\n"
        "        http: {url: \"https://www.appco.example/\"}"), encoding="utf-8")
    data = json.loads(_report(prom, tmp_path, "json", "--config", str(config)))
    appco, billco = _customer(data, "appco"), _customer(data, "billco")
    assert [s["service"] for s in appco["services"]] == ["connectivity", "application"]
    assert _service(data, "appco", "application")["raw_outage_seconds"] == 10200  # merged over www and mail
    assert appco["applications"]["billable"] is True
    assert all(o["billed"] for o in appco["applications"]["outages"])
    # two of appco's outages had the ports answering for part of them: evidence for the reviewer
    assert [r.split(":")[1].strip() for r in appco["applications"]["review"]] == ["www outage 2026-10-05T10",
                                                                                   "mail outage 2026-10-20T19",
                                                                                   "mail outage 2026-10-22T02"]
    assert [s["service"] for s in billco["services"]] == ["connectivity"]
    assert billco["applications"]["billable"] is False and billco["applications"]["outage_seconds"] == 2400
