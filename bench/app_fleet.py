#!/usr/bin/env python3
"""Application-check fleet benchmark: threenines' application poller vs Prometheus' blackbox_exporter doing the
same checks against the same loopback servers, side by side in one run.

Servers (their CPU is counted for neither side):
- Debian's nginx (nginx-light) on ADDRESSES loopback addresses 127.77.0.x, one port: every HTTP check is its own
  URL (`http://127.77.0.<i % ADDRESSES + 1>:<port>/c<i>`, 200 "ok");
- one server process: aiosmtpd (SMTP: 220 banner, EHLO) and a small asyncio FTP banner server (220, QUIT → 221).

Side by side, from the same moment, both at the same cadence (every check once per INTERVAL, spread over it by
the same stable hash):
1. threenines: a child process runs `ApplicationPoller` (the exporter's: asyncio checks, a semaphore of 256,
   each check inside its timeout) over an inventory of the same checks, its results going into the real
   `ContractEngine` (ticked every 15 s, as `serve` does). CPU: the child's own process time over the window.
   Schedule lag: when each check's task starts, less its due time (the poller's schedule, recomputed from its
   phase).
2. blackbox_exporter 0.23 (Debian's /usr/bin/prometheus-blackbox-exporter) with modules doing the same work
   (http_2xx: GET, status 200; smtp: expect ^220, EHLO, expect ^250, QUIT; ftp: expect ^220, QUIT), driven like
   Prometheus drives it: a driver process requests /probe?target=…&module=… on keep-alive connections at the
   cadence. blackbox's CPU from /proc/<pid>/stat over the window; the driver's (its own process time) apart.

    nice .venv/bin/python bench/app_fleet.py --http 10000 --mail 2000 --interval 300 --duration 120
    nice .venv/bin/python bench/app_fleet.py --http 10000 --mail 0 --interval 60 --duration 60   # 5× the rate
    nice .venv/bin/python bench/app_fleet.py --only threenines --duration 60 --cprofile /tmp/app.prof

The window opens after one interval (`--warmup`), when every check has run once.

Only 127.0.0.0/8 is contacted; every loop is bounded in time; every process started is stopped by its PID.
Results are printed as Markdown and written to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from tests.support import RunningProcess, free_port, wait_until  # noqa: E402

BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
NGINX = "/usr/sbin/nginx"
CLK_TCK = os.sysconf("SC_CLK_TCK")
CONCURRENCY = 256  # the poller's default; the driver keeps as many requests in flight at most
TIMEOUT = 5.0
TICK = 15.0


def http_address(index: int, addresses: int) -> str:
    return f"127.77.0.{index % addresses + 1}"


def plan(http: int, mail: int, addresses: int, http_port: int, smtp_port: int, ftp_port: int
         ) -> list[tuple[str, str, str, str]]:
    """Every check: (customer, check id, kind, target) — the target as blackbox takes it."""
    checks = []
    for i in range(http):
        checks.append(("http", f"h{i}", f"http://{http_address(i, addresses)}:{http_port}/c{i}"))
    for i in range(mail):
        kind, port = ("smtp", smtp_port) if i % 2 == 0 else ("ftp", ftp_port)
        checks.append((kind, f"{kind[0]}{i}", f"127.0.0.1:{port}"))
    # Twelve checks a customer, as a provider's customer with a site, mail and FTP might have.
    return [(f"c{n // 12}", ident, kind, target) for n, (kind, ident, target) in enumerate(checks)]


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def offset(customer: str, check_id: str, interval: float) -> float:
    # The poller's phase (ApplicationPoller.offset), so the driver spreads blackbox's probes the same way.
    return interval * (zlib.crc32(f"{customer}/{check_id}".encode()) / 2**32)


def write_inventory(path: Path, checks: list[tuple[str, str, str, str]], interval: float) -> None:
    lines = ["customers:"]
    customers: dict[str, list[str]] = {}
    for customer, ident, kind, target in checks:
        spec = f"http: {{url: '{target}', expect_status: [200]}}" if kind == "http" else \
            f"{kind}: {{address: '{target}'}}"
        customers.setdefault(customer, []).append(
            f"      - {{id: {ident}, {spec}, interval: {interval:g}s, threshold: 2, timeout: {TIMEOUT:g}s}}")
    for n, (customer, entries) in enumerate(customers.items()):
        lines += [f"  - id: {customer}", "    timezone: UTC",
                  "    contacts: {version: '1', notify: [{email: noc@example.net}]}",
                  f"    ports: [{{id: p, address: '127.78.{n // 254}.{n % 254 + 1}'}}]", "    applications:", *entries]
    path.write_text("\n".join(lines) + "\n")


BLACKBOX_CONFIG = f"""modules:
  http_2xx:
    prober: http
    timeout: {TIMEOUT:g}s
    http:
      valid_status_codes: [200]
      method: GET
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
  smtp:
    prober: tcp
    timeout: {TIMEOUT:g}s
    tcp:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
      query_response:
        - expect: "^220"
        - send: "EHLO bench.example"
        - expect: "^250 "
        - send: "QUIT"
  ftp:
    prober: tcp
    timeout: {TIMEOUT:g}s
    tcp:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
      query_response:
        - expect: "^220"
        - send: "QUIT"
