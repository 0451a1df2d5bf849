"""`threenines status`: what a NOC asks first — is each customer's service up, which outages are open, were the
contacts notified, and how much of this month's budget is left.

Now comes from the running exporter's /metrics (the state it would alert on); the open outages, their
notification state and the month so far come from its ledgers (read-only), which hold what /metrics
does not: history across restarts, the first dispatch of each outage, the missed deadlines. The month so far
is the outage seconds the ledger holds since local midnight on the 1st (merged over a service's targets,
without the time it had no evidence), before exclusions: the monthly statement (`threenines report`) is the
bill.

Each open outage, and each outage of the month that ended, shows its delivery per designated contact from the
delivery ledger (`<state_dir>/delivery.sqlite`, threenines.ledgers.delivery.DeliveryLedgerReader): delivered at
(with the delay from the determination and the channel's receipt), or failing (the last reason, the attempts,
and whether the deadline passed). An outage counts as notified only when every contact's channel accepted its
firing notice (docs/alerting.md, "Delivery"); a dispatch alone is not a notification.

With replica exporters (`--exporter a=URL --state-dir a=DIR --exporter b=…`), threenines.commands.status_replicas
shows each replica's view and their merge by the contract's rule.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from threenines.commands.status_sources import (
    ContactDelivery,
    contact_line,
    contacts,
    fetch,
    http_options,
    notification_words,
    samples,
)

if TYPE_CHECKING:
    from threenines.ledgers.delivery import Delivery, DeliveryLedgerReader

DEFAULT_EXPORTER = "http://127.0.0.1:9839"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="inventory YAML (zones, objectives, deadlines)")
    parser.add_argument("--exporter", action="append", default=[], metavar="[VANTAGE=]URL",
                        help=f"the running exporter (default {DEFAULT_EXPORTER}); with replica exporters one per "
                        "vantage (repeatable), named VANTAGE= or by its host:port")
    parser.add_argument("--state-dir", action="append", default=[], metavar="[VANTAGE=]DIR",
                        help="its ledger directory (default: exporter.state_dir); with replica exporters one per "
                        "vantage (repeatable, or a quoted glob), named VANTAGE= or by the directory's name")
    parser.add_argument("--exclusions", help="with replica exporters: the exclusions YAML whose policy.merge "
                        "(all|any) merges their views (default all)")
    parser.add_argument("--customer", action="append", default=[], help="only this customer (repeatable)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each exporter")
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
    notification: str  # "delivered …", "notified …", "UNDELIVERED …", "pending until …", "MISSED …"
    deliveries: list[ContactDelivery] = field(default_factory=list)


@dataclass
class EndedOutage:
    """An outage of this month that ended (its notification and deliveries stay evidence)."""

    target: str
    first_failed_at: str
    determined_at: str
    ended_at: str
    notification: str
    deliveries: list[ContactDelivery] = field(default_factory=list)


@dataclass
class ServiceStatus:
    service: str
    state: str  # up | down | unknown (now, from /metrics); "absent" when the exporter does not export it
    month_outage_seconds: float
    month_availability_ratio: float
    month_budget_left_seconds: float
    open_outages: list[OpenOutage] = field(default_factory=list)
    ended_outages: list[EndedOutage] = field(default_factory=list)  # this month's


@dataclass
class CustomerStatus:
    customer: str
    name: str
    timezone: str
    services: list[ServiceStatus]


def _notification(audit: Path, customer: str, service: str, target: str, determined_at: float, deadline: float,
                  now: float, iso: Callable[[float], str], deliveries: list[Delivery]) -> tuple[str, bool]:
    """The outage's notification in words, and whether the audit ledger holds its missed deadline."""
    from threenines.ledgers.audit import AuditLedgerReader, outage_key

    # The audit keys an outage by determined_at to the millisecond (outage_key), the outage ledger holds the
    # engine's microseconds: the reader finds the same outage within half a millisecond.
    key = outage_key(customer, service, target, determined_at)
    first = missed = None
    if audit.is_file():
        with AuditLedgerReader(audit) as ledger:
            first, missed = ledger.first_dispatch(key), ledger.miss(key)
    elif not deliveries:
        return "unknown (no audit ledger)", False
    return notification_words(first, missed, deliveries, determined_at, deadline, now, iso), missed is not None


