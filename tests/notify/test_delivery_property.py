"""Property: whatever the interleaving of posts (repeats included), attempts that fail or succeed in any order and
concurrency, and restarts in between, the delivery ledger holds one first delivery per contact and outage event,
the notifier's view agrees with the ledger, and an outage is delivered exactly when every contact accepted."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.audit.test_webhook import alert, payload
from threenines.alerting.webhook import AuditWebhook
from threenines.config.inventory import Contact
from threenines.config.inventory_load import parse_inventory_text
from threenines.ledgers.audit import AuditLedger
from threenines.ledgers.delivery import Attempt, DeliveryLedger
from threenines.notify.channels import DeliveryError
from threenines.notify.endpoint import DeliveryEndpoint
from threenines.notify.message import Notice
from threenines.notify.worker import Notifier

TOKEN = "property-token"
INVENTORY = """
customers:
  - id: acme
    name: ACME
    timezone: UTC
    contacts: {version: "1", notify: [{email: a@acme.test}, {sms: "+31201234567"}, {webhook: {url: "http://127.0.0.1:9/h"}}]}
    ports: [{id: p1, address: 192.0.2.1}, {id: p2, address: 192.0.2.2}]
"""
BASE = 5_000_000.0


class ScriptedChannel:
    """A channel whose answers the property draws: accept, refuse, or hang past the timeout."""

    timeout = 1.0

    def __init__(self, kind: str, answers: list[str]) -> None:
        self.kind = kind
        self.answers = answers

    async def send(self, notice: Notice, contact: Contact) -> str:
        answer = self.answers.pop(0) if self.answers else "accept"
        for _ in range(len(self.answers) % 3):
            await asyncio.sleep(0)  # interleave with the other attempts in flight
        if answer == "fail":
            raise DeliveryError("unavailable", "HTTP 503")
        return f"ok {notice.status}"


class Clock:
    def __init__(self) -> None:
        self.now = BASE

    def __call__(self) -> float:
        self.now += 0.5
        return self.now


def build(path: Path, answers: list[str], clock: Clock) -> tuple[DeliveryEndpoint, Notifier, AuditWebhook]:
    inventory = parse_inventory_text(INVENTORY)
    audit = AuditWebhook(AuditLedger(path / "audit.sqlite"), TOKEN, 1 << 20, inventory, clock)
    channels = {kind: ScriptedChannel(kind, answers) for kind in ("email", "sms", "webhook")}
    notifier = Notifier(DeliveryLedger(path / "delivery.sqlite"), channels, inventory, clock, backoff=(0.0,))
    return DeliveryEndpoint(audit, notifier, inventory, clock), notifier, audit


async def round_of_attempts(notifier: Notifier, clock: Clock) -> None:
    due = notifier._due(clock.now + 1e9, 16)  # everything owed is due: backoff is not what is tested here
    await asyncio.gather(*(notifier._attempt(owed.row) for owed in due))


OPS = st.one_of(
    st.tuples(st.just("post"), st.sampled_from(["p1", "p2"]), st.sampled_from(["firing", "resolved"])),
    st.tuples(st.just("attempt"), st.lists(st.sampled_from(["accept", "fail"]), max_size=6)),
    st.tuples(st.just("restart")),
    st.tuples(st.just("replay")),
)


@given(ops=st.lists(OPS, max_size=14))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_one_first_delivery_per_contact_and_outage_event_for_any_interleaving(
        tmp_path_factory: pytest.TempPathFactory, ops: list[tuple]) -> None:
    path = tmp_path_factory.mktemp("delivery")
    clock = Clock()
    answers: list[str] = []
    endpoint, notifier, audit = build(path, answers, clock)
    for op in ops:
        if op[0] == "post":
            determined_at = BASE - (100 if op[1] == "p1" else 200)
            status, _ = endpoint.handle(payload("customer-acme", alert("acme", op[1], determined_at, op[2])),
                                        {"authorization": f"Bearer {TOKEN}"})
            assert status == 200
        elif op[0] == "attempt":
            answers[:] = list(op[1])
            asyncio.run(round_of_attempts(notifier, clock))
        elif op[0] == "restart":
            notifier.ledger.close()
            audit.ledger.close()
            endpoint, notifier, audit = build(path, answers, clock)
        else:  # a second acceptance of something already accepted (a resend after a crash): refused by the ledger
            accepted = [a for a in notifier.ledger.attempts() if a.outcome == "accepted"]
            if accepted:
                again = Attempt(accepted[0].notice_id, clock(), clock(), "accepted", "", "", "again")
                assert notifier.ledger.add_attempt(again) is False
        check(path, notifier)
    notifier.ledger.close()
    audit.ledger.close()


def check(path: Path, notifier: Notifier) -> None:
    with sqlite3.connect(path / "delivery.sqlite") as db:
        per_notice = db.execute("SELECT notice_id, count(*) FROM attempts WHERE outcome = 'accepted' "
                                "GROUP BY notice_id").fetchall()
        notices = db.execute("SELECT id, customer, service, target, determined_at, event, contact FROM notices"
                             ).fetchall()
        accepted = dict(db.execute("SELECT notice_id, finished_at FROM attempts WHERE outcome = 'accepted'"
                                   ).fetchall())
    assert all(count == 1 for _, count in per_notice)
    keys = [n[1:] for n in notices]
    assert len(keys) == len(set(keys))  # one notice per outage event and contact
    # the notifier owes exactly what the ledger has not seen accepted
    assert notifier.pending == len(notices) - len(accepted)
    outages: dict[tuple, list[int]] = {}
    for notice_id, customer, service, target, determined_at, event, _ in notices:
        if event == "firing":
            outages.setdefault((customer, service, target, determined_at), []).append(notice_id)
    for outage, ids in outages.items():
        expected = max(accepted[i] for i in ids) if all(i in accepted for i in ids) else None
        assert notifier.delivered_at(outage) == expected
        assert len(ids) == 3  # every designated contact of the customer