"""
MODULES = {"http": "http_2xx", "smtp": "smtp", "ftp": "ftp"}


# -- the servers ------------------------------------------------------------------------------------------------

SERVERS = r"""
import asyncio, json, sys
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Sink
smtp_port, ftp_port, until = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
controller = Controller(Sink(), hostname="127.0.0.1", port=smtp_port, ready_timeout=10)
controller.start()

async def ftp(reader, writer):
    try:
        writer.write(b"220 bench FTP ready\r\n")
        for _ in range(20):
            line = await asyncio.wait_for(reader.readline(), 10)
            if not line:
                break
            if line.upper().startswith(b"QUIT"):
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            writer.write(b"502 not here\r\n")
    except (OSError, asyncio.TimeoutError):
        pass
    finally:
        writer.close()

async def main():
    server = await asyncio.start_server(ftp, "127.0.0.1", ftp_port, backlog=1024)
    print("ready", flush=True)
    async with server:
        await asyncio.sleep(until)

try:
    asyncio.run(main())
finally:
    controller.stop()
"""


def nginx_config(directory: Path, addresses: int, port: int) -> Path:
    listens = "\n        ".join(f"listen 127.77.0.{i + 1}:{port} backlog=1024;" for i in range(addresses))
    user = "user root root;" if os.geteuid() == 0 else ""
    conf = directory / "nginx.conf"
    conf.write_text(f"""
{user}
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/nginx-error.log warn;
events {{ worker_connections 2048; }}
http {{
    access_log off;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    server {{
        {listens}
        location / {{ default_type text/plain; return 200 "ok\\n"; }}
    }}
}}
""")
    return conf


def listening(host: str, port: int) -> bool:
    import socket

    with contextlib.suppress(OSError), socket.create_connection((host, port), 1):
        return True
    return False


@contextlib.contextmanager
def started(argv: list[str], log: Path, ready: tuple[str, int] | None = None,
            env: dict[str, str] | None = None) -> Iterator[RunningProcess]:
    process = RunningProcess(argv, log, env=env)
    try:
        if ready is not None:
            def up() -> bool:
                if not process.alive():
                    raise SystemExit(f"{argv[0]} exited:\n{process.log()[-2000:]}")
                return listening(*ready)
            wait_until(up, 30, 0.1, f"{argv[0]} to listen on {ready}")
        yield process
    finally:
        process.stop()


def proc_cpu(pid: int) -> float:
    """utime + stime of a process (all its threads), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_mib(pid: int, field: str = "VmHWM") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- threenines: the application poller in a child process -------------------------------------------------------

