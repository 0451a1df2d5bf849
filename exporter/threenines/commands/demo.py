"""`threenines demo`: the exporter on a built-in loopback inventory, with a shortened contract interval,
simulated PDUs/UPSes (one snmpsim per device on 127.0.0.1) when snmpsim is installed, one port that can be cut
(nftables, as root) and a local Prometheus when Debian's prometheus is installed. With --ha, the HA chain of
docs/ha.md instead (threenines.demo.ha): two replica exporters, two Prometheus, VictoriaMetrics and a 2-node
Alertmanager cluster.

It prints the exact lines that cut and restore each power feed and the port, and what the contract then shows
within how long. On exit (Ctrl-C, SIGTERM) it stops every process it started, deletes its nftables table and
its temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # cli.build_parser imports every command module: heavy imports wait for run()
    from threenines.config.inventory import Customer, Inventory
    from threenines.demo.ha import Stack
    from threenines.demo.portcut import PortCut
    from threenines.demo.simulator import Agent

DEMO_INVENTORY = "inventory.yml"
POWER_CUSTOMER = "hooli"
CUT_CUSTOMER, CUT_PORT = "globex", "cross-connect-7"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default="127.0.0.1:9839", help="HOST:PORT for /metrics (default %(default)s)")
    parser.add_argument("--state-dir", type=Path,
                        help="ledger directory, kept on exit (default: in the demo's temporary directory); with "
                             "--ha, each replica's is DIR/a and DIR/b")
    parser.add_argument("--print-inventory", action="store_true", help="print the demo inventory and exit")
    parser.add_argument("--no-power", action="store_true", help="do not start simulated PDUs/UPSes (snmpsim)")
    parser.add_argument("--no-prometheus", action="store_true", help="do not start a local Prometheus")
    parser.add_argument("--ha", action="store_true",
                        help="the HA chain (docs/ha.md): two replica exporters, two Prometheus, VictoriaMetrics "
                             "(when installed) and a 2-node Alertmanager cluster, each on a free loopback port "
                             "(--listen does not apply)")


def demo_inventory_text(snmp_ports: Mapping[str, int] | None = None) -> str:
    """The demo inventory; with each device's snmpsim port, also the simulated power devices and a customer on
    them."""
    files = resources.files("threenines.demo")
    text = files.joinpath(DEMO_INVENTORY).read_text(encoding="utf-8")
    if snmp_ports is not None:
        power = files.joinpath("power.yml").read_text(encoding="utf-8")
        for device, port in snmp_ports.items():
            power = power.replace(f"__PORT_{device}__", str(port))
        text += "\n" + power
    return text


def power_promises(customer: Customer, inventory: Inventory) -> tuple[int, int]:
    """Worst-case seconds from the last feed's cut to a determined power outage, and from a restore to power up.

    A cut just after a poll is read at the next poll (device interval + its timeout); from then on each
    customer evaluation (every power interval) finds every feed down, and the threshold-th one determines.
    A restore needs that next poll and one evaluation.
    """
    assert customer.power is not None
    policy = customer.power.policy
    read = max(d.interval + d.timeout for d in (inventory.device(f.pdu) for f in customer.power.feeds))
    return math.ceil(read + policy.threshold * policy.interval), math.ceil(read + policy.interval)


def port_promises(customer: Customer, port_id: str) -> tuple[int, int]:
    """Worst-case seconds from a cut to a determined connectivity outage, and from a restore to the port up.

    The probe under way at the cut may still be answered; the threshold-th unanswered probe after it fails
    at its timeout. A restore is seen by the next probe.
    """
    policy = next(p for p in customer.ports if p.id == port_id).policy
    probe = policy.timeout + (policy.packets - 1) * policy.packet_interval
    return math.ceil(policy.threshold * policy.interval + probe), math.ceil(policy.interval + probe)


def power_lines(inventory: Inventory, agents: Mapping[str, Agent], prometheus: bool) -> list[str]:
    """How to cut and restore each feed of the power customer (one shell line each) and what then happens."""
    customer = inventory.customer(POWER_CUSTOMER)
    assert customer.power is not None
    from threenines.exposition import catalogue

    down, up = power_promises(customer, inventory)
    feeds = ", ".join(f"feed {f.id} = {f.pdu} outlet {'+'.join(f.outlets)}" for f in customer.power.feeds)
    served = ", ".join(f"{a.device} udp {a.address}" for a in agents.values())
    lines = [f"  power:     customer {customer.id}: {feeds}; one snmpsim per device ({served})"]
    for feed in customer.power.feeds:
        for verb, on in (("cut", False), ("restore", True)):
            commands = " && ".join(agents[feed.pdu].outlet_command(outlet, on) for outlet in feed.outlets)
            lines.append(f"    {f'{verb} feed {feed.id}:':16}{commands}")
    series = f'{catalogue.SERVICE_UP}{{customer="{customer.id}",service="power"}}'
    alert = " (then Prometheus fires ThreeninesServiceUnavailable)" if prometheus else ""
    lines += [f"    {series} stays 1 while any feed is on,",
              f"      is 0 within {down} s of every feed cut{alert}, 1 within {up} s of a restore"]
    return lines


def port_lines(inventory: Inventory, cut: PortCut | None, reason: str | None) -> list[str]:
    """How to cut and restore the demo's one cuttable port (one shell line each) and what then happens."""
    from threenines.demo import portcut
    from threenines.exposition import catalogue

    customer = inventory.customer(CUT_CUSTOMER)
    address = next(p.address for p in customer.ports if p.id == CUT_PORT)
    if cut is None:
        return [f"  port cut:  not available ({reason}); every demo port always answers"]
    down, up = port_promises(customer, CUT_PORT)
    series = f'{catalogue.SERVICE_UP}{{customer="{customer.id}",service="connectivity",target="{CUT_PORT}"}}'
    return [
        f"  port:      {customer.id}/{CUT_PORT} on {address}: unanswered while the address is in nftables set "
        f"{portcut.FAMILY} {cut.table} {portcut.SET}",
        f"    {'cut port:':16}{cut.cut_command(address)}",
        f"    {'restore port:':16}{cut.restore_command(address)}",
        f"    {series} is 0 within {down} s of the cut, 1 within {up} s of a restore",
    ]


