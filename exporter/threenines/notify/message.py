"""What a customer reads: one notice's facts → e-mail (text + HTML), SMS, webhook JSON, PagerDuty event.

The facts are the alert's own (determination and first failed probe from its annotations, the end from the
outage ledger) and the inventory's (the customer's name, the port's address, the contract time zone, the
contacts' language), and the month's availability so far (notify.availability: provisional, omitted when it cannot
be told). Every time is shown in the contract's time zone, as the monthly statement shows it. Nothing
internal reaches the customer: no Alertmanager or Prometheus link, no routing label, no runbook.

The wording is data (messages/<language>.yml); each channel's rendering is pinned by golden files
(tests/notify/golden/).
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from threenines.notify.availability import MonthSoFar, month_start

SCHEMA = "threenines.notification/v1"
LANGUAGES = ("en", "zh-CN")


@dataclass(frozen=True)
class Notice:
    """The facts of one notification of one outage event (firing or resolved) to a customer."""

    status: str  # firing | resolved
    customer: str
    customer_name: str
    service: str  # connectivity | power
    target: str
    address: str  # the port's address; for power the feeds (A, B)
    timezone: str  # the contract's IANA zone
    language: str  # en | zh-CN
    determined_at: float
    first_failed_at: float | None
    ended_at: float | None  # resolved only: the first successful probe (or when Alertmanager saw the end)
    contacts_version: str
    # The month's availability so far (notify.availability), taken with the notice so every attempt says the same:
    # the instant it is as of (the determination, or the end for a resolved notice) and the month's outage seconds
    # up to it. None: no figure (the exporter does not know this outage, or had no history): no line at all.
    month_as_of: float | None = None
    month_outage_seconds: float | None = None

    @property
    def month(self) -> MonthSoFar | None:
        if self.month_as_of is None or self.month_outage_seconds is None:
            return None
        start = month_start(self.month_as_of, self.timezone)
        if self.month_as_of <= start:
            return None
        return MonthSoFar(start, self.month_as_of, self.month_outage_seconds)

    @property
    def outage_key(self) -> str:
        """One outage, the same for its firing and resolved notices (and for an HA peer: see docs/alerting.md)."""
        return f"{self.customer}/{self.service}/{self.target}/{self.determined_at:.3f}"

    @property
    def reference(self) -> str:
        """A short reference for the customer to quote; the same for the outage's two messages."""
        return hashlib.sha256(self.outage_key.encode()).hexdigest()[:10].upper()

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Notice:
        return cls(**json.loads(text))


