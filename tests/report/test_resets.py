"""Counter resets are located server-side and only their hours (or day, or month) are read, exactly.

Counters of October 2026 (UTC, 60 s scrapes) on a real Prometheus, each with a known list of samples; the
expected increase is computed here from the samples (a drop counts the new value from zero).
"""

from __future__ import annotations

import pytest

from tests.promdata import Series, serve_series
from threenines.report.collect import raw_delta
from threenines.report.promclient import ClientConfig, PrometheusClient
from threenines.report.resets import corrections

START, END = 1790812800, 1793491200  # October 2026 in UTC
STEP = 60
METRIC = "x_seconds_total"
HOUR, DAY = 3600, 86400


def _counter(drops: list[int], gaps: list[tuple[int, int]] = ()) -> list[tuple[int, int]]:
    """+7 per scrape from 1000, falling to 3 at each drop time; no samples inside a gap [a, b)."""
    out, value = [], 1000
    for t in range(START - 600, END + 601, STEP):
        if any(a <= t < b for a, b in gaps):
            continue
        value = 3 if t in drops else value + 7
        out.append((t, value))
    return out


SERIES = {
    "inside-an.hour:1": _counter([START + 5 * DAY + 10 * HOUR + 1200]),
    "two_days": _counter([START + 2 * DAY + 600, START + 20 * DAY + 3 * HOUR + 60]),
    "straddling_an_hour": _counter([START + 7 * DAY + HOUR + 60]),  # the scrape before is on the hour
    "gap_across_an_hour": _counter([START + 9 * DAY + 6 * HOUR + 21 * 60], [(START + 9 * DAY + 6 * HOUR - 600,
                                                                            START + 9 * DAY + 6 * HOUR + 21 * 60)]),
    "gap_across_midnight": _counter([START + 12 * DAY + 300], [(START + 12 * DAY - 300, START + 12 * DAY + 300)]),
    "first_minute": _counter([START + 60]),
    "last_minute": _counter([END]),
    **{f"fleet{i}": _counter([START + 15 * DAY + 7 * HOUR + 1800]) for i in range(20)},
}


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory):
    series = [Series(METRIC, {"customer": name, "service": "power"}, samples, "counter")
              for name, samples in SERIES.items()]
    with serve_series(series, tmp_path_factory.mktemp("resets"), max_block_duration="1488h") as server:
        yield server


def _key(name: str) -> tuple[tuple[str, str], ...]:
    return (("customer", name), ("service", "power"))


def _at(samples: list[tuple[int, int]], t: int) -> int:
    return [v for s, v in samples if t - 300 <= s <= t][-1]


def test_corrections_make_the_edge_difference_exact_and_read_only_what_holds_a_reset(prom) -> None:
    client = PrometheusClient(ClientConfig(prom.url, timeout=30, stats=True))
    month = client.vector(f"resets({METRIC}[{END - START + 300}s] @ {END}) > 0", END)
    assert set(month) == {_key(name) for name in SERIES}
    added, unresolved = corrections(client, METRIC, month, START, END, STEP, 10_000_000)
    assert unresolved == {_key("gap_across_midnight")}  # a drop across a 10-minute gap over midnight
    for name, samples in SERIES.items():
        if name == "gap_across_midnight":
            continue
        want, _ = raw_delta(samples, START, END)
        assert _at(samples, END) - _at(samples, START) + added[_key(name)] == want, name
    raw_reads = [t for t in client.trace if t.query.startswith(METRIC)]
    # hours for the drops inside an hour (also the one whose scrape before is on the hour; the 20-customer
    # fleet restart is one read), a day for the drop across a 27-minute gap over an hour edge; never a month
    assert max(t.samples or 0 for t in raw_reads) <= 24 * 60 + 10
    assert sum(t.samples or 0 for t in raw_reads) < 20 * 70 + 6 * 70 + 24 * 70
    assert len(client.trace) < 25  # month, days, the hours of 7 days with drops, the reads
