"""Two replica exporters (vantages) of one customer, on a real backfilled Prometheus, against truth from the rule.

The bug this pins (issue 19): one month, one port, one exporter saw 90 minutes of outage and the other 20; the
report kept whichever series came back last, so the bill was 1200 s or 5400 s depending on how the two
`instance` labels sort. The rule (docs/design.md, "Replica exporters"): a second is outage when every vantage
that has evidence for it says outage (`merge: all`; `merge: any` when one does), unknown only when none has
evidence. Here customer `ab` has its long outage on the exporter whose label sorts first and `ba` on the one
that sorts last; exporter b is dead for an hour inside `ab`'s outage; both are dead at once for 10 minutes;
and a Prometheus HA pair (`replica` p1/p2) stores every series twice, which must not make a third vantage.
The truth is computed second by second from the rule's words (big integers as bit sets), not from the report.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.promdata import Series, serve_series
from tests.report import monthgen
from tests.report.monthgen import Customer, Run, Scenario, Service, ts
from threenines.config.exclusions import load_exclusions
from threenines.report.build import build_statement
from threenines.report.months import Month
from threenines.report.promclient import ClientConfig, PrometheusClient
from threenines.report.schema import Statement
from threenines.report.statement import CustomerSpec, Options

OCTOBER = Month(2026, 10)
STEP = 60
BEGIN, END = ts("2026-09-30T18:00:00+00:00"), ts("2026-11-01T06:00:00+00:00")


def _run(first_failed: str, recovered: str) -> Run:
    start = ts(first_failed)
    return Run("p1", start, start + 300, ts(recovered))


# what each exporter saw, per customer
SEEN = {
    "ex-a:9839": {"ab": [_run("2026-10-10T10:00:00+00:00", "2026-10-10T11:30:00+00:00")],   # 90 min
                  "ba": [_run("2026-10-20T10:05:00+00:00", "2026-10-20T10:25:00+00:00")]},  # 20 min
    "ex-b:9839": {"ab": [_run("2026-10-10T10:00:00+00:00", "2026-10-10T10:20:00+00:00")],   # 20 min
                  "ba": [_run("2026-10-20T10:00:00+00:00", "2026-10-20T11:30:00+00:00")]},  # 90 min
}
DEAD = {  # exporter not running: no evidence
    "ex-a:9839": [(ts("2026-10-25T03:00:00+00:00"), ts("2026-10-25T03:30:00+00:00"))],
    "ex-b:9839": [(ts("2026-10-10T10:40:00+00:00"), ts("2026-10-10T11:40:00+00:00")),  # inside ab's outage
                  (ts("2026-10-25T03:10:00+00:00"), ts("2026-10-25T03:20:00+00:00"))],   # a dead too: unknown
}
CUSTOMERS = ("ab", "ba")
# One missed notification deadline of ba's outage, which both exporters recorded (as the replicas' deadline watches
# do: keyed by the outage's earliest determination, at that determination + the deadline): one miss, one credit.
MISSED = {"ab": [], "ba": [ts("2026-10-20T10:20:00+00:00")]}


def _scenario(exporter: str) -> Scenario:
    missing = {g for a, b in DEAD[exporter] for g in range(a + STEP, b + 1, STEP)}
    customers = [Customer(c, "UTC", [Service(c, "connectivity", ("p1",), SEEN[exporter][c])], misses=MISSED[c])
                 for c in CUSTOMERS]
    return Scenario(BEGIN, END, missing, customers, step=STEP)


def _series() -> list[Series]:
    out = []
    for exporter in SEEN:
        for one in monthgen.series(_scenario(exporter)):
            for replica in ("p1", "p2"):  # two Prometheus scraping the same exporter
                out.append(replace(one, labels={**one.labels, "instance": exporter, "job": "threenines",
                                                "replica": replica}))
    return out


def _bits(a: int, b: int, start: int, end: int) -> int:
    lo, hi = max(a, start) - start, min(b, end) - start
    return ((1 << (hi - lo)) - 1) << lo if hi > lo else 0


def truth(customer: str, policy: str) -> dict[str, int]:
    """The rule's words, one bit per second of October: outage and unknown seconds of the customer."""
    start, end = OCTOBER.window(ZoneInfo("UTC"))
    everything = _bits(start, end, start, end)
    said_outage = said_up = evidence = 0
    for exporter, seen in SEEN.items():
        blind = 0
        for a, b in DEAD[exporter]:
            blind |= _bits(a, b, start, end)
        outage = 0
        for run in seen[customer]:
            outage |= _bits(run.first_failed, run.recovered, start, end)
        outage &= ~blind  # a dead exporter says nothing
        mine = everything & ~blind
        said_outage |= outage
        said_up |= mine & ~outage
        evidence |= mine
    outage = said_outage & ~said_up if policy == "all" else said_outage
    return {"outage": outage.bit_count(), "unknown": (everything & ~evidence).bit_count()}


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("vantages")
    with serve_series(_series(), workdir, max_block_duration="1488h") as server:
        yield server, workdir


