"""Bench: `threenines report` for a fleet month against a backfilled real Prometheus (not a timed test).

    .venv/bin/python bench/report_fleet.py --customers 5000 --scrape-interval 3600

Writes per customer: the four per customer/service series (both services) and, for 5% of customers, one
connectivity outage with its per-target series. Prometheus gets one TSDB block, written directly by
bench/promblock.py (byte for byte what promtool writes from the same samples, `--verify-writer`; `--writer
promtool` backfills through promtool instead); VictoriaMetrics gets the same samples through /api/v1/import.
Starts the engines on 127.0.0.1, runs the report in-process and prints timings. Everything it starts is stopped
by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import promblock

from tests.ha.victoriametrics import VICTORIA_METRICS
from tests.promdata import backfill, prometheus
from tests.support import free_port, running
from threenines.config.exclusions import Exclusions
from threenines.report.build import build_statement
from threenines.report.months import Month
from threenines.report.promclient import ClientConfig, PrometheusClient, Trace
from threenines.report.statement import CustomerSpec, Options

HERE = Path(__file__).resolve().parent
MONTH = Month(2026, 10)
BLOCK = "1488h"  # one block (one promtool pass over the file) for the month and its margins
# promtool rounds --max-block-duration down to Prometheus' block ranges (2h × 3^k: 1488h → 1458h), and its block
# writer's head cuts chunks within twice that: the chunk cut points depend on it.
CHUNK_RANGE_MS = 2 * 1458 * 3600 * 1000
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


class VMImport:
    """Feeds series to VictoriaMetrics' /api/v1/import (JSON lines, one per series): POSTs of ~32 MB go out on
    background threads (two in flight), so VictoriaMetrics parses while Python builds the next batch. A run is
    one string repetition, and the grid's timestamps are one JSON string shared by every series."""

    BATCH_BYTES = 32_000_000

    def __init__(self, url: str, grid: list[int]) -> None:
        self.url, self.grid = url, grid
        self.stamps = [str(t * 1000) for t in grid]
        self.grid_json = "[" + ",".join(self.stamps) + "]"
        self.batch: list[str] = []
        self.size = self.samples = 0
        self.pool = ThreadPoolExecutor(max_workers=2)
        self.pending: deque[Future[None]] = deque()
        self.post_seconds = 0.0

    def add(self, one: MonthSeries) -> None:
        stamps = self.grid_json if one.first == 0 else "[" + ",".join(self.stamps[one.first:]) + "]"
        metric = json.dumps({"__name__": one.name, **dict(LABEL.findall(one.labels))}, separators=(",", ":"))
        values = "".join(f"{v}," * n for n, v in one.runs)[:-1]
        line = f'{{"metric":{metric},"values":[{values}],"timestamps":{stamps}}}'
        self.batch.append(line)
        self.size += len(line)
        self.samples += one.samples
        if self.size >= self.BATCH_BYTES:
            self._send()

    def _send(self) -> None:
        body = ("\n".join(self.batch) + "\n").encode()
        self.batch, self.size = [], 0
        while len(self.pending) >= 2:
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(self._post, body))

    def _post(self, body: bytes) -> None:
        started = time.monotonic()
        response = requests.post(f"{self.url}/api/v1/import", data=body, timeout=3600)
        self.post_seconds += time.monotonic() - started
        if response.status_code != 204:
            raise RuntimeError(f"VictoriaMetrics import: HTTP {response.status_code} {response.text[:300]}")

    def finish(self) -> None:
        if self.batch:
            self._send()
        while self.pending:
            self.pending.popleft().result()
        self.pool.shutdown()
        requests.get(f"{self.url}/internal/force_flush", timeout=600).raise_for_status()


LABEL = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class MonthSeries:
    """One series of the month on the grid: from grid index `first` to the grid's end, as runs of (count,
    value). The values are the functions in month() evaluated at grid points; runs only spare evaluating (and
    writing) a value that cannot change between two points."""

    name: str
    kind: str
    labels: str  # OpenMetrics label text, e.g. customer="c00001",service="power"
    first: int
    runs: tuple[tuple[int, int], ...]

    @property
    def samples(self) -> int:
        return sum(n for n, _ in self.runs)

    def label_pairs(self) -> tuple[tuple[str, str], ...]:
        return (("__name__", self.name), *sorted(LABEL.findall(self.labels)))