def run_threenines(inventory: Path, t0: float, t1: float, cprofile: str | None) -> dict[str, object]:
    from threenines.config.applications import ApplicationCheck
    from threenines.config.inventory_load import parse_inventory_text
    from threenines.contract.engine import ContractEngine, specs_from_inventory
    from threenines.probes.app_checks import CheckResult
    from threenines.probes.app_poller import ApplicationPoller

    setup = time.process_time()
    inv = parse_inventory_text(inventory.read_text())
    engine = ContractEngine()
    engine.configure(specs_from_inventory(inv), time.time())
    setup = time.process_time() - setup
    lags: list[float] = []
    outcomes: Counter[str] = Counter()
    measuring = False

    class Measured(ApplicationPoller):
        start = 0.0

        async def check_once(self, customer: str, check: ApplicationCheck,
                             slots: asyncio.Semaphore | None = None) -> CheckResult:
            now = time.monotonic()
            interval = check.policy.interval
            phase = self.offset(customer, check.id, interval)
            due = self.start + phase + math.floor((now - self.start - phase) / interval + 1e-9) * interval
            result = await super().check_once(customer, check, slots)
            if measuring:
                lags.append(now - due)
                outcomes[f"{check.kind}:{'ok' if result.ok else result.reason}"] += 1
            return result

    poller = Measured(inv, engine.observe)

    async def main() -> dict[str, object]:
        nonlocal measuring
        stop = asyncio.Event()

        async def run() -> None:
            poller.start = time.monotonic()  # run() takes its own start right after this, with no await between
            await poller.run(stop)

        async def tick() -> None:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), TICK)
                now = time.time()
                engine.tick(now)
                engine.changes(now)  # as serve does after each tick: what changed goes to the renderer

        tasks = [asyncio.create_task(run()), asyncio.create_task(tick())]
        await asyncio.sleep(max(0.0, t0 - time.monotonic()))
        profiler = None
        if cprofile is not None:
            import cProfile

            profiler = cProfile.Profile(time.process_time)  # CPU, not wall: the machine is shared
            profiler.enable()
        measuring = True
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.sleep(max(0.0, t1 - time.monotonic()))
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        measuring = False
        if profiler is not None and cprofile is not None:
            profiler.disable()
            profiler.dump_stats(cprofile)
        stop.set()
        await asyncio.gather(*tasks)
        checks = sum(outcomes.values())
        return {"tool": "threenines", "window_s": round(wall, 1), "checks": checks, "outcomes": dict(outcomes),
                "cpu_s": round(cpu, 3), "cpu_s_per_1000": round(cpu / checks * 1000, 4) if checks else None,
                "lag_p50_s": round(percentile(lags, 0.5), 4), "lag_p99_s": round(percentile(lags, 0.99), 4),
                "lag_max_s": round(max(lags, default=0.0), 4), "setup_cpu_s": round(setup, 2),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}

    return asyncio.run(main())


# -- blackbox's driver: requests /probe like Prometheus, at the same cadence --------------------------------------