def _deliveries(reader: DeliveryLedgerReader | None, customer: str, service: str, target: str,
                determined_at: float) -> list[Delivery]:
    from threenines.ledgers.audit import outage_key

    return reader.for_outage(outage_key(customer, service, target, determined_at)) if reader is not None else []


def collect(args: argparse.Namespace, now: float, exporter: str = DEFAULT_EXPORTER,
            state_dir: Path | None = None) -> list[CustomerStatus]:
    import contextlib
    from datetime import datetime

    from threenines.config.inventory_load import load_inventory
    from threenines.exposition import catalogue
    from threenines.intervals import clip, measure
    from threenines.ledgers.delivery import DeliveryLedgerReader
    from threenines.report.collect import outages_from_ledger
    from threenines.report.months import Month, budget_seconds

    inventory = load_inventory(args.config)
    state_dir = state_dir or Path(inventory.exporter.state_dir)
    found, _ = samples(fetch(exporter, http_options(args)))
    up = found.get(str(catalogue.CUSTOMER_SERVICE_UP), {})
    known = found.get(str(catalogue.CUSTOMER_SERVICE_KNOWN), {})
    wanted = set(args.customer)
    outage_ledger = state_dir / "outages.sqlite"
    delivery_ledger = state_dir / "delivery.sqlite"
    out = []
    with contextlib.ExitStack() as stack:
        # An exporter older than the delivery ledger (or one that never delivered) has none: no delivery rows.
        reader = (stack.enter_context(DeliveryLedgerReader(delivery_ledger)) if delivery_ledger.is_file()
                  else None)
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
            deadline = customer.notification_deadline
            services = []
            for service in customer.services:
                key = (("customer", customer.id), ("service", service))
                state = ("absent" if key not in up else "down" if up[key] == 0 else
                         "unknown" if known.get(key) == 0 else "up")
                runs = ledger.get((customer.id, service), [])
                seconds = measure(clip((p for o in runs for p in o.outage_pieces()), (start, min(now, end))))
                elapsed = max(1.0, min(now, end) - start)
                status = ServiceStatus(
                    service, state, round(seconds, 3), round(1 - seconds / elapsed, 6),
                    round(budget_seconds(start, end, customer.objective) - seconds, 3))
                for o in runs:
                    determined = o.determined or o.start
                    rows = _deliveries(reader, customer.id, service, o.target, determined)
                    note, missed = _notification(state_dir / "audit.sqlite", customer.id, service, o.target,
                                                 determined, deadline, now, iso, rows)
                    shown = contacts(rows, deadline, now, missed, iso)
                    if o.open:
                        status.open_outages.append(OpenOutage(o.target, iso(o.start), iso(determined), note, shown))
                    else:
                        status.ended_outages.append(EndedOutage(o.target, iso(o.start), iso(determined),
                                                                iso(o.end), note, shown))
                services.append(status)
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
        for c, s, o in opened:
            lines.append(f"  {c.customer} {s.service} {o.target}: first failed probe {o.first_failed_at}, determined "
                         f"{o.determined_at}, notification {o.notification}")
            lines += [contact_line(d) for d in o.deliveries]
    ended = [(c, s, o) for c in statuses for s in c.services for o in s.ended_outages]
    if ended:
        lines += ["", "ended outages this month:"]
        for c, s, e in ended:
            lines.append(f"  {c.customer} {s.service} {e.target}: first failed probe {e.first_failed_at}, determined "
                         f"{e.determined_at}, ended {e.ended_at}, notification {e.notification}")
            lines += [contact_line(d) for d in e.deliveries]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from threenines.commands import status_replicas
    from threenines.config.configfile import ConfigError

    try:
        replicas = status_replicas.replica_specs(args.exporter, args.state_dir)
        if replicas is not None:
            return status_replicas.run(args, replicas, time.time())
        statuses = collect(args, time.time(), args.exporter[0] if args.exporter else DEFAULT_EXPORTER,
                           Path(args.state_dir[0]) if args.state_dir else None)
    except (ConfigError, ValueError, OSError) as err:  # the ledger readers' errors are OSError
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps([asdict(s) for s in statuses], indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(_table(statuses))
    return 0
