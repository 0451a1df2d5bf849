"""Two replica exporters (vantages a and b) over one day, for the dashboards' merged views.

1 November 2026 (UTC), scraped every minute; the dashboards' "This month" range is the day. Each vantage is its
own scrape target (`instance` a:9839 / b:9839, `vantage` a / b), with Prometheus' `up` for it. Stories (minutes
from midnight; an outage counts from its first failed probe, determined THRESHOLD minutes later):

- acme (ams1, port p1): a sees an outage 10:00-11:30; b sees 10:00-10:20, and b's exporter is unreachable
  10:40-11:40 (no series, up 0). That is docs/design.md's first worked example.
- globex (ams2, port p9): a sees an outage since 23:35 (open at END); b is blind for ams2 since 23:30 (its
  canaries fail) and still says up.
- initech (fra1, port p3): b sees an outage since 23:45 (open); a says up.

Both exporters export the merge policy given (threenines_merge_policy_info, their exclusions' policy.merge).
Only the families the SLA month and NOC service panels read (the demo month covers every family).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tests.promdata import Series

START = 1793491200  # 2026-11-01T00:00:00Z
STEP = 60
END = START + 86400  # 2026-11-02T00:00:00Z, "now"
TIMES = range(START, END + 1, STEP)
MINUTE = 60
THRESHOLD = 5 * MINUTE
VANTAGES = ("a", "b")
# b's exporter does not answer Prometheus from 10:40 to 11:40: 60 scrapes fail.
B_DEAD = (START + 640 * MINUTE, START + 700 * MINUTE)
SITES = {"acme": "ams1", "globex": "ams2", "initech": "fra1"}
PORTS = {"acme": "p1", "globex": "p9", "initech": "p3"}
B_BLIND_AMS2_FROM = END - 30 * MINUTE


@dataclass(frozen=True)
class Run:
    start: int
    end: int  # exclusive; beyond END for an outage still open

    @property
    def determined(self) -> int:
        return self.start + THRESHOLD


def _m(minute: int) -> int:
    return START + minute * MINUTE


OPEN = END + STEP
# (customer, vantage) -> outage runs that vantage determined
RUNS: dict[tuple[str, str], list[Run]] = {
    ("acme", "a"): [Run(_m(600), _m(690))],
    ("acme", "b"): [Run(_m(600), _m(620))],
    ("globex", "a"): [Run(END - 25 * MINUTE, OPEN)],
    ("globex", "b"): [],
    ("initech", "a"): [],
    ("initech", "b"): [Run(END - 15 * MINUTE, OPEN)],
}


def scraped(vantage: str, t: int) -> bool:
    return not (vantage == "b" and B_DEAD[0] <= t < B_DEAD[1])


def outage_seconds(runs: list[Run], t: int) -> float:
    """The exporter's counter: a run counts once determined, retroactively from its first failed probe."""
    return float(sum(min(t, run.end) - run.start for run in runs if t >= run.determined))


def _open(runs: list[Run], t: int) -> Run | None:
    return next((run for run in runs if run.determined <= t < run.end), None)


def _series(name: str, labels: dict[str, str], vantage: str, value: Callable[[int], float],
            kind: str = "gauge") -> Series:
    scrape = {"job": "threenines", "instance": f"{vantage}:9839", "vantage": vantage}
    return Series(name, {**labels, **scrape}, [(t, value(t)) for t in TIMES if scraped(vantage, t)], kind)


def vantage_day(merge: str = "all") -> list[Series]:
    series: list[Series] = []
    for vantage in VANTAGES:
        series.append(Series("up", {"job": "threenines", "instance": f"{vantage}:9839"},
                             [(t, 1.0 if scraped(vantage, t) else 0.0) for t in TIMES]))
        series.append(_series("threenines_merge_policy_info", {"merge": merge}, vantage, lambda t: 1.0))
        for customer, site in SITES.items():
            runs = RUNS[(customer, vantage)]
            own = {"customer": customer}
            series.append(_series("threenines_customer_info", {**own, "name": customer.title(), "site": site,
                                                               "timezone": "UTC", "contacts_version": "1"},
                                  vantage, lambda t: 1.0))
            target = {**own, "service": "connectivity", "target": PORTS[customer]}
            service = {**own, "service": "connectivity"}
            for labels, prefix in ((target, "threenines_service"), (service, "threenines_customer_service")):
                series.append(_series(f"{prefix}_up", labels, vantage,
                                      lambda t, r=runs: 0.0 if _open(r, t) else 1.0))
                series.append(_series(f"{prefix}_known", labels, vantage, lambda t: 1.0))
                series.append(_series(f"{prefix}_outage_seconds_total", labels, vantage,
                                      lambda t, r=runs: outage_seconds(r, t), "counter"))
                series.append(_series(f"{prefix}_unknown_seconds_total", labels, vantage, lambda t: 0.0,
                                      "counter"))
            series.append(_series("threenines_service_determined_timestamp_seconds", target, vantage,
                                  lambda t, r=runs: float(run.determined) if (run := _open(r, t)) else 0.0))
            series.append(_series("threenines_service_outage_start_timestamp_seconds", target, vantage,
                                  lambda t, r=runs: float(run.start) if (run := _open(r, t)) else 0.0))
            series.append(_series("threenines_customer_objective_ratio", service, vantage, lambda t: 0.999))
            series.append(_series("threenines_customer_notification_deadline_seconds", own, vantage,
                                  lambda t: 900.0))
        for site in sorted(set(SITES.values())):
            series.append(_series("threenines_vantage_blind", {"site": site}, vantage,
                                  lambda t, v=vantage, s=site: float(v == "b" and s == "ams2"
                                                                     and t >= B_BLIND_AMS2_FROM)))
    return series
