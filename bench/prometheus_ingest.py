#!/usr/bin/env python3
"""Prometheus ingest benchmark: what a real Prometheus spends ingesting the threenines exporter, against
blackbox_exporter's ICMP module doing the same job on the same loopback ports, in one run (issue 19).

Two systems, one after the other (both at once would also share loopback ICMP and 2 cores, and each would
measure the other):
1. threenines: `threenines serve` on N ports at 127.x addresses (one customer per port, `packets: 1`, the probe
   interval `--interval`), scraped as one target by `--replicas` Prometheus every `--scrape-interval`.
2. blackbox_exporter 0.23 (Debian's /usr/bin/prometheus-blackbox-exporter), module `icmp`, deployed as blackbox
   is: one scrape target per port, relabelled to `/probe?module=icmp&target=<address>` (`__param_target`,
   `instance`, `__address__` → blackbox), so it probes every port once per scrape, per Prometheus.

Each Prometheus is Debian's /usr/bin/prometheus on 127.0.0.1 and a free port, with its own TSDB in a temporary
directory and no rules. After a warm-up (one probe interval plus two scrape intervals for threenines, two scrape
intervals for blackbox: every series exists) a window of `--minutes` is measured, from outside the processes:
- Prometheus: CPU seconds (utime + stime from /proc/PID/stat), VmRSS (sampled every 10 s: end, mean, max) and
  VmHWM, `prometheus_tsdb_head_series`, samples appended per second (the window's increase of
  `prometheus_tsdb_head_samples_appended_total`), bytes on disk after the window (WAL, head chunks, blocks);
- the exporter's or blackbox's own CPU and RSS, the same way;
- checks from each Prometheus' API: targets up, probes that failed, the slowest scrape, the actual scrape interval.
Derived: series per port, Prometheus CPU-ms per 1000 samples, RSS bytes per head series (in all, and above an
idle Prometheus measured first in the same run), Prometheus CPU-seconds per port per hour, and the ratios
threenines / blackbox.

    .venv/bin/python bench/prometheus_ingest.py --ports 16700 --offset 60000            # one Prometheus, 10 min each
    .venv/bin/python bench/prometheus_ingest.py --ports 16700 --offset 60000 --replicas 2   # the HA pair
    .venv/bin/python bench/prometheus_ingest.py --ports 16700 --offset 60000 --no-probe-metrics   # no probe families
    .venv/bin/python bench/prometheus_ingest.py --ports 200 --interval 20 --minutes 1 --offset 60000   # smoke

Only 127.0.0.0/8 is pinged and scraped; every wait is bounded; every process started is stopped by its PID and
the temporary directory is removed. Results are printed as Markdown and written to bench/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from app_fleet import proc_cpu, proc_rss_mib  # noqa: E402
from ping_fleet import loopback_address, write_inventory  # noqa: E402

from tests.support import RunningProcess, free_port, http_get  # noqa: E402

PROMETHEUS = "/usr/bin/prometheus"
BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
THREENINES = str(REPO / ".venv" / "bin" / "threenines")
SAMPLE_EVERY = 10.0  # seconds between RSS samples in the window

BLACKBOX_CONFIG = {"modules": {"icmp": {"prober": "icmp", "timeout": "5s",
                                        "icmp": {"preferred_ip_protocol": "ip4", "ip_protocol_fallback": False}}}}


def duration(seconds: float) -> str:
    """Prometheus' duration syntax has no fractions: 0.5 s is 500ms."""
    return f"{round(seconds * 1000)}ms"


def prometheus_config(job: dict[str, Any], scrape_interval: float, replica: str) -> str:
    # JSON is YAML: written this way, 16,700 targets need no quoting rules.
    return json.dumps({
        "global": {"scrape_interval": duration(scrape_interval),
                   "scrape_timeout": duration(min(10.0, scrape_interval)),
                   # Prometheus offsets each target's scrapes by a hash that includes the external labels, so
                   # the two of an HA pair scrape at phases of their own, as in production.
                   "external_labels": {"replica": replica}},
        "scrape_configs": [job],
    }, indent=1)


def threenines_job(address: str) -> dict[str, Any]:
    return {"job_name": "threenines", "static_configs": [{"targets": [address]}]}


