"""`threenines status`: what a NOC asks first — is each customer's service up, which outages are open, were the
contacts notified, and how much of this month's budget is left.

Now comes from the running exporter's /metrics (the state it would alert on); the open outages, their
notification state and the month so far come from its ledgers (read-only), which hold what /metrics
does not: history across restarts, the first dispatch of each outage, the missed deadlines. The month so far
is the outage seconds the ledger holds since local midnight on the 1st (merged over a service's targets,
without the time it had no evidence), before exclusions: the monthly statement (`threenines report`) is the
bill.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_EXPORTER = "http://127.0.0.1:9839"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="inventory YAML (zones, objectives, deadlines)")
    parser.add_argument("--exporter", default=DEFAULT_EXPORTER,
                        help=f"the running exporter (default {DEFAULT_EXPORTER})")
    parser.add_argument("--state-dir", type=Path, help="its ledger directory (default: exporter.state_dir)")
    parser.add_argument("--customer", action="append", default=[], help="only this customer (repeatable)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--timeout", type=float, default=10.0)
    http = parser.add_argument_group("exporter HTTP (as set by --web.config.file)")
    http.add_argument("--basic-auth-user")
    http.add_argument("--basic-auth-password-file", help="file holding the password (never on the command line)")
    http.add_argument("--ca-file", help="CA bundle for an https exporter")
    http.add_argument("--insecure-skip-verify", action="store_true")


@dataclass
class OpenOutage:
    target: str
    first_failed_at: str
    determined_at: str
    notification: str  # "notified …", "pending until …", "MISSED …"


@dataclass
class ServiceStatus:
    service: str
    state: str  # up | down | unknown (now, from /metrics); "absent" when the exporter does not export it
    month_outage_seconds: float
    month_availability_ratio: float
    month_budget_left_seconds: float
    open_outages: list[OpenOutage] = field(default_factory=list)


@dataclass
class CustomerStatus:
    customer: str
    name: str
    timezone: str
    services: list[ServiceStatus]


def _fetch(args: argparse.Namespace) -> str:
    import requests

    auth = None
    if args.basic_auth_user:
        if not args.basic_auth_password_file:
            raise ValueError("--basic-auth-user needs --basic-auth-password-file")
        auth = (args.basic_auth_user, Path(args.basic_auth_password_file).read_text(encoding="utf-8").strip())
    verify: bool | str = False if args.insecure_skip_verify else (args.ca_file or True)
    url = args.exporter.rstrip("/") + "/metrics"
    try:
        response = requests.get(url, auth=auth, verify=verify, timeout=args.timeout)
    except requests.RequestException as err:
        raise ValueError(f"cannot reach the exporter at {args.exporter}: {type(err).__name__}") from err
    if response.status_code != 200:
        raise ValueError(f"{url} answered HTTP {response.status_code}"
                         + (": pass --basic-auth-user/--basic-auth-password-file" if response.status_code == 401
                            else ""))
    return response.text


def _samples(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def _notification(audit: Path, customer: str, service: str, target: str, determined_at: float, deadline: float,
                  now: float, iso) -> str:
    if not audit.is_file():
        return "unknown (no audit ledger)"
    from threenines.ledgers.audit import AuditLedgerReader, outage_key

    # The audit keys an outage by determined_at to the millisecond (outage_key), the outage ledger holds the
    # engine's microseconds: the reader finds the same outage within half a millisecond.
    key = outage_key(customer, service, target, determined_at)
    with AuditLedgerReader(audit) as ledger:
        first, missed = ledger.first_dispatch(key), ledger.miss(key)
    if missed is not None:
        return f"MISSED at {iso(missed.deadline_at)} ({missed.reason})"
    if first is not None:
        return (f"notified at {iso(first.dispatched_at)} ({first.dispatched_at - determined_at:.0f} s after "
                "determination)")
    if determined_at + deadline > now:
        return f"pending until {iso(determined_at + deadline)}"
    return f"OVERDUE since {iso(determined_at + deadline)}"


def collect(args: argparse.Namespace, now: float) -> list[CustomerStatus]:
    from datetime import datetime

    from threenines.config.inventory_load import load_inventory
    from threenines.exposition import catalogue
    from threenines.intervals import clip, measure
    from threenines.report.collect import outages_from_ledger
    from threenines.report.months import Month, budget_seconds

    inventory = load_inventory(args.config)
    state_dir = args.state_dir or Path(inventory.exporter.state_dir)
    samples = _samples(_fetch(args))
    up = samples.get(str(catalogue.CUSTOMER_SERVICE_UP), {})
    known = samples.get(str(catalogue.CUSTOMER_SERVICE_KNOWN), {})
    wanted = set(args.customer)
    outage_ledger = state_dir / "outages.sqlite"
    out = []
    for customer in inventory.customers:
        if wanted and customer.id not in wanted:
            continue
        zone = customer.zone
        local = datetime.fromtimestamp(now, zone)
        month = Month(local.year, local.month)
        start, end = month.window(zone)

        def iso(t: float, zone=zone) -> str:
            return datetime.fromtimestamp(t, zone).isoformat(timespec="seconds")

        ledger = outages_from_ledger(outage_ledger, start, end, now) if outage_ledger.is_file() else {}
        services = []
        for service in customer.services:
            key = (("customer", customer.id), ("service", service))
            state = ("absent" if key not in up else "down" if up[key] == 0 else
                     "unknown" if known.get(key) == 0 else "up")
            runs = ledger.get((customer.id, service), [])
            seconds = measure(clip((p for o in runs for p in o.outage_pieces()), (start, min(now, end))))
            elapsed = max(1.0, min(now, end) - start)
            services.append(ServiceStatus(
                service, state, round(seconds, 3), round(1 - seconds / elapsed, 6),
                round(budget_seconds(start, end, customer.objective) - seconds, 3),
                [OpenOutage(o.target, iso(o.start), iso(o.determined or o.start),
                            _notification(state_dir / "audit.sqlite", customer.id, service, o.target,
                                          o.determined or o.start, customer.notification_deadline, now, iso))
                 for o in runs if o.open]))
        out.append(CustomerStatus(customer.id, customer.name, customer.timezone, services))
    return out


def _table(statuses: list[CustomerStatus]) -> str:
    head = ("customer", "service", "now", "month outage s", "availability %", "budget left s")
    rows = [(c.customer, s.service, s.state.upper() if s.state != "up" else "up", f"{s.month_outage_seconds:g}",
             f"{100 * s.month_availability_ratio:.4f}", f"{s.month_budget_left_seconds:g}")
            for c in statuses for s in c.services]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=False)]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in (head, *rows)]
    opened = [(c, s, o) for c in statuses for s in c.services for o in s.open_outages]
    if opened:
        lines += ["", "open outages:"]
        lines += [f"  {c.customer} {s.service} {o.target}: first failed probe {o.first_failed_at}, determined "
                  f"{o.determined_at}, notification {o.notification}" for c, s, o in opened]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from threenines.config.configfile import ConfigError

    try:
        statuses = collect(args, time.time())
    except (ConfigError, ValueError, OSError) as err:  # the ledger readers' errors are OSError
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps([asdict(s) for s in statuses], indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(_table(statuses))
    return 0
