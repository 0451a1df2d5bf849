"""`threenines report`: the monthly SLA statement for billing (docs/report.md)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--month", help="calendar month YYYY-MM (in each customer's contract time zone)")
    which.add_argument("--close", metavar="MONTH", help="write the immutable month-close JSON snapshot")
    parser.add_argument("--prometheus", required=True, help="Prometheus (or Thanos/Mimir) base URL")
    parser.add_argument("--config", help="inventory YAML (default: customers as Prometheus saw them)")
    parser.add_argument("--exclusions", help="exclusions ledger YAML (examples/exclusions.yml)")
    parser.add_argument("--ledger", action="append", default=[], metavar="[VANTAGE=]PATH",
                        help="exporter outage ledger SQLite: exact outage bounds instead of the gauges; with replica "
                        "exporters one per vantage (repeatable, or a quoted glob: a ledger's vantage is VANTAGE= "
                        "or its directory's name), merged by the exclusions' merge policy")
    parser.add_argument("--audit-ledger", help="exporter audit ledger SQLite: missed notification deadlines from it "
                        "(exact day), cross-checked against threenines_notification_deadline_missed_total")
    parser.add_argument("--delivery-ledger", help="exporter delivery ledger SQLite (delivery.sqlite): each outage's "
                        "notification per designated contact (accepted at, delay, receipt, or undelivered and why)")
    parser.add_argument("--customer", action="append", default=[], help="only this customer (repeatable)")
    parser.add_argument("--format", choices=("table", "csv", "json", "html"), default="table")
    parser.add_argument("--output", help="file to write (default: stdout)")
    parser.add_argument("--output-dir", default="statements", help="where --close writes statement-MONTH.json")
    parser.add_argument("--scrape-interval", default=None,
                        help="Prometheus' scrape interval of the exporter (default: learned from the samples; a "
                        "value the data contradicts is replaced by the data's, with a warning)")
    parser.add_argument("--min-coverage", type=float, default=0.99, help="flag months below this coverage ratio")
    parser.add_argument("--allow-incomplete", action="store_true",
                        help="report a month that is not over or not fully retained (flagged)")
    parser.add_argument("--allow-partial", action="store_true", help="accept answers Prometheus marks partial")
    parser.add_argument("--samples-per-shard", type=int, default=10_000_000,
                        help="split month-long queries by customer into shards of about this many samples, which "
                        "Prometheus runs on several cores at once (--concurrency)")
    parser.add_argument("--concurrency", type=int, default=4, help="queries sent to Prometheus at once")
    http = parser.add_argument_group("Prometheus HTTP")
    http.add_argument("--timeout", type=float, default=30.0)
    http.add_argument("--retries", type=int, default=3)
    http.add_argument("--ca-file", help="CA bundle for TLS")
    http.add_argument("--insecure-skip-verify", action="store_true")
    http.add_argument("--client-cert", help="client certificate (PEM)")
    http.add_argument("--client-key", help="client key (PEM)")
    http.add_argument("--basic-auth-user")
    http.add_argument("--basic-auth-password-file")
    http.add_argument("--bearer-token-file")
    http.add_argument("--header", action="append", default=[], metavar="NAME:VALUE",
                      help="extra header, e.g. X-Scope-OrgID:tenant-a (repeatable)")


def _secret(path: str | None) -> str | None:
    return Path(path).read_text(encoding="utf-8").strip() if path else None


def run(args: argparse.Namespace) -> int:
    from threenines.config.configfile import ConfigError, parse_duration
    from threenines.config.exclusions import Exclusions, load_exclusions
    from threenines.config.inventory_load import load_inventory
    from threenines.report import render
    from threenines.report.build import build_statement, resolve_ledgers, specs_from_inventory, specs_from_prometheus
    from threenines.report.close import close_month, content_hash
    from threenines.report.months import Month
    from threenines.report.promclient import ClientConfig, PrometheusClient, PrometheusError
    from threenines.report.statement import Options

    try:
        month = Month.parse(args.close or args.month)
        headers = dict(h.split(":", 1) for h in args.header)
        config = ClientConfig(
            url=args.prometheus, timeout=args.timeout, retries=args.retries,
            verify=False if args.insecure_skip_verify else (args.ca_file or True),
            cert=(args.client_cert, args.client_key) if args.client_cert else None,
            basic_auth=(args.basic_auth_user, _secret(args.basic_auth_password_file) or "")
            if args.basic_auth_user else None,
            bearer_token=_secret(args.bearer_token_file), headers={k.strip(): v.strip() for k, v in headers.items()},
            allow_partial=args.allow_partial, concurrency=args.concurrency)
        if args.close and args.allow_incomplete:
            raise ValueError("--close writes the month's final statement: it cannot be a preview (drop "
                             "--allow-incomplete, and close the month once it is over and retained)")
        interval = parse_duration(args.scrape_interval) if args.scrape_interval else None
        options = Options(scrape_interval=interval, min_coverage=args.min_coverage,
                          samples_per_shard=args.samples_per_shard)
        client = PrometheusClient(config)
        # Which engine answers (Prometheus, VictoriaMetrics, ...) is part of the evidence's provenance; for
        # VictoriaMetrics its flags decide whether the month is still there and which queries it accepts.
        engine = client.detect_engine()
        print(f"engine: {engine.describe()} at {client.base}", file=sys.stderr)
        earliest = month.window(ZoneInfo("Etc/GMT-14"))[0] - 86400  # the earliest zone's month, and a day's margin
        engine_errors, engine_warnings = engine.check(earliest, time.time())
        if engine_errors:
            raise ValueError("; ".join(engine_errors))
        for warning in engine_warnings:
            print(f"warning: {warning}", file=sys.stderr)
        inventory = load_inventory(args.config) if args.config else None
        specs = specs_from_inventory(inventory) if inventory else specs_from_prometheus(client, month)
        if args.customer:
            specs = [s for s in specs if s.id in set(args.customer)]
        zones = {s.id: s.zone for s in specs} if inventory else None
        ledger = load_exclusions(args.exclusions, zones) if args.exclusions else Exclusions()
        outage_ledgers = resolve_ledgers(args.ledger) if args.ledger else None
        statement = build_statement(client, month, specs, ledger, options, outage_ledger=outage_ledgers,
                                    allow_incomplete=args.allow_incomplete, audit_ledger=args.audit_ledger,
                                    delivery_ledger=args.delivery_ledger)
    except (ConfigError, ValueError, OSError, PrometheusError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.close:
        try:
            path, digest, diff = close_month(statement, Path(args.output_dir))
        except (ValueError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        if diff:
            print(f"{path}: month already closed and the statement changed since:", file=sys.stderr)
            for line in diff:
                print(f"  {line}", file=sys.stderr)
            return 3
        print(f"{path} sha256={digest}")
        return 0
    if args.format == "html":
        from threenines.report.html import to_html

        text = to_html(statement)
    else:
        text = {"table": render.to_table, "csv": render.to_csv, "json": render.to_json}[args.format](statement)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"{args.output}: {len(statement.customers)} customers, sha256={content_hash(statement)}")
    else:
        sys.stdout.write(text)
    for warning in statement.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if statement.status == "preview":
        print(f"PREVIEW, not final: {'; '.join(statement.preview_reasons)}", file=sys.stderr)
    if statement.review:
        print(f"{len(statement.review)} item(s) need review before billing (see 'review')", file=sys.stderr)
    return 0
