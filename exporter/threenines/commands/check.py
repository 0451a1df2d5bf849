"""`threenines check`: validate the inventory (and, when given, the deployment configs) and exit 0/1."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterator

from threenines.config.configfile import ConfigError
from threenines.config.inventory import Inventory, SecretError, SecretRef, load_inventory


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
    for warning in unresolved_secrets(inventory):
        print(f"warning: {warning}", file=sys.stderr)
    if args.prometheus_config or args.alertmanager_config or args.rules:
        from threenines.alerting.notification_bound import run_check

        return run_check(inventory, args.prometheus_config, args.rules, args.alertmanager_config)
    return 0


def unresolved_secrets(inventory: Inventory) -> Iterator[str]:
    """Secret references that cannot be read where this check runs: `serve` would refuse them where it uses
    them. A warning, not an error: `check` often runs on a build host without the service's secrets."""
    seen: set[tuple[str | None, str | None]] = set()
    for ref in _secret_refs(inventory):
        if (ref.env, ref.file) in seen:
            continue
        seen.add((ref.env, ref.file))
        try:
            ref.resolve()
        except SecretError as err:
            yield f"{err} (where this check runs; serve needs it)"


def _secret_refs(node: object) -> Iterator[SecretRef]:
    if isinstance(node, SecretRef):
        yield node
    elif dataclasses.is_dataclass(node) and not isinstance(node, type):
        for field in dataclasses.fields(node):
            yield from _secret_refs(getattr(node, field.name))
    elif isinstance(node, (tuple, list)):
        for item in node:
            yield from _secret_refs(item)
    elif isinstance(node, dict):
        for item in node.values():
            yield from _secret_refs(item)
