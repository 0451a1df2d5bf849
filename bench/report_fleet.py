"""Bench: `threenines report` for a fleet month against a backfilled real Prometheus (not a timed test).

    .venv/bin/python bench/report_fleet.py --customers 5000 --scrape-interval 3600

Writes per customer: the four per customer/service series (both services) and, for 5% of customers, one
connectivity outage with its per-target series; backfills with promtool (744h blocks); starts Prometheus on
127.0.0.1; runs the report in-process and prints timings. Everything it starts is stopped by PID.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.promdata import backfill, prometheus
from threenines.report.build import build_statement
from threenines.report.exclusions import Ledger
from threenines.report.months import Month
from threenines.report.promclient import ClientConfig, PrometheusClient
from threenines.report.statement import CustomerSpec, Options

MONTH = Month(2026, 10)
START, END = 1790812800, 1793491200  # October 2026 in UTC


def write(path: Path, customers: int, step: int) -> int:
    # outages last at least three scrapes, so the sampled state shows them at any interval
    grid = list(range(START - 6 * 3600, END + 6 * 3600 + 1, step))
    outage_every = 20  # 5% of customers have one outage
    lines = 0
    with open(path, "w", encoding="utf-8") as out:
        def family(name: str, kind: str, rows) -> None:
            nonlocal lines
            out.write(f"# TYPE {name} {kind}\n")
            for labels, values in rows:
                out.writelines(f"{name}{{{labels}}} {v} {t}\n" for t, v in values)
                lines += len(grid)

        def outage_of(i: int) -> tuple[int, int] | None:
            if i % outage_every:
                return None
            first = START + (i * 7919 % 28) * 86400 + 3600
            return first, first + 3 * step + i % 600

        def cs_rows(value):
            for i in range(customers):
                for service in ("connectivity", "power"):
                    yield f'customer="c{i:05d}",service="{service}"', value(i, service)

        def counter(i: int, service: str):
            o = outage_of(i) if service == "connectivity" else None
            return [(t, 0 if not o or t < o[0] + 300 else min(t, o[1]) - o[0]) for t in grid]

        family("threenines_customer_service_outage_seconds_total", "counter", cs_rows(counter))
        zeros = cs_rows(lambda i, s: ((t, 0) for t in grid))
        family("threenines_customer_service_unknown_seconds_total", "counter", zeros)
        family("threenines_customer_service_known", "gauge", cs_rows(lambda i, s: ((t, 1) for t in grid)))
        family("threenines_customer_service_up", "gauge", cs_rows(
            lambda i, s: ((t, 0 if s == "connectivity" and (o := outage_of(i)) and o[0] + 300 <= t < o[1] else 1)
                          for t in grid)))

        def target_rows(value):
            for i in range(0, customers, outage_every):
                yield f'customer="c{i:05d}",service="connectivity",target="p1"', value(i)

        family("threenines_service_outage_start_timestamp_seconds", "gauge", target_rows(
            lambda i: ((t, o[0] if (o := outage_of(i)) and o[0] + 300 <= t < o[1] else 0) for t in grid)))
        family("threenines_service_determined_timestamp_seconds", "gauge", target_rows(
            lambda i: ((t, o[0] + 300 if (o := outage_of(i)) and o[0] + 300 <= t < o[1] else 0) for t in grid)))
        family("threenines_service_outage_seconds_total", "counter", target_rows(lambda i: counter(i, "connectivity")))
        out.write("# EOF\n")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--scrape-interval", type=int, default=3600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="report-bench-") as tmp:
        work = Path(tmp)
        t0 = time.monotonic()
        samples = write(work / "data.om", args.customers, args.scrape_interval)
        t1 = time.monotonic()
        backfill(work / "data.om", work / "tsdb", timeout=3600)
        (work / "data.om").unlink()
        t2 = time.monotonic()
        print(f"generated {samples:,} samples in {t1 - t0:.1f} s; promtool backfill {t2 - t1:.1f} s")
        specs = [CustomerSpec(f"c{i:05d}", f"C{i}", "UTC", 0.999, ("connectivity", "power"))
                 for i in range(args.customers)]
        with prometheus(work / "tsdb", work) as prom:
            client = PrometheusClient(ClientConfig(prom.url, timeout=300))
            t3 = time.monotonic()
            statement = build_statement(client, MONTH, specs, Ledger(), Options(scrape_interval=args.scrape_interval))
            t4 = time.monotonic()
        outages = sum(len(s["outages"]) for c in statement["customers"] for s in c["services"])
        print(f"report: {args.customers} customers, {outages} outages, {client.requests_made} HTTP requests, "
              f"{t4 - t3:.1f} s; review items {len(statement['review'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