@dataclass
class _Started:
    """What the demo created, so that every exit path removes exactly that."""

    workdir: Path
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    cut: PortCut | None = None
    ha: Stack | None = None

    def remove(self) -> None:
        from threenines.demo import stop_child

        if self.ha is not None:
            self.ha.stop()
        for child in reversed(self.children):
            stop_child(child)
        if self.cut is not None:
            self.cut.remove()
        shutil.rmtree(self.workdir, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    from threenines.demo import simulator

    snmp_ports = simulator.pick_ports() if simulator.available() and not args.no_power else None
    text = demo_inventory_text(snmp_ports)
    if args.print_inventory:
        print(text, end="")
        return 0
    if args.ha and args.no_prometheus:
        print("error: --ha runs two Prometheus; leave out --no-prometheus", file=sys.stderr)
        return 2
    started = _Started(Path(tempfile.mkdtemp(prefix="threenines-demo-")))
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    # Until the exporter's loop takes both signals over, SIGTERM stops the demo as Ctrl-C does (through the
    # clean-up below, not by killing it where it stands).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return (_run_ha if args.ha else _run)(args, text, snmp_ports, started)
    except KeyboardInterrupt:
        return 0
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave agents, the table and files behind.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        started.remove()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _start_power_and_cut(snmp_ports: Mapping[str, int] | None, started: _Started) -> tuple[dict[str, Agent],
                                                                                          str | None]:
    """Start the simulated power devices and create the port's nftables table; returns the agents and why the
    port cannot be cut (None when it can)."""
    from threenines.demo import portcut, simulator

    agents: dict[str, Agent] = {}
    for device, port in (snmp_ports or {}).items():
        agents[device] = simulator.start(started.workdir, device, port)
        started.children.append(agents[device].process)
    reason = portcut.unavailable_reason()
    if reason is None:
        try:
            started.cut = portcut.create(f"threenines_demo_{os.getpid()}")
        except RuntimeError as err:
            reason = str(err)
    return agents, reason


def _run(args: argparse.Namespace, text: str, snmp_ports: Mapping[str, int] | None, started: _Started) -> int:
    from threenines.demo import prometheus
    from threenines.probes.ping import PingSetupError
    from threenines.serve.process import Exporter, ServeOptions

    workdir = started.workdir
    config = workdir / DEMO_INVENTORY
    config.write_text(text, encoding="utf-8")
    state_dir = args.state_dir or workdir / "state"
    agents, reason = _start_power_and_cut(snmp_ports, started)
    prom_port = prometheus.free_tcp_port() if prometheus.available() and not args.no_prometheus else None
    if prom_port is not None:
        started.children.append(prometheus.start(workdir, args.listen, prom_port))
    try:
        exporter = Exporter(ServeOptions(config=config, listen=args.listen, state_dir=state_dir, tick=5.0))
    except PingSetupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    inventory = exporter.inventory
    host, port = exporter.http.address
    ping = next(p for p in inventory.customer(CUT_CUSTOMER).ports if p.id == CUT_PORT).policy
    print(f"threenines demo: {len(exporter.engine.keys)} targets; ports probed every {ping.interval:g} s "
          f"({ping.threshold} failed probes = outage)")
    print(f"  metrics:   http://{host}:{port}/metrics")
    if agents:
        print("\n".join(power_lines(inventory, agents, prom_port is not None)))
    else:
        print("  power:     not simulated (install snmpsim to see PDUs and UPSes)")
    print("\n".join(port_lines(inventory, started.cut, reason)))
    print(f"  inventory: {config}   (edit it, then `kill -HUP {os.getpid()}` or POST http://{host}:{port}/-/reload)")
    kept = "kept" if args.state_dir else "deleted on exit; --state-dir DIR keeps it"
    print(f"  ledger:    {state_dir / 'outages.sqlite'}   ({kept})")
    if prom_port is not None:
        url = f"http://127.0.0.1:{prom_port}"
        print(f"  prometheus: {url}  (scrapes every {prometheus.SCRAPE_SECONDS} s, evaluates prometheus/rules)")
        print(f"  dashboards: grafana/dashboards/*.json; every panel's query in Prometheus: {workdir}/queries.txt")
        (workdir / "queries.txt").write_text("\n".join(prometheus.dashboard_query_lines(url)) + "\n")
    else:
        print("  prometheus: not started (apt-get install prometheus, or --no-prometheus was given)")
    print("  Ctrl-C stops the demo and removes its agents, nftables table and temporary directory.", flush=True)
    asyncio.run(exporter.run())
    return 0


def _run_ha(args: argparse.Namespace, text: str, snmp_ports: Mapping[str, int] | None, started: _Started) -> int:
    from threenines.config.inventory_load import load_inventory
    from threenines.demo import ha

    agents, reason = _start_power_and_cut(snmp_ports, started)
    stack = started.ha = ha.Stack(started.workdir, args.state_dir or started.workdir / "state")
    try:
        stack.start(text)
    except ha.Unavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    assert stack.config is not None
    inventory = load_inventory(stack.config)
    ping = next(p for p in inventory.customer(CUT_CUSTOMER).ports if p.id == CUT_PORT).policy
    engines = "VictoriaMetrics, " if stack.vm_url else ""
    print(f"threenines demo --ha: 2 replica exporters, 2 Prometheus, {engines}a 2-node Alertmanager cluster on "
          f"127.0.0.1; ports probed every {ping.interval:g} s ({ping.threshold} failed probes = outage)")
    print("\n".join(stack.guide_lines(os.getpid())))
    if agents:
        print("\n".join(power_lines(inventory, agents, prometheus=True)))
    else:
        print("  power:     not simulated (install snmpsim to see PDUs and UPSes)")
    print("\n".join(port_lines(inventory, started.cut, reason)))
    kept = "kept" if args.state_dir else "deleted on exit; --state-dir DIR keeps them"
    print(f"  inventory: {stack.config}   (ledgers {kept})")
    print("  Ctrl-C stops the demo and removes every process it started, its nftables table and temporary directory.",
          flush=True)
    return _supervise(stack)


def _supervise(stack: Stack) -> int:
    """Until Ctrl-C/SIGTERM: say when a process exits, and start again what is dead on SIGUSR1."""
    from threenines.demo.ha import Unavailable

    wanted: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, _frame: wanted.append(signum))
    try:
        while True:
            time.sleep(0.5)
            for one in stack.newly_dead():
                code = one.process.returncode if one.process else None
                print(f"  {one.name} (pid {one.pid}) exited (status {code}); `kill -USR1 {os.getpid()}` starts it "
                      "again", flush=True)
            if wanted:
                wanted.clear()
                try:
                    for one in stack.restart_dead():
                        print(f"  restarted {one.name}: pid {one.pid} (kill -9 {one.pid})", flush=True)
                except Unavailable as err:
                    print(f"  restart failed: {err}", flush=True)
    finally:
        signal.signal(signal.SIGUSR1, previous)
