"""What `threenines status` reads, for one exporter and for replicas alike: an exporter's /metrics, and an outage's
notification from the audit and delivery ledgers, put in words.

The words follow docs/alerting.md, "Delivery": an outage counts as notified only when every designated contact's
channel accepted its firing notice; a dispatch alone is not a notification.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from threenines.ledgers.audit import Dispatch, Miss
    from threenines.ledgers.delivery import Delivery

VANTAGE = "vantage"  # the label a replica exporter (serve --vantage) puts on its contract series

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


class ExporterError(ValueError):
    """The exporter could not be read. str(): the one exporter's error line; `why`: the reason alone."""

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message)
        self.why = why


@dataclass(frozen=True)
class Http:
    """How to ask the exporters (as set by their --web.config.file); the password stays in here, never printed."""

    timeout: float
    auth: tuple[str, str] | None = field(repr=False)  # (user, password): a traceback's repr must not carry it
    verify: bool | str


def http_options(args: argparse.Namespace) -> Http:
    auth = None
    if args.basic_auth_user:
        if not args.basic_auth_password_file:
            raise ValueError("--basic-auth-user needs --basic-auth-password-file")
        auth = (args.basic_auth_user, Path(args.basic_auth_password_file).read_text(encoding="utf-8").strip())
    return Http(args.timeout, auth, False if args.insecure_skip_verify else (args.ca_file or True))


def shown_url(url: str) -> str:
    """A URL (or a VANTAGE=URL value) as printed: never a user:password someone put in it (up to the authority's
    last "@", so a password holding a raw "@" goes too)."""
    return re.sub(r"//[^/?#]*@", "//", url)


def _errno_text(err: BaseException) -> str:
    """The operating system's words inside requests' long message ("Connection refused"), or ""."""
    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(err))
    return f" ({found.group(1).strip()})" if found else ""


def fetch(url: str, http: Http) -> str:
    import requests

    metrics = url.rstrip("/") + "/metrics"
    shown = shown_url(url)
    try:
        response = requests.get(metrics, auth=http.auth, verify=http.verify, timeout=http.timeout)
    except requests.Timeout as err:
        raise ExporterError(f"cannot reach the exporter at {shown}: {type(err).__name__}",
                            f"no answer within {http.timeout:g} s ({type(err).__name__})") from err
    except requests.RequestException as err:
        raise ExporterError(f"cannot reach the exporter at {shown}: {type(err).__name__}",
                            f"{type(err).__name__}{_errno_text(err)}") from err
    if response.status_code != 200:
        hint = ": pass --basic-auth-user/--basic-auth-password-file" if response.status_code == 401 else ""
        raise ExporterError(f"{shown_url(metrics)} answered HTTP {response.status_code}{hint}",
                            f"/metrics answered HTTP {response.status_code}{hint}")
    return response.text


def samples(text: str) -> tuple[Samples, set[str]]:
    """Each sample by name and labels, without the `vantage` label (a replica's series are looked up like one
    exporter's), and the vantage names the exporter put on them (none without --vantage)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: Samples = {}
    vantages: set[str] = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = dict(sample.labels)
            if VANTAGE in labels:
                vantages.add(labels.pop(VANTAGE))
            out.setdefault(sample.name, {})[tuple(sorted(labels.items()))] = sample.value
    return out, vantages


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


def contacts(deliveries: list[Delivery], deadline: float, now: float, missed: bool,
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


def notification_words(first: Dispatch | None, missed: Miss | None, deliveries: list[Delivery],
                       determined_at: float, deadline: float, now: float, iso: Callable[[float], str]) -> str:
    """The outage's notification in words, from its first dispatch and missed deadline (audit ledger) and its
    notices (delivery ledger)."""
    if missed is not None:
        return f"MISSED at {iso(missed.deadline_at)} ({missed.reason})"
    firing = [d for d in deliveries if d.event == "firing"]
    if firing:
        # Notified when every designated contact's channel accepted: the latest acceptance (docs/alerting.md).
        accepted = [d.accepted_at for d in firing if d.accepted_at is not None]
        if len(accepted) == len(firing):
            return (f"delivered to every contact at {iso(max(accepted))} ({max(accepted) - determined_at:.0f} s "
                    "after determination)")
        owed = f"UNDELIVERED to {len(firing) - len(accepted)} of {len(firing)} contact(s)"
        if determined_at + deadline > now:
            return f"{owed}, deadline {iso(determined_at + deadline)}"
        return f"{owed}, OVERDUE since {iso(determined_at + deadline)}"
    if first is not None:
        return (f"notified at {iso(first.dispatched_at)} ({first.dispatched_at - determined_at:.0f} s after "
                "determination)")
    if determined_at + deadline > now:
        return f"pending until {iso(determined_at + deadline)}"
    return f"OVERDUE since {iso(determined_at + deadline)}"


def contact_line(d: ContactDelivery, suffix: str = "") -> str:
    head = f"    {d.event} {d.contact} (contacts {d.contact_version}): "
    late = " (after the deadline)" if d.deadline_passed else ""
    if d.state == "delivered":
        return (f"{head}delivered at {d.accepted_at}, {d.delay_seconds:.0f} s after determination{late}, "
                f"receipt {d.receipt!r}{suffix}")
    if d.state == "pending":
        return f"{head}not attempted yet" + (", deadline passed" if d.deadline_passed else "") + suffix
    word = "GIVEN UP" if d.state == "given up" else "FAILING"
    return (f"{head}{word}: {d.last_failure}, {d.attempts} attempt(s) since {d.first_attempt_at}"
            + (", deadline passed" if d.deadline_passed else "") + suffix)