def lazy_runs(grid: list[int], value: Callable[[int], int], steps: Iterable[int] = (),
              dense: Iterable[tuple[int, int]] = (), first: int = 0) -> tuple[tuple[int, int], ...]:
    """value(t) at every grid point from index `first` on, as runs, evaluating it only where it may change: at the
    first grid point at or after each instant in `steps`, and at every point of each `dense` window [lo, hi]
    (and the first one after it). In between value() must be constant: `--verify-writer` compares with evaluating
    every point."""
    at = {first}
    for t in steps:
        at.add(bisect_left(grid, t))
    for lo, hi in dense:
        at.update(range(bisect_left(grid, lo), bisect_left(grid, hi) + 1))
    points = sorted(k for k in at if first <= k < len(grid))
    runs: list[list[int]] = []
    for k, nxt in zip(points, [*points[1:], len(grid)], strict=True):
        v = value(grid[k])
        if runs and runs[-1][1] == v:
            runs[-1][0] += nxt - k
        else:
            runs.append([nxt - k, v])
    return tuple((n, v) for n, v in runs)


def month(customers: int, step: int, restart: bool = False, every_point: bool = False) -> list[MonthSeries]:
    """The fleet month, family by family in the order the OpenMetrics file has them. With restart, every counter
    of the exporter restarts at RESTART: the unknown counters of all series fall from 90 to 45 (a reset the report
    must see everywhere), an outage counter that had counted an outage falls to 0; the missed-deadline counter is
    rebuilt from the audit ledger at start (audit.py), so it does not fall. every_point: evaluate each value at
    every grid point (the reference lazy_runs is checked against)."""
    grid = grid_of(step)
    last_before = max(t for t in grid if t < RESTART)
    out: list[MonthSeries] = []

    def runs(value: Callable[[int], int], steps: Iterable[int] = (), dense: Iterable[tuple[int, int]] = (),
             first: int = 0) -> tuple[tuple[int, int], ...]:
        return lazy_runs(grid, value, grid if every_point else steps, dense, first)

    def family(name: str, kind: str, rows: Iterable[tuple[str, int, tuple[tuple[int, int], ...]]]) -> None:
        out.extend(MonthSeries(name, kind, labels, first, r) for labels, first, r in rows if r)

    def counter(i: int, service: str) -> tuple[tuple[int, int], ...]:
        o = outage_of(i, step) if service == "connectivity" else None

        def raw(t: int) -> int:
            return 0 if not o or t < o[0] + 300 else min(t, o[1]) - o[0]
        before = raw(last_before) if restart else 0
        return runs(lambda t: raw(t) if not restart or t < RESTART else raw(t) - before, steps=(RESTART,),
                    dense=[(o[0] + 300, o[1])] if o else ())

    def cs_rows(value: Callable[[int, str], tuple[tuple[int, int], ...]]
                ) -> Iterator[tuple[str, int, tuple[tuple[int, int], ...]]]:
        for i in range(customers):
            for service in ("connectivity", "power"):
                yield f'customer="c{i:05d}",service="{service}"', 0, value(i, service)

    def missed(m: int | None) -> Callable[[int], int]:
        return lambda t: int(m is not None and t >= m)

    def constant(v: int) -> Callable[[int], int]:
        return lambda t: v

    def down(i: int, s: str) -> tuple[int, int] | None:
        o = outage_of(i, step) if s == "connectivity" else None
        return (o[0] + 300, o[1]) if o else None

    family("threenines_customer_service_outage_seconds_total", "counter", cs_rows(counter))
    unknown = runs(lambda t: (UNKNOWN_AT_START[0] if t < RESTART else UNKNOWN_AT_START[1]) if restart else 0,
                   steps=(RESTART,))
    family("threenines_customer_service_unknown_seconds_total", "counter", cs_rows(lambda i, s: unknown))
    ones = runs(lambda t: 1)
    family("threenines_customer_service_known", "gauge", cs_rows(lambda i, s: ones))
    family("threenines_customer_service_up", "gauge", cs_rows(
        lambda i, s: runs(lambda t: 0 if (d := down(i, s)) and d[0] <= t < d[1] else 1, steps=down(i, s) or ())))

    def target_rows(value: Callable[[int], tuple[tuple[int, int], ...]]
                    ) -> Iterator[tuple[str, int, tuple[tuple[int, int], ...]]]:
        for i in range(0, customers, OUTAGE_EVERY):
            yield f'customer="c{i:05d}",service="connectivity",target="p1"', 0, value(i)

    family("threenines_service_outage_start_timestamp_seconds", "gauge", target_rows(
        lambda i: runs(lambda t: o[0] if (o := outage_of(i, step)) and o[0] + 300 <= t < o[1] else 0,
                       steps=down(i, "connectivity") or ())))
    family("threenines_service_determined_timestamp_seconds", "gauge", target_rows(
        lambda i: runs(lambda t: o[0] + 300 if (o := outage_of(i, step)) and o[0] + 300 <= t < o[1] else 0,
                       steps=down(i, "connectivity") or ())))
    family("threenines_service_outage_seconds_total", "counter", target_rows(lambda i: counter(i, "connectivity")))
    family("threenines_notification_deadline_missed_total", "counter", (
        (f'customer="c{i:05d}"', 0, runs(missed(m), steps=[m] if m else ()))
        for i in range(customers) for m in [miss_of(i)]))
    # What the current exporter exports besides (docs/metrics.md): the instant of each target's latest missed
    # deadline (born at the first scrape after it), and the time its counters count from — the exporter
    # resumed from its heartbeat at the scrape before the restart, so no second is in no counter.
    family("threenines_notification_deadline_missed_timestamp_seconds", "gauge", (
        (f'customer="c{i:05d}",service="connectivity",target="p1"', (k := bisect_left(grid, m)),
         runs(constant(m), first=k))
        for i in range(customers) if (m := miss_of(i)) is not None))
    resumed = last_before
    family("threenines_exporter_accounting_start_timestamp_seconds", "gauge", [
        ("", 0, runs(lambda t: resumed if restart and t >= RESTART else grid[0], steps=(RESTART,)))])
    return out


