"""`threenines demo`: the exporter on a built-in loopback inventory, with a shortened contract interval."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from importlib import resources
from pathlib import Path

DEMO_INVENTORY = "inventory.yml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default="127.0.0.1:9839", help="HOST:PORT for /metrics (default %(default)s)")
    parser.add_argument("--state-dir", type=Path, help="ledger directory (default: a new temporary directory)")
    parser.add_argument("--print-inventory", action="store_true", help="print the demo inventory and exit")


def demo_inventory_text() -> str:
    return resources.files("threenines.demo").joinpath(DEMO_INVENTORY).read_text(encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    from threenines.probes.ping import PingSetupError
    from threenines.service import Exporter, ServeOptions

    if args.print_inventory:
        print(demo_inventory_text(), end="")
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="threenines-demo-"))
    config = workdir / DEMO_INVENTORY
    config.write_text(demo_inventory_text(), encoding="utf-8")
    state_dir = args.state_dir or workdir / "state"
    exporter = Exporter(ServeOptions(config=config, listen=args.listen, state_dir=state_dir, tick=5.0))
    host, port = exporter.http.address
    print(f"threenines demo: {len(exporter.engine.keys)} loopback ports, probed every 10 s (2 failures = outage)")
    print(f"  metrics:   http://{host}:{port}/metrics")
    print(f"  inventory: {config}   (edit it and `kill -HUP` this process, or POST http://{host}:{port}/-/reload)")
    print(f"  ledger:    {state_dir / 'outages.sqlite'}")
    print("  Ctrl-C stops the demo.", flush=True)
    try:
        asyncio.run(exporter.run())
    except PingSetupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
