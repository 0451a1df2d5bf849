#!/usr/bin/env python3
"""SNMP fleet benchmark: threenines' SNMP poller vs Prometheus' snmp_exporter over the same agents, in one run.

N simulated APC rPDU2 PDUs with 48 outlets each are served by several snmpsim processes on 127.0.0.1 (each
process listens on many UDP ports, one port = one device). Then, in the same run:

1. threenines: a child process polls every device with the project's client and the `apc-rpdu2` profile
   (GETBULK walk of every column the profile reads, then decode into readings), ROUNDS times, with bounded
   concurrency. Its CPU (getrusage of the child) and peak RSS (VmHWM) are measured.
2. snmp_exporter (Debian's /usr/bin/prometheus-snmp-exporter) with an snmp.yml module generated here from the
   same profile (same walk roots, same max_repetitions), started on a free 127.0.0.1 port and scraped at
   /snmp?target=...&module=... with the same concurrency. Its CPU comes from /proc/<pid>/stat, its varbinds
   from `snmp_scrape_pdus_returned`, its peak RSS from /proc/<pid>/status.

    .venv/bin/python bench/snmp_fleet.py --devices 200 --agents 4 --rounds 3
    .venv/bin/python bench/snmp_fleet.py --devices 50 --cprofile /tmp/snmp.prof   # where threenines' CPU goes

Only 127.0.0.1 is contacted; every process started is stopped by its PID. Results are printed as Markdown
and written to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from tests.support import RunningProcess, free_port, wait_until  # noqa: E402

EXPORTER = "/usr/bin/prometheus-snmp-exporter"
PROFILE = "apc-rpdu2"
COMMUNITY = "pdu48"
OUTLETS = 48
CLK_TCK = os.sysconf("SC_CLK_TCK")
_SNMPSIM_MAIN = "import dbm, dbm.dumb, bz2, sys\nfrom snmpsim.commands.responder import main\nsys.exit(main())\n"


# ---------------------------------------------------------------------------------------------------------------
# The simulated PDU: written from the PowerNet-MIB text (rPDU2 outlet and phase tables), 48 outlets.

def pdu_recording(outlets: int = OUTLETS) -> str:
    rpdu2 = "1.3.6.1.4.1.318.1.1.26"
    lines = ["1.3.6.1.2.1.1.1.0|4|APC Web/SNMP Management Card (MN:AP8941 simulated)",
             "1.3.6.1.2.1.1.2.0|6|1.3.6.1.4.1.318.1.3.4.6",
             "1.3.6.1.2.1.1.3.0|67|123456"]
    # rPDU2OutletSwitchedStatusTable .26.9.2.3.1: 1 index, 2 module, 3 name, 4 number, 5 state (off 1, on 2)
    switched = {1: lambda i: (2, i), 2: lambda i: (2, 1), 3: lambda i: (4, f"server-{i:02d}"),
                4: lambda i: (2, i), 5: lambda i: (2, 2 if i % 17 else 1)}
    # rPDU2OutletMeteredStatusTable .26.9.4.3.1: 3 name, 6 current (0.1 A), 7 power (W), 11 energy (0.1 kWh)
    metered = {1: lambda i: (2, i), 3: lambda i: (4, f"server-{i:02d}"), 6: lambda i: (66, 3 + i % 9),
               7: lambda i: (66, 40 + 7 * i), 11: lambda i: (66, 10000 + 37 * i)}
    for table, columns in ((f"{rpdu2}.9.2.3.1", switched), (f"{rpdu2}.9.4.3.1", metered)):
        for column, make in columns.items():
            for i in range(1, outlets + 1):
                tag, value = make(i)
                lines.append(f"{table}.{column}.{i}|{tag}|{value}")
    # rPDU2PhaseStatusTable .26.6.3.1: 1 index, 5 current (0.1 A), 6 voltage (V)
    for column, tag, value in ((1, 2, 1), (2, 2, 1), (5, 66, 97), (6, 2, 231)):
        lines.append(f"{rpdu2}.6.3.1.{column}.1|{tag}|{value}")
    # snmpsim serves the file sorted; the OIDs must be in lexicographic (numeric) order.
    lines.sort(key=lambda line: tuple(int(p) for p in line.split("|")[0].split(".")))
    return "\n".join(lines) + "\n"


class Agents:
    """K snmpsim processes on 127.0.0.1, each listening on `per_agent` UDP ports; one port is one device."""

    def __init__(self, devices: int, agents: int, root: Path) -> None:
        self.root = root
        self.processes: list[RunningProcess] = []
        self.ports: list[int] = []
        data = root / "data"
        data.mkdir(parents=True)
        (data / f"{COMMUNITY}.snmprec").write_text(pdu_recording())
        cache = root / "cache"
        cache.mkdir()
        for path in (root, data, cache, *data.iterdir()):
            path.chmod(0o777 if path.is_dir() else 0o644)  # snmpsim drops to nobody when started as root
        per_agent = -(-devices // agents)
        for a in range(agents):
            ports = [free_port(socket.SOCK_DGRAM) for _ in range(min(per_agent, devices - len(self.ports)))]
            if not ports:
                break
            argv = [sys.executable, "-c", _SNMPSIM_MAIN, f"--data-dir={data}", f"--cache-dir={cache}",
                    *(f"--agent-udpv4-endpoint=127.0.0.1:{p}" for p in ports)]
            if os.geteuid() == 0:
                argv += ["--process-user=nobody", "--process-group=nogroup"]
            self.processes.append(RunningProcess(argv, root / f"snmpsim-{a}.log"))
            self.ports.extend(ports)

    def wait_ready(self) -> None:
        for process, port in zip(self.processes, self.ports[:: max(1, len(self.ports) // len(self.processes))],
                                 strict=False):
            def ready(process: RunningProcess = process, port: int = port) -> bool:
                if not process.alive():
                    raise RuntimeError(f"snmpsim exited:\n{process.log()[-2000:]}")
                out = subprocess.run(["snmpget", "-v2c", "-c", COMMUNITY, "-t", "1", "-r", "0", "-Oqv",
                                      f"127.0.0.1:{port}", "1.3.6.1.2.1.1.2.0"],
                                     capture_output=True, text=True, timeout=10, check=False)
                return out.returncode == 0
            wait_until(ready, 60, interval=0.3, what=f"snmpsim on port {port}")
        # Every port answers (one snmpget each, bounded).
        for port in self.ports:
            out = subprocess.run(["snmpget", "-v2c", "-c", COMMUNITY, "-t", "2", "-r", "2", "-Oqv",
                                  f"127.0.0.1:{port}", "1.3.6.1.2.1.1.2.0"],
                                 capture_output=True, text=True, timeout=20, check=False)
            if out.returncode != 0:
                raise RuntimeError(f"device 127.0.0.1:{port} does not answer: {out.stderr.strip()}")

    def stop(self) -> None:
        for process in self.processes:
            process.stop()

    def cpu_seconds(self) -> float:
        return sum(proc_cpu(p.pid) for p in self.processes if p.alive())


def proc_cpu(pid: int) -> float:
    """utime + stime of a process (not its children) from /proc/<pid>/stat, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_peak_rss_mib(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ---------------------------------------------------------------------------------------------------------------
# threenines: runs in a child process so its CPU and RSS are its own.

async def _poll_fleet(ports: list[int], rounds: int, concurrency: int) -> dict[str, float]:
    from threenines.config.inventory import SnmpAuth
    from threenines.config.secrets import SecretRef
    from threenines.probes.snmp.client import SnmpClient, Target
    from threenines.probes.snmp.decode import decode
    from threenines.probes.snmp.profiles import get_profile

    os.environ["BENCH_SNMP_COMMUNITY"] = COMMUNITY
    auth = SnmpAuth(id="bench", version="2c", community=SecretRef(env="BENCH_SNMP_COMMUNITY"))
    profile = get_profile(PROFILE)
    roots = profile.walk_roots()
    client = SnmpClient()
    semaphore = asyncio.Semaphore(concurrency)
    totals = {"varbinds": 0, "devices": 0, "failures": 0, "outlets": 0}

    async def one(port: int) -> None:
        async with semaphore:
            target = Target("127.0.0.1", port, auth, timeout=5.0, retries=1)
            try:
                columns = await client.walk(target, roots, profile.max_repetitions)
            except Exception as err:  # counted, reported; a bench must finish
                totals["failures"] += 1
                print(f"127.0.0.1:{port}: {err}", file=sys.stderr)
                return
            reading = decode(profile, {}, columns)
            totals["varbinds"] += sum(len(c) for c in columns.values())
            totals["devices"] += 1
            totals["outlets"] += len(reading.outlets)

    # One warm-up poll of every device (engine, transports, imports) is not measured, as for snmp_exporter.
    await asyncio.gather(*(one(p) for p in ports))
    totals.update(varbinds=0, devices=0, failures=0, outlets=0)
    usage0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(rounds):
        await asyncio.gather(*(one(p) for p in ports))
    wall = time.perf_counter() - wall0
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    client.close()
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    return {**totals, "wall": wall, "cpu": cpu, "rss_mib": proc_peak_rss_mib()}


def child_main(args: argparse.Namespace) -> int:
    ports = [int(p) for p in args.ports.split(",")]
    if args.cprofile:
        import cProfile
        profiler = cProfile.Profile()
        result = profiler.runcall(asyncio.run, _poll_fleet(ports, args.rounds, args.concurrency))
        profiler.dump_stats(args.cprofile)
    else:
        result = asyncio.run(_poll_fleet(ports, args.rounds, args.concurrency))
    print(json.dumps(result))
    return 0


def run_threenines(ports: list[int], rounds: int, concurrency: int, cprofile: str | None) -> dict[str, float]:
    argv = [sys.executable, __file__, "--child", "--ports", ",".join(map(str, ports)), "--rounds", str(rounds),
            "--concurrency", str(concurrency)] + (["--cprofile", cprofile] if cprofile else [])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=3600, check=False, cwd=REPO)
    if out.returncode != 0:
        raise RuntimeError(f"threenines child failed:\n{out.stderr[-3000:]}")
    errors = out.stderr.strip().splitlines()
    if errors:
        print(f"threenines child: {len(errors)} stderr lines, first: {errors[0]}", file=sys.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------------------
# snmp_exporter: its snmp.yml module is generated from the same profile.

def exporter_config(module: str) -> str:
    """snmp.yml (snmp_exporter 0.21 format) walking exactly the profile's roots with its max_repetitions."""
    from threenines.probes.snmp.profiles import format_oid, get_profile

    profile = get_profile(PROFILE)
    roots = [format_oid(r) for r in profile.walk_roots()]
    metrics = []
    for table in (profile.outlets, profile.phases):
        if table is None:
            continue
        for name, alternatives in table.columns.items():
            for n, f in enumerate(alternatives):
                metrics.append({
                    "name": f"threenines_{name}_{n}_{f.oid[-1]}",
                    "oid": format_oid(f.oid),
                    "type": "DisplayString" if f.is_string else "gauge",
                    "help": f"{PROFILE} {name} alternative {n}",
                    "indexes": [{"labelname": "index", "type": "gauge"}],
                })
    # 0.21's snmp.yml maps module names directly (no top-level `modules:` / `auths:` as in 0.23+).
    config = {module: {
        "walk": roots,
        "metrics": metrics,
        "version": 2,
        "max_repetitions": profile.max_repetitions,
        "retries": 1,
        "timeout": "5s",
        "auth": {"community": COMMUNITY},
    }}
    return json.dumps(config, indent=1)  # JSON is YAML


PDUS_RE = re.compile(r"^snmp_scrape_pdus_returned (\S+)$", re.M)


def run_exporter(ports: list[int], rounds: int, concurrency: int, root: Path) -> dict[str, float]:
    module = "threenines_apc_rpdu2"
    config = root / "snmp.yml"
    config.write_text(exporter_config(module))
    port = free_port()
    process = RunningProcess([EXPORTER, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"],
                             root / "snmp_exporter.log")
    try:
        process.wait_http(f"http://127.0.0.1:{port}/metrics", timeout=30)
        totals = {"varbinds": 0, "devices": 0, "failures": 0}

        def scrape(device_port: int) -> tuple[int, bool]:
            url = f"http://127.0.0.1:{port}/snmp?module={module}&target=127.0.0.1:{device_port}"
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    body = response.read().decode()
            except Exception as err:
                print(f"snmp_exporter 127.0.0.1:{device_port}: {err}", file=sys.stderr)
                return 0, False
            match = PDUS_RE.search(body)
            return (int(float(match.group(1))), True) if match else (0, False)

        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(scrape, ports))  # warm-up, not measured
            cpu0, wall0 = proc_cpu(process.pid), time.perf_counter()
            for _ in range(rounds):
                for varbinds, ok in pool.map(scrape, ports):
                    totals["varbinds"] += varbinds
                    totals["devices" if ok else "failures"] += 1
            wall = time.perf_counter() - wall0
            cpu = proc_cpu(process.pid) - cpu0
        return {**totals, "wall": wall, "cpu": cpu, "rss_mib": proc_peak_rss_mib(process.pid)}
    finally:
        process.stop()


# ---------------------------------------------------------------------------------------------------------------

def row(name: str, r: dict[str, float]) -> str:
    per_k = 1000 * r["cpu"] / r["varbinds"] if r["varbinds"] else float("nan")
    per_cpu = r["varbinds"] / r["cpu"] if r["cpu"] else float("nan")
    return (f"| {name} | {int(r['devices'])} | {int(r['failures'])} | {r['wall']:.2f} | "
            f"{r['devices'] / r['wall']:.0f} | {r['varbinds'] / r['wall']:.0f} | {r['cpu']:.2f} | {per_k:.4f} | "
            f"{per_cpu:.0f} | {r['rss_mib']:.0f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=200, help="simulated PDUs (48 outlets each)")
    parser.add_argument("--agents", type=int, default=4, help="snmpsim processes serving them")
    parser.add_argument("--rounds", type=int, default=3, help="measured polls of every device")
    parser.add_argument("--concurrency", type=int, default=32, help="devices polled at once, both tools")
    parser.add_argument("--cprofile", help="write a cProfile of the threenines child here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ports", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_main(args)
    if not Path(EXPORTER).exists():
        print(f"{EXPORTER} missing: apt-get install prometheus-snmp-exporter (make system-deps)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="threenines-snmp-fleet-") as tmp:
        root = Path(tmp)
        agents = Agents(args.devices, args.agents, root)
        try:
            agents.wait_ready()
            agent_cpu0 = agents.cpu_seconds()
            ours = run_threenines(agents.ports, args.rounds, args.concurrency, args.cprofile)
            agent_cpu1 = agents.cpu_seconds()
            theirs = run_exporter(agents.ports, args.rounds, args.concurrency, root)
            agent_cpu2 = agents.cpu_seconds()
        finally:
            agents.stop()
    ours["agent_cpu"], theirs["agent_cpu"] = agent_cpu1 - agent_cpu0, agent_cpu2 - agent_cpu1
    ratio = (ours["varbinds"] / ours["cpu"]) / (theirs["varbinds"] / theirs["cpu"])
    print(f"\n{args.devices} PDUs × {OUTLETS} outlets, {len(agents.processes)} snmpsim agents, {args.rounds} rounds, "
          f"concurrency {args.concurrency}, {os.cpu_count()} CPUs\n")
    print("| tool | devices polled | failed | wall s | devices/s | varbinds/s | CPU s | CPU-s per 1000 varbinds "
          "| varbinds per CPU-s | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(row("threenines", ours))
    print(row("snmp_exporter 0.21", theirs))
    print(f"\nthreenines varbinds per CPU-second = {ratio:.2f} × snmp_exporter's "
          f"(agents used {ours['agent_cpu']:.1f} / {theirs['agent_cpu']:.1f} CPU-s)")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    (results / f"snmp_fleet-{stamp}.json").write_text(json.dumps(
        {"devices": args.devices, "agents": args.agents, "rounds": args.rounds, "concurrency": args.concurrency,
         "threenines": ours, "snmp_exporter": theirs, "ratio": ratio}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