def write_openmetrics(path: Path, series: list[MonthSeries], grid: list[int]) -> None:
    """The month as OpenMetrics text for promtool (families contiguous, '# EOF' last), a run's lines at a time."""
    stamps = [str(t) for t in grid]
    with open(path, "w", encoding="utf-8") as out:
        kind_of: str | None = None
        for one in series:
            if one.name != kind_of:
                out.write(f"# TYPE {one.name} {one.kind}\n")
                kind_of = one.name
            prefix = f"{one.name}{{{one.labels}}}" if one.labels else one.name
            at = one.first
            for n, v in one.runs:
                head = f"{prefix} {v} "
                out.write(head + ("\n" + head).join(stamps[at:at + n]) + "\n")
                at += n
        out.write("# EOF\n")


def write_block(tsdb: Path, series: list[MonthSeries], grid: list[int]) -> Path:
    """The month as one TSDB block, what promtool makes of write_openmetrics' file with --max-block-duration=BLOCK."""
    tsdb.mkdir(parents=True, exist_ok=True)
    writer = promblock.BlockWriter(tsdb, grid, CHUNK_RANGE_MS)
    block, _stats = writer.write(promblock.Series(one.label_pairs(), one.first, one.runs) for one in series)
    return block


def verify_writer(customers: int, step: int, restart: bool) -> int:
    """The direct block writer against promtool on the same month (see --verify-writer); 0 when identical."""
    series = month(customers, step, restart)
    every = month(customers, step, restart, every_point=True)
    problems = [] if series == every else ["month(): the lazily evaluated runs differ from every point evaluated"]
    with tempfile.TemporaryDirectory(prefix="report-bench-verify-") as tmp:
        work, grid = Path(tmp), grid_of(step)
        t0 = time.monotonic()
        write_openmetrics(work / "data.om", series, grid)
        backfill(work / "data.om", work / "promtool", timeout=3600, max_block_duration=BLOCK)
        t1 = time.monotonic()
        direct = write_block(work / "direct", series, grid)
        t2 = time.monotonic()
        [reference] = [p for p in (work / "promtool").iterdir() if (p / "meta.json").exists()]
        files = sorted(str(p.relative_to(reference)) for p in reference.rglob("*") if p.is_file())
        if files != sorted(str(p.relative_to(direct)) for p in direct.rglob("*") if p.is_file()):
            problems.append(f"files differ: promtool wrote {files}")
        for name in files:
            if name == "meta.json":
                a, b = (json.loads((block / name).read_text()) for block in (reference, direct))
                for meta in (a, b):
                    meta.pop("ulid")
                    meta["compaction"].pop("sources")
                if a != b:
                    problems.append(f"meta.json differs (ULIDs aside): {a} != {b}")
            elif (reference / name).read_bytes() != (direct / name).read_bytes():
                problems.append(f"{name} differs")
        samples = sum(one.samples for one in series)
        print(f"{customers} customers, {step} s, restart {restart}: {len(series)} series, {samples:,} samples; "
              f"promtool {t1 - t0:.1f} s (with the OpenMetrics file), direct {t2 - t1:.1f} s; "
              + ("; ".join(problems) if problems else "identical: " + ", ".join(files)))
    return 1 if problems else 0


