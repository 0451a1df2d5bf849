"""Missed notification deadlines with replica exporters (vantages): billed only where a notification was owed.

The contract: "Notification within 15 minutes of determining unavailability", and with replica exporters
unavailability is what the merge says (docs/design.md, "Replica exporters": under `merge: all` a second is outage
when every vantage with evidence says outage; under `merge: any` when any does). A replica whose own path to the
port failed determines an outage the merge does not have, nobody is paged, and its deadline watch still records a
miss: that miss is owed nothing and must not cost the provider a day's rent, but it must reach review. A miss of
an outage the merge has (both saw it, or the other vantage had no evidence) is a day's deduction, and a service
with one exporter is billed every miss, as before. Real Prometheus (a backfilled month, two exporters each stored
twice by an HA pair, as tests/report/test_vantages.py), and the same misses through the audit ledger.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.promdata import Series, serve_series
from tests.report import monthgen
from tests.report.monthgen import Customer, Run, Scenario, Service, ts
from threenines.config.exclusions import load_exclusions
from threenines.ledgers.audit import AuditLedger, Miss
from threenines.report.build import build_statement
from threenines.report.months import Month
from threenines.report.promclient import ClientConfig, PrometheusClient
from threenines.report.schema import Statement
from threenines.report.statement import CustomerSpec, Options

OCTOBER = Month(2026, 10)
STEP = 60
BEGIN, END = ts("2026-09-30T18:00:00+00:00"), ts("2026-11-01T06:00:00+00:00")
DEADLINE = 900  # the contract's 15 minutes
A, B = "ex-a:9839", "ex-b:9839"


def _run(first_failed: str, minutes: int) -> Run:
    start = ts(first_failed)
    return Run("p1", start, start + 300, start + 60 * minutes)  # determined at the second failed 5-minute probe


# Each customer's 20-minute outage, first failed probe at 10:00 on its own day, determined at 10:05: the replica
# that determined it records its miss at 10:05 + 15 min = 10:20 (nothing was delivered).
ONLY_A = _run("2026-10-12T10:00:00+00:00", 20)  # b up with evidence throughout: no merged outage
BOTH = _run("2026-10-14T10:00:00+00:00", 20)  # both saw it: merged outage 10:00–10:20
B_DEAD = _run("2026-10-16T10:00:00+00:00", 20)  # b dead 09:50–10:40: the merged outage is a's
SINGLE = _run("2026-10-18T10:00:00+00:00", 20)  # one exporter (a) exports this customer


def _miss(run: Run) -> int:
    return run.determined + DEADLINE


# Replicas that could not reach each other and got no page: each determined the outage at its own probe (b's
# phase 60 s after a's) and keyed its miss by its own determination, 60 s apart. One outage, one miss.
APART = (_run("2026-10-22T10:00:00+00:00", 20), _run("2026-10-22T10:01:00+00:00", 20))  # misses 10:20, 10:21
# The same across midnight in the customer's zone (Europe/Berlin, UTC+2 in October before the 25th): a's miss at
# 23:59 on the 20th, b's at 00:00 on the 21st.
MIDNIGHT = (_run("2026-10-20T21:39:00+00:00", 20), _run("2026-10-20T21:40:00+00:00", 20))
# Two outages of the target two hours apart, each missed by both replicas under their own determinations.
TWICE_A = [_run("2026-10-24T10:00:00+00:00", 20), _run("2026-10-24T12:00:00+00:00", 20)]
TWICE_B = [_run("2026-10-24T10:01:00+00:00", 20), _run("2026-10-24T12:01:00+00:00", 20)]
# Two outages 3 minutes apart: the first's window [m - D - R, m) reaches into the second: still two outages.
CLOSE_A = [_run("2026-10-26T10:00:00+00:00", 7), _run("2026-10-26T10:10:00+00:00", 20)]
CLOSE_B = [_run("2026-10-26T10:01:00+00:00", 7), _run("2026-10-26T10:11:00+00:00", 20)]

SEEN: dict[str, dict[str, list[Run]]] = {
    A: {"only_a": [ONLY_A], "both": [BOTH], "b_dead": [B_DEAD], "single": [SINGLE],
        "apart": [APART[0]], "midnight": [MIDNIGHT[0]], "twice": TWICE_A, "close": CLOSE_A,
        "single_close": CLOSE_A},
    B: {"only_a": [], "both": [BOTH], "b_dead": [],
        "apart": [APART[1]], "midnight": [MIDNIGHT[1]], "twice": TWICE_B, "close": CLOSE_B},
}
DEAD = {A: [], B: [(ts("2026-10-16T09:50:00+00:00"), ts("2026-10-16T10:40:00+00:00"))]}
CUSTOMERS = ("both", "b_dead", "only_a", "single")
ZONES = {"midnight": "Europe/Berlin"}  # every other customer's contract zone is UTC


def _scenario(exporter: str) -> Scenario:
    missing = {g for a, b in DEAD[exporter] for g in range(a + STEP, b + 1, STEP)}
    customers = [Customer(c, ZONES.get(c, "UTC"), [Service(c, "connectivity", ("p1",), runs)],
                          misses=[_miss(r) for r in runs])
                 for c, runs in SEEN[exporter].items()]
    return Scenario(BEGIN, END, missing, customers, step=STEP)


def _series() -> list[Series]:
    out = []
    for exporter in SEEN:
        scenario = _scenario(exporter)
        mine = monthgen.series(scenario)
        # the customer's contracted deadline, as every exporter exports it (docs/metrics.md)
        mine += [Series("threenines_customer_notification_deadline_seconds", {"customer": c.id},
                        [(g, DEADLINE) for g in scenario.grid()[::5]]) for c in scenario.customers]
        for one in mine:
            for replica in ("p1", "p2"):
                out.append(replace(one, labels={**one.labels, "instance": exporter, "job": "threenines",
                                                "replica": replica}))
    return out


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("vantage-misses")
    with serve_series(_series(), workdir, max_block_duration="1488h") as server:
        yield server, workdir


def _ledger(workdir: Path, policy: str | None) -> Path:
    path = workdir / f"exclusions-{policy}.yml"
    path.write_text("exclusions: []\n" + (f"policy:\n  merge: {policy}\n" if policy else ""), encoding="utf-8")
    return path


def _statement(url: str, exclusions: Path, audit: Path | None = None,
               customers: tuple[str, ...] = CUSTOMERS) -> Statement:
    client = PrometheusClient(ClientConfig(url, timeout=60))
    specs = [CustomerSpec(c, c, ZONES.get(c, "UTC"), 0.999, ("connectivity",)) for c in customers]
    return build_statement(client, OCTOBER, specs, load_exclusions(exclusions), Options(), audit_ledger=audit)


def _audit(workdir: Path) -> Path:
    """Replica a's audit ledger: one not_notified miss per outage it determined (threenines.alerting.deadlines)."""
    path = workdir / "audit-a.sqlite"
    if not path.exists():
        ledger = AuditLedger(path)
        for customer, runs in SEEN[A].items():
            for run in runs:
                ledger.append_miss(Miss(customer, "connectivity", "p1", float(run.determined), float(_miss(run)),
                                        float(_miss(run)) + 1, "not_notified"))
        ledger.close()
    return path


