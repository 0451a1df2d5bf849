"""The replicas' delivery claim (threenines.notify.peer), in process: two notifiers, each with its own ledger, whose
questions travel through the real endpoint handler (JSON, token). Whatever order the replicas ask in — one first,
both at once, one gone — exactly one sends each notice, and an acceptance ends up in both ledgers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.audit.test_webhook import alert, payload
from threenines.alerting.webhook import AuditWebhook
from threenines.config.inventory import Contact
from threenines.config.inventory_load import parse_inventory_text
from threenines.ledgers.audit import AuditLedger
from threenines.ledgers.delivery import DeliveryLedger, NoticeRow
from threenines.notify.endpoint import DeliveryEndpoint
from threenines.notify.message import Notice
from threenines.notify.peer import Acceptance, PeerAnswer, PeerEndpoint, PeerError, parse_request, winner
from threenines.notify.worker import Notifier

TOKEN = "peer-token"
NOW = 1_790_000_000.0
INVENTORY = """
customers:
  - id: acme
    name: ACME
    timezone: UTC
    contacts: {version: "1", notify: [{sms: "+31201234567"}, {sms: "+31201234568"}, {sms: "+31201234569"}]}
    ports: [{id: p1, address: 192.0.2.1}]
"""


class Gateway:
    kind = "sms"
    timeout = 1.0

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, notice: Notice, contact: Contact) -> str:
        self.sent.append((notice.status, contact.target))
        await asyncio.sleep(0)
        return f"HTTP 200 id-{len(self.sent)}"


class Wire:
    """The transport between the replicas: the peer's real endpoint handler, or nothing (a replica that is gone)."""

    def __init__(self, vantage: str) -> None:
        self.vantage = vantage
        self.far: PeerEndpoint | None = None

    async def ask(self, row: NoticeRow, accepted: Acceptance | None) -> PeerAnswer:
        from threenines.notify.peer import _acceptance_document, _row_document

        await asyncio.sleep(0)  # the question is in flight: the other replica may ask meanwhile
        if self.far is None:
            raise PeerError("connect: refused")
        import json

        body = json.dumps({"from": self.vantage, "notice": _row_document(row),
                           "accepted": _acceptance_document(accepted)}).encode()
        status, reply = self.far.handle(body, {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200, reply
        data = json.loads(reply)
        accepted_doc = data["accepted"]
        return PeerAnswer(data["vantage"], data["holder"],
                          Acceptance(**accepted_doc) if accepted_doc else None)


def replica(path: Path, vantage: str, gateway: Gateway) -> tuple[Notifier, DeliveryEndpoint, Wire, AuditWebhook]:
    path.mkdir()
    inventory = parse_inventory_text(INVENTORY)
    audit = AuditWebhook(AuditLedger(path / "audit.sqlite"), TOKEN, 1 << 20, inventory, lambda: NOW)
    wire = Wire(vantage)
    notifier = Notifier(DeliveryLedger(path / "delivery.sqlite"), {"sms": gateway}, inventory, lambda: NOW,
                        backoff=(0.0,), monotonic=lambda: 0.0, peer=wire)  # type: ignore[arg-type]
    return notifier, DeliveryEndpoint(audit, notifier, inventory, lambda: NOW), wire, audit


async def attempts(notifier: Notifier) -> None:
    await asyncio.gather(*(notifier._attempt(o.row) for o in notifier._due(1e9, 16)))


def accepted(notifier: Notifier) -> list[str]:
    return sorted(a.receipt for a in notifier.ledger.attempts() if a.outcome == "accepted")


@pytest.mark.parametrize("order", ["a first", "b first", "at once", "b gone"])
def test_one_replica_sends_each_notice_and_both_ledgers_hold_it(tmp_path: Path, order: str) -> None:
    gateway = Gateway()
    a, a_endpoint, a_wire, a_audit = replica(tmp_path / "a", "a", gateway)
    b, b_endpoint, b_wire, b_audit = replica(tmp_path / "b", "b", gateway)
    a_wire.far = PeerEndpoint("b", b.peer_claim, lambda: TOKEN)
    b_wire.far = None if order == "b gone" else PeerEndpoint("a", a.peer_claim, lambda: TOKEN)
    post = payload("customer-acme", alert("acme", "p1", NOW - 30))
    for endpoint in (a_endpoint, b_endpoint):
        assert endpoint.handle(post, {"authorization": f"Bearer {TOKEN}"})[0] == 200

    async def run() -> None:
        if order == "a first":
            await attempts(a)
            await attempts(b)
        elif order == "b first":
            await attempts(b)
            await attempts(a)
        elif order == "at once":
            await asyncio.gather(attempts(a), attempts(b))
        else:
            a_wire.far = None  # b is gone (it runs no more): a's questions go unanswered and a sends
            await attempts(a)
            return
        for _ in range(3):  # the deferring replica asks again and records the peer's acceptance
            await asyncio.gather(attempts(a), attempts(b))

    asyncio.run(run())
    assert sorted(target for _, target in gateway.sent) == ["+31201234567", "+31201234568", "+31201234569"]
    assert a.pending == 0
    own = accepted(a) if order == "b gone" else sorted(accepted(a) + accepted(b))
    assert len(own) == (3 if order == "b gone" else 6)
    if order != "b gone":
        assert sum("(delivered by" in r for r in own) == 3  # each sent once, recorded by both
        assert b.pending == 0
    for n, audit in ((a, a_audit), (b, b_audit)):
        n.ledger.close()
        audit.ledger.close()


def test_the_choice_when_both_claim_at_once_is_the_same_on_both_sides_and_spreads() -> None:
    keys = [("acme", "connectivity", f"p{i}", NOW, "firing", "sms:+31") for i in range(200)]
    assert all(winner(k, "a", "b") == winner(k, "b", "a") for k in keys)
    share = sum(winner(k, "a", "b") == "a" for k in keys) / len(keys)
    assert 0.3 < share < 0.7


def test_a_question_that_is_not_a_peers_is_refused(tmp_path: Path) -> None:
    endpoint = PeerEndpoint("a", lambda *_: ("a", None), lambda: TOKEN)
    assert endpoint.handle(b"{}", {})[0] == 401
    assert endpoint.handle(b"{}", {"Authorization": f"Bearer {TOKEN}"})[0] == 400
    assert endpoint.handle(b'{"from": "a", "notice": {}}', {"Authorization": f"Bearer {TOKEN}"})[0] == 400
    with pytest.raises(ValueError):
        parse_request(b'{"from": "b", "notice": {"received_at": "nan"}}')
