"""The delivery ledger's read-only reader (what `threenines status` and `threenines report --delivery-ledger`
read): per outage event and contact, what the exporter's DeliveryLedger wrote — channel, contact version, first
attempt, acceptance and receipt, or the failures and the last reason — and nothing written back. Real SQLite
files written by the exporter's own ledger class; the expected values are the attempts this test wrote."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from threenines.ledgers.audit import outage_key
from threenines.ledgers.delivery import Attempt, DeliveryLedger, DeliveryLedgerReader, NoticeRow, shown_contact

DETERMINED = 1_790_000_000.123  # the alert's annotation: milliseconds
HOOK = "https://hooks.acme.example:8443/services/T0/B0/s3cr3tT0ken?key=abc"


def _notice(contact: str, channel: str, event: str = "firing", determined: float = DETERMINED,
            target: str = "uplink") -> NoticeRow:
    return NoticeRow(received_at=determined + 2, customer="acme", service="connectivity", target=target,
                     determined_at=determined, event=event, contact=contact, channel=channel, contact_version="v7",
                     facts="{}")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ledger(path: Path) -> None:
    ledger = DeliveryLedger(path)
    mail, sms, hook, resolved, other = ledger.add_notices([
        _notice("email:noc@acme.example", "email"), _notice("sms:+31612345678", "sms"),
        _notice(f"webhook:{HOOK}", "webhook"), _notice("email:noc@acme.example", "email", "resolved"),
        _notice("email:noc@acme.example", "email", determined=DETERMINED + 86400, target="uplink-b")])
    t = DETERMINED
    # e-mail: refused twice (no STARTTLS), then the relay's 250 at t + 64
    ledger.add_attempt(Attempt(mail.id, t + 3, t + 3.5, "failed", "tls_required", "127.0.0.1:2525 does not "
                                                                                    "offer STARTTLS", ""))
    ledger.add_attempt(Attempt(mail.id, t + 14, t + 14.2, "failed", "connect", "cannot connect to 127.0.0.1:2525: "
                                                                               "Connection refused", ""))
    ledger.add_attempt(Attempt(mail.id, t + 63.5, t + 64, "accepted", "", "",
                               "250 2.0.0 Ok: queued as QID0001 queue_id=QID0001 tls"))
    # SMS: the gateway answers 503 three times, still retried
    for n in range(3):
        ledger.add_attempt(Attempt(sms.id, t + 3 + 10 * n, t + 3.1 + 10 * n, "failed", "unavailable",
                                   f"HTTP 503: busy {n}", ""))
    # webhook: accepted at once
    ledger.add_attempt(Attempt(hook.id, t + 3, t + 3.25, "accepted", "", "", 'HTTP 200 {"id": "r-0"}'))
    # the resolved notice: never attempted yet; the other outage's e-mail: given up after one failure
    del resolved
    ledger.add_attempt(Attempt(other.id, t + 86403, t + 86404, "failed", "rejected", "RCPT: 550 user unknown", ""))
    ledger.add_attempt(Attempt(other.id, t + 2 * 86400, t + 2 * 86400, "expired", "", "retries given up", ""))
    ledger.close()


def test_the_reader_gives_each_contacts_delivery_as_the_ledger_wrote_it(tmp_path: Path) -> None:
    path = tmp_path / "delivery.sqlite"
    _ledger(path)
    before = _digest(path)
    # The outage ledger's determination (microseconds) finds the notices (milliseconds) within half a millisecond.
    with DeliveryLedgerReader(path) as reader:
        rows = reader.for_outage(outage_key("acme", "connectivity", "uplink", DETERMINED + 0.000_4))
        assert reader.for_outage(outage_key("acme", "connectivity", "uplink", DETERMINED + 0.002)) == []
        everything = reader.deliveries()
        month = reader.deliveries(DETERMINED, DETERMINED + 1, customers=["acme"])
        nobody = reader.deliveries(customers=[])
    assert _digest(path) == before
    assert [(r.event, r.contact, r.channel, r.contact_version, r.state) for r in rows] == [
        ("firing", "email:noc@acme.example", "email", "v7", "delivered"),
        ("firing", "sms:+31612345678", "sms", "v7", "failing"),
        ("firing", "webhook:https://hooks.acme.example:8443/…", "webhook", "v7", "delivered"),
        ("resolved", "email:noc@acme.example", "email", "v7", "pending")]
    mail, sms, hook, resolved = rows
    assert (mail.first_attempt_at, mail.accepted_at, mail.attempts, mail.failures) == (
        DETERMINED + 3, DETERMINED + 64, 3, 2)
    assert mail.delay == pytest.approx(64.0)
    assert mail.receipt == "250 2.0.0 Ok: queued as QID0001 queue_id=QID0001 tls"
    # the last failure is the latest one, even after the acceptance
    assert (mail.last_reason, mail.last_detail) == ("connect", "cannot connect to 127.0.0.1:2525: Connection refused")
    assert (sms.accepted_at, sms.receipt, sms.attempts, sms.failures) == (None, "", 3, 3)
    assert (sms.last_failure_at, sms.last_reason, sms.last_detail) == (
        DETERMINED + 23.1, "unavailable", "HTTP 503: busy 2")
    assert hook.delay == pytest.approx(3.25) and hook.receipt == 'HTTP 200 {"id": "r-0"}'
    assert (resolved.first_attempt_at, resolved.attempts, resolved.last_reason) == (None, 0, "")
    [given_up] = [r for r in everything if r.target == "uplink-b"]
    assert (given_up.state, given_up.attempts, given_up.last_reason) == ("given up", 1, "rejected")
    assert given_up.expired_at == DETERMINED + 2 * 86400
    assert len(everything) == 5 and [r.target for r in month] == ["uplink"] * 4 and nobody == []


def test_no_secret_a_url_may_carry_is_printed(tmp_path: Path) -> None:
    path = tmp_path / "delivery.sqlite"
    _ledger(path)
    with DeliveryLedgerReader(path) as reader:
        shown = repr(reader.deliveries())
    assert "s3cr3tT0ken" not in shown and "key=abc" not in shown and "/services" not in shown
    assert shown_contact("webhook:https://user:pw@[::1]:9000/") == "webhook:https://[::1]:9000"
    assert shown_contact("pagerduty:https://events.pagerduty.com/v2/enqueue") == \
        "pagerduty:https://events.pagerduty.com/…"
    assert shown_contact("phone:+31201234567") == "phone:+31201234567"


def test_a_missing_delivery_ledger_is_named_not_read_as_empty(tmp_path: Path) -> None:
    missing = tmp_path / "state" / "delivery.sqlite"
    with pytest.raises(OSError, match=r"delivery\.sqlite: no such delivery ledger"):
        DeliveryLedgerReader(missing)
    assert not missing.parent.exists()
