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

if TYPE_CHECKING:
    from threenines.ledgers.delivery import Delivery, DeliveryLedgerReader

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
class ContactDelivery:
    """One designated contact's notice of an outage event, from the delivery ledger."""

    event: str  # firing | resolved
    channel: str
    contact: str  # as the ledger names it, a URL only as its origin (threenines.ledgers.delivery.shown_contact)
    contact_version: str
    state: str  # delivered | failing | given up | pending (not attempted yet)
    first_attempt_at: str | None
    accepted_at: str | None
    delay_seconds: float | None  # determination → the channel's acceptance
    receipt: str  # relay reply with its queue id, gateway/webhook status and body, dedup_key
    attempts: int
    last_failure: str | None  # "reason: detail" of the latest refused attempt
    # firing: accepted after the deadline, or not accepted and the deadline is past; None for a resolved notice
    deadline_passed: bool | None


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
    if missed is not None:
        return f"MISSED at {iso(missed.deadline_at)} ({missed.reason})", True
    firing = [d for d in deliveries if d.event == "firing"]
    if firing:
        # Notified when every designated contact's channel accepted: the latest acceptance (docs/alerting.md).
        accepted = [d.accepted_at for d in firing if d.accepted_at is not None]
        if len(accepted) == len(firing):
            return (f"delivered to every contact at {iso(max(accepted))} ({max(accepted) - determined_at:.0f} s "
                    "after determination)"), False
        owed = f"UNDELIVERED to {len(firing) - len(accepted)} of {len(firing)} contact(s)"
        if determined_at + deadline > now:
            return f"{owed}, deadline {iso(determined_at + deadline)}", False
        return f"{owed}, OVERDUE since {iso(determined_at + deadline)}", False
    if first is not None:
        return (f"notified at {iso(first.dispatched_at)} ({first.dispatched_at - determined_at:.0f} s after "
                "determination)"), False
    if determined_at + deadline > now:
        return f"pending until {iso(determined_at + deadline)}", False
    return f"OVERDUE since {iso(determined_at + deadline)}", False


def _contacts(deliveries: list[Delivery], deadline: float, now: float, missed: bool,
              iso: Callable[[float], str]) -> list[ContactDelivery]:
    out = []
    for d in deliveries:
        due = d.determined_at + deadline
        # `now` was taken before the ledgers were read: a miss found there is a deadline that has passed since
        # (the exporter writes it when the deadline passes), whatever `now` says.
        passed = None if d.event != "firing" else (d.accepted_at > due if d.accepted_at is not None
                                                    else missed or now > due)
        out.append(ContactDelivery(
            event=d.event, channel=d.channel, contact=d.contact, contact_version=d.contact_version, state=d.state,
            first_attempt_at=iso(d.first_attempt_at) if d.first_attempt_at is not None else None,
            accepted_at=iso(d.accepted_at) if d.accepted_at is not None else None,
            delay_seconds=round(d.delay, 3) if d.delay is not None else None, receipt=d.receipt,
            attempts=d.attempts, last_failure=f"{d.last_reason}: {d.last_detail}" if d.last_reason else None,
            deadline_passed=passed))
    return out


def _deliveries(reader: DeliveryLedgerReader | None, customer: str, service: str, target: str,
                determined_at: float) -> list[Delivery]:
    from threenines.ledgers.audit import outage_key

    return reader.for_outage(outage_key(customer, service, target, determined_at)) if reader is not None else []


def collect(args: argparse.Namespace, now: float) -> list[CustomerStatus]:
    import contextlib
    from datetime import datetime

    from threenines.config.inventory_load import load_inventory
    from threenines.exposition import catalogue
    from threenines.intervals import clip, measure
    from threenines.ledgers.delivery import DeliveryLedgerReader
    from threenines.report.collect import outages_from_ledger
    from threenines.report.months import Month, budget_seconds

    inventory = load_inventory(args.config)
    state_dir = args.state_dir or Path(inventory.exporter.state_dir)
    samples = _samples(_fetch(args))
    up = samples.get(str(catalogue.CUSTOMER_SERVICE_UP), {})
    known = samples.get(str(catalogue.CUSTOMER_SERVICE_KNOWN), {})
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
                    contacts = _contacts(rows, deadline, now, missed, iso)
                    if o.open:
                        status.open_outages.append(OpenOutage(o.target, iso(o.start), iso(determined), note,
                                                              contacts))
                    else:
                        status.ended_outages.append(EndedOutage(o.target, iso(o.start), iso(determined),
                                                                iso(o.end), note, contacts))
                services.append(status)
            out.append(CustomerStatus(customer.id, customer.name, customer.timezone, services))
    return out


def _contact_line(d: ContactDelivery) -> str:
    head = f"    {d.event} {d.contact} (contacts {d.contact_version}): "
    late = " (after the deadline)" if d.deadline_passed else ""
    if d.state == "delivered":
        return (f"{head}delivered at {d.accepted_at}, {d.delay_seconds:.0f} s after determination{late}, "
                f"receipt {d.receipt!r}")
    if d.state == "pending":
        return f"{head}not attempted yet" + (", deadline passed" if d.deadline_passed else "")
    word = "GIVEN UP" if d.state == "given up" else "FAILING"
    return (f"{head}{word}: {d.last_failure}, {d.attempts} attempt(s) since {d.first_attempt_at}"
            + (", deadline passed" if d.deadline_passed else ""))


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
            lines += [_contact_line(d) for d in o.deliveries]
    ended = [(c, s, o) for c in statuses for s in c.services for o in s.ended_outages]
    if ended:
        lines += ["", "ended outages this month:"]
        for c, s, e in ended:
            lines.append(f"  {c.customer} {s.service} {e.target}: first failed probe {e.first_failed_at}, determined "
                         f"{e.determined_at}, ended {e.ended_at}, notification {e.notification}")
            lines += [_contact_line(d) for d in e.deliveries]
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
