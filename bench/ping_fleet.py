#!/usr/bin/env python3
"""Ping fleet benchmark: the threenines exporter vs fping over the same loopback targets, in one run.

For each fleet size N, a child process runs the real exporter (scheduler, shared-socket prober, contract
engine, ledger, /metrics renders) on N ports at 127.x addresses, while a separate scraper process fetches
/metrics like Prometheus would, and reports probes/s, schedule-lag percentiles, CPU-seconds per 1000 probes
and RSS. fping pings the same N targets, its CPU per 1000 pings measured from its own rusage:
- in burst mode, `fping -c1 -q -i 0`: every target once, as fast as it can (fping at its most efficient), ten
  times spread over the exporter's measured window, each in a network namespace of its own (as root), the
  figure being their mean; and five times before the exporter's run and five after (median of the ten);
- at the exporter's cadence, `fping -l -p <interval> -i <interval/N>` for the measured window: the same job
  the exporter does, every target once per interval, pings evenly spaced.

    .venv/bin/python bench/ping_fleet.py --sizes 50000 --interval 300 --duration 120   # the contract cadence
    .venv/bin/python bench/ping_fleet.py --sizes 1000,10000,50000 --interval 60 --scrape-interval 0
    .venv/bin/python bench/ping_fleet.py --sizes 16700 --interval 100 --against /tmp/old-checkout   # A/B
    .venv/bin/python bench/ping_fleet.py --sizes 16700 --interval 100 --scrapers 2   # an HA pair of Prometheus

`--against DIR` runs this checkout's exporter and DIR's (another git worktree) at the same time, on disjoint
127.x ranges, and prints their CPU ratio: run-to-run noise on a shared VM (±15 %) hides a 10 % change, two
processes measured side by side see the same noise. Both use unprivileged ICMP sockets (a raw socket would
also receive the other's replies), so `net.ipv4.ping_group_range` must include your group.

Only 127.0.0.0/8 is pinged. Results are printed as a Markdown table and written to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def loopback_address(index: int) -> str:
    # 127.1.0.1 upwards: skip .0 and .255 so every address is a plain host address.
    third, fourth = divmod(index, 254)
    second, third = divmod(third, 256)
    return f"127.{1 + second}.{third}.{fourth + 1}"


def write_inventory(path: Path, size: int, interval: float, offset: int = 0, probe_metrics: bool = True) -> None:
    lines = [
        # probe_metrics only when off: an --against checkout from before it refuses the key
        "exporter: {max_concurrent_probes: 1024" + ("" if probe_metrics else ", probe_metrics: false") + "}",
        f"defaults: {{ping: {{interval: {interval:g}s, threshold: 2, packets: 1, timeout: 1s}}}}",
        "customers:",
    ]
    for index in range(size):
        lines.append(f"  - {{id: c{index}, timezone: UTC, contacts: {{version: '1', notify: [{{email: n@x.example}}]}},"
                     f" ports: [{{id: p, address: '{loopback_address(offset + index)}'}}]}}")
    path.write_text("\n".join(lines) + "\n")


TICK = 15.0  # the exporter's contract tick in these runs (serve's default)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def rss_mib(field: str = "VmHWM") -> float:
    """VmHWM: peak resident memory; VmRSS: resident now."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


# The scraper is its own process, like Prometheus: reading tens of megabytes is not the exporter's CPU.
SCRAPER = """
import gzip, json, sys, time, urllib.request
url, interval, until = sys.argv[1], float(sys.argv[2]), time.monotonic() + float(sys.argv[3])
time.sleep(float(sys.argv[4]) if len(sys.argv) > 4 else 0.0)  # the phase of this scraper within the interval
durations, sizes, wire = [], [], []
# Prometheus asks for gzip (Accept-Encoding: gzip), and so does this scraper unless told not to (--identity).
headers = {} if len(sys.argv) > 5 and sys.argv[5] == "identity" else {"Accept-Encoding": "gzip"}
while time.monotonic() < until:
    started = time.monotonic()
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as reply:
        body = reply.read()
        wire.append(len(body))
        sizes.append(len(gzip.decompress(body)) if reply.headers.get("Content-Encoding") == "gzip" else len(body))
    durations.append(time.monotonic() - started)
    time.sleep(max(0.0, interval - durations[-1]))
print(json.dumps({"scrapes": len(durations), "max_s": max(durations), "bytes": max(sizes), "wire_bytes": max(wire)}))
"""


