"""Faults in the HA evidence chain, all real processes (tests/ha/stack.py): two replica exporters (vantages a, b)
probe one customer port in a namespace the test cuts, two Prometheus (the shipped HA example, `replica` a/b)
scrape both and remote-write to one VictoriaMetrics that deduplicates them. The test drives every fault, so it
knows the truth:

1. replica b killed with SIGKILL for five probe intervals while the port is up, then started again: a had
   evidence all along, so the month has no unknown second from b's gap;
2. Prometheus b killed (the test's stand-in for "10 minutes": 15 times its scrape interval and longer than the
   whole outage below), and during that, replica a killed with SIGKILL and the port cut and restored: b, the
   surviving replica, measured the outage from its first failed probe to its first answered one (its ledger says
   when), so the merged outage is exactly b's run, with no unknown second from a's gap;
3. the report from VictoriaMetrics equals the report from the Prometheus that survived, figure by figure, and the
   report from the two replicas' outage ledgers (`--ledger a=… --ledger b=…`) gives the same outage.

The month is the current one (a preview). Its unknown time is then exactly: from the month's start to the first
replica's accounting start, the first probe's wait after it (the exporter's own unknown, at most a probe interval
and a scrape), and from the last scrape (the replicas are stopped before the reports) to the month's end. Any
second of either replica's gap counted as unknown would add at least 10 s to that.
"""

from __future__ import annotations

import calendar
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.ha.stack import Stack, stack
from tests.support import wait_until

pytestmark = pytest.mark.netns  # root: a network namespace per customer port

INTERVAL = 2.0  # the port's probe interval (threshold 2, timeout 0.5 s)
SCRAPE = 1.0
PROBE = 0.5  # the probe's timeout: a failed probe is decided this long after it was sent
GAP = 5 * INTERVAL  # how long replica b is dead outside any outage
PROMETHEUS_DOWN = 15 * SCRAPE  # at least; it stays down through the whole outage


def ledger_runs(state_dir: Path) -> list[tuple[float, float | None]]:
    with sqlite3.connect(f"file:{state_dir / 'outages.sqlite'}?mode=ro", uri=True) as db:
        return db.execute("SELECT first_failed_at, ended_at FROM outages ORDER BY first_failed_at").fetchall()


def month_bounds(now: float) -> tuple[str, float, float]:
    day = datetime.fromtimestamp(now, UTC)
    start = datetime(day.year, day.month, 1, tzinfo=UTC)
    days = calendar.monthrange(day.year, day.month)[1]
    return f"{day.year}-{day.month:02d}", start.timestamp(), start.timestamp() + days * 86400


def connectivity(report: dict) -> dict:
    [customer] = report["customers"]
    [service] = customer["services"]
    assert service["service"] == "connectivity"
    return service


def outages(service: dict) -> list[tuple[float, float]]:
    return [(o["start_unix"], o["end_unix"]) for o in service["outages"]]


def dead_replica(s: Stack, vantage: str, seconds: float) -> None:
    s.replicas[vantage].kill9()
    time.sleep(seconds)


