"""`threenines check`: validate the inventory (and, when given, the deployment configs) and exit 0/1."""

from __future__ import annotations

import argparse
import sys

from threenines.configfile import ConfigError
from threenines.inventory import load_inventory


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="inventory YAML file")
    parser.add_argument("--prometheus-config", metavar="FILE",
                        help="prometheus.yml: also compute each customer's worst-case notification latency")
    parser.add_argument("--rules", action="append", metavar="GLOB",
                        help="rule files (repeatable; default: rule_files of --prometheus-config)")
    parser.add_argument("--alertmanager-config", metavar="FILE", help="alertmanager.yml routing customer alerts")


def run(args: argparse.Namespace) -> int:
    try:
        inventory = load_inventory(args.config)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    ports = sum(len(c.ports) for c in inventory.customers)
    print(
        f"{args.config}: OK — {len(inventory.customers)} customers, {ports} ports, "
        f"{len(inventory.devices)} SNMP devices"
    )
    if args.prometheus_config or args.alertmanager_config or args.rules:
        from threenines.latency import run_check

        return run_check(inventory, args.prometheus_config, args.rules, args.alertmanager_config)
    return 0