def run_exporter(size: int, interval: float, duration: float, scrape_interval: float, offset: int = 0,
                 privileged: bool | None = None, scrapers: int = 1, identity: bool = False,
                 probe_metrics: bool = True) -> dict[str, float]:
    try:
        from threenines.serve.process import Exporter, ServeOptions
    except ImportError:  # --against a checkout from before the package's wings (threenines.service)
        from threenines.service import Exporter, ServeOptions  # type: ignore[no-redef]

    workdir = Path(tempfile.mkdtemp(prefix="threenines-bench-"))
    config = workdir / "inventory.yml"
    write_inventory(config, size, interval, offset, probe_metrics)
    started = time.process_time()
    exporter = Exporter(ServeOptions(config=config, listen="127.0.0.1:0", state_dir=workdir / "state", tick=TICK,
                                     privileged=privileged))
    setup_cpu = time.process_time() - started

    warm_up = interval + 2 * TICK

    async def main() -> dict[str, float]:
        task = asyncio.create_task(exporter.run())
        while not exporter.http._thread.is_alive():
            await asyncio.sleep(0.1)
        host, port = exporter.http.address
        # An HA pair of Prometheus scrapes every replica independently, at phases of its own (Prometheus
        # offsets each target's scrapes by a hash that includes its external labels): scraper k starts k/n of
        # an interval late, the even spread.
        running_scrapers = [
            subprocess.Popen([sys.executable, "-c", SCRAPER, f"http://{host}:{port}/metrics", str(scrape_interval),
                              str(warm_up + duration), str(k * scrape_interval / scrapers),
                              "identity" if identity else "gzip"],
                             stdout=subprocess.PIPE, text=True)
            for k in range(scrapers if scrape_interval else 0)]
        # Measure a steady window: after the first interval every port has had its first probe, and two ticks
        # later the contract has published every port's first evidence (until then each tick renders the views
        # of the ports it saw first, once per port, which a running exporter does only at start).
        await asyncio.sleep(warm_up)
        scheduler = exporter.scheduler
        cpu0, probes0, wall0 = time.process_time(), scheduler.probes_started, time.monotonic()
        times0 = os.times()
        print(json.dumps({"window_s": duration}), flush=True)  # the parent samples fping's burst meanwhile
        del scheduler.lag.samples[:]
        await asyncio.sleep(duration)
        cpu, probes, wall = time.process_time() - cpu0, scheduler.probes_started - probes0, time.monotonic() - wall0
        times = os.times()
        user, system = times.user - times0.user, times.system - times0.system  # the kernel's share: sockets, loopback
        lags = list(scheduler.lag.samples)
        # an --against checkout from before the port's record kept its counters as attributes
        failures = sum(s.view().failures if hasattr(s, "view") else s.failures for s in scheduler.stats.values())
        render = exporter._render_seconds
        steady_rss = rss_mib("VmRSS")
        scrapes = {}
        if running_scrapers:
            each = [json.loads((await asyncio.get_running_loop().run_in_executor(None, s.communicate))[0])
                    for s in running_scrapers]
            scrapes = {"scrapers": len(each), "scrapes": sum(e["scrapes"] for e in each),
                       "max_s": max(e["max_s"] for e in each), "bytes": max(e["bytes"] for e in each),
                       "wire_bytes": max(e["wire_bytes"] for e in each), "encoding": "identity" if identity else "gzip"}
        exporter.stop()
        await task
        return {
            "size": size, "interval_s": interval, "window_s": round(wall, 1), "probes": probes,
            "probes_per_s": round(probes / wall, 1), "lag_p50_s": round(percentile(lags, 0.5), 4),
            "lag_p99_s": round(percentile(lags, 0.99), 4), "lag_max_s": round(max(lags, default=0.0), 4),
            "cpu_s": round(cpu, 2), "cpu_s_per_1000_probes": round(cpu / probes * 1000, 4) if probes else None,
            "user_s_per_1000_probes": round(user / probes * 1000, 4) if probes else None,
            "system_s_per_1000_probes": round(system / probes * 1000, 4) if probes else None,
            "scrape_interval_s": scrape_interval, "scrapers": scrapers if scrape_interval else 0,
            "probe_metrics": probe_metrics,
            "scrapes": scrapes,
            "wire": exporter.pinger.wire_kind, "render_s": round(render, 3), "setup_cpu_s": round(setup_cpu, 2),
            "failed_probes_total": failures,
            "peak_rss_mib": round(rss_mib("VmHWM"), 1), "rss_mib": round(steady_rss, 1),
        }

    return asyncio.run(main())


