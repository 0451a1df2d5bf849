"""`threenines maintenance sync`: turn agreed maintenance windows into Alertmanager silences (idempotent)."""

from __future__ import annotations

import argparse
import sys
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    sync = sub.add_parser("sync", help="create/expire silences for maintenance windows in the exclusions ledger")
    sync.add_argument("--config", required=True, help="inventory YAML file")
    sync.add_argument("--exclusions", required=True, help="exclusions.yml (the exclusions ledger)")
    sync.add_argument("--alertmanager", required=True, metavar="URL",
                      help="Alertmanager base URL, e.g. http://127.0.0.1:9093 (each cluster member shares silences)")
    sync.add_argument("--horizon", default="7d", help="silence windows starting within this (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo

    from threenines.configfile import ConfigError, parse_duration
    from threenines.inventory import load_inventory
    from threenines.maintenance import AlertmanagerError, SilenceClient, desired_silences, sync
    from threenines.report.exclusions import load_ledger

    try:
        inventory = load_inventory(args.config)
        zones: dict[str, ZoneInfo] = {c.id: c.zone for c in inventory.customers}
        ledger = load_ledger(args.exclusions, zones)
        desired = desired_silences(inventory, ledger, time.time(), parse_duration(args.horizon))
        result = sync(SilenceClient(args.alertmanager), desired)
    except (ConfigError, ValueError, AlertmanagerError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for key in result.created:
        print(f"created silence {key}")
    for key in result.expired:
        print(f"expired silence {key}")
    print(f"{len(result.created)} created, {len(result.expired)} expired, {len(result.kept)} unchanged")
    return 0
