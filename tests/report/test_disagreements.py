"""Disagreements between the sources are reported, and outage evidence outside the fast path is still found.

Written by hand (not monthgen) because the data is deliberately inconsistent: a state gauge that reads down
while the counter never rises, a counter that rises with no outage gauge, and an outage whose first failed
probe is in the month but which is determined (counter jump) only after the month end (billed in the month
it began, as the contract says). October 2026, UTC,
5-minute scrapes. One real Prometheus for the module.
"""

from __future__ import annotations

import pytest

from tests.promdata import Series, serve_series
from threenines.config.exclusions import Exclusions
from threenines.report.build import build_statement
from threenines.report.months import Month
from threenines.report.promclient import ClientConfig, PrometheusClient
from threenines.report.schema import ServiceStatement, Statement
from threenines.report.statement import CustomerSpec, Options

START, END = 1790812800, 1793491200  # October 2026 in UTC
STEP = 300
GRID = range(START - 3600, END + 7 * 3600 + 1, STEP)
LATE_FIRST, LATE_DETERMINED, LATE_RECOVERED = END - 600, END + 300, END + 1800
LIAR_DOWN = (START + 86400, START + 86400 + 1800)  # gauge reads 0 for six scrapes, the counter stays flat
PHANTOM_AT = START + 2 * 86400  # the counter jumps by 900 s with no gauge or target outage


def _cs(customer: str, up, outage, service: str = "connectivity") -> list[Series]:
    labels = {"customer": customer, "service": service}
    return [
        Series("threenines_customer_service_outage_seconds_total", labels, [(t, outage(t)) for t in GRID], "counter"),
        Series("threenines_customer_service_unknown_seconds_total", labels, [(t, 0) for t in GRID], "counter"),
        Series("threenines_customer_service_up", labels, [(t, up(t)) for t in GRID]),
        Series("threenines_customer_service_known", labels, [(t, 1) for t in GRID]),
    ]


def _target(customer: str, first: int, determined: int, recovered: int) -> list[Series]:
    labels = {"customer": customer, "service": "connectivity", "target": "p1"}
    open_ = [(t, determined <= t < recovered) for t in GRID]
    return [
        Series("threenines_service_outage_start_timestamp_seconds", labels, [(t, first if o else 0) for t, o in open_]),
        Series("threenines_service_determined_timestamp_seconds", labels,
               [(t, determined if o else 0) for t, o in open_]),
        Series("threenines_service_outage_seconds_total", labels,
               [(t, 0 if t < determined else min(t, recovered) - first) for t in GRID], "counter"),
    ]


def _late_counter(t: int) -> int:
    return 0 if t < LATE_DETERMINED else min(t, LATE_RECOVERED) - LATE_FIRST


def _series() -> list[Series]:
    return [
        *_cs("fine", lambda t: 1, lambda t: 0),
        *_cs("liar", lambda t: 0 if LIAR_DOWN[0] <= t < LIAR_DOWN[1] else 1, lambda t: 0),
        *_cs("phantom", lambda t: 1, lambda t: 900 if t >= PHANTOM_AT else 0),
        *_cs("late-co.eu:1", lambda t: 0 if LATE_DETERMINED <= t < LATE_RECOVERED else 1, _late_counter),
        *_target("late-co.eu:1", LATE_FIRST, LATE_DETERMINED, LATE_RECOVERED),
        *_cs("gauges_only", lambda t: 1, lambda t: 0)[2:],  # state gauges, no counters
    ]


@pytest.fixture(scope="module")
def statement(tmp_path_factory: pytest.TempPathFactory) -> Statement:
    with serve_series(_series(), tmp_path_factory.mktemp("disagree"), max_block_duration="1488h") as prom:
        names = ("fine", "liar", "phantom", "late-co.eu:1", "gauges_only")
        specs = [CustomerSpec(c, c, "UTC", 0.999, ("connectivity",)) for c in names]
        client = PrometheusClient(ClientConfig(prom.url, timeout=30))
        return build_statement(client, Month(2026, 10), specs, Exclusions(), Options(scrape_interval=STEP))


def _service(statement: Statement, customer: str) -> ServiceStatement:
    [c] = [c for c in statement.customers if c.customer == customer]
    return c.services[0]


def test_a_clean_customer_has_nothing_to_review(statement: Statement) -> None:
    assert _service(statement, "fine").review == []
    assert _service(statement, "fine").raw_outage_seconds == 0


def test_gauge_down_without_counter_or_bounds_is_reported(statement: Statement) -> None:
    got = _service(statement, "liar")
    assert got.raw_outage_seconds == 0
    assert any("state gauge shows 1800.0 s down" in item for item in got.review), got.review


def test_counter_without_bounds_is_reported_and_billed_from_the_counter(statement: Statement) -> None:
    got = _service(statement, "phantom")
    assert got.raw_outage_seconds == 900
    assert any("outage counter says 900.0 s but the outage runs say 0.0 s" in item for item in got.review)


def test_outage_determined_after_the_month_end_is_found_and_flagged(statement: Statement) -> None:
    got = _service(statement, "late-co.eu:1")
    [outage] = got.outages
    assert (outage.start_unix, outage.end_unix, outage.end_exact) == (LATE_FIRST, LATE_RECOVERED, True)
    assert outage.seconds_in_month == 600
    # The contract starts the outage at the first failed probe: its 600 s before midnight are October's, although
    # the counter only rose in November (determination). The counter's lag is explained, not a disagreement.
    assert got.raw_outage_seconds == got.counted_outage_seconds == 600
    assert got.counter_outage_seconds == 0
    assert not any("outage counter says" in item for item in got.review), got.review


def test_state_gauges_without_counters_are_not_billed_as_zero_silently(statement: Statement) -> None:
    got = _service(statement, "gauges_only")
    assert "connectivity: Prometheus has no outage counter for this service in the month" in got.review