def grid_of(step: int) -> list[int]:
    return list(range(START - 6 * 3600, END + 6 * 3600 + 1, step))


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


def du(path: Path, skip: Iterable[str] = ()) -> int:
    """Bytes of the files under path, without the top-level entries named in skip (caches, locks, WAL)."""
    return sum(f.stat().st_size for f in path.rglob("*")
               if f.is_file() and f.relative_to(path).parts[0] not in set(skip))


def wait_merged(url: str, timeout: float = 3600.0) -> None:
    """/internal/force_merge only starts the merge (in the background): wait until no merge runs, so that the
    disk figure is the month at rest, not the parts before merging."""
    deadline = time.monotonic() + timeout
    time.sleep(2)
    while time.monotonic() < deadline:
        text = requests.get(f"{url}/metrics", timeout=60).text
        active = sum(float(v) for v in re.findall(r"^vm_active_(?:force_)?merges(?:\{[^}]*\})? (\S+)$", text, re.M))
        if active == 0:
            break
        time.sleep(2)
    requests.get(f"{url}/internal/force_flush", timeout=600).raise_for_status()


def vm_flags(step: int, max_query_len: int | None = None) -> list[str]:
    """What docs/ha.md prescribes, for this scrape interval: the report's month-long outage-run subquery holds
    (745 h + 10 h of margins) / step + 1 points per series, above the default 30,000 at 60 s; the month is in
    the past (100y); a month-long range function over a 10 M-sample shard can take longer than the default 30 s
    on a loaded 2-core machine. -search.disableCache: the rollup cache would make a second run cheaper than
    Prometheus' (which has none). -search.maxQueryLen stays at its default (16 KiB, what
    prometheus/ha/victoria-metrics.default ships) unless max_query_len is given."""
    points = (755 * 3600) // step + 1
    return ["-retentionPeriod=100y", f"-dedup.minScrapeInterval={step}s",
            f"-search.maxPointsPerTimeseries={max(30000, points + 1000)}", "-search.maxQueryDuration=600s",
            "-search.disableCache", "-loggerLevel=WARN",
            *([f"-search.maxQueryLen={max_query_len}"] if max_query_len else [])]


