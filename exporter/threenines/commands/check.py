"""`threenines check`: validate the inventory (and, when given, the deployment configs) and exit 0/1."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from threenines.config.configfile import ConfigError, format_duration
from threenines.config.inventory import Inventory
from threenines.config.inventory_load import load_inventory
from threenines.config.secrets import SecretError, SecretRef

if TYPE_CHECKING:
    from threenines.alerting.notification_bound import CustomerLatency


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
    if inventory.notification.smtp is not None:  # require_tls against a relay without STARTTLS: every e-mail fails
        from threenines.notify.smtp import require_tls_warning

        smtp = inventory.notification.smtp
        if relay := require_tls_warning(smtp.smarthost, smtp.require_tls):
            print(f"warning: {args.config}: {relay}", file=sys.stderr)
    if args.prometheus_config or args.alertmanager_config or args.rules:
        return check_deployment(inventory, args.prometheus_config, args.rules, args.alertmanager_config)
    return 0


def check_deployment(inventory: Inventory, prometheus_config: str | None, rule_patterns: list[str] | None,
                     alertmanager_config: str | None) -> int:
    """`check --prometheus-config P [--rules R] --alertmanager-config A`: print every customer route's worst-case
    notification latency (OK lines on stdout, the rest on stderr); 0 when every route keeps its deadline."""
    from threenines.alerting.notification_bound import check_deployment_configs

    if not (prometheus_config and alertmanager_config):
        print("error: --prometheus-config and --alertmanager-config go together (--rules is optional: by default "
              "the rule_files of prometheus.yml)", file=sys.stderr)
        return 1
    try:
        found = check_deployment_configs(inventory, prometheus_config, rule_patterns, alertmanager_config)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for result in found.latencies:
        print(describe(result), file=sys.stdout if result.ok else sys.stderr)
    for problem in found.template_problems:
        print(f"error: {problem}", file=sys.stderr)
    if found.template_problems:
        return 1
    if found.failed:
        print(f"error: {len(found.failed)} customer route(s) cannot keep the notification promise", file=sys.stderr)
        return 1
    return 0


def describe(result: CustomerLatency) -> str:
    """One customer route's bound: the verdict, the sum term by term, and what is wrong with the route."""
    terms = " + ".join(f"{k} {format_duration(v)}" for k, v in result.terms.items() if v)
    verdict = "OK" if result.ok else "FAIL"
    line = (f"{verdict} {result.customer}/{result.service} {result.alert} → {', '.join(result.receivers)}: worst case "
            f"{format_duration(result.bound)} (deadline {format_duration(result.deadline)}) = {terms}")
    if result.bound > result.deadline:
        line += f"\n  exceeds the deadline by {format_duration(result.bound - result.deadline)}"
    return line + "".join(f"\n  {p}" for p in result.problems)


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