@pytest.mark.timeout(240)
def test_replica_and_prometheus_faults_cost_no_unknown_second_and_the_store_stays_exact(tmp_path: Path) -> None:
    with stack(tmp_path, interval=INTERVAL, scrape=SCRAPE) as s:
        month, month_start, month_end = month_bounds(time.time())
        for vantage in ("a", "b"):
            s.wait_probed(vantage, 2)
        accounting = min(s.metric(v, "threenines_exporter_accounting_start_timestamp_seconds") or 0 for v in "ab")
        assert accounting > 0
        wait_until(lambda: len(s.in_store(s.vm_url, "threenines_customer_service_up")) == 2, 30, interval=0.5,
                   what="both vantages' series in VictoriaMetrics")

        # 1. Replica b dead for five probe intervals while the port answers.
        dead_replica(s, "b", GAP)
        s.replicas["b"].start()
        s.wait_probed("b", 2)

        # 2. Prometheus b down; meanwhile replica a dies and the port is cut and restored.
        s.prometheus["b"].kill9()
        prometheus_down_at = time.monotonic()
        dead_replica(s, "a", INTERVAL)
        cut_at = time.time()
        s.port.down()
        wait_until(lambda: s.metric("b", "threenines_service_up", target="p1") == 0, 3 * INTERVAL + 5,
                   interval=0.2, what="replica b to determine the cut")
        time.sleep(INTERVAL)
        restored_at = time.time()
        s.port.up()
        wait_until(lambda: s.metric("b", "threenines_service_up", target="p1") == 1, 2 * INTERVAL + 5,
                   interval=0.2, what="replica b to see the port again")
        s.replicas["a"].start()
        s.wait_probed("a", 2)
        time.sleep(max(0.0, PROMETHEUS_DOWN - (time.monotonic() - prometheus_down_at)))
        s.prometheus["b"].start()
        time.sleep(3 * SCRAPE)  # both Prometheus scrape the recovered state and write it

        # The replicas stop; the reports read a store that no longer changes (after the writes have landed).
        for vantage in ("a", "b"):
            s.replicas[vantage].stop()
        stopped_at = time.time()
        time.sleep(3 * SCRAPE)

        # The truth: b's single-replica run, from its first failed probe to its first answered one.
        assert ledger_runs(s.state_dir("a")) == []  # a was dead through the whole outage
        [(first_failed, ended)] = ledger_runs(s.state_dir("b"))
        assert ended is not None
        assert cut_at <= first_failed <= cut_at + INTERVAL + PROBE + 1
        assert restored_at <= ended <= restored_at + INTERVAL + PROBE + 1

        from_vm = s.report(s.vm_url, month)
        from_a = s.report(s.prometheus_urls["a"], month)
        from_ledgers = s.report(s.vm_url, month, "--ledger", f"a={s.state_dir('a') / 'outages.sqlite'}",
                                "--ledger", f"b={s.state_dir('b') / 'outages.sqlite'}")

    vm, a, ledgers = connectivity(from_vm), connectivity(from_a), connectivity(from_ledgers)
    # The outage as the surviving replica measured it: from the store (the run's start gauge, its end from the
    # counter, exact to the second) and from the ledgers (exact).
    assert outages(ledgers) == [(first_failed, ended)]
    assert ledgers["raw_outage_seconds"] == pytest.approx(ended - first_failed, abs=1e-3)
    [(start, end)] = outages(vm)
    assert start == pytest.approx(first_failed, abs=1e-3)
    assert abs(end - ended) < 1.0
    assert abs(vm["raw_outage_seconds"] - (ended - first_failed)) < 1.0
    # The unknown time is the month outside the replicas' lives only: neither gap added a second to it.
    outside = (accounting - month_start) + (month_end - stopped_at)
    for service in (vm, a, ledgers):
        assert outside - SCRAPE <= service["unknown_seconds"] <= outside + INTERVAL + 2 * SCRAPE + 1, (
            service["unknown_seconds"] - outside)
    # VictoriaMetrics, fed by both Prometheus around the one's downtime, gives the survivor's figures. (It keeps
    # about 12 significant digits of a float: a Unix time in a gauge comes back within a microsecond.)
    assert [o["target"] for o in vm["outages"]] == [o["target"] for o in a["outages"]]
    assert outages(vm) == [pytest.approx(pair, abs=1e-3) for pair in outages(a)]
    for figure in ("raw_outage_seconds", "counter_outage_seconds", "counted_outage_seconds"):
        assert vm[figure] == pytest.approx(a[figure], abs=1e-3), figure
    for figure in ("rent_waived", "objective_met"):
        assert vm[figure] == a[figure], figure
    # The last scrape each store holds may be the other Prometheus' (at most a scrape interval apart): the month's
    # unknown tail, and the coverage review item that quotes it, may differ by that much.
    assert abs(vm["unknown_seconds"] - a["unknown_seconds"]) <= SCRAPE
    assert [r for r in vm["review"] if "coverage" not in r] == [r for r in a["review"] if "coverage" not in r]