@dataclass
class Run:
    engine: str
    seconds: float
    requests: int
    response_bytes: int
    server_seconds: float
    samples: int
    statement: dict[str, Any]
    trace: list[Trace]
    load: float  # the 1-minute load average when the run began: other work on the machine slows both engines
    engine_cpu: float  # CPU seconds the engine's process used during the run: its work, whatever the load


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (/proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def report(url: str, args: argparse.Namespace, specs: list[CustomerSpec], pid: int) -> Run:
    client = PrometheusClient(ClientConfig(url, timeout=900, stats=True, concurrency=args.concurrency))
    engine = client.detect_engine()  # VictoriaMetrics: the client keeps every query within -search.maxQueryLen
    requests_before = client.requests_made
    load = os.getloadavg()[0]
    cpu = cpu_seconds(pid)
    t0 = time.monotonic()
    statement = build_statement(client, MONTH, specs, Exclusions(), Options(scrape_interval=args.scrape_interval))
    seconds = time.monotonic() - t0
    engine_cpu = cpu_seconds(pid) - cpu
    return Run(engine.describe(), seconds, client.requests_made - requests_before,
               sum(t.response_bytes for t in client.trace), sum(t.server_seconds or 0 for t in client.trace),
               sum(t.samples or 0 for t in client.trace), statement.to_dict(), list(client.trace), round(load, 2),
               round(engine_cpu, 1))


def differences(a: Any, b: Any, where: str = "") -> Iterator[str]:
    """Every figure where two statements differ, by its path in the JSON."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            yield from differences(a.get(key), b.get(key), f"{where}.{key}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from differences(x, y, f"{where}[{index}]")
    elif a != b:
        yield f"{where}: {a!r} != {b!r}"


def summarize(run: Run, args: argparse.Namespace, misses: bool) -> None:
    statement = run.statement
    outages = sum(len(s["outages"]) for c in statement["customers"] for s in c["services"])
    wrong = check(statement, args.scrape_interval, misses, args.restart)
    print(f"{run.engine}\n  report: {args.customers} customers, {outages} outages, {run.requests} HTTP requests, "
          f"{run.seconds:.1f} s (engine CPU {run.engine_cpu:.1f} s, load {run.load:g}), "
          f"{run.response_bytes / 1e6:.1f} MB; status {statement.get('status', 'final')}, "
          f"scrape interval {statement['scrape_interval_seconds']:g} s, notification days exact: "
          f"{all(c['notification'].get('exact') for c in statement['customers'])}, "
          f"review items {len(statement['review'])}; exact: {args.customers - len(wrong)}/{args.customers} "
          "customers equal the generated truth" + "".join(f"\n  {w}" for w in wrong[:10]), flush=True)
    profile(run.trace, args.top)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--scrape-interval", type=int, default=3600)
    parser.add_argument("--engine", choices=("prometheus", "victoriametrics", "both"), default="prometheus",
                        help="where the report reads the month: both writes it once, backfills Prometheus and "
                        "imports the same samples into VictoriaMetrics, runs the report on each, compares the "
                        "statements figure by figure and prints the ratios")
    parser.add_argument("--vm-max-query-len", type=int, metavar="BYTES",
                        help="VictoriaMetrics' -search.maxQueryLen (default: its own, 16 KiB; at 5,000 customers "
                        "the report's batched outage-bound queries are 60 kB)")
    parser.add_argument("--repeat", type=int, default=1, help="report runs per engine, alternating")
    parser.add_argument("--workdir", type=Path, help="keep the TSDB (and VictoriaMetrics' data) here (under /tmp) "
                        "and reuse it on the next run with the same --customers/--scrape-interval; default: a "
                        "temporary directory")
    parser.add_argument("--restart", action="store_true", help="the exporter restarts on 11 October: every "
                        "unknown counter (and the outage counters that had counted) resets")
    parser.add_argument("--top", type=int, default=12, help="slowest queries to list")
    parser.add_argument("--concurrency", type=int, default=4, help="queries sent to the engine at once")
    parser.add_argument("--writer", choices=("direct", "promtool"), default="direct",
                        help="how Prometheus' TSDB is written: direct (bench/promblock.py, the block promtool would "
                        "write, ~100x faster) or promtool (OpenMetrics text + create-blocks-from openmetrics)")
    parser.add_argument("--verify-writer", type=int, metavar="CUSTOMERS",
                        help="only check the writers: a CUSTOMERS month at --scrape-interval (and --restart) through "
                        "promtool and through bench/promblock.py must give the same block, byte for byte, and the "
                        "lazily evaluated series the same samples as every point evaluated")
    args = parser.parse_args()
    if args.verify_writer:
        return verify_writer(args.verify_writer, args.scrape_interval, args.restart)
    engines = ("prometheus", "victoriametrics") if args.engine == "both" else (args.engine,)
    with contextlib.ExitStack() as stack:
        work = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="report-bench-")))
        work.mkdir(parents=True, exist_ok=True)
        restart = "-restart" if args.restart else ""
        # v2: missed counter; v3: the accounting start and missed-deadline instants of the current exporter
        marker = work / f"tsdb-{args.customers}-{args.scrape_interval}{restart}-v3.done"
        vm_marker = work / f"vm-{args.customers}-{args.scrape_interval}{restart}-v3.done"
        older = work / f"tsdb-{args.customers}-{args.scrape_interval}.done"  # v1: no missed counter series
        misses = not older.exists() or marker.exists()
        want_prom, want_vm = "prometheus" in engines, "victoriametrics" in engines
        vm = None
        if want_vm:
            if not vm_marker.exists():
                shutil.rmtree(work / "vmdata", ignore_errors=True)
            port = free_port()
            argv = [VICTORIA_METRICS, f"-httpListenAddr=127.0.0.1:{port}", f"-storageDataPath={work / 'vmdata'}",
                    *vm_flags(args.scrape_interval, args.vm_max_query_len)]
            vm = stack.enter_context(running(argv, work / "victoria-metrics.log",
                                             ready_url=f"http://127.0.0.1:{port}/health", timeout=300))
            vm_url = f"http://127.0.0.1:{port}"
        write_prom = want_prom and not marker.exists() and not older.exists()
        write_vm = want_vm and not vm_marker.exists()
        if older.exists() and not marker.exists() and want_prom:
            print(f"reusing {work / 'tsdb'} ({int(older.read_text()):,} samples; v1 data: no missed counter, "
                  "notification days not checked)", flush=True)
        written: dict[str, float] = {}  # seconds spent writing the month, by step (empty when reused)
        if write_prom or write_vm:
            t0 = time.monotonic()
            grid = grid_of(args.scrape_interval)
            series = month(args.customers, args.scrape_interval, args.restart)
            samples = sum(one.samples for one in series)
            written["generate"] = time.monotonic() - t0
            print(f"generated {len(series):,} series, {samples:,} samples in {written['generate']:.1f} s",
                  flush=True)
            if write_prom:
                t1 = time.monotonic()
                shutil.rmtree(work / "tsdb", ignore_errors=True)
                if args.writer == "promtool":
                    write_openmetrics(work / "data.om", series, grid)
                    size = (work / "data.om").stat().st_size
                    backfill(work / "data.om", work / "tsdb", timeout=4 * 3600, max_block_duration=BLOCK)
                    (work / "data.om").unlink()
                    how = f"OpenMetrics {size / 1e9:.1f} GB + promtool backfill"
                else:
                    write_block(work / "tsdb", series, grid)
                    how = "TSDB block written directly (bench/promblock.py)"
                marker.write_text(f"{samples}\n", encoding="utf-8")
                written["prometheus"] = time.monotonic() - t1
                print(f"Prometheus: {how} in {written['prometheus']:.1f} s", flush=True)
            if write_vm:
                t2 = time.monotonic()
                importer = VMImport(vm_url, grid)
                for one in series:
                    importer.add(one)
                importer.finish()
                t3 = time.monotonic()
                written["victoriametrics_import"] = t3 - t2
                print(f"VictoriaMetrics: /api/v1/import {t3 - t2:.1f} s", flush=True)
                # merge the parts into what a month at rest looks like (VictoriaMetrics merges in the background)
                requests.get(f"{vm_url}/internal/force_merge", timeout=3600).raise_for_status()
                wait_merged(vm_url)
                vm_marker.write_text(f"{samples}\n", encoding="utf-8")
                written["victoriametrics_merge"] = time.monotonic() - t3
                print(f"VictoriaMetrics force_merge {written['victoriametrics_merge']:.1f} s", flush=True)
        # how long writing took, kept beside the data: a later run that reuses it still reports it
        log_path = work / f"write-seconds-{args.customers}-{args.scrape_interval}{restart}.json"
        write_log: dict[str, float] = json.loads(log_path.read_text()) if log_path.exists() else {}
        write_log.update(written)
        if written:
            log_path.write_text(json.dumps(write_log), encoding="utf-8")
        for done in (marker if want_prom else None, vm_marker if want_vm else None):
            if done is not None and done.exists() and not (write_prom if done is marker else write_vm):
                print(f"reusing {done.name} ({int(done.read_text()):,} samples)", flush=True)
        disk: dict[str, int] = {}
        samples_stored = int((marker if want_prom and marker.exists() else vm_marker).read_text())
        if want_prom:
            disk["prometheus"] = du(work / "tsdb", skip=("wal", "chunks_head", "lock", "queries.active"))
        if want_vm:
            disk["victoriametrics"] = du(work / "vmdata", skip=("cache", "flock.lock", "snapshots"))
        for name, size in disk.items():
            print(f"disk {name}: {size / 1e6:.1f} MB, {size / samples_stored:.3f} B/sample, "
                  f"{size / args.customers / 1e3:.1f} kB per customer-month "
                  f"({samples_stored / args.customers:,.0f} samples per customer-month)", flush=True)
        specs = [CustomerSpec(f"c{i:05d}", f"C{i}", "UTC", 0.999, ("connectivity", "power"))
                 for i in range(args.customers)]
        prom = stack.enter_context(prometheus(work / "tsdb", work)) if want_prom else None
        urls = {"prometheus": prom.url if prom else "", "victoriametrics": vm_url if vm else ""}
        pids = {"prometheus": prom.pid if prom else 0, "victoriametrics": vm.proc.pid if vm else 0}
        runs: dict[str, list[Run]] = {name: [] for name in engines}
        for _ in range(args.repeat):
            for name in engines:
                runs[name].append(report(urls[name], args, specs, pids[name]))
                summarize(runs[name][-1], args, misses)
        if vm is not None:
            vm_rss = vm_cpu = None
            with contextlib.suppress(OSError, ValueError):
                stat = Path(f"/proc/{vm.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
                vm_cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
                vm_rss = int(stat[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20
            print(f"victoria-metrics process: {vm_cpu} CPU-s in all, RSS {vm_rss and round(vm_rss)} MiB")
    result: dict[str, Any] = {
        "customers": args.customers, "scrape_interval_s": args.scrape_interval, "restart": args.restart,
        "samples": samples_stored, "disk_bytes": disk, "concurrency": args.concurrency,
        "write_seconds": {step: round(seconds, 1) for step, seconds in write_log.items()}, "writer": args.writer,
        "runs": {name: [{"engine": r.engine, "seconds": round(r.seconds, 2), "requests": r.requests,
                         "response_bytes": r.response_bytes, "server_seconds": round(r.server_seconds, 2),
                         "samples_scanned": r.samples, "load1_before": r.load, "engine_cpu_seconds": r.engine_cpu,
                         "exact_customers": args.customers - len(check(r.statement, args.scrape_interval, misses,
                                                                       args.restart))} for r in rs]
                 for name, rs in runs.items()}}
    print("\n| engine | customers | scrape interval | samples | write time | report time (median; runs) | engine CPU "
          "| requests | response bytes | disk per customer-month |\n|---|---|---|---|---|---|---|---|---|---|")
    for name, rs in runs.items():
        wrote = sum(v for k, v in write_log.items() if k.startswith(name) or k == "generate")
        print(f"| {name} | {args.customers:,} | {args.scrape_interval} s | {samples_stored / 1e9:.2f} G | "
              f"{f'{wrote:.0f} s' if any(k.startswith(name) for k in write_log) else '?'} | "
              f"{statistics.median(x.seconds for x in rs):.1f} s ({' / '.join(f'{x.seconds:.1f}' for x in rs)}) | "
              f"{statistics.median(x.engine_cpu for x in rs):.0f} s | {rs[0].requests} | "
              f"{rs[0].response_bytes / 1e6:.1f} MB | {disk[name] / args.customers / 1e3:.1f} kB |")
    if args.engine == "both":
        prom_runs, vm_runs = runs["prometheus"], runs["victoriametrics"]
        diff = list(differences(prom_runs[0].statement, vm_runs[0].statement))
        same_every_run = all(r.statement == prom_runs[0].statement for r in prom_runs + vm_runs)
        print(f"\nstatements: {'identical, every figure' if not diff else f'{len(diff)} figures differ'}"
              f"{'' if same_every_run else ' (and some runs differ from the first)'}"
              + "".join(f"\n  {d}" for d in diff[:20]))
        p, v = (statistics.median(r.seconds for r in rs) for rs in (prom_runs, vm_runs))
        print(f"VictoriaMetrics / Prometheus: time {v / p:.2f}×, requests "
              f"{vm_runs[0].requests / prom_runs[0].requests:.2f}×, bytes "
              f"{vm_runs[0].response_bytes / prom_runs[0].response_bytes:.2f}×, disk "
              f"{disk['victoriametrics'] / disk['prometheus']:.3f}×")
        result.update(identical=not diff, differences=diff[:50], time_ratio_vm_vs_prometheus=round(v / p, 3))
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"report_fleet-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
