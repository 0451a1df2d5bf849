"""Bench: `threenines report` for a fleet month against a backfilled real Prometheus (not a timed test).

    .venv/bin/python bench/report_fleet.py --customers 5000 --scrape-interval 3600

Writes per customer: the four per customer/service series (both services) and, for 5% of customers, one
connectivity outage with its per-target series; backfills with promtool (744h blocks); starts Prometheus on
127.0.0.1; runs the report in-process and prints timings. Everything it starts is stopped by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.promdata import backfill, prometheus
from threenines.config.exclusions import Exclusions
from threenines.report.build import build_statement
from threenines.report.months import Month
from threenines.report.promclient import ClientConfig, PrometheusClient, Trace
from threenines.report.statement import CustomerSpec, Options

MONTH = Month(2026, 10)
BLOCK = "1488h"  # one block (one promtool pass over the file) for the month and its margins
START, END = 1790812800, 1793491200  # October 2026 in UTC


OUTAGE_EVERY = 20  # 5% of customers have one connectivity outage
MISS_EVERY = 100  # 1% of customers have one missed notification deadline


def outage_of(i: int, step: int) -> tuple[int, int] | None:
    """(first failed, recovered) of customer i's outage. It is determined one 300 s pending window after it
    started and then stays open for at least three scrapes, so the sampled state shows it at any interval.
    (Before 2026-11-23 the duration was 3 scrapes + i % 600 s, the same at 300 s and above; at a 60 s scrape
    that left 14 of 1,000 outages ending before their determination: counter without gauges.)"""
    if i % OUTAGE_EVERY:
        return None
    first = START + (i * 7919 % 28) * 86400 + 3600
    return first, first + max(3 * step, 300 + 3 * 60) + i % 600


def miss_of(i: int) -> int | None:
    return START + (i % 28) * 86400 + 7200 + i % 3000 if i % MISS_EVERY == 7 else None


RESTART = START + 10 * 86400 + 2 * 3600 + 30  # --restart: the exporter restarts (between two scrapes)
UNKNOWN_AT_START = (90, 45)  # unknown seconds each exporter start accrued before its first probe result


def write(path: Path, customers: int, step: int, restart: bool = False) -> int:
    """OpenMetrics for the fleet month. With restart, every counter of the exporter restarts at RESTART: the
    unknown counters of all series fall from 90 to 45 (a reset the report must see everywhere), an outage
    counter that had counted an outage falls to 0; the missed-deadline counter is rebuilt from the audit
    ledger at start (audit.py), so it does not fall."""
    grid = list(range(START - 6 * 3600, END + 6 * 3600 + 1, step))
    lines = 0
    with open(path, "w", encoding="utf-8") as out:
        def family(name: str, kind: str, rows) -> None:
            nonlocal lines
            out.write(f"# TYPE {name} {kind}\n")
            for labels, values in rows:
                out.writelines(f"{name}{{{labels}}} {v} {t}\n" for t, v in values)
                lines += len(grid)

        def cs_rows(value):
            for i in range(customers):
                for service in ("connectivity", "power"):
                    yield f'customer="c{i:05d}",service="{service}"', value(i, service)

        def counter(i: int, service: str):
            o = outage_of(i, step) if service == "connectivity" else None
            values = [(t, 0 if not o or t < o[0] + 300 else min(t, o[1]) - o[0]) for t in grid]
            if restart:
                before = next((v for t, v in reversed(values) if t < RESTART), 0)
                values = [(t, v if t < RESTART else v - before) for t, v in values]
            return values

        family("threenines_customer_service_outage_seconds_total", "counter", cs_rows(counter))
        zeros = cs_rows(lambda i, s: ((t, (UNKNOWN_AT_START[0] if t < RESTART else UNKNOWN_AT_START[1]) if restart
                                       else 0) for t in grid))
        family("threenines_customer_service_unknown_seconds_total", "counter", zeros)
        family("threenines_customer_service_known", "gauge", cs_rows(lambda i, s: ((t, 1) for t in grid)))
        family("threenines_customer_service_up", "gauge", cs_rows(
            lambda i, s: ((t, 0 if s == "connectivity" and (o := outage_of(i, step)) and o[0] + 300 <= t < o[1] else 1)
                          for t in grid)))

        def target_rows(value):
            for i in range(0, customers, OUTAGE_EVERY):
                yield f'customer="c{i:05d}",service="connectivity",target="p1"', value(i)

        family("threenines_service_outage_start_timestamp_seconds", "gauge", target_rows(
            lambda i: ((t, o[0] if (o := outage_of(i, step)) and o[0] + 300 <= t < o[1] else 0) for t in grid)))
        family("threenines_service_determined_timestamp_seconds", "gauge", target_rows(
            lambda i: ((t, o[0] + 300 if (o := outage_of(i, step)) and o[0] + 300 <= t < o[1] else 0) for t in grid)))
        family("threenines_service_outage_seconds_total", "counter", target_rows(lambda i: counter(i, "connectivity")))
        family("threenines_notification_deadline_missed_total", "counter", (
            (f'customer="c{i:05d}"', ((t, int(m is not None and t >= m)) for t in grid))
            for i in range(customers) for m in [miss_of(i)]))
        # What the current exporter exports besides (docs/metrics.md): the instant of each target's latest missed
        # deadline (born at the first scrape after it), and the time its counters count from — the exporter
        # resumed from its heartbeat at the scrape before the restart, so no second is in no counter.
        out.write("# TYPE threenines_notification_deadline_missed_timestamp_seconds gauge\n")
        for i in range(customers):
            if (m := miss_of(i)) is not None:
                labels = f'customer="c{i:05d}",service="connectivity",target="p1"'
                out.writelines(f"threenines_notification_deadline_missed_timestamp_seconds{{{labels}}} {m} {t}\n"
                               for t in grid if t >= m)
        resumed = max(t for t in grid if t < RESTART)
        out.write("# TYPE threenines_exporter_accounting_start_timestamp_seconds gauge\n")
        out.writelines(f"threenines_exporter_accounting_start_timestamp_seconds "
                       f"{resumed if restart and t >= RESTART else grid[0]} {t}\n" for t in grid)
        out.write("# EOF\n")
    return lines


def check(statement: dict, step: int, misses: bool = True, restart: bool = False) -> list[str]:
    """Customers whose figures differ from what write() generated (raw seconds, outages, misses, review)."""
    wrong = []
    for c in statement["customers"]:
        i = int(c["customer"][1:])
        o = outage_of(i, step)
        got = {s["service"]: (s["raw_outage_seconds"], len(s["outages"]), s["unknown_seconds"]) for s in c["services"]}
        unknown = float(UNKNOWN_AT_START[1]) if restart else 0.0  # counted from zero after the restart
        want = {"connectivity": (float(o[1] - o[0]) if o else 0.0, 1 if o else 0, unknown),
                "power": (0.0, 0, unknown)}
        days = 1 if misses and miss_of(i) is not None else 0
        if got != want or c["notification"]["deduction_days"] != days or c["review"]:
            wrong.append(f"{c['customer']}: got {got}, {c['notification']['deduction_days']} deduction days, "
                         f"review {c['review']}; want {want}, {days}")
    return wrong


def profile(trace: list[Trace], top: int) -> None:
    """Where the report's time went: HTTP wall time, Prometheus' own time, bytes, Python JSON decoding."""
    wall = sum(t.seconds for t in trace)
    server = sum(t.server_seconds or 0 for t in trace)
    decode = sum(t.decode_seconds for t in trace)
    size = sum(t.response_bytes for t in trace)
    samples = sum(t.samples or 0 for t in trace)
    print(f"profile: {len(trace)} requests, HTTP wall {wall:.2f} s (Prometheus exec {server:.2f} s, "
          f"JSON decode {decode:.2f} s), {size / 1e6:.1f} MB, {samples:,} samples scanned")
    for t in sorted(trace, key=lambda t: -t.seconds)[:top]:
        print(f"  {t.seconds:7.3f} s  server {t.server_seconds or 0:7.3f} s  {t.response_bytes / 1e3:9.1f} kB  "
              f"{t.samples or 0:>12,} samples  {t.query[:110]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--scrape-interval", type=int, default=3600)
    parser.add_argument("--workdir", type=Path, help="keep the TSDB here (under /tmp) and reuse it on the next run "
                        "with the same --customers/--scrape-interval; default: a temporary directory")
    parser.add_argument("--restart", action="store_true", help="the exporter restarts on 11 October: every "
                        "unknown counter (and the outage counters that had counted) resets")
    parser.add_argument("--top", type=int, default=12, help="slowest queries to list")
    parser.add_argument("--concurrency", type=int, default=4, help="queries sent to Prometheus at once")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        work = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="report-bench-")))
        work.mkdir(parents=True, exist_ok=True)
        restart = "-restart" if args.restart else ""
        # v2: missed counter; v3: the accounting start and missed-deadline instants of the current exporter
        marker = work / f"tsdb-{args.customers}-{args.scrape_interval}{restart}-v3.done"
        older = work / f"tsdb-{args.customers}-{args.scrape_interval}.done"  # v1: no missed counter series
        misses = not older.exists() or marker.exists()
        if older.exists() and not marker.exists():
            print(f"reusing {work / 'tsdb'} ({int(older.read_text()):,} samples; v1 data: no missed counter, "
                  "notification days not checked)", flush=True)
        elif not marker.exists():
            shutil.rmtree(work / "tsdb", ignore_errors=True)
            t0 = time.monotonic()
            samples = write(work / "data.om", args.customers, args.scrape_interval, args.restart)
            t1 = time.monotonic()
            backfill(work / "data.om", work / "tsdb", timeout=4 * 3600, max_block_duration=BLOCK)
            (work / "data.om").unlink()
            t2 = time.monotonic()
            marker.write_text(f"{samples}\n", encoding="utf-8")
            print(f"generated {samples:,} samples in {t1 - t0:.1f} s; promtool backfill {t2 - t1:.1f} s", flush=True)
        else:
            print(f"reusing {work / 'tsdb'} ({int(marker.read_text()):,} samples)", flush=True)
        specs = [CustomerSpec(f"c{i:05d}", f"C{i}", "UTC", 0.999, ("connectivity", "power"))
                 for i in range(args.customers)]
        with prometheus(work / "tsdb", work) as prom:
            client = PrometheusClient(ClientConfig(prom.url, timeout=300, stats=True, concurrency=args.concurrency))
            t3 = time.monotonic()
            options = Options(scrape_interval=args.scrape_interval)
            statement = build_statement(client, MONTH, specs, Exclusions(), options).to_dict()  # the JSON
            t4 = time.monotonic()
        print(f"status {statement.get('status', 'final')}, scrape interval {statement['scrape_interval_seconds']:g} s,"
              f" notification days exact: {all(c['notification'].get('exact') for c in statement['customers'])}")
        outages = sum(len(s["outages"]) for c in statement["customers"] for s in c["services"])
        print(f"report: {args.customers} customers, {outages} outages, {client.requests_made} HTTP requests, "
              f"{t4 - t3:.1f} s; review items {len(statement['review'])}")
        wrong = check(statement, args.scrape_interval, misses, args.restart)
        print(f"exact: {args.customers - len(wrong)}/{args.customers} customers equal the generated truth"
              + "".join(f"\n  {w}" for w in wrong[:10]))
        profile(client.trace, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
