"""The report on VictoriaMetrics equals the report on Prometheus, and the truth, for the same backfilled month.

The month is test_truth's October 2026 (three zones, DST both ways, an exporter restart with counter resets and a
20-minute gap, a 3-minute gap, outages across both month edges, missed notification deadlines), written once by
tests/report/monthgen.py. Prometheus gets it through promtool's OpenMetrics backfill; a real victoria-metrics
(Debian 1.79.5) through its own /api/v1/import, with the flags docs/ha.md prescribes. The differences between
the engines that matter to the report are tested on their own: VictoriaMetrics' query-length and
points-per-series limits (and the flag the report names), its retention, and `@` on a bare range selector.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.ha.victoriametrics import victoriametrics, vm_import
from tests.promdata import Series, serve_series
from tests.report import monthgen
from tests.report.test_truth import EXCLUSIONS_YML, OCTOBER, SCENARIO, TRUE_EXCLUSIONS
from threenines.cli import main
from threenines.config.exclusions import load_exclusions
from threenines.report.build import build_statement
from threenines.report.promclient import MAX_QUERY_BYTES, ClientConfig, PrometheusClient, PrometheusQueryError
from threenines.report.resets import corrections
from threenines.report.statement import CustomerSpec, Options

# What docs/ha.md prescribes for a 60 s scrape: the month-long subqueries of the report hold up to 45,301
# points per series (745 h and margins), above the default 30,000; 100y because the month is in the past.
VM_FLAGS = ("-retentionPeriod=100y", "-dedup.minScrapeInterval=60s", "-search.maxPointsPerTimeseries=50000")
SPECS = [CustomerSpec(c.id, c.id.title(), c.timezone, 0.999, tuple(s.service for s in c.services))
         for c in SCENARIO.customers]


@pytest.fixture(scope="module")
def month_series() -> list[Series]:
    return monthgen.series(SCENARIO)


@pytest.fixture(scope="module")
def prom(month_series, tmp_path_factory: pytest.TempPathFactory):
    with serve_series(month_series, tmp_path_factory.mktemp("prom"), max_block_duration="1488h") as server:
        yield server


@pytest.fixture(scope="module")
def vm(month_series, tmp_path_factory: pytest.TempPathFactory):
    with victoriametrics(tmp_path_factory.mktemp("vm"), *VM_FLAGS) as server:
        assert vm_import(server.url, month_series) == sum(len(s.samples) for s in month_series)
        yield server


def _statement(url: str, ledger: Path) -> tuple[dict, PrometheusClient]:
    client = PrometheusClient(ClientConfig(url, timeout=60))
    client.detect_engine()
    statement = build_statement(client, OCTOBER, SPECS, load_exclusions(ledger), Options(scrape_interval=60))
    return statement.to_dict(), client


@pytest.fixture(scope="module")
def statements(prom, vm, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, PrometheusClient]:
    ledger = tmp_path_factory.mktemp("ledger") / "exclusions.yml"
    ledger.write_text(EXCLUSIONS_YML, encoding="utf-8")
    on_prom, _ = _statement(prom.url, ledger)
    on_vm, vm_client = _statement(vm.url, ledger)
    return on_prom, on_vm, vm_client


def test_every_figure_on_victoriametrics_equals_prometheus(statements) -> None:
    on_prom, on_vm, _ = statements
    assert on_vm["customers"] == on_prom["customers"]
    assert on_vm["review"] == on_prom["review"]
    assert on_vm == on_prom


@pytest.mark.parametrize(("customer", "service"), [(c.id, s.service) for c in SCENARIO.customers for s in c.services])
def test_victoriametrics_figures_equal_the_truth_to_the_second(statements, customer: str, service: str) -> None:
    _, on_vm, _ = statements
    [c] = [c for c in SCENARIO.customers if c.id == customer]
    [svc] = [s for s in c.services if s.service == service]
    start, end = OCTOBER.window(ZoneInfo(c.timezone))
    want = monthgen.truth(SCENARIO, svc, start, end, TRUE_EXCLUSIONS.get((customer, service), {}))
    [got_c] = [x for x in on_vm["customers"] if x["customer"] == customer]
    [got] = [s for s in got_c["services"] if s["service"] == service]
    assert (got["raw_outage_seconds"], got["unknown_seconds"], got["counted_outage_seconds"]) == (
        want["raw"], want["unknown"], want["counted"])
    for reason in monthgen.REASON_ORDER:
        assert got["excluded_seconds"][reason] == want[reason], reason
    assert got_c["notification"]["days"] == monthgen.missed_days(c, start, end)
    outages = [(o["start_unix"], o["end_unix"]) for o in got["outages"]]
    in_month = [(r.first_failed, r.recovered) for r in svc.outages if r.first_failed < end and r.recovered > start]
    assert [a for a, _ in outages] == [a for a, _ in in_month]


def test_every_query_sent_to_victoriametrics_fits_its_default_query_length(statements) -> None:
    *_, client = statements
    assert client.engine is not None and client.engine.victoriametrics
    assert client.trace and max(len(t.query.encode()) for t in client.trace) <= MAX_QUERY_BYTES


def test_the_cli_says_which_engine_it_used(prom, vm, tmp_path: Path, capsys) -> None:
    for url, name in ((vm.url, "VictoriaMetrics"), (prom.url, "Prometheus")):
        out = tmp_path / f"{name}.csv"
        assert main(["report", "--month", "2026-10", "--prometheus", url, "--format", "csv", "--output", str(out),
                     "--scrape-interval", "60s"]) == 0
        err = capsys.readouterr().err
        assert f"engine: {name} " in err, err
        if name == "VictoriaMetrics":  # the flags the figures depend on are in the output too
            assert "-search.maxPointsPerTimeseries=50000" in err and "-retentionPeriod=100y" in err, err
    assert (tmp_path / "VictoriaMetrics.csv").read_text() == (tmp_path / "Prometheus.csv").read_text()


def test_default_retention_is_refused_naming_the_flag(tmp_path: Path, capsys) -> None:
    # Debian's default is one month: October is (or soon will be) deleted by the time it is billed.
    with victoriametrics(tmp_path) as bare:
        assert main(["report", "--month", "2026-10", "--prometheus", bare.url]) == 1
    err = capsys.readouterr().err
    assert "engine: VictoriaMetrics" in err
    assert "-retentionPeriod=1" in err and "restart it with -retentionPeriod=13" in err, err


def test_default_points_per_series_is_refused_naming_the_value_needed(tmp_path: Path) -> None:
    # The report's month-long outage-run subquery at 60 s: 31 days + 10 h of margins = 45,241 points per series.
    span, step, end = 31 * 86400 + 36000, 60, OCTOBER.window(ZoneInfo("UTC"))[1]
    with victoriametrics(tmp_path, "-retentionPeriod=100y") as bare:
        client = PrometheusClient(ClientConfig(bare.url, retries=0))
        assert client.detect_engine().victoriametrics
        with pytest.raises(PrometheusQueryError, match=r"-search\.maxPointsPerTimeseries=45241 or more"):
            client.matrix(f"(threenines_service_outage_start_timestamp_seconds > 0)[{span}s:{step}s] @ {end}", end)


# -- counter resets of a fleet, on VictoriaMetrics with its default query length ---------------------------

START, END = OCTOBER.window(ZoneInfo("UTC"))
RESTART = START + 15 * 86400 + 7 * 3600 + 1800
FLEET = [f"customer-with-a-long-identifier-{i:03d}" for i in range(20)]


def _counter(drops: set[int]) -> list[tuple[int, int]]:
    out, value = [], 1000
    for t in range(START - 600, END + 601, 60):
        value = 3 if t in drops else value + 7
        out.append((t, value))
    return out


def test_a_restart_of_the_fleet_is_corrected_in_queries_within_the_default_length(tmp_path: Path) -> None:
    # One exporter restart resets the counters of every customer at once; one `or` of a day's 24 hour-pieces
    # for these 20 customers would be ~26 KB, beyond VictoriaMetrics' default -search.maxQueryLen (16 KiB).
    samples = {c: _counter({RESTART, START + 3 * 86400 + 60}) for c in FLEET}
    series = [Series("x_seconds_total", {"customer": c, "service": "power"}, s, "counter") for c, s in samples.items()]
    with victoriametrics(tmp_path, "-retentionPeriod=100y") as vm:
        vm_import(vm.url, series)
        client = PrometheusClient(ClientConfig(vm.url, retries=0))
        assert client.detect_engine().max_query_bytes == 16384
        month_resets = {(("customer", c), ("service", "power")): 2.0 for c in FLEET}
        fixes, unresolved = corrections(client, "x_seconds_total", month_resets, START, END, 60, 10_000_000)
    assert unresolved == set()
    # each drop falls from the value before it: the counter's value at the scrape before each reset
    want = {c: sum(v for (t, v), (t2, _) in pairwise(s) if t2 in (RESTART, START + 3 * 86400 + 60))
            for c, s in samples.items()}
    assert {dict(k)["customer"]: v for k, v in fixes.items()} == want
    assert max(len(t.query.encode()) for t in client.trace) <= 16384


def test_victoriametrics_ignores_at_on_a_bare_range_selector_so_the_client_pins_the_query_time(vm) -> None:
    # The difference that would silently break an exact report: asked at another time, VictoriaMetrics returns
    # the window ending at the query's time, not at `@`. Inside a function (resets(x[..] @ t)) it honours `@`.
    metric = "threenines_customer_service_outage_seconds_total"
    at, other = START + 86400, START + 2 * 86400
    client = PrometheusClient(ClientConfig(vm.url, retries=0))
    raw = client.query(f'{metric}{{customer="globex",service="connectivity"}}[3600s] @ {at}', other)[1]
    assert max(float(t) for t, _ in raw[0]["values"]) == other  # not `at`: the `@` was ignored
    pinned = client.matrix(f'{metric}{{customer="globex",service="connectivity"}}[3600s] @ {at}', at)
    assert max(t for t, _ in next(iter(pinned.values()))) == at
    with pytest.raises(ValueError, match="ask at the pinned time"):
        client.matrix(f'{metric}{{customer="globex"}}[3600s] @ {at}', other)
    inside = client.vector(f'count_over_time({metric}{{customer="globex",service="connectivity"}}[3600s] @ {at})',
                           other)
    assert list(inside.values()) == [60.0]
