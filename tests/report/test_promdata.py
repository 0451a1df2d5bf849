"""The shared harness itself: backfilled samples come back from a real Prometheus exactly."""

from __future__ import annotations

from pathlib import Path

import requests

from tests.promdata import Series, serve_series

T0 = 1_790_000_000  # 2026-09-21, a minute boundary


def _query(url: str, expr: str, at: float) -> list[dict]:
    body = requests.get(f"{url}/api/v1/query", params={"query": expr, "time": at}, timeout=10).json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_backfilled_month_and_recording_rules_are_served(tmp_path: Path) -> None:
    minutes = 31 * 1440
    counter = Series("demo_seconds_total", {"customer": "c-1", "service": "power"},
                     [(T0 + 60 * i, float(i)) for i in range(minutes)], kind="counter")
    gauge = Series("demo_up", {"customer": "c-1"}, [(T0 + 60 * i, float(i % 2)) for i in range(minutes)])
    rules = tmp_path / "rules.yml"
    rules.write_text("groups:\n- name: demo\n  rules:\n  - record: customer:demo_up:sum\n"
                     "    expr: sum by (customer) (demo_up)\n", encoding="utf-8")
    end = T0 + 60 * (minutes - 1)
    with serve_series([counter, gauge], tmp_path / "prom", rule_files=[rules],
                      rules_start=end - 3600, rules_end=end) as prom:
        assert prom.pid > 0
        [last] = _query(prom.url, "demo_seconds_total", end)
        assert last["value"][1] == str(minutes - 1)
        [first] = _query(prom.url, f"demo_seconds_total @ {T0}", end)
        assert first["value"][1] == "0"
        [flip] = _query(prom.url, "demo_up", T0 + 60)
        assert flip["metric"]["customer"] == "c-1" and flip["value"][1] == "1"
        [recorded] = _query(prom.url, "customer:demo_up:sum", end - 1800)
        assert recorded["value"][1] in ("0", "1")