class Pool:
    """Keep-alive HTTP/1.1 connections to blackbox (Prometheus reuses its connections too)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def get(self, path: str) -> bytes:
        conn = self.idle.pop() if self.idle else await asyncio.open_connection(self.host, self.port)
        reader, writer = conn
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                         f"X-Prometheus-Scrape-Timeout-Seconds: {TIMEOUT + 1:g}\r\n\r\n".encode())
            head = (await reader.readuntil(b"\r\n\r\n")).lower()
            if b"transfer-encoding: chunked" in head:  # Go's server chunks a body past its 2 KB buffer
                body = b""
                while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                    body += (await reader.readexactly(size + 2))[:-2]
                await reader.readuntil(b"\r\n")  # the empty trailer
            else:
                length = 0
                for line in head.split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
        except BaseException:
            writer.transport.abort()
            raise
        self.idle.append(conn)
        return body


def run_driver(targets: Path, blackbox_port: int, interval: float, t0: float, t1: float) -> dict[str, object]:
    checks = json.loads(targets.read_text())

    async def main() -> dict[str, object]:
        pool = Pool("127.0.0.1", blackbox_port)
        slots = asyncio.Semaphore(CONCURRENCY)
        lags: list[float] = []
        outcomes: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        measuring = False

        async def probe(kind: str, target: str, due: float) -> None:
            now = time.monotonic()
            async with slots:
                try:
                    body = await pool.get(f"/probe?module={MODULES[kind]}&target={quote(target, safe='')}")
                except (OSError, asyncio.IncompleteReadError, ValueError) as err:
                    errors[type(err).__name__] += 1
                    return
            if measuring:
                lags.append(now - due)
                ok = b"\nprobe_success 1" in body
                outcomes[f"{kind}:{'ok' if ok else 'failed'}"] += 1

        start = time.monotonic()
        heap = [(start + offset(c, i, interval), n) for n, (c, i, _, _) in enumerate(checks)]
        heapq.heapify(heap)
        running: set[asyncio.Task[None]] = set()
        while True:
            now = time.monotonic()
            if now >= t1:
                break
            if now >= t0 and not measuring:
                measuring = True
                cpu0, wall0 = time.process_time(), now
            due, n = heap[0]
            if due > now:
                await asyncio.sleep(min(due, t0 if not measuring else t1) - now)
                continue
            heapq.heappop(heap)
            _, _, kind, target = checks[n]
            task = asyncio.create_task(probe(kind, target, due))
            running.add(task)
            task.add_done_callback(running.discard)
            heapq.heappush(heap, (due + interval, n))
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        measuring = False
        for task in list(running):
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        count = sum(outcomes.values())
        return {"tool": "driver", "window_s": round(wall, 1), "probes": count, "outcomes": dict(outcomes),
                "errors": dict(errors), "cpu_s": round(cpu, 3),
                "cpu_s_per_1000": round(cpu / count * 1000, 4) if count else None,
                "lag_p50_s": round(percentile(lags, 0.5), 4), "lag_p99_s": round(percentile(lags, 0.99), 4)}

    return asyncio.run(main())


# -- the run --------------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", type=int, default=10000, help="HTTP checks")
    parser.add_argument("--mail", type=int, default=2000, help="SMTP and FTP checks (half each)")
    parser.add_argument("--interval", type=float, default=300.0, help="every check once per this many seconds")
    parser.add_argument("--duration", type=float, default=120.0, help="measured window, seconds")
    parser.add_argument("--warmup", type=float, help="seconds before the window (default: one interval, so every "
                        "check has run once: a target never checked yet is advanced by every engine tick)")
    parser.add_argument("--addresses", type=int, default=64, help="loopback addresses nginx listens on")
    parser.add_argument("--only", choices=("both", "threenines", "blackbox"), default="both")
    parser.add_argument("--cprofile", metavar="FILE", help="cProfile the threenines child over the window")
    parser.add_argument("--child", choices=("threenines", "driver"), help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--t0", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--t1", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "threenines":
        print(json.dumps(run_threenines(Path(args.file), args.t0, args.t1, args.cprofile)))
        return 0
    if args.child == "driver":
        print(json.dumps(run_driver(Path(args.file), args.port, args.interval, args.t0, args.t1)))
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="threenines-app-bench-"))
    http_port, smtp_port, ftp_port, bb_port = free_port(), free_port(), free_port(), free_port()
    checks = plan(args.http, args.mail, args.addresses, http_port, smtp_port, ftp_port)
    write_inventory(workdir / "inventory.yml", checks, args.interval)
    (workdir / "targets.json").write_text(json.dumps(checks))
    (workdir / "blackbox.yml").write_text(BLACKBOX_CONFIG)
    if args.warmup is None:
        args.warmup = args.interval
    total = args.warmup + args.duration + 120
    env = {"PYTHONPATH": str(REPO / "exporter")}
    with contextlib.ExitStack() as stack:
        stack.enter_context(started([NGINX, "-p", str(workdir), "-c", str(nginx_config(workdir, args.addresses,
                                                                                       http_port)),
                                     "-g", "daemon off;"], workdir / "nginx.out", ("127.77.0.1", http_port)))
        stack.enter_context(started([sys.executable, "-c", SERVERS, str(smtp_port), str(ftp_port), str(total)],
                                    workdir / "servers.out", ("127.0.0.1", ftp_port)))
        wait_until(lambda: listening("127.0.0.1", smtp_port), 30, 0.1, "aiosmtpd to listen")
        blackbox = None
        if args.only != "threenines":
            blackbox = stack.enter_context(started(
                [BLACKBOX, f"--config.file={workdir / 'blackbox.yml'}", f"--web.listen-address=127.0.0.1:{bb_port}",
                 "--log.level=warn"], workdir / "blackbox.out", ("127.0.0.1", bb_port)))
        # Both children start now and measure the same window on the system-wide monotonic clock; the ours parses
        # its inventory first (setup, not counted), so the window opens after a warm-up.
        t0 = time.monotonic() + args.warmup
        t1 = t0 + args.duration
        children: dict[str, subprocess.Popen[str]] = {}
        common = ["--interval", str(args.interval), "--t0", str(t0), "--t1", str(t1)]
        if args.only != "blackbox":
            children["threenines"] = subprocess.Popen(
                [sys.executable, __file__, "--child", "threenines", "--file", str(workdir / "inventory.yml"), *common,
                 *(["--cprofile", args.cprofile] if args.cprofile else [])],
                stdout=subprocess.PIPE, text=True, env={**os.environ, **env})
        if blackbox is not None:
            children["driver"] = subprocess.Popen(
                [sys.executable, __file__, "--child", "driver", "--file", str(workdir / "targets.json"),
                 "--port", str(bb_port), *common], stdout=subprocess.PIPE, text=True, env={**os.environ, **env})
        bb: dict[str, Any] = {}
        if blackbox is not None:
            time.sleep(max(0.0, t0 - time.monotonic()))
            cpu0 = proc_cpu(blackbox.pid)
            time.sleep(max(0.0, t1 - time.monotonic()))
            bb = {"tool": "blackbox_exporter", "cpu_s": round(proc_cpu(blackbox.pid) - cpu0, 3),
                  "rss_mib": round(proc_rss_mib(blackbox.pid, "VmRSS"), 1),
                  "peak_rss_mib": round(proc_rss_mib(blackbox.pid), 1)}
        results: dict[str, Any] = {name: json.loads(child.communicate(timeout=total + 600)[0].splitlines()[-1])
                   for name, child in children.items()}
    ours, driver = results.get("threenines"), results.get("driver")
    if driver and bb:
        bb["probes"] = driver["probes"]
        bb["cpu_s_per_1000"] = round(float(bb["cpu_s"]) / int(driver["probes"]) * 1000, 4) if driver["probes"] else None
    row: dict[str, Any] = {"http": args.http, "mail": args.mail, "interval_s": args.interval,
                              "checks_per_s": round((args.http + args.mail) / args.interval, 1),
                              "threenines": ours, "blackbox_exporter": bb, "driver": driver,
                              "load_avg_after": os.getloadavg()}
    if ours and bb and bb.get("cpu_s_per_1000"):
        row["cpu_ratio_threenines_vs_blackbox"] = round(ours["cpu_s_per_1000"] / bb["cpu_s_per_1000"], 3)
    print(json.dumps(row, indent=2))
    print("\n| tool | checks in window | checks/s | CPU-s | CPU-s/1000 checks | lag p50 | lag p99 | failed |"
          " RSS peak |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in (("threenines", ours), ("blackbox_exporter", bb), ("blackbox's driver", driver)):
        if not r:
            continue
        count = r.get("checks", r.get("probes", 0))
        outcomes = ((ours if name == "threenines" else driver) or {}).get("outcomes", {})
        failed = sum(v for k, v in outcomes.items() if not k.endswith(":ok"))
        window = (ours or driver or {}).get("window_s", args.duration)
        print(f"| {name} | {count} | {count / window:.1f} | {r['cpu_s']} | {r.get('cpu_s_per_1000')} |"
              f" {r.get('lag_p50_s', '–')} | {r.get('lag_p99_s', '–')} | {failed} | {r.get('peak_rss_mib', '–')} |")
    if "cpu_ratio_threenines_vs_blackbox" in row:
        print(f"\nCPU per check, threenines / blackbox_exporter: {row['cpu_ratio_threenines_vs_blackbox']}×")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"app_fleet-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(json.dumps(row, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
