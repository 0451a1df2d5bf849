"""`threenines check`: validate the inventory (and, when given, the deployment configs) and exit 0/1."""

from __future__ import annotations

import argparse
import sys

from threenines.configfile import ConfigError
from threenines.inventory import load_inventory


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="inventory YAML file")


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
    return 0