@functools.cache
def catalogue(language: str) -> dict[str, Any]:
    if language not in LANGUAGES:
        raise ValueError(f"no messages in {language!r}: one of {', '.join(LANGUAGES)}")
    text = resources.files("threenines.notify").joinpath("messages", f"{language}.yml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _local(at: float, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(at, UTC).astimezone(zone)


def _offset(moment: datetime) -> str:
    offset = moment.utcoffset()
    assert offset is not None
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def duration_text(seconds: float, words: dict[str, str]) -> str:
    total = max(0, round(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    key = "hours" if h else "minutes" if m else "seconds"
    return words[key].format(h=h, m=m, s=s)


@dataclass(frozen=True)
class Message:
    """One notice rendered for every channel."""

    subject: str
    text: str
    html: str
    sms: str
    document: dict[str, Any]  # the customer webhook's JSON (schema threenines.notification/v1)


def _fields(notice: Notice, words: dict[str, Any]) -> dict[str, str]:
    zone = ZoneInfo(notice.timezone)
    fmt, short = words["time_format"], words["short_time_format"]

    def at(value: float | None, pattern: str) -> str:
        return _local(value, zone).strftime(pattern) if value is not None else "—"

    fields = {
        "name": notice.customer_name,
        "service": words["service"][notice.service],
        "zone": notice.timezone,
        "offset": _offset(_local(notice.determined_at, zone)),
        "zone_short": _local(notice.determined_at, zone).strftime("%Z"),
        "reference": notice.reference,
        "first_failed": at(notice.first_failed_at, fmt),
        "determined": at(notice.determined_at, fmt),
        "ended": at(notice.ended_at, fmt),
        "first_failed_short": at(notice.first_failed_at, short),
        "determined_short": at(notice.determined_at, short),
        "ended_short": at(notice.ended_at, short),
        "duration": "",
    }
    if notice.ended_at is not None:
        start = notice.first_failed_at if notice.first_failed_at is not None else notice.determined_at
        fields["duration"] = duration_text(notice.ended_at - start, words["duration"])
    fields["where"] = words["where"][notice.service].format(target=notice.target, address=notice.address)
    month, said = notice.month, words["availability"]
    fields["month_percent"] = month.percent_text() if month is not None else ""
    fields["month_start"] = at(month.start if month is not None else None, fmt)
    fields["month_as_of"] = at(month.at if month is not None else None, fmt)
    fields["month_as_of_what"] = said["as_of"][notice.status]
    # Empty without a figure: the SMS then reads as it did before, never with a guessed number.
    fields["month_sms"] = said["sms"].format(**fields) if month is not None else ""
    return fields


def _rows(notice: Notice, words: dict[str, Any], fields: dict[str, str]) -> list[tuple[str, str]]:
    labels = words["labels"]
    rows = [(labels["customer"], fields["name"]), (labels["first_failed"], fields["first_failed"]),
            (labels["determined"], fields["determined"])]
    if notice.status == "resolved":
        rows += [(labels["ended"], fields["ended"]), (labels["duration"], fields["duration"])]
    if notice.month is not None:
        rows.append((labels["availability"], words["availability"]["value"].format(**fields)))
    rows += [(labels["status"], words["status"][notice.status]), (labels["reference"], fields["reference"])]
    return rows


def _iso(at: float | None, zone: ZoneInfo) -> str | None:
    return _local(at, zone).isoformat(timespec="seconds") if at is not None else None


def document(notice: Notice) -> dict[str, Any]:
    """The customer webhook's body: schema threenines.notification/v1 (docs/alerting.md)."""
    zone = ZoneInfo(notice.timezone)
    duration = None
    if notice.ended_at is not None:
        start = notice.first_failed_at if notice.first_failed_at is not None else notice.determined_at
        duration = max(0, round(notice.ended_at - start))
    return {
        "schema": SCHEMA,
        "status": notice.status,
        "reference": notice.reference,
        "customer": {"id": notice.customer, "name": notice.customer_name},
        "service": notice.service,
        "target": {"id": notice.target, "address": notice.address},
        "timezone": notice.timezone,
        "first_failed_probe": _iso(notice.first_failed_at, zone),
        "determined_at": _iso(notice.determined_at, zone),
        "ended_at": _iso(notice.ended_at, zone),
        "duration_seconds": duration,
        "contacts_version": notice.contacts_version,
        "month_so_far": _month_document(notice.month, zone),
    }


def _month_document(month: MonthSoFar | None, zone: ZoneInfo) -> dict[str, Any] | None:
    if month is None:
        return None
    return {
        "availability_percent": month.percent,
        "from": _iso(month.start, zone),
        "until": _iso(month.at, zone),
        "elapsed_seconds": round(month.elapsed_seconds, 3),
        "outage_seconds": round(month.outage_seconds, 3),
        "provisional": True,
    }


def render(notice: Notice) -> Message:
    words = catalogue(notice.language)
    fields = _fields(notice, words)
    status = notice.status
    subject = words["subject"][status].format(**fields)
    intro = words["intro"][status].format(**fields)
    note = " ".join(words["note"][status].split()).format(**fields)
    notes = [note]
    if notice.month is not None:
        notes.append(" ".join(words["availability"]["note"].split()).format(**fields))
    rows = _rows(notice, words, fields)
    separator = words["label_separator"]
    width = max(len(label) for label, _ in rows) + 1
    table = [f"  {(label + separator).ljust(width)} {value}" for label, value in rows]
    text = "\n".join([intro, "", *table, *(line for n in notes for line in ("", n)), "", "-- ", words["signature"],
                      ""])
    e = html.escape
    body_rows = "\n".join(f'<tr><th align="left" style="padding:2px 12px 2px 0">{e(label)}</th><td>{e(value)}</td></tr>'
                          for label, value in rows)
    paragraphs = "".join(f"<p>{e(n)}</p>\n" for n in notes)
    html_text = (f'<!DOCTYPE html>\n<html lang="{e(notice.language)}"><head><meta charset="utf-8">'
                 f"<title>{e(subject)}</title></head>\n<body>\n<p>{e(intro)}</p>\n<table>\n{body_rows}\n</table>\n"
                 f"{paragraphs}<p><small>{e(words['signature'])}</small></p>\n</body></html>\n")
    sms = words["sms"][status].format(**fields)
    doc = document(notice)
    doc["language"] = notice.language
    doc["subject"] = subject
    doc["text"] = sms
    return Message(subject=subject, text=text, html=html_text, sms=sms, document=doc)