def blackbox_job(targets: list[str], blackbox: str) -> dict[str, Any]:
    # blackbox's documented relabelling: the port address becomes the probe's target and the instance label,
    # and every scrape goes to blackbox itself.
    return {"job_name": "blackbox", "metrics_path": "/probe", "params": {"module": ["icmp"]},
            "static_configs": [{"targets": targets}],
            "relabel_configs": [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": blackbox}]}


def metric_sum(text: str, name: str) -> float:
    """The sum over every label set of one family in a text exposition (e.g. appended samples by `type`)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def metric_max(text: str, name: str, having: str) -> float | None:
    """The largest value of one family's series whose labels contain `having`."""
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith(name + "{") and having in line.split("}", 1)[0]]
    return max(values, default=None)


def own_metrics(url: str) -> str:
    status, body = http_get(f"{url}/metrics", timeout=30)
    if status != 200:
        raise RuntimeError(f"{url}/metrics answered {status}")
    return body.decode()


def query(url: str, promql: str) -> float | None:
    """An instant query's single value, None when the result is empty."""
    with urllib.request.urlopen(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}",
                                timeout=60) as reply:
        result = json.loads(reply.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def disk_bytes(tsdb: Path) -> dict[str, int]:
    """Allocated bytes (what `du` says) of the WAL, the memory-mapped head chunks and the persisted blocks."""
    parts = {"wal": 0, "chunks_head": 0, "blocks": 0}
    for path in tsdb.rglob("*"):
        if path.is_file():
            top = path.relative_to(tsdb).parts[0]
            part = top if top in ("wal", "chunks_head") else "blocks" if len(top) == 26 else None
            if part:
                parts[part] += path.stat().st_blocks * 512
    return {**parts, "total": sum(parts.values())}


def ready(url: str) -> bool:
    try:
        return http_get(url, timeout=5)[0] == 200
    except OSError:
        return False


@contextlib.contextmanager
def started(argv: list[str], log: Path, ready_url: str, timeout: float,
            env: dict[str, str] | None = None) -> Iterator[RunningProcess]:
    process = RunningProcess(argv, log, env=env)
    try:
        # Not RunningProcess.wait_http: it retries through the process' exit until the timeout (10 minutes for
        # a fleet's inventory), this gives up at once.
        deadline = time.monotonic() + timeout
        while not ready(ready_url):
            if not process.alive() or time.monotonic() > deadline:
                raise SystemExit(f"{argv[0]} {'exited' if not process.alive() else 'not ready'}: "
                                 f"{process.log()[-3000:]}")
            time.sleep(0.5)
        yield process
    finally:
        process.stop(timeout=30)


@contextlib.contextmanager
def prometheus_pair(workdir: Path, name: str, job: dict[str, Any], args: argparse.Namespace
                    ) -> Iterator[list[tuple[RunningProcess, str, Path]]]:
    """`--replicas` Prometheus scraping `job`: (process, URL, TSDB path) each."""
    with contextlib.ExitStack() as stack:
        running = []
        for replica in "ab"[:args.replicas]:
            config, tsdb = workdir / f"{name}-{replica}.yml", workdir / f"{name}-{replica}-tsdb"
            config.write_text(prometheus_config(job, args.scrape_interval, replica))
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            process = stack.enter_context(started(
                [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tsdb}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                workdir / f"{name}-{replica}.log", f"{url}/-/ready", 120))
            running.append((process, url, tsdb))
        yield running


def sleep_checked(seconds: float, processes: list[RunningProcess]) -> None:
    """Sleep, failing fast when a process under measurement died."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        for process in processes:
            if not process.alive():
                raise SystemExit(f"{process.argv[0]} exited during the run:\n{process.log()[-3000:]}")
        time.sleep(min(5.0, left))


def measure(proms: list[tuple[RunningProcess, str, Path]], subject: RunningProcess, minutes: float
            ) -> dict[str, Any]:
    """The window: CPU and appended samples as increases, RSS sampled, the rest read at its end."""
    pids = [p.pid for p, _, _ in proms] + [subject.pid]
    cpu0 = {pid: proc_cpu(pid) for pid in pids}
    appended0 = [metric_sum(own_metrics(url), "prometheus_tsdb_head_samples_appended_total") for _, url, _ in proms]
    rss: dict[int, list[float]] = {pid: [] for pid in pids}
    start = time.monotonic()
    end = start + minutes * 60
    while time.monotonic() < end:
        for pid in pids:
            rss[pid].append(proc_rss_mib(pid, "VmRSS") * 2**20)
        sleep_checked(min(SAMPLE_EVERY, max(0.0, end - time.monotonic())), [p for p, _, _ in proms] + [subject])
    window = time.monotonic() - start
    cpu = {pid: proc_cpu(pid) - cpu0[pid] for pid in pids}

    def process_figures(pid: int) -> dict[str, Any]:
        samples = rss[pid] + [proc_rss_mib(pid, "VmRSS") * 2**20]
        return {"cpu_s": round(cpu[pid], 2), "cpu_core_ratio": round(cpu[pid] / window, 4),
                "rss_bytes": int(samples[-1]), "rss_mean_bytes": int(sum(samples) / len(samples)),
                "rss_max_bytes": int(max(samples)), "hwm_bytes": int(proc_rss_mib(pid, "VmHWM") * 2**20)}

    replicas = []
    for (process, url, tsdb), before in zip(proms, appended0, strict=True):
        text = own_metrics(url)
        appended = metric_sum(text, "prometheus_tsdb_head_samples_appended_total") - before
        replicas.append({
            **process_figures(process.pid),
            "head_series": int(metric_sum(text, "prometheus_tsdb_head_series")),
            "samples_appended": int(appended), "samples_per_s": round(appended / window, 1),
            "heap_inuse_bytes": int(metric_sum(text, "go_memstats_heap_inuse_bytes")),
            "targets": int(query(url, "count(up)") or 0), "targets_up": int(query(url, "count(up == 1)") or 0),
            "scrape_duration_max_s": query(url, "max(max_over_time(scrape_duration_seconds[5m]))"),
            "scrape_samples_per_target": query(url, "avg(scrape_samples_scraped)"),
            # Prometheus' measured gap between scrapes of a target: above the configured interval when it cannot
            # keep up (its own summary, not in the TSDB: nothing scrapes Prometheus here).
            "scrape_interval_p99_s": metric_max(text, "prometheus_target_interval_length_seconds", 'quantile="0.99"'),
            "disk_bytes": disk_bytes(tsdb),
        })
    return {"window_s": round(window, 1), "prometheus": replicas, "subject": process_figures(subject.pid)}


def idle_prometheus(workdir: Path, seconds: float) -> dict[str, Any]:
    """A Prometheus with nothing to scrape: the RSS and CPU every Prometheus has before it ingests anything."""
    config, tsdb, port = workdir / "idle.yml", workdir / "idle-tsdb", free_port()
    config.write_text(json.dumps({"global": {"scrape_interval": "30s"}, "scrape_configs": []}))
    url = f"http://127.0.0.1:{port}"
    with started([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tsdb}",
                  f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                 workdir / "idle.log", f"{url}/-/ready", 120) as process:
        cpu0 = proc_cpu(process.pid)
        sleep_checked(seconds, [process])
        return {"window_s": seconds, "cpu_s": round(proc_cpu(process.pid) - cpu0, 2),
                "rss_bytes": int(proc_rss_mib(process.pid, "VmRSS") * 2**20)}


def run_threenines(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    inventory, state = workdir / "inventory.yml", workdir / "state"
    write_inventory(inventory, args.ports, args.interval, args.offset, probe_metrics=not args.no_probe_metrics)
    address = f"127.0.0.1:{free_port()}"
    argv = [THREENINES, "serve", "--config", str(inventory), "--listen", address, "--state-dir", str(state),
            *(["--unprivileged"] if args.unprivileged else [])]
    # The inventory's validation takes ~14 s for 50k customers; /metrics answers once it is loaded.
    with started(argv, workdir / "threenines.log", f"http://{address}/metrics", 600) as exporter, \
            prometheus_pair(workdir, "threenines", threenines_job(address), args) as proms:
        warmup = args.interval + 2 * args.scrape_interval
        print(f"threenines: {args.ports} ports up, warm-up {warmup:g} s, then {args.minutes:g} min", flush=True)
        sleep_checked(warmup, [exporter] + [p for p, _, _ in proms])
        figures = measure(proms, exporter, args.minutes)
        for replica, (_, url, _) in zip(figures["prometheus"], proms, strict=True):
            # The probe families are absent with --no-probe-metrics; a port known and up has been answered.
            replica["checks"] = {"ports_known_up": query(url, "count(threenines_service_known == 1"
                                                              " and threenines_service_up == 1)"),
                                 "ports_probed": query(url, "count(threenines_probe_total > 0)"),
                                 "failed_probes": query(url, "sum(threenines_probe_failures_total)")}
    return {"system": "threenines", "probe_interval_s": args.interval, "scrape_targets": 1,
            "probe_metrics": not args.no_probe_metrics, **figures}


def run_blackbox(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    config = workdir / "blackbox.yml"
    config.write_text(json.dumps(BLACKBOX_CONFIG))
    address = f"127.0.0.1:{free_port()}"
    targets = [loopback_address(args.offset + index) for index in range(args.ports)]
    argv = [BLACKBOX, f"--config.file={config}", f"--web.listen-address={address}", "--log.level=warn"]
    with started(argv, workdir / "blackbox.log", f"http://{address}/-/healthy", 60) as blackbox, \
            prometheus_pair(workdir, "blackbox", blackbox_job(targets, address), args) as proms:
        warmup = 2 * args.scrape_interval + 10
        print(f"blackbox: {args.ports} targets, warm-up {warmup:g} s, then {args.minutes:g} min", flush=True)
        sleep_checked(warmup, [blackbox] + [p for p, _, _ in proms])
        figures = measure(proms, blackbox, args.minutes)
        for replica, (_, url, _) in zip(figures["prometheus"], proms, strict=True):
            window = duration(figures["window_s"])
            replica["checks"] = {"probes_ok": query(url, "count(probe_success == 1)"),
                                 "probes_failed": query(url, "count(probe_success == 0)"),
                                 "probes_in_window": query(url, f"sum(count_over_time(probe_success[{window}]))"),
                                 "probes_failed_in_window": query(
                                     url, f"sum(count_over_time(probe_success[{window}]))"
                                          f" - sum(sum_over_time(probe_success[{window}]))")}
    return {"system": "blackbox", "probe_interval_s": args.scrape_interval, "scrape_targets": args.ports, **figures}


def derive(run: dict[str, Any], ports: int, idle_rss: int) -> dict[str, Any]:
    """Per-port and per-sample figures, averaged over the replicas (each Prometheus of a pair does the same)."""
    proms = run["prometheus"]
    window = run["window_s"]

    def mean(key: str) -> float:
        return sum(p[key] for p in proms) / len(proms)

    cpu, series, samples, rss = mean("cpu_s"), mean("head_series"), mean("samples_appended"), mean("rss_bytes")
    return {
        "series_per_port": round(series / ports, 2),
        "samples_per_s": round(samples / window, 1),
        "prometheus_cpu_core_ratio": round(cpu / window, 4),
        "prometheus_cpu_ms_per_1000_samples": round(cpu * 1000 / samples * 1000, 4) if samples else None,
        "prometheus_rss_bytes": int(rss),
        "prometheus_hwm_bytes": int(mean("hwm_bytes")),
        "rss_bytes_per_head_series": round(rss / series, 1) if series else None,
        "rss_bytes_per_head_series_above_idle": round((rss - idle_rss) / series, 1) if series else None,
        "prometheus_cpu_s_per_port_hour": round(cpu / window * 3600 / ports, 5),
        "disk_bytes_per_port": round(sum(p["disk_bytes"]["total"] for p in proms) / len(proms) / ports, 1),
        "subject_cpu_core_ratio": run["subject"]["cpu_core_ratio"],
        "subject_cpu_s_per_port_hour": round(run["subject"]["cpu_s"] / window * 3600 / ports, 5),
        "subject_rss_bytes": run["subject"]["rss_bytes"],
    }


def markdown(result: dict[str, Any]) -> str:
    t, b = result["threenines"], result["blackbox"]
    dt, db = t["derived"], b["derived"]
    ports, replicas = result["ports"], result["replicas"]

    def mib(value: float, decimals: int = 0) -> str:
        return f"{value / 2**20:,.{decimals}f} MiB"

    def seconds(value: float | None) -> str:
        return f"{value:.2f} s" if value is not None else "–"

    def ratio(a: float | None, c: float | None) -> str:
        if a is None or not c:
            return "–"
        return f"{a / c:.2f}×" if a / c >= 0.1 else f"{a / c:.3f}×"

    def largest(run: dict[str, Any], key: str) -> Any:
        """The larger of the pair's figures (the only one with one Prometheus)."""
        return max((p[key] for p in run["prometheus"] if p[key] is not None), default=None)

    rows = [
        ("probes", f"every port every {t['probe_interval_s']:g} s",
         f"every port every {b['probe_interval_s']:g} s per Prometheus (one per scrape)", ""),
        ("scrape targets per Prometheus", f"{t['scrape_targets']:,}", f"{b['scrape_targets']:,}", ""),
        ("head series (per Prometheus)", f"{largest(t, 'head_series'):,}", f"{largest(b, 'head_series'):,}",
         ratio(largest(t, "head_series"), largest(b, "head_series"))),
        ("series per port", f"{dt['series_per_port']}", f"{db['series_per_port']}",
         ratio(dt["series_per_port"], db["series_per_port"])),
        ("samples appended / s", f"{dt['samples_per_s']:,}", f"{db['samples_per_s']:,}",
         ratio(dt["samples_per_s"], db["samples_per_s"])),
        ("**Prometheus CPU** (share of one core)", f"{dt['prometheus_cpu_core_ratio']:.1%}",
         f"{db['prometheus_cpu_core_ratio']:.1%}",
         ratio(dt["prometheus_cpu_core_ratio"], db["prometheus_cpu_core_ratio"])),
        ("Prometheus CPU-ms per 1000 samples", f"{dt['prometheus_cpu_ms_per_1000_samples']}",
         f"{db['prometheus_cpu_ms_per_1000_samples']}",
         ratio(dt["prometheus_cpu_ms_per_1000_samples"], db["prometheus_cpu_ms_per_1000_samples"])),
        ("**Prometheus CPU-s per port per hour**", f"{dt['prometheus_cpu_s_per_port_hour']}",
         f"{db['prometheus_cpu_s_per_port_hour']}",
         ratio(dt["prometheus_cpu_s_per_port_hour"], db["prometheus_cpu_s_per_port_hour"])),
        ("**Prometheus RSS** at the end (VmHWM)",
         f"{mib(dt['prometheus_rss_bytes'])} ({mib(dt['prometheus_hwm_bytes'])})",
         f"{mib(db['prometheus_rss_bytes'])} ({mib(db['prometheus_hwm_bytes'])})",
         ratio(dt["prometheus_rss_bytes"], db["prometheus_rss_bytes"])),
        ("RSS bytes per head series (above an idle Prometheus)",
         f"{dt['rss_bytes_per_head_series']:,.0f} ({dt['rss_bytes_per_head_series_above_idle']:,.0f})",
         f"{db['rss_bytes_per_head_series']:,.0f} ({db['rss_bytes_per_head_series_above_idle']:,.0f})",
         ratio(dt["rss_bytes_per_head_series"], db["rss_bytes_per_head_series"])),
        ("RSS per port", f"{dt['prometheus_rss_bytes'] / ports / 1024:,.1f} KiB",
         f"{db['prometheus_rss_bytes'] / ports / 1024:,.1f} KiB",
         ratio(dt["prometheus_rss_bytes"], db["prometheus_rss_bytes"])),
        (f"disk after {result['minutes']:g} min (WAL + head chunks + blocks)",
         mib(dt["disk_bytes_per_port"] * ports, 1), mib(db["disk_bytes_per_port"] * ports, 1),
         ratio(dt["disk_bytes_per_port"], db["disk_bytes_per_port"])),
        ("slowest scrape", seconds(largest(t, "scrape_duration_max_s")), seconds(largest(b, "scrape_duration_max_s")),
         ""),
        ("time between scrapes of a target, p99", seconds(largest(t, "scrape_interval_p99_s")),
         seconds(largest(b, "scrape_interval_p99_s")), ""),
        ("exporter's / blackbox's CPU (share of one core)", f"{dt['subject_cpu_core_ratio']:.1%}",
         f"{db['subject_cpu_core_ratio']:.1%}", ratio(dt["subject_cpu_core_ratio"], db["subject_cpu_core_ratio"])),
        ("exporter's / blackbox's CPU-s per port per hour", f"{dt['subject_cpu_s_per_port_hour']}",
         f"{db['subject_cpu_s_per_port_hour']}",
         ratio(dt["subject_cpu_s_per_port_hour"], db["subject_cpu_s_per_port_hour"])),
        ("exporter's / blackbox's RSS", mib(dt["subject_rss_bytes"]), mib(db["subject_rss_bytes"]),
         ratio(dt["subject_rss_bytes"], db["subject_rss_bytes"])),
    ]
    head = (f"{ports:,} ports, scrape every {result['scrape_interval_s']:g} s by {replicas} Prometheus, "
            f"{result['minutes']:g} min windows{'' if result['probe_metrics'] else ', exporter.probe_metrics: false'}"
            f"; idle Prometheus: {mib(result['idle']['rss_bytes'])}, "
            f"{result['idle']['cpu_s'] / result['idle']['window_s']:.2%} of a core\n\n")
    lines = ["| per Prometheus unless said | threenines | blackbox ICMP | threenines / blackbox |", "|---|---|---|---|"]
    lines += [f"| {a} | {b_} | {c} | {d} |" for a, b_, c, d in rows]
    return head + "\n".join(lines) + "\n"


def version(binary: str) -> str:
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    return (done.stdout + done.stderr).splitlines()[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=16700)
    parser.add_argument("--interval", type=float, default=100.0, help="the exporter's probe interval, seconds")
    parser.add_argument("--scrape-interval", type=float, default=30.0, help="seconds, for both systems")
    parser.add_argument("--minutes", type=float, default=10.0, help="measured window after warm-up, per system")
    parser.add_argument("--replicas", type=int, choices=(1, 2), default=1,
                        help="Prometheus scraping each system: 2 as the HA pair (blackbox then probes twice)")
    parser.add_argument("--offset", type=int, default=60000, help="first loopback address index (ping_fleet's)")
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="window of the idle Prometheus")
    parser.add_argument("--only", choices=("both", "threenines", "blackbox"), default="both",
                        help="one system only (no table: the ratios need both)")
    parser.add_argument("--no-probe-metrics", action="store_true",
                        help="the exporter with exporter.probe_metrics: false (no per-port probe families)")
    parser.add_argument("--unprivileged", action="store_true",
                        help="the exporter uses unprivileged ICMP sockets (as root it takes the raw socket, which "
                        "also receives every other ICMP benchmark's replies)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="prometheus-ingest-"))
    try:
        load = os.getloadavg()
        result: dict[str, Any] = {
            "ports": args.ports, "interval_s": args.interval, "scrape_interval_s": args.scrape_interval,
            "minutes": args.minutes, "replicas": args.replicas, "offset": args.offset,
            "probe_metrics": not args.no_probe_metrics,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "loadavg_start": load,
            "prometheus_version": version(PROMETHEUS), "blackbox_version": version(BLACKBOX),
            "commit": subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                     text=True, timeout=30).stdout.strip(),
        }
        result["idle"] = idle_prometheus(workdir, args.idle_seconds)
        print(f"idle Prometheus: {json.dumps(result['idle'])}", flush=True)
        for system, run in (("threenines", run_threenines), ("blackbox", run_blackbox)):
            if args.only in ("both", system):
                result[system] = run(workdir, args)
                result[system]["derived"] = derive(result[system], args.ports, result["idle"]["rss_bytes"])
                result[system]["loadavg_end"] = os.getloadavg()
                print(json.dumps(result[system]), flush=True)
        if args.only == "both":
            dt, db = result["threenines"]["derived"], result["blackbox"]["derived"]
            result["ratios_threenines_vs_blackbox"] = {
                key: round(dt[key] / db[key], 3) for key in dt if isinstance(dt[key], int | float) and db[key]}
            print("\n" + markdown(result))
        out = HERE / "results"
        out.mkdir(exist_ok=True)
        path = out / f"prometheus_ingest-{time.strftime('%Y%m%dT%H%M%S')}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written {path.relative_to(REPO)}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
