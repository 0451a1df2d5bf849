"""`threenines maintenance`: edit the exclusions ledger (add/list/remove) and turn agreed maintenance windows into
Alertmanager silences (sync, idempotent). add/remove edit the file safely (exclusions_file.py), then, when
given, reload the exporter and sync Alertmanager, so the common case needs no hand-edited YAML."""

from __future__ import annotations

import argparse
import sys
import time

from threenines.config.exclusions import REASONS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    sync = sub.add_parser("sync", help="create/expire silences for maintenance windows in the exclusions ledger")
    sync.add_argument("--config", required=True, help="inventory YAML file")
    sync.add_argument("--exclusions", required=True, help="exclusions.yml (the exclusions ledger)")
    sync.add_argument("--alertmanager", required=True, metavar="URL",
                      help="Alertmanager base URL, e.g. http://127.0.0.1:9093 (each cluster member shares silences)")
    sync.add_argument("--horizon", default="7d", help="silence windows starting within this (default %(default)s)")

    add = sub.add_parser("add", help="add a window to the exclusions ledger (validated, atomic, locked)")
    _file_arguments(add)
    add.add_argument("--id", required=True, help="unique id, e.g. the change request: CHG-2026-1101")
    add.add_argument("--customer", required=True)
    add.add_argument("--services", default="connectivity,power", help="comma-separated (default: both)")
    add.add_argument("--start", required=True, help="ISO 8601; without an offset, in the customer's contract zone")
    add.add_argument("--end", required=True, help="ISO 8601; without an offset, in the customer's contract zone")
    add.add_argument("--reason", default="maintenance", choices=REASONS)
    add.add_argument("--reference", required=True, help="change request or ticket")
    add.add_argument("--approved-by", required=True, help="who agreed it with the customer")
    add.add_argument("--rrule", help="RFC 5545 rule repeating the window, e.g. FREQ=WEEKLY;BYDAY=SU;COUNT=8")
    _after_arguments(add)

    remove = sub.add_parser("remove", help="remove a window from the exclusions ledger by id")
    _file_arguments(remove)
    remove.add_argument("--id", required=True)
    _after_arguments(remove)

    listing = sub.add_parser("list", help="the windows of the exclusions ledger, in each customer's zone")
    _file_arguments(listing)
    listing.add_argument("--customer", action="append", default=[], help="only this customer (repeatable)")


def _file_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="inventory YAML file (customers and their zones)")
    parser.add_argument("--exclusions", required=True, help="exclusions.yml (the exclusions ledger)")


def _after_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exporter", metavar="URL", help="then reload this exporter (POST /-/reload)")
    parser.add_argument("--alertmanager", metavar="URL", help="then sync maintenance silences to this Alertmanager")
    parser.add_argument("--horizon", default="7d", help="with --alertmanager (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo

    from threenines.alerting.silences import AlertmanagerError
    from threenines.config.configfile import ConfigError
    from threenines.config.inventory_load import load_inventory

    try:
        inventory = load_inventory(args.config)
        zones: dict[str, ZoneInfo] = {c.id: c.zone for c in inventory.customers}
        if args.action == "list":
            return _list(args, zones)
        if args.action in ("add", "remove"):
            _edit(args, zones)
            if args.exporter:
                _reload(args.exporter)
            if not args.alertmanager:
                return 0
        return _sync(args, inventory, zones)
    except (ConfigError, ValueError, OSError, AlertmanagerError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def _edit(args: argparse.Namespace, zones) -> None:
    from pathlib import Path

    from threenines.config import exclusions_file

    path = Path(args.exclusions)
    if args.action == "remove":
        removed = exclusions_file.remove(path, args.id, zones)
        print(f"{path}: removed {removed.id} ({removed.customer}, {removed.reason})")
        return
    if args.customer not in zones:
        raise ValueError(f"customer {args.customer!r} is not in {args.config}")
    zone = zones[args.customer]
    entry = exclusions_file.NewExclusion(
        id=args.id, customer=args.customer, services=tuple(s.strip() for s in args.services.split(",") if s.strip()),
        start=exclusions_file.local_time(args.start, zone, "--start"),
        end=exclusions_file.local_time(args.end, zone, "--end"), reason=args.reason, reference=args.reference,
        approved_by=args.approved_by, rrule=args.rrule)
    exclusions_file.add(path, entry, zones)
    print(f"{path}: added {entry.id} ({entry.customer}, {entry.reason}) {entry.start.isoformat()} – "
          f"{entry.end.isoformat()}")


def _reload(url: str) -> None:
    import requests

    try:
        response = requests.post(url.rstrip("/") + "/-/reload", timeout=30)
    except requests.RequestException as err:
        raise ValueError(f"the exclusions file is saved, but the exporter at {url} was not reloaded: "
                         f"{type(err).__name__}") from err
    if response.status_code != 200:
        raise ValueError(f"the exclusions file is saved, but the exporter at {url} refused the reload (HTTP "
                         f"{response.status_code}): {response.text.strip()[:300]}")
    print(f"reloaded the exporter at {url}")


def _list(args: argparse.Namespace, zones) -> int:
    from datetime import datetime

    from threenines.config.exclusions import load_exclusions

    ledger = load_exclusions(args.exclusions, zones)
    wanted = set(args.customer)
    for ex in sorted(ledger.exclusions, key=lambda e: (e.customer, e.start, e.id)):
        if wanted and ex.customer not in wanted:
            continue
        zone = zones[ex.customer]

        def local(t: float, zone=zone) -> str:
            return datetime.fromtimestamp(t, zone).isoformat(timespec="minutes")

        repeat = f" repeats {ex.rrule}" if ex.rrule else ""
        print(f"{ex.id}  {ex.customer}  {','.join(ex.services)}  {local(ex.start)} – {local(ex.end)}  {ex.reason}  "
              f"{ex.reference}  approved by {ex.approved_by}{repeat}")
    return 0


def _sync(args: argparse.Namespace, inventory, zones) -> int:
    from threenines.alerting.silences import SilenceClient, desired_silences, sync
    from threenines.config.configfile import parse_duration
    from threenines.config.exclusions import load_exclusions

    ledger = load_exclusions(args.exclusions, zones)
    desired = desired_silences(inventory, ledger, time.time(), parse_duration(args.horizon))
    result = sync(SilenceClient(args.alertmanager), desired)
    for key in result.created:
        print(f"created silence {key}")
    for key in result.expired:
        print(f"expired silence {key}")
    print(f"{len(result.created)} created, {len(result.expired)} expired, {len(result.kept)} unchanged")
    return 0