def _credits(statement: Statement) -> dict[str, tuple[float, list[str], int]]:
    return {c.customer: (c.notification.missed_deadlines, c.notification.days, c.notification.deduction_days)
            for c in statement.customers}


def _unowed_items(statement: Statement) -> list[str]:
    return [item for item in statement.review if "not billed" in item]


@pytest.mark.parametrize("source", ["metric", "audit-ledger"])
def test_a_miss_counts_only_where_the_merge_determined_unavailability(prom, source: str) -> None:
    server, workdir = prom
    statement = _statement(server.url, _ledger(workdir, None), _audit(workdir) if source == "audit-ledger" else None)
    got = _credits(statement)
    # (a) a's own path failed, b had evidence the port was up: no merged outage, nothing owed, no deduction
    assert got["only_a"] == (0, [], 0)
    # (b) both vantages saw the outage: the merged outage's notification was owed and missed: one day
    assert got["both"] == (1, ["2026-10-14"], 1)
    # (c) b had no evidence during a's outage: the merged outage is a's, and so is the miss
    assert got["b_dead"] == (1, ["2026-10-16"], 1)
    # (d) one exporter: every miss counts, as before
    assert got["single"] == (1, ["2026-10-18"], 1)
    # the dropped miss does not vanish: one review item naming the customer, the target, the instant and why
    [item] = _unowed_items(statement)
    assert item.startswith("only_a: notifications: the deadline of connectivity p1 missed at "
                           "2026-10-12T10:20:00+00:00 is not billed"), item
    assert "merge: all" in item and "no outage of p1" in item and f"'{B}'" in item, item
    # the only review item of the month (the merged minutes themselves are consistent)
    assert [i for i in statement.review if i != item] == [], statement.review


def test_merge_any_owes_the_notification_one_vantage_determined(prom) -> None:
    # `merge: any`: a second is outage when any vantage says so, so a's outage is the merged outage and its miss
    # is a day's deduction, with nothing to review.
    server, workdir = prom
    statement = _statement(server.url, _ledger(workdir, "any"))
    got = _credits(statement)
    assert got["only_a"] == (1, ["2026-10-12"], 1)
    assert (got["both"][2], got["b_dead"][2], got["single"][2]) == (1, 1, 1)
    assert _unowed_items(statement) == []


def test_the_merged_minutes_are_billed_as_the_rule_says(prom) -> None:
    # The outage seconds behind the credits above: only_a none (b up), both and b_dead 20 minutes each.
    server, workdir = prom
    seconds = {c.customer: c.services[0].raw_outage_seconds for c in _statement(server.url,
                                                                                _ledger(workdir, None)).customers}
    assert seconds == {"only_a": 0, "both": 1200, "b_dead": 1200, "single": 1200}