def run_prober(size: int) -> dict[str, float]:
    """The prober alone: `size` probes through Pinger.send, 256 in flight, replies and expiry included."""
    from threenines.probes.ping import Pinger, Probe

    async def main() -> dict[str, float]:
        answered = finished = 0

        def done(probes: list[Probe]) -> None:
            nonlocal answered, finished
            finished += len(probes)
            answered += sum(bool(probe.received) for probe in probes)

        pinger = Pinger(done, privileged=True)
        pinger.open((4,))
        started = time.process_time()
        for index in range(size):
            pinger.send(Probe(index, loopback_address(index), 1, 1.0, 0.1))
            if index % 256 == 255:
                pinger.drain()
        deadline = time.monotonic() + 5
        while finished < size and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            pinger.expire()
        cpu = time.process_time() - started
        pinger.close()
        return {"size": size, "answered": answered, "cpu_s_per_1000_probes": round(cpu / size * 1000, 4)}

    return asyncio.run(main())


FPING_RUNS = 5  # bursts per figure: one burst of 16,700 pings takes ~0.15 CPU-s and varies by a third run to run


def fping_burst(targets: str, netns: str | None = None) -> tuple[float, float, float, float]:
    """One burst of fping over the targets' file (in the network namespace `netns`, when given): its CPU-seconds,
    wall seconds, peak RSS (KiB) and user CPU-seconds, from its own rusage."""
    enter = None
    if netns is not None:
        def enter() -> None:  # in the child, before exec: fping and its socket live in the namespace
            import ctypes
            with open(f"/run/netns/{netns}") as handle:
                if ctypes.CDLL(None, use_errno=True).setns(handle.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {netns}")
    wall = time.monotonic()
    child = subprocess.Popen(["fping", "-c1", "-q", "-i", "0", "-t", "1000", "-f", targets],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=enter)
    _, _, usage = os.wait4(child.pid, 0)  # this child's own rusage, not the maximum over all children
    child.returncode = 0
    return usage.ru_utime + usage.ru_stime, time.monotonic() - wall, usage.ru_maxrss, usage.ru_utime


CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def targets_file(size: int) -> Iterator[Any]:
    """A file of the `size` targets' addresses, one a line, as fping reads them (-f)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as targets:
        targets.write("\n".join(loopback_address(i) for i in range(size)) + "\n")
        targets.flush()
        yield targets


def run_fping(size: int, runs: int = FPING_RUNS) -> dict[str, object]:
    """fping's burst over the `size` targets, `runs` times: the median's CPU per 1000 pings, and every run's."""
    with targets_file(size) as targets:
        each = [fping_burst(targets.name) for _ in range(runs)]
    cpu, wall, maxrss, user = sorted(each)[len(each) // 2]
    return {"size": size, "runs": runs, "cpu_s": round(cpu, 3), "cpu_s_per_1000_pings": round(cpu / size * 1000, 4),
            "cpu_s_per_1000_pings_each": [round(c / size * 1000, 4) for c, _, _, _ in each],
            "user_s_per_1000_pings_each": [round(u / size * 1000, 4) for _, _, _, u in each],
            "user_s_per_1000_pings": round(user / size * 1000, 4),
            "system_s_per_1000_pings": round((cpu - user) / size * 1000, 4),
            "wall_s": round(wall, 2), "peak_rss_mib": round(maxrss / 1024, 1)}


def pool_fping(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """One figure from the bursts before and after the exporter's run: the median of all ten. fping's burst moved
    from 0.0070 to 0.0114 CPU-s/1000 within 25 minutes on an idle machine (bench/README.md), and a set of five
    taken after the exporter alone carried that drift into the ratio."""
    each = [*before["cpu_s_per_1000_pings_each"], *after["cpu_s_per_1000_pings_each"]]
    return {**after, "runs": len(each), "cpu_s_per_1000_pings": round(statistics.median(each), 4),
            "cpu_s_per_1000_pings_each": each, "before_median": before["cpu_s_per_1000_pings"],
            "after_median": after["cpu_s_per_1000_pings"]}


def fping_during(exporter: subprocess.Popen[str], size: int, duration: float,
                 runs: int = FPING_RUNS * 2) -> dict[str, Any] | None:
    """fping's burst sampled while the exporter measures: `runs` bursts spread evenly over its window, each in a
    network namespace of its own, so neither process sees the other's echo replies (a raw socket receives every
    ICMP reply of its namespace). This VM's speed moves by a third from one second to the next (the same fixed
    loop of Python took 18.6 to 36.8 ms, a second apart), and a 0.2 s burst samples one moment of it: bursts taken
    before and after a 150 s window measured other moments than the window's. The mean of bursts spread over the
    window is fping at the same moments as the exporter. None without root (no network namespace)."""
    assert exporter.stdout is not None
    line = exporter.stdout.readline()  # {"window_s": ...} when the window starts; "" if the exporter died
    if not line or os.geteuid() != 0:
        return None
    netns = f"threenines-bench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        start = time.monotonic()
        each = []
        with targets_file(size) as targets:
            for k in range(runs):
                time.sleep(max(0.0, start + (k + 0.5) * duration / runs - time.monotonic()))
                each.append(fping_burst(targets.name, netns))
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)
    per_1000 = [cpu / size * 1000 for cpu, _, _, _ in each]
    return {"size": size, "runs": runs, "cpu_s_per_1000_pings": round(statistics.fmean(per_1000), 4),
            "median_cpu_s_per_1000_pings": round(statistics.median(per_1000), 4),
            "cpu_s_per_1000_pings_each": [round(c, 4) for c in per_1000],
            "user_s_per_1000_pings": round(statistics.fmean(u / size * 1000 for _, _, _, u in each), 4),
            "peak_rss_mib": round(max(rss for _, _, rss, _ in each) / 1024, 1)}


def run_fping_cadence(size: int, interval: float, duration: float) -> dict[str, float]:
    """fping's loop mode at the exporter's cadence: every target once per interval, pings evenly spaced."""
    with targets_file(size) as targets:
        spacing_ms = interval * 1000 / size
        child = subprocess.Popen(["fping", "-l", "-q", "-p", f"{interval * 1000:g}", "-i", f"{spacing_ms:.3f}",
                                  "-t", "1000", "-f", targets.name],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(duration)
        finally:
            child.send_signal(signal.SIGINT)  # fping prints its per-target summary and exits
        summary = child.stderr.read() if child.stderr else ""
        _, _, usage = os.wait4(child.pid, 0)
        child.returncode = 0
    pings = sum(int(sent) for sent in re.findall(r"xmt/rcv/%loss = (\d+)/", summary))
    cpu = usage.ru_utime + usage.ru_stime
    return {"size": size, "pings": pings, "cpu_s": round(cpu, 3), "spacing_ms": round(spacing_ms, 3),
            "cpu_s_per_1000_pings": round(cpu / pings * 1000, 4) if pings else None}


def one_exporter_command(size: int, args: argparse.Namespace) -> list[str]:
    """This script in a child process, measuring one exporter of `size` ports (`--one`)."""
    return [sys.executable, __file__, "--one", str(size), "--interval", str(args.interval), "--duration",
            str(args.duration), "--scrape-interval", str(args.scrape_interval), "--scrapers", str(args.scrapers),
            *(["--identity"] if args.identity else []), *(["--no-probe-metrics"] if args.no_probe_metrics else [])]


def run_pair(size: int, args: argparse.Namespace) -> dict[str, object]:
    """This checkout's exporter and `args.against`'s, side by side on disjoint address ranges."""
    low, high = (int(n) for n in Path("/proc/sys/net/ipv4/ping_group_range").read_text().split())
    if not low <= os.getgid() <= high:
        raise SystemExit(f"--against needs unprivileged ICMP for gid {os.getgid()}: "
                         'sysctl -w net.ipv4.ping_group_range="0 2147483647"')
    other = Path(args.against).resolve() / "exporter"
    if not (other / "threenines").is_dir():
        raise SystemExit(f"--against {args.against}: no exporter/threenines there (give a checkout's root)")
    children = []
    for offset, pythonpath in ((0, str(HERE.parent / "exporter")), (size, str(other))):
        command = [*one_exporter_command(size, args), "--offset", str(offset), "--unprivileged"]
        children.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                                         env={**os.environ, "PYTHONPATH": pythonpath}))
    ours, theirs = (json.loads(child.communicate(timeout=args.interval + args.duration + 600)[0].splitlines()[-1])
                    for child in children)
    return {"this": ours, "against": theirs, "against_path": str(other.parent),
            "cpu_ratio_this_vs_against": round(ours["cpu_s_per_1000_probes"] / theirs["cpu_s_per_1000_probes"], 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--interval", type=float, default=60.0, help="compressed contract interval, seconds")
    parser.add_argument("--duration", type=float, default=60.0, help="measured window after warm-up, seconds")
    parser.add_argument("--scrape-interval", type=float, default=30.0,
                        help="a separate process scrapes /metrics this often, like Prometheus (0: no scrapes)")
    parser.add_argument("--scrapers", type=int, default=1,
                        help="independent scraper processes, like an HA pair of Prometheus (2), each every "
                        "--scrape-interval, evenly out of phase")
    parser.add_argument("--identity", action="store_true",
                        help="scrapers do not ask for gzip (Prometheus does: Accept-Encoding: gzip)")
    parser.add_argument("--no-probe-metrics", action="store_true",
                        help="the exporter with exporter.probe_metrics: false (no per-port probe families)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--offset", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--unprivileged", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--against", metavar="DIR", help="A/B: run DIR's exporter beside this one, same time")
    parser.add_argument("--prober-only", type=int, metavar="N", help="only the prober: N probes, and fping on the same")
    args = parser.parse_args()
    if args.prober_only:
        ours, fping = run_prober(args.prober_only), run_fping(args.prober_only)
        print(json.dumps({"prober": ours, "fping": fping,
                          "ratio": round(ours["cpu_s_per_1000_probes"] / fping["cpu_s_per_1000_pings"], 2)}))
        return 0
    if args.one:
        print(json.dumps(run_exporter(args.one, args.interval, args.duration, args.scrape_interval, args.offset,
                                      False if args.unprivileged else None, args.scrapers, args.identity,
                                      not args.no_probe_metrics)))
        return 0
    if args.against:
        pairs = []
        for size in (int(s) for s in args.sizes.split(",")):
            pairs.append(run_pair(size, args))
            print(json.dumps(pairs[-1]), flush=True)
        write_results("ping_fleet-against", pairs)
        return 0
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        before = run_fping(size)
        child = subprocess.Popen(one_exporter_command(size, args), stdout=subprocess.PIPE, text=True)
        during = fping_during(child, size, args.duration)
        out, _ = child.communicate(timeout=args.interval + args.duration + 600)
        if child.returncode:
            raise SystemExit(f"the exporter's run failed (exit {child.returncode})")
        ours = json.loads(out.strip().splitlines()[-1])
        around = pool_fping(before, run_fping(size))
        # The headline is fping during the window when it could be sampled (root), else before and after it.
        fping = during or around
        cadence = run_fping_cadence(size, args.interval, args.duration)
        ratio = ours["cpu_s_per_1000_probes"] / fping["cpu_s_per_1000_pings"] if fping["cpu_s_per_1000_pings"] else None
        same = (ours["cpu_s_per_1000_probes"] / cadence["cpu_s_per_1000_pings"]
                if cadence["cpu_s_per_1000_pings"] else None)
        rows.append({"threenines": ours, "fping": fping, "cpu_ratio_vs_fping": round(ratio, 2) if ratio else None,
                     "fping_around": around,
                     "cpu_ratio_vs_fping_around": round(ours["cpu_s_per_1000_probes"]
                                                        / around["cpu_s_per_1000_pings"], 2),
                     "fping_during": during is not None,
                     "fping_same_cadence": cadence,
                     "cpu_ratio_vs_fping_same_cadence": round(same, 2) if same else None})
        print(json.dumps(rows[-1]), flush=True)
    print("\n| ports | interval | scrapes | probes/s | lag p50 | lag p99 | CPU-s/1000 probes | fping burst CPU-s/1000 |"
          " ratio | fping same cadence CPU-s/1000 | ratio | last render | scrape size, slowest | RSS (peak) |"
          " fping RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        o, f = row["threenines"], row["fping"]
        scrapes = o["scrapes"]
        scraped = (f"{scrapes['bytes'] / 1e6:.1f} MB ({scrapes.get('wire_bytes', scrapes['bytes']) / 1e6:.1f} MB"
                   f" {scrapes.get('encoding', 'identity')}), {scrapes['max_s']:.2f}s" if scrapes else "–")
        every = f"every {o['scrape_interval_s']:g}s" if o["scrape_interval_s"] else "none"
        if o["scrape_interval_s"] and o.get("scrapers", 1) > 1:
            every += f" ×{o['scrapers']}"
        print(f"| {o['size']} | {o['interval_s']:g}s | {every} | {o['probes_per_s']} | {o['lag_p50_s']}s |"
              f" {o['lag_p99_s']}s | {o['cpu_s_per_1000_probes']} | {f['cpu_s_per_1000_pings']} |"
              f" {row['cpu_ratio_vs_fping']}× | {row['fping_same_cadence']['cpu_s_per_1000_pings']} |"
              f" {row['cpu_ratio_vs_fping_same_cadence']}× | {o['render_s']}s | {scraped} |"
              f" {o['rss_mib']} ({o['peak_rss_mib']}) MiB | {f['peak_rss_mib']} MiB |")
    write_results("ping_fleet", rows)
    return 0


def write_results(name: str, rows: list[dict[str, object]]) -> None:
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
