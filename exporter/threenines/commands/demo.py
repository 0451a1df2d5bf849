"""`threenines demo`: the exporter on a built-in loopback inventory, with a shortened contract interval,
and simulated PDUs/UPSes (snmpsim on 127.0.0.1) when snmpsim is installed."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from importlib import resources
from pathlib import Path

DEMO_INVENTORY = "inventory.yml"
RPDU2_OUTLET_STATE = "1.3.6.1.4.1.318.1.1.26.9.2.3.1.5"  # off(1) on(2)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default="127.0.0.1:9839", help="HOST:PORT for /metrics (default %(default)s)")
    parser.add_argument("--state-dir", type=Path, help="ledger directory (default: a new temporary directory)")
    parser.add_argument("--print-inventory", action="store_true", help="print the demo inventory and exit")
    parser.add_argument("--no-power", action="store_true", help="do not start simulated PDUs/UPSes (snmpsim)")
    parser.add_argument("--no-prometheus", action="store_true", help="do not start a local Prometheus")


def demo_inventory_text(snmp_port: int | None = None) -> str:
    """The demo inventory; with an snmpsim port, also the simulated power devices and a customer on them."""
    files = resources.files("threenines.demo")
    text = files.joinpath(DEMO_INVENTORY).read_text(encoding="utf-8")
    if snmp_port is not None:
        text += "\n" + files.joinpath("power.yml").read_text(encoding="utf-8").replace("__SNMP_PORT__", str(snmp_port))
    return text


def run(args: argparse.Namespace) -> int:
    from threenines.demo import prometheus, simulator, stop_child
    from threenines.probes.ping import PingSetupError
    from threenines.service import Exporter, ServeOptions

    snmp_port = simulator.free_udp_port() if simulator.available() and not args.no_power else None
    text = demo_inventory_text(snmp_port)
    if args.print_inventory:
        print(text, end="")
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="threenines-demo-"))
    config = workdir / DEMO_INVENTORY
    config.write_text(text, encoding="utf-8")
    state_dir = args.state_dir or workdir / "state"
    agent = simulator.start(workdir, snmp_port) if snmp_port is not None else None
    prom_port = prometheus.free_tcp_port() if prometheus.available() and not args.no_prometheus else None
    prom = prometheus.start(workdir, args.listen, prom_port) if prom_port is not None else None
    try:
        exporter = Exporter(ServeOptions(config=config, listen=args.listen, state_dir=state_dir, tick=5.0))
        host, port = exporter.http.address
        print(f"threenines demo: {len(exporter.engine.keys)} targets; ports probed every 10 s (2 failures = outage)")
        print(f"  metrics:   http://{host}:{port}/metrics")
        if snmp_port is not None:
            print(f"  power:     simulated UPS and A/B PDUs (snmpsim) on udp 127.0.0.1:{snmp_port}; customer hooli")
            print("             switch feed A off: snmpset -v2c -c pdu-a "
                  f"127.0.0.1:{snmp_port} {RPDU2_OUTLET_STATE}.1 i 1")
        else:
            print("  power:     not simulated (install snmpsim to see PDUs and UPSes)")
        print(f"  inventory: {config}   (edit it, then `kill -HUP` this process or POST http://{host}:{port}/-/reload)")
        print(f"  ledger:    {state_dir / 'outages.sqlite'}")
        if prom_port is not None:
            url = f"http://127.0.0.1:{prom_port}"
            print(f"  prometheus: {url}  (scrapes every {prometheus.SCRAPE_SECONDS} s, evaluates prometheus/rules)")
            print(f"  dashboards: grafana/dashboards/*.json; every panel's query in Prometheus: {workdir}/queries.txt")
            (workdir / "queries.txt").write_text("\n".join(prometheus.dashboard_query_lines(url)) + "\n")
        else:
            print("  prometheus: not started (apt-get install prometheus, or --no-prometheus was given)")
        print("  Ctrl-C stops the demo.", flush=True)
        asyncio.run(exporter.run())
    except PingSetupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        for child in (prom, agent):
            if child is not None:
                stop_child(child)
    return 0