def _statement(url: str, exclusions: Path) -> Statement:
    client = PrometheusClient(ClientConfig(url, timeout=60))
    specs = [CustomerSpec(c, c, "UTC", 0.999, ("connectivity",)) for c in CUSTOMERS]
    return build_statement(client, OCTOBER, specs, load_exclusions(exclusions), Options())


def _ledger(workdir: Path, policy: str | None) -> Path:
    path = workdir / f"exclusions-{policy}.yml"
    path.write_text("exclusions: []\n" + (f"policy:\n  merge: {policy}\n" if policy else ""), encoding="utf-8")
    return path


@pytest.mark.parametrize("policy", [None, "all", "any"])
def test_merged_figures_equal_the_rule_to_the_second_whatever_the_labels_sort(prom, policy: str | None) -> None:
    server, workdir = prom
    statement = _statement(server.url, _ledger(workdir, policy))
    for customer in statement.customers:
        [got] = customer.services
        want = truth(customer.customer, policy or "all")
        assert (got.raw_outage_seconds, got.counted_outage_seconds, got.unknown_seconds) == (
            want["outage"], want["outage"], want["unknown"]), customer.customer
        # the outage list says the same seconds as the billing fields
        assert sum(o.seconds_in_month for o in got.outages) == got.raw_outage_seconds
        assert customer.review == [], customer.review


def test_the_worked_example_of_the_issue(prom) -> None:
    server, workdir = prom
    merged = {c.customer: c.services[0] for c in _statement(server.url, _ledger(workdir, None)).customers}
    # ab: a says 10:00–11:30, b 10:00–10:20 and is dead 10:40–11:40: outage where both say so (20 min) and
    # where only a has evidence (10:40–11:30, 50 min); b's dead hour is not unknown (a had evidence)
    assert merged["ab"].raw_outage_seconds == 70 * 60
    # ba: b says 10:00–11:30, a 10:05–10:25: only where both agree; it starts when the later vantage failed
    assert merged["ba"].raw_outage_seconds == 20 * 60
    [outage] = merged["ba"].outages
    assert (outage.start_unix, outage.end_unix) == (ts("2026-10-20T10:05:00+00:00"),
                                                          ts("2026-10-20T10:25:00+00:00"))
    # both dead 03:10–03:20 on the 25th: the only unknown seconds
    assert merged["ab"].unknown_seconds == merged["ba"].unknown_seconds == 600


def test_a_miss_both_exporters_recorded_is_one_miss(prom) -> None:
    # Two exporters, each stored twice by the Prometheus pair: four series carry the one miss of the outage.
    server, workdir = prom
    credits = {c.customer: c.notification for c in _statement(server.url, _ledger(workdir, None)).customers}
    assert (credits["ba"].missed_deadlines, credits["ba"].days, credits["ba"].deduction_days) == (1, ["2026-10-20"], 1)
    assert (credits["ab"].missed_deadlines, credits["ab"].deduction_days) == (0, 0)
