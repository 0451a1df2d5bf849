"""`threenines zabbix-sync`: create or update, idempotently, the Zabbix hosts, services and SLAs the inventory
implies (--dry-run prints the changes and touches nothing). With replica exporters, --prometheus-url adds the
merged host and feeds the services from it alone (docs/zabbix.md "Replica exporters")."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="inventory YAML file")
    parser.add_argument("--url", required=True, help="Zabbix frontend URL (…/api_jsonrpc.php is appended if absent)")
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument("--token-file", type=Path,
                      help="file holding a Zabbix API token (default: $ZABBIX_API_TOKEN when set)")
    auth.add_argument("--user", help="Zabbix user name; password from --password-file or $ZABBIX_PASSWORD")
    parser.add_argument("--password-file", type=Path, help="file holding the password for --user")
    parser.add_argument("--exporter-url",
                        help="the exporter's /metrics URL as Zabbix reaches it (its host: threenines by HTTP)")
    parser.add_argument("--exporter-user", help="basic-auth user for /metrics (the exporter's --web.config.file)")
    parser.add_argument("--exporter-password-file", type=Path,
                        help="file holding the basic-auth password for /metrics, stored as a secret macro")
    parser.add_argument("--host-name", default="threenines exporter", help="Zabbix host for the exporter")
    parser.add_argument("--scrape-interval", default="1m", help="how often Zabbix scrapes /metrics (default 1m)")
    parser.add_argument("--prometheus-url",
                        help="a Prometheus (base URL, as Zabbix reaches it) that scrapes the replica exporters and "
                             "evaluates the shipped rules: creates the merged host (threenines merged by Prometheus) "
                             "and feeds the services and SLAs from it alone; give it on every run")
    prom_auth = parser.add_mutually_exclusive_group()
    prom_auth.add_argument("--prometheus-user", help="basic-auth user for Prometheus (its web config)")
    prom_auth.add_argument("--prometheus-token-file", type=Path,
                           help="file holding a bearer token for Prometheus (a proxy in front of it)")
    parser.add_argument("--prometheus-password-file", type=Path, help="file holding the password for --prometheus-user")
    parser.add_argument("--merged-host-name", default="threenines merged", help="Zabbix host for the merged view")
    parser.add_argument("--prometheus-interval", default="1m",
                        help="how often Zabbix queries Prometheus for the merged state (default 1m)")
    parser.add_argument("--native-ping", action="store_true",
                        help="also create one host per customer port linked to 'threenines contract ping'")
    parser.add_argument("--import-templates", action="store_true",
                        help="import the generated templates when missing or changed")
    parser.add_argument("--exclusions", type=Path, help="exclusions ledger (exclusions.yml) for excluded downtimes")
    parser.add_argument("--months", type=int, default=13,
                        help="months of exclusions (back and ahead of now) sent as excluded downtimes (default 13)")
    parser.add_argument("--dry-run", action="store_true", help="print the changes; change nothing")
    parser.add_argument("--insecure", action="store_true", help="do not verify the frontend's TLS certificate")


def _secret_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise SystemExit(f"error: cannot read {path}: {err.strerror or err}") from None


def run(args: argparse.Namespace) -> int:
    from threenines.config.configfile import ConfigError
    from threenines.config.inventory_load import load_inventory
    from threenines.zabbix.api import ZabbixApi, ZabbixError
    from threenines.zabbix.sync import Syncer, SyncOptions, authorization, desired_state, downtimes_from_ledger

    if args.exporter_url is None and args.prometheus_url is None:
        print("error: give --exporter-url, --prometheus-url, or both", file=sys.stderr)
        return 2
    if args.prometheus_password_file and not args.prometheus_user:
        print("error: --prometheus-password-file needs --prometheus-user", file=sys.stderr)
        return 2
    if args.prometheus_user and not args.prometheus_password_file:
        print("error: --prometheus-user needs --prometheus-password-file", file=sys.stderr)
        return 2
    prometheus_password = _secret_file(args.prometheus_password_file) if args.prometheus_password_file else None
    if args.prometheus_user and not prometheus_password:
        print(f"error: --prometheus-password-file {args.prometheus_password_file} is empty", file=sys.stderr)
        return 2
    now = time.time()
    try:
        inventory = load_inventory(args.config)
        downtimes = None
        if args.exclusions:
            from threenines.config.exclusions import load_exclusions

            ledger = load_exclusions(args.exclusions, {c.id: c.zone for c in inventory.customers})
            span = args.months * 31 * 86400
            downtimes = downtimes_from_ledger(inventory, ledger, (now - span, now + span))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    options = SyncOptions(
        exporter_url=args.exporter_url, host_name=args.host_name, scrape_interval=args.scrape_interval,
        exporter_user=args.exporter_user,
        exporter_password=_secret_file(args.exporter_password_file) if args.exporter_password_file else None,
        native_ping=args.native_ping, import_templates=args.import_templates,
        prometheus_url=args.prometheus_url, merged_host_name=args.merged_host_name,
        prometheus_interval=args.prometheus_interval,
        prometheus_authorization=authorization(
            args.prometheus_user, prometheus_password,
            _secret_file(args.prometheus_token_file) if args.prometheus_token_file else None),
    )
    desired = desired_state(inventory, options, now, downtimes)
    try:
        with ZabbixApi(args.url, verify=not args.insecure) as api:
            if args.user:
                password = _secret_file(args.password_file) if args.password_file else os.environ.get("ZABBIX_PASSWORD")
                if password is None:
                    print("error: --user needs --password-file or $ZABBIX_PASSWORD", file=sys.stderr)
                    return 2
                api.login(args.user, password)
            else:
                token = _secret_file(args.token_file) if args.token_file else os.environ.get("ZABBIX_API_TOKEN")
                if not token:
                    print("error: give --token-file, $ZABBIX_API_TOKEN, or --user", file=sys.stderr)
                    return 2
                api.use_token(token)
            syncer = Syncer(api, desired, options)
            changes = syncer.plan()
            for change in changes:
                print(("would " if args.dry_run else "") + change.describe())
            if not changes:
                print("zabbix-sync: nothing to change")
            elif not args.dry_run:
                syncer.apply(changes)
                print(f"zabbix-sync: applied {len(changes)} change(s)")
    except ZabbixError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
