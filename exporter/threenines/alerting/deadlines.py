"""Notification deadlines: a missed deadline is a fact at the deadline, recorded when it passes.

The contract owes a notification within the customer's deadline (15 minutes) of determining an outage, and
each miss costs a day's rent, on the contract-calendar day the deadline passed. So the miss is decided at
`determined_at + deadline`, by the outage alone: if the notification was not delivered by then — accepted by
the channel of every designated contact (threenines.notify) — it is a miss, whether it is delivered later or
never. It is written once to
the audit ledger's `misses` table (append-only, one row per outage) with the deadline instant, and the
metrics (`threenines_notification_deadline_missed_total`, and the deadline instant of each target's latest
miss) are rebuilt from those rows. The report's two paths — the metric's instants and `--audit-ledger`'s
rows — therefore read the same fact, to the second.

Determinations come from the contract engine as they happen; at start, outages from the outage ledger whose
deadline passed while the exporter was not running are decided then (with the instant they passed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from threenines.alerting.webhook import AuditWebhook
from threenines.contract.machine import OutageEvent
from threenines.ledgers.audit import Miss, outage_key
from threenines.ledgers.outages import OutageLedger

log = logging.getLogger(__name__)

Outage = tuple[str, str, str, float]  # customer, service, target, determined_at


@dataclass(frozen=True)
class _Pending:
    outage: Outage
    deadline_at: float


class DeadlineWatch:
    """Outages whose notification deadline has not passed yet; `check(now)` decides those whose has."""

    def __init__(self, audit: AuditWebhook, deadline_of: Callable[[str], float | None],
                 delivered_at: Callable[[Outage], float | None] | None = None) -> None:
        self._audit = audit
        self._deadline_of = deadline_of  # customer id -> its deadline in seconds (None: not in the inventory)
        # threenines.notify.Notifier.delivered_at: with it, an outage is notified when every designated contact's
        # channel accepted the notification (the exporter delivers); without it, when Alertmanager's first
        # dispatch reached the audit ledger (a deployment whose Alertmanager delivers itself).
        self._delivered_at = delivered_at
        self._pending: dict[Outage, _Pending] = {}

    def observe(self, event: OutageEvent) -> None:
        """From the contract engine: start watching a newly determined outage."""
        if event.kind == "determined":
            self._watch((*event.key, event.determined_at))

    def rebuild(self, ledger: OutageLedger, now: float) -> None:
        """At start: every outage the ledger has that is not decided yet (its deadline may have passed while
        the exporter was not running: it is decided at the next check, with the instant it passed)."""
        for record in ledger.outages():
            self._watch((*record.key, record.determined_at))
        self.check(now)

    def _watch(self, outage: Outage) -> None:
        key = outage_key(*outage)  # as the alert, the audit and the notifier know it
        if key in self._pending or self._audit.state.is_missed(key):
            return
        deadline = self._deadline_of(key[0])
        if deadline is None:
            return
        self._pending[key] = _Pending(key, outage[3] + deadline)  # the deadline from the engine's exact value

    def check(self, now: float) -> None:
        """Decide every watched outage whose deadline has passed by `now`."""
        due = [p for p in self._pending.values() if p.deadline_at <= now]
        for pending in due:
            decided = self._audit.decide_deadline(pending.outage, pending.deadline_at, now, self._delivered_at)
            if decided is False:
                continue  # the ledger refused the write: it stays pending and is retried at the next check
            del self._pending[pending.outage]
            if isinstance(decided, Miss):
                log.warning("notification deadline missed customer=%s service=%s target=%s determined_at=%.3f "
                            "deadline_at=%.3f reason=%s", decided.customer, decided.service, decided.target,
                            decided.determined_at, decided.deadline_at, decided.reason)

    @property
    def pending(self) -> int:
        return len(self._pending)
