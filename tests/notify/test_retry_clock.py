"""The notifier's retries wait on the monotonic clock: a step of the wall clock (an NTP step, a VM restore, a manual
`date`) neither postpones a retry by the step nor fires it early. The ledger's stamps stay on the wall clock."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.audit.test_webhook import alert, payload
from threenines.alerting.webhook import AuditWebhook
from threenines.config.inventory import Contact
from threenines.config.inventory_load import parse_inventory_text
from threenines.ledgers.audit import AuditLedger
from threenines.ledgers.delivery import DeliveryLedger
from threenines.notify.channels import DeliveryError
from threenines.notify.endpoint import DeliveryEndpoint
from threenines.notify.message import Notice
from threenines.notify.worker import Notifier

TOKEN = "retry-clock-token"
BACKOFF = (10.0, 20.0)
WALL = 1_790_000_000.0
INVENTORY = """
customers:
  - id: acme
    name: ACME
    timezone: UTC
    contacts: {version: "1", notify: [{sms: "+31201234567"}]}
    ports: [{id: p1, address: 192.0.2.1}]
"""


class Refusing:
    kind = "sms"
    timeout = 1.0

    async def send(self, notice: Notice, contact: Contact) -> str:
        raise DeliveryError("unavailable", "HTTP 503")


class Clocks:
    def __init__(self) -> None:
        self.wall = WALL
        self.mono = 1000.0


@pytest.mark.parametrize("step", [-3600.0, 3600.0])
def test_a_failed_attempt_is_retried_after_the_backoff_of_elapsed_time_whatever_the_wall_clock_does(
        tmp_path: Path, step: float) -> None:
    clocks = Clocks()
    inventory = parse_inventory_text(INVENTORY)
    audit = AuditWebhook(AuditLedger(tmp_path / "audit.sqlite"), TOKEN, 1 << 20, inventory, lambda: clocks.wall)
    notifier = Notifier(DeliveryLedger(tmp_path / "delivery.sqlite"), {"sms": Refusing()}, inventory,
                        lambda: clocks.wall, backoff=BACKOFF, monotonic=lambda: clocks.mono)
    endpoint = DeliveryEndpoint(audit, notifier, inventory, lambda: clocks.wall)
    status, _ = endpoint.handle(payload("customer-acme", alert("acme", "p1", WALL - 30)),
                                {"authorization": f"Bearer {TOKEN}"})
    assert status == 200
    [owed] = notifier._due(clocks.mono, 16)
    asyncio.run(notifier._attempt(owed.row))
    [failed] = notifier.ledger.attempts()
    assert failed.outcome == "failed" and failed.finished_at == WALL  # the record: wall clock
    clocks.wall += step  # the wall clock jumps; no time has elapsed
    assert notifier._due(clocks.mono + BACKOFF[0] - 0.5, 16) == []  # not early (a forward step)
    assert [o.row.id for o in notifier._due(clocks.mono + BACKOFF[0], 16)] == [owed.row.id]  # not late (a back step)
    notifier.ledger.close()
    audit.ledger.close()


def test_after_a_restart_a_retry_waits_only_what_remains_of_its_backoff(tmp_path: Path) -> None:
    clocks = Clocks()
    inventory = parse_inventory_text(INVENTORY)

    def build() -> tuple[Notifier, AuditWebhook]:
        audit = AuditWebhook(AuditLedger(tmp_path / "audit.sqlite"), TOKEN, 1 << 20, inventory, lambda: clocks.wall)
        return Notifier(DeliveryLedger(tmp_path / "delivery.sqlite"), {"sms": Refusing()}, inventory,
                        lambda: clocks.wall, backoff=BACKOFF, monotonic=lambda: clocks.mono), audit

    notifier, audit = build()
    DeliveryEndpoint(audit, notifier, inventory, lambda: clocks.wall).handle(
        payload("customer-acme", alert("acme", "p1", WALL - 30)), {"authorization": f"Bearer {TOKEN}"})
    [owed] = notifier._due(clocks.mono, 16)
    asyncio.run(notifier._attempt(owed.row))
    notifier.ledger.close()
    audit.ledger.close()
    clocks.wall += 4.0  # restarted 4 s later: a new process, a new monotonic origin
    clocks.mono = 5.0
    notifier, audit = build()
    assert notifier._due(clocks.mono + BACKOFF[0] - 4.5, 16) == []
    assert len(notifier._due(clocks.mono + BACKOFF[0] - 4.0, 16)) == 1
    notifier.ledger.close()
    audit.ledger.close()
