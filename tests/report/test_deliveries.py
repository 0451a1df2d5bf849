"""The statement's notification part with `--delivery-ledger`: each outage's delivery per designated contact, on a
real backfilled Prometheus, with the outage, audit and delivery ledgers written by the exporter's own ledger
classes (docs/report.md, "Notifications delivered").

October 2026, UTC, scrapes every 60 s; acme, port p1, two designated contacts (e-mail noc@acme.test and SMS
+31612345678, contacts version v7), a 900 s deadline. What the exporter recorded, and so what the statement must say:

* Outage A: first failed probe 5 Oct 10:00, determined 10:05, recovered 10:35. The SMS gateway accepted the
  firing notice 3 s after the determination, the relay 64 s after it (queued as QID0001): notified when the last
  contact accepted, 64 s, within the deadline. The resolved e-mail was accepted 5 s after the recovery.
* Outage B: determined 20 Oct 20:05, recovered 21:00. The SMS gateway accepted at +2 s; the relay refused the
  e-mail twice (no STARTTLS) and the retries were given up: never delivered to every contact. The deadline passed
  at 20:20 with the dispatch on record: a miss, reason `undelivered`, one deduction day (20 October).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

import pytest

from tests.promdata import serve_series
from tests.report import monthgen
from tests.report.monthgen import Customer, Run, Scenario, Service, ts
from threenines.cli import main
from threenines.config.inventory import TargetKey
from threenines.contract.machine import OutageEvent
from threenines.ledgers.audit import AuditLedger, Dispatch, Miss
from threenines.ledgers.delivery import Attempt, DeliveryLedger, NoticeRow
from threenines.ledgers.outages import OutageLedger

DEADLINE = 900
A = Run("p1", ts("2026-10-05T10:00:00+00:00"), ts("2026-10-05T10:05:00+00:00"), ts("2026-10-05T10:35:00+00:00"))
B = Run("p1", ts("2026-10-20T20:00:00+00:00"), ts("2026-10-20T20:05:00+00:00"), ts("2026-10-20T21:00:00+00:00"))
ACME = Customer("acme", "UTC", [Service("acme", "connectivity", ("p1",), [A, B])], misses=[B.determined + DEADLINE])
SCENARIO = Scenario(ts("2026-09-30T06:00:00+00:00"), ts("2026-11-01T06:00:00+00:00"), set(), [ACME])
MAIL, SMS = "email:noc@acme.test", "sms:+31612345678"
QUEUED = "250 2.0.0 Ok: queued as QID0001 queue_id=QID0001 tls"


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory):
    with serve_series(monthgen.series(SCENARIO), tmp_path_factory.mktemp("deliveries"),
                      max_block_duration="1488h") as server:
        yield server


def _notice(run: Run, contact: str, event: str = "firing") -> NoticeRow:
    return NoticeRow(received_at=run.determined + 1, customer="acme", service="connectivity", target=run.target,
                     determined_at=float(run.determined), event=event, contact=contact,
                     channel=contact.split(":")[0], contact_version="v7", facts="{}")


@pytest.fixture(scope="module")
def ledgers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    state = tmp_path_factory.mktemp("state")
    outages = OutageLedger(state / "outages.sqlite")
    for run in (A, B):
        key = TargetKey("acme", "connectivity", run.target)
        outages.record(OutageEvent("determined", key, run.determined, run.first_failed, run.determined))
        outages.record(OutageEvent("ended", key, run.recovered, run.first_failed, run.determined, "recovered"))
    outages.close()

    audit = AuditLedger(state / "audit.sqlite")
    for run in (A, B):
        audit.append([Dispatch(dispatched_at=run.determined + 1, receiver="customer-acme", fingerprint="f",
                               alertname="ThreeninesServiceUnavailable", customer="acme", service="connectivity",
                               target=run.target, determined_at=float(run.determined), starts_at="", ends_at="",
                               resolved=False, contact_version="v7", deadline=DEADLINE, delay=1.0, first=True,
                               late=False, group_key="g")])
    audit.append_miss(Miss("acme", "connectivity", "p1", float(B.determined), float(B.determined + DEADLINE),
                           float(B.determined + DEADLINE), "undelivered"))
    audit.close()

    book = DeliveryLedger(state / "delivery.sqlite")
    a_mail, a_sms, a_restored, b_mail, b_sms = book.add_notices([
        _notice(A, MAIL), _notice(A, SMS), _notice(A, MAIL, "resolved"), _notice(B, MAIL), _notice(B, SMS)])
    d = A.determined
    book.add_attempt(Attempt(a_sms.id, d + 2.5, d + 3, "accepted", "", "", 'HTTP 202 {"id": "gw-1"}'))
    book.add_attempt(Attempt(a_mail.id, d + 63, d + 64, "accepted", "", "", QUEUED))
    book.add_attempt(Attempt(a_restored.id, A.recovered + 4, A.recovered + 5, "accepted", "", "",
                             "250 2.0.0 Ok: queued as QID0002 queue_id=QID0002 tls"))
    d = B.determined
    book.add_attempt(Attempt(b_sms.id, d + 1.5, d + 2, "accepted", "", "", 'HTTP 202 {"id": "gw-2"}'))
    refused = "127.0.0.1:2525 does not offer STARTTLS and notification.smtp.require_tls is true"
    book.add_attempt(Attempt(b_mail.id, d + 1, d + 1.5, "failed", "tls_required", refused, ""))
    book.add_attempt(Attempt(b_mail.id, d + 11, d + 11.5, "failed", "tls_required", refused, ""))
    book.add_attempt(Attempt(b_mail.id, d + 86401, d + 86401, "expired", "", "retries given up", ""))
    book.close()
    return {name: state / f"{name}.sqlite" for name in ("outages", "audit", "delivery")}


def _report(prom, ledgers: dict[str, Path], tmp_path: Path, fmt: str, deliveries: bool = True) -> str:
    out = tmp_path / f"statement.{fmt}"
    extra = ["--delivery-ledger", str(ledgers["delivery"])] if deliveries else []
    assert main(["report", "--month", "2026-10", "--prometheus", prom.url, "--format", fmt, "--output", str(out),
                 "--ledger", str(ledgers["outages"]), "--audit-ledger", str(ledgers["audit"]), *extra]) == 0
    return out.read_text(encoding="utf-8")


def test_each_outage_lists_its_deliveries_per_contact(prom, ledgers: dict[str, Path], tmp_path: Path) -> None:
    data = json.loads(_report(prom, ledgers, tmp_path, "json"))
    assert data["schema"] == "threenines.statement/1"
    [acme] = data["customers"]
    notification = acme["notification"]
    assert (notification["deduction_days"], notification["days"]) == (1, ["2026-10-20"])
    first, second = notification["deliveries"]
    assert (first["target"], first["determined"]) == ("p1", "2026-10-05T10:05:00+00:00")
    assert (first["delivered_at"], first["delay_seconds"], first["missed"]) == (
        "2026-10-05T10:06:04+00:00", 64.0, None)
    assert [(c["event"], c["channel"], c["contact"], c["contact_version"], c["accepted_at"], c["delay_seconds"],
             c["receipt"], c["state"]) for c in first["contacts"]] == [
        ("firing", "email", MAIL, "v7", "2026-10-05T10:06:04+00:00", 64.0, QUEUED, "delivered"),
        ("firing", "sms", SMS, "v7", "2026-10-05T10:05:03+00:00", 3.0, 'HTTP 202 {"id": "gw-1"}', "delivered"),
        ("resolved", "email", MAIL, "v7", "2026-10-05T10:35:05+00:00", 1805.0,
         "250 2.0.0 Ok: queued as QID0002 queue_id=QID0002 tls", "delivered")]
    # B: never delivered to every contact; the deadline's miss says so
    assert (second["delivered_at"], second["missed"], second["missed_at"]) == (
        None, "undelivered", "2026-10-20T20:20:00+00:00")
    mail, sms = second["contacts"]
    assert (mail["contact"], mail["state"], mail["accepted_at"], mail["attempts"], mail["first_attempt"]) == (
        MAIL, "given up", None, 2, "2026-10-20T20:05:01+00:00")
    assert mail["last_failure"].startswith("tls_required: 127.0.0.1:2525 does not offer STARTTLS")
    assert (sms["state"], sms["delay_seconds"]) == ("delivered", 2.0)


def test_without_the_delivery_ledger_the_statement_is_as_before(prom, ledgers: dict[str, Path],
                                                                tmp_path: Path) -> None:
    data = json.loads(_report(prom, ledgers, tmp_path, "json", deliveries=False))
    assert "deliveries" not in data["customers"][0]["notification"]
    rows = list(csv.DictReader(io.StringIO(_report(prom, ledgers, tmp_path, "csv", deliveries=False))))
    assert [r["notification_deliveries"] for r in rows] == [""]


def test_table_csv_and_html_say_who_got_it_and_who_never_did(prom, ledgers: dict[str, Path], tmp_path: Path) -> None:
    table = _report(prom, ledgers, tmp_path, "table")
    assert ("acme connectivity p1 determined 2026-10-05T10:05:00+00:00: delivered to every contact at "
            "2026-10-05T10:06:04+00:00 (64 s after determination)") in table
    assert (f"    firing {MAIL} (contacts v7): accepted 2026-10-05T10:06:04+00:00 (64 s after determination), "
            f"receipt '{QUEUED}'") in table
    assert ("acme connectivity p1 determined 2026-10-20T20:05:00+00:00: NOT delivered to every contact; deadline "
            "MISSED at 2026-10-20T20:20:00+00:00 (undelivered: never delivered to every designated contact by the "
            "deadline)") in table
    assert f"    firing {MAIL} (contacts v7): UNDELIVERED (given up): tls_required: 127.0.0.1:2525" in table
    [row] = list(csv.DictReader(io.StringIO(_report(prom, ledgers, tmp_path, "csv"))))
    assert row["notification_deduction_days"] == "1"
    assert row["notification_deliveries"].startswith("p1 determined 2026-10-05T10:05:00+00:00: delivered to every "
                                                     "contact at 2026-10-05T10:06:04+00:00 (64 s after determination)")
    assert "| p1 determined 2026-10-20T20:05:00+00:00: NOT delivered to every contact; deadline MISSED" \
        in row["notification_deliveries"]
    assert "queue_id=QID0001" in row["notification_deliveries"]
    html = _report(prom, ledgers, tmp_path, "html")
    assert "<h3>Notifications</h3>" in html
    assert f"<td>{MAIL}</td><td>v7</td><td>2026-10-05T10:06:04+00:00</td><td>64</td><td>{QUEUED}</td>" in html
    assert "<td>UNDELIVERED</td>" in html and "(2 attempt(s), given up)" in html


CONTACT_KEYS = ["event", "channel", "contact", "contact_version", "first_attempt", "accepted_at", "accepted_at_unix",
                "delay_seconds", "receipt", "attempts", "state", "last_failure"]
OUTAGE_KEYS = ["service", "target", "determined", "determined_unix", "delivered_at", "delay_seconds", "missed",
               "missed_at", "contacts"]


def test_the_section_is_the_last_of_the_notification_and_its_keys_are_published_in_order(
        prom, ledgers: dict[str, Path], tmp_path: Path) -> None:
    # the existing keys of the notification first, unchanged (tests/report/test_schema.py), the section last
    data = json.loads(_report(prom, ledgers, tmp_path, "json"))
    notification = data["customers"][0]["notification"]
    assert sorted(notification) == sorted(["missed_deadlines", "days", "deduction_days", "source", "exact",
                                           "deliveries"])
    from threenines.report.schema import ContactDeliveryLine, NotificationCredits, OutageDeliveries

    assert [f.name for f in dataclasses.fields(NotificationCredits)][-1] == "deliveries"
    assert [f.name for f in dataclasses.fields(OutageDeliveries)] == OUTAGE_KEYS
    assert [f.name for f in dataclasses.fields(ContactDeliveryLine)] == CONTACT_KEYS
    for outage in notification["deliveries"]:
        assert sorted(outage) == sorted(OUTAGE_KEYS)
        assert all(sorted(c) == sorted(CONTACT_KEYS) for c in outage["contacts"])