def test_victoriametrics_gives_the_same_credits_and_review(prom, tmp_path: Path) -> None:
    # The same month through a real VictoriaMetrics (docs/ha.md's flags): the deadline and per-target miss queries
    # must answer there as on Prometheus.
    from tests.ha.test_victoriametrics import VM_FLAGS
    from tests.ha.victoriametrics import victoriametrics, vm_import

    server, workdir = prom
    series = _series()
    on_prom = _statement(server.url, _ledger(workdir, None))
    with victoriametrics(tmp_path, *VM_FLAGS) as vm:
        assert vm_import(vm.url, series) == sum(len(s.samples) for s in series)
        on_vm = _statement(vm.url, _ledger(workdir, None))
    assert _credits(on_vm) == _credits(on_prom)
    assert _credits(on_vm)["only_a"] == (0, [], 0)
    assert _unowed_items(on_vm) == _unowed_items(on_prom) and len(_unowed_items(on_vm)) == 1


APART_CUSTOMERS = ("apart", "midnight", "twice", "close")


def _repeated_items(statement: Statement) -> list[str]:
    return sorted(item for item in statement.review if " again: " in item)


def test_one_outage_missed_under_two_replicas_determinations_is_one_miss(prom) -> None:
    # "Notification within 15 minutes of determining unavailability ... Each miss costs one day's rent, at most one
    # per day": the provider determined the outage once, at the earliest determination, so one notification was
    # owed and missed, whichever replica's instants say so; two outages are two notifications owed.
    server, workdir = prom
    statement = _statement(server.url, _ledger(workdir, None), customers=APART_CUSTOMERS)
    got = _credits(statement)
    assert got["apart"] == (1, ["2026-10-22"], 1)
    # the day is the earliest instant's, in the customer's zone: 23:59 on the 20th, not 00:00 on the 21st
    assert got["midnight"] == (1, ["2026-10-20"], 1)
    # two outages two hours apart, both missed by both replicas: two misses (on one day: one deduction)
    assert got["twice"] == (2, ["2026-10-24"], 1)
    # two outages 3 minutes apart, the first's window reaching into the second's run: still two misses
    assert got["close"] == (2, ["2026-10-26"], 1)
    # each later instant is named with the miss it repeats, never silently dropped
    assert [item.split(" is the miss at ")[0] for item in _repeated_items(statement)] == [
        "apart: notifications: the deadline of connectivity p1 missed at 2026-10-22T10:21:00+00:00",
        "close: notifications: the deadline of connectivity p1 missed at 2026-10-26T10:21:00+00:00",
        "close: notifications: the deadline of connectivity p1 missed at 2026-10-26T10:31:00+00:00",
        "midnight: notifications: the deadline of connectivity p1 missed at 2026-10-21T00:00:00+02:00",
        "twice: notifications: the deadline of connectivity p1 missed at 2026-10-24T10:21:00+00:00",
        "twice: notifications: the deadline of connectivity p1 missed at 2026-10-24T12:21:00+00:00",
    ]
    assert ("midnight: notifications: the deadline of connectivity p1 missed at 2026-10-21T00:00:00+02:00 is the "
            "miss at 2026-10-20T23:59:00+02:00 again") in _repeated_items(statement)[3]
    assert " is the miss at 2026-10-26T10:20:00+00:00 again" in _repeated_items(statement)[1]
    assert " is the miss at 2026-10-26T10:30:00+00:00 again" in _repeated_items(statement)[2]
    assert _unowed_items(statement) == []


def test_one_exporter_bills_every_miss_of_close_outages(prom) -> None:
    # A service with one exporter (a alone exports single_close): its determinations are the provider's and every
    # miss counts as before; its two outages 3 minutes apart are two misses.
    server, workdir = prom
    statement = _statement(server.url, _ledger(workdir, None), customers=("single_close",))
    assert _credits(statement)["single_close"] == (2, ["2026-10-26"], 1)
    assert _repeated_items(statement) == [] and _unowed_items(statement) == []


def test_victoriametrics_counts_one_outage_once_as_prometheus(prom, tmp_path: Path) -> None:
    from tests.ha.test_victoriametrics import VM_FLAGS
    from tests.ha.victoriametrics import victoriametrics, vm_import

    server, workdir = prom
    series = _series()
    on_prom = _statement(server.url, _ledger(workdir, None), customers=APART_CUSTOMERS)
    with victoriametrics(tmp_path, *VM_FLAGS) as vm:
        assert vm_import(vm.url, series) == sum(len(s.samples) for s in series)
        on_vm = _statement(vm.url, _ledger(workdir, None), customers=APART_CUSTOMERS)
    assert _credits(on_vm) == _credits(on_prom)
    assert _credits(on_vm)["apart"] == (1, ["2026-10-22"], 1)
    assert _repeated_items(on_vm) == _repeated_items(on_prom) and len(_repeated_items(on_vm)) == 6
