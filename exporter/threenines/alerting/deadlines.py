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

Replica exporters (vantages, docs/ha.md) each determine the outage at their own probe phase, and the provider
determined it when the first of them did: the page carries that earliest determination (the rule's `min by`), and
the audit and delivery ledgers key the notification by it. So each replica decides one deadline per outage,
counted from the earliest determination of it that the replica knows — its own, one the page brought (the audit's
dispatches, the notifier's notices, also those the peer pushed), or the peer's own (`Run`s the replicas exchange,
threenines.notify.peer) — and a notification delivered under any determination of the outage is its notification.
The miss is keyed by that earliest determination, so both replicas' ledgers hold the same row and a merge of the
replicas counts it once. One outage is the replica's own run and every determination that falls inside it (a
determination is only made while its vantage's run is failing, so the two runs overlap: one merged outage, under
`merge: all` and `any`), a peer's run inside whose failing stretch [first failed probe, determination] the
replica determined, and the run the peer answers about this one with: the peer checked this replica's run against
its own (whose end only the peer knows), so its answer is the same outage even when its determination came before
this replica's first failed probe (this replica was down when the outage began, or its vantage failed later) —
which this replica could not tell from the peer's run alone. A single exporter knows only its own determination:
nothing changes for it.

What the peer tells is bounded: runs of targets not in this replica's inventory are not kept, a target keeps at
most PEER_RUNS of the peer's runs (the newest), and none determined more than KEEP before now.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial

from threenines.alerting.webhook import AuditWebhook
from threenines.contract.machine import OutageEvent
from threenines.ledgers.audit import Miss, outage_key
from threenines.ledgers.outages import OutageLedger

log = logging.getLogger(__name__)

Outage = tuple[str, str, str, float]  # customer, service, target, determined_at
Target = tuple[str, str, str]  # customer, service, target

# How long a run is kept after it ended, to answer the peer about it (a restarted peer asks again about the
# outages it still watches): far beyond any notification deadline.
KEEP = 7 * 86400.0
# The peer's runs kept per target (the newest): an outage's deadline needs the peer's run of that outage, which
# it pushes at its determination; a peer flapping on a target this replica never determines sends one per flap.
PEER_RUNS = 16


@dataclass(frozen=True)
class Run:
    """One vantage's determined outage of a target, as replica exporters tell each other (threenines.notify.peer)."""

    customer: str
    service: str
    target: str
    first_failed_at: float
    determined_at: float

    @property
    def key(self) -> Target:
        return (self.customer, self.service, self.target)


@dataclass
class _Own:
    """This replica's own run of a target (mutable: its end comes later)."""

    run: Run
    ended_at: float | None = None
    # The peer's answers about this run: the same outage by the peer's own check (DeadlineWatch._answered).
    answers: list[Run] = field(default_factory=list)

    def holds(self, at: float) -> bool:
        return self.run.first_failed_at <= at and (self.ended_at is None or at < self.ended_at)

    def same(self, peer: Run) -> bool:
        # Either vantage determined while the other's run was failing: the runs overlap, one outage.
        return self.holds(peer.determined_at) or peer.first_failed_at <= self.run.determined_at <= peer.determined_at


@dataclass(frozen=True)
class _Pending:
    outage: Outage  # keyed by this replica's own determination
    own: _Own
    deadline: float  # the customer's, in seconds


Share = Callable[[Sequence[Run], float, Callable[[Run], None]], None]


class DeadlineWatch:
    """Outages whose notification deadline has not passed yet; `check(now)` decides those whose has."""

    def __init__(self, audit: AuditWebhook, deadline_of: Callable[[str], float | None],
                 delivered_at: Callable[[Outage], float | None] | None = None, *,
                 notices: Callable[[str, str, str], Iterable[float]] | None = None,
                 share: Share | None = None) -> None:
        self._audit = audit
        self._deadline_of = deadline_of  # customer id -> its deadline in seconds (None: not in the inventory)
        # threenines.notify.Notifier.delivered_at: with it, an outage is notified when every designated contact's
        # channel accepted the notification (the exporter delivers); without it, when Alertmanager's first
        # dispatch reached the audit ledger (a deployment whose Alertmanager delivers itself).
        self._delivered_at = delivered_at
        # threenines.notify.Notifier.determinations: the determinations the firing notices of a target carry
        # (the page's, whether Alertmanager posted it here or the replica peer pushed its delivery).
        self._notices = notices
        # threenines.notify.Notifier.share_runs (replicas): tell the peer this replica's runs; its answers (the
        # peer's run of the same outage) come back to `learn`, until the given time.
        self._share = share
        self._lock = threading.Lock()  # the loop observes and checks; the peer endpoint's HTTP threads ask
        self._pending: dict[Outage, _Pending] = {}
        self._runs: dict[Target, list[_Own]] = {}
        self._peer_runs: dict[Target, list[Run]] = {}  # pushed unasked: the same outage only by _Own.same
        self._now = 0.0  # the latest instant observed or checked: the age of the peer's runs

    def observe(self, event: OutageEvent) -> None:
        """From the contract engine: start watching a newly determined outage (and note when a run ended)."""
        key: Target = (event.key.customer, event.key.service, event.key.target)
        with self._lock:
            self._now = max(self._now, event.at)
        if event.kind == "determined":
            own = self._remember(Run(*key, event.first_failed_at, event.determined_at), None, event.at)
            pending = self._watch(own)
            if pending is not None:
                self._tell([pending])
        elif event.kind == "ended":
            ended = outage_key(*key, event.determined_at)
            with self._lock:
                for own in self._runs.get(key, ()):
                    if outage_key(*key, own.run.determined_at) == ended:
                        own.ended_at = event.at

    def rebuild(self, ledger: OutageLedger, now: float) -> None:
        """At start: every outage the ledger has that is not decided yet (its deadline may have passed while
        the exporter was not running: it is decided at the next check, with the instant it passed)."""
        for record in ledger.outages():
            self._watch(self._remember(Run(*record.key, record.first_failed_at, record.determined_at),
                                       record.ended_at, None))
        self.check(now)
        with self._lock:
            watched = {id(p.own) for p in self._pending.values()}
            for key, runs in list(self._runs.items()):
                kept = [o for o in runs if id(o) in watched or o.ended_at is None or o.ended_at >= now - KEEP]
                if kept:
                    self._runs[key] = kept
                else:
                    del self._runs[key]
            pending = list(self._pending.values())
        self._tell(pending)

    def _remember(self, run: Run, ended_at: float | None, now: float | None) -> _Own:
        key = outage_key(*run.key, run.determined_at)
        with self._lock:
            runs = self._runs.setdefault(run.key, [])
            if now is not None:  # a new determination: what the target's lists no longer need goes
                runs[:] = [o for o in runs if o.ended_at is None or o.ended_at >= now - KEEP]
                peers = self._peer_runs.get(run.key)
                if peers:
                    peers[:] = [p for p in peers if p.determined_at >= now - KEEP]
            known = next((o for o in runs if outage_key(*run.key, o.run.determined_at) == key), None)
            if known is not None:  # a second rebuild, or an event for a run the ledger already gave
                known.ended_at = ended_at if ended_at is not None else known.ended_at
                return known
            own = _Own(run, ended_at)
            runs.append(own)
        return own

    def _watch(self, own: _Own) -> _Pending | None:
        run = own.run
        key = outage_key(*run.key, run.determined_at)  # as the alert, the audit and the notifier know it
        if self._audit.state.is_missed(key):
            return None
        deadline = self._deadline_of(run.customer)
        if deadline is None:
            return None
        with self._lock:
            if key in self._pending:
                return None
            pending = self._pending[key] = _Pending(key, own, deadline)
        return pending

    def _tell(self, pending: list[_Pending]) -> None:
        if self._share is None or not pending:
            return
        # Asked again while the peer does not answer, until this replica decides with what it knows; each answer
        # goes to the run it answers.
        for p in pending:
            self._share([p.own.run], p.own.run.determined_at + p.deadline, partial(self._answered, p.own))

    # -- the replica peer (threenines.notify.peer) --------------------------------------------------------

    def learn(self, run: Run) -> None:
        """A run of the peer's: its determination counts for the outage of every own run it is the same as."""
        targets = self._audit.state.targets
        if targets is not None and run.key not in targets:
            return  # the peer endpoint takes any target: none of this inventory's outages can be its
        with self._lock:
            runs = self._peer_runs.setdefault(run.key, [])
            if all(outage_key(*r.key, r.determined_at) != outage_key(*run.key, run.determined_at) for r in runs):
                runs.append(run)
            runs[:] = sorted((r for r in runs if r.determined_at >= self._now - KEEP),
                             key=lambda r: r.determined_at)[-PEER_RUNS:]
            if not runs:
                del self._peer_runs[run.key]

    def _answered(self, own: _Own, run: Run) -> None:
        """The peer's answer about `own`: its run of the same outage, by its check against its own run."""
        if run.key != own.run.key:
            return
        with self._lock:
            if all(outage_key(*r.key, r.determined_at) != outage_key(*run.key, run.determined_at)
                   for r in own.answers):
                own.answers.append(run)
                del own.answers[:-PEER_RUNS]  # told once per determination (and rebuild): never near it

    def peer_runs(self, runs: Sequence[Run]) -> list[Run | None]:
        """The peer tells its runs (from an HTTP thread): each is learnt, and answered with this replica's own run
        of the same outage (the earliest if several), or None."""
        answers: list[Run | None] = []
        for run in runs:
            self.learn(run)
            with self._lock:
                mine = [o.run for o in self._runs.get(run.key, ()) if o.same(run)]
            answers.append(min(mine, key=lambda r: r.determined_at) if mine else None)
        return answers

    # -- deciding ---------------------------------------------------------------------------------------

    def _determinations(self, own: _Own) -> dict[Outage, float]:
        """Every known determination of the outage of this own run, by outage key: its own, the peer's same runs',
        the peer's answers about it, and the pages' that fall inside it. Exact values (own, peer) over the pages'
        milliseconds."""
        run = own.run
        found = {outage_key(*run.key, run.determined_at): run.determined_at}
        with self._lock:
            peers = [p.determined_at for p in self._peer_runs.get(run.key, ()) if own.same(p)]
            peers += [p.determined_at for p in own.answers]
        for at in peers:
            found.setdefault(outage_key(*run.key, at), at)
        pages = list(self._audit.determinations(*run.key))
        if self._notices is not None:
            pages += self._notices(*run.key)
        for at in pages:
            key = outage_key(*run.key, at)
            if key not in found and own.holds(at):
                found[key] = at
        return found

    def check(self, now: float) -> None:
        """Decide every watched outage whose deadline has passed by `now`."""
        with self._lock:
            self._now = max(self._now, now)
            # Every determination of the outage comes at or after this run's first failed probe (_Own.same, the
            # pages inside it), or is one of the peer's answers: until the earliest of those + the deadline
            # nothing can be due, and nothing is looked up.
            watched = [(p, min([p.own.run.first_failed_at, *(a.determined_at for a in p.own.answers)]))
                       for p in self._pending.values()]
        for pending, earliest_possible in watched:
            if earliest_possible + pending.deadline > now:
                continue
            found = self._determinations(pending.own)
            if any(self._audit.state.is_missed(key) for key in found):
                self._forget(pending)  # decided already, under another determination of the outage
                continue
            first, earliest = min(found.items(), key=lambda item: item[1])
            deadline_at = earliest + pending.deadline  # from the exact value when it is this replica's own
            if deadline_at > now:
                continue
            others = [key for key in found if key != first]
            decided = self._audit.decide_deadline(first, deadline_at, now, self._delivered_at, others)
            if decided is False:
                continue  # the ledger refused the write: it stays pending and is retried at the next check
            self._forget(pending)
            if isinstance(decided, Miss):
                log.warning("notification deadline missed customer=%s service=%s target=%s determined_at=%.3f "
                            "deadline_at=%.3f reason=%s own_determination=%.3f", decided.customer, decided.service,
                            decided.target, decided.determined_at, decided.deadline_at, decided.reason,
                            pending.own.run.determined_at)

    def _forget(self, pending: _Pending) -> None:
        with self._lock:
            self._pending.pop(pending.outage, None)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)
