"""The notifier: sends every notice the delivery ledger owes, retrying with backoff until its channel accepts it.

One task per attempt, at most `max_concurrent` at a time, each bounded by its channel's timeout: a contact whose
relay hangs for a minute delays nobody else. A failed attempt is retried after 10 s, 20 s, 40 s, … then every
5 minutes, for 24 hours after the notice was taken; then it is given up (an `expired` row: the ledger says it
was never delivered, and the deadline counted the miss long before). A contact's resolved message waits until
its firing message is accepted (or given up), so nobody reads "restored" before "unavailable".

An outage is *notified* when every designated contact's channel accepted its firing notice: `delivered_at`
gives that instant (the latest acceptance), which the deadline decision (threenines.alerting.deadlines) and
ThreeninesNotificationOverdue (through `…_last_delivery_determined_timestamp_seconds`) use.

Retries are scheduled on the monotonic clock (a step of the wall clock neither delays nor bunches them); the
ledger's stamps (attempts, acceptances) are the exporter's wall clock. With a replica peer (threenines.notify.peer),
every attempt is cleared with the peer first, so one of the two replicas sends each notice, and the replica's
determinations are told to the peer (`share_runs`) for the deadline watch (threenines.alerting.deadlines).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from threenines.alerting.deadlines import Run
from threenines.config.inventory import Contact, Inventory
from threenines.exposition.delivery import DeliveryCollector, DeliveryState
from threenines.ledgers.audit import outage_key
from threenines.ledgers.delivery import Attempt, DeliveryLedger, NoticeRow
from threenines.notify.channels import Channel, DeliveryError
from threenines.notify.message import Notice
from threenines.notify.peer import PEER_TIMEOUT, RECHECK, RUN_BATCH, Acceptance, PeerError, PeerLink, winner

log = logging.getLogger(__name__)

Outage = tuple[str, str, str, float]
BACKOFF = (10.0, 20.0, 40.0, 80.0, 160.0, 300.0)  # then every 300 s
GIVE_UP_AFTER = 24 * 3600.0
MAX_CONCURRENT = 16
IDLE_WAKE = 5.0  # at most this long between looks at the queue, even when nothing is due
TENTATIVE = "?"  # holder of a notice this replica is asking its peer about
Key = tuple[str, str, str, float, str, str]


def contact_key(contact: Contact) -> str:
    return f"{contact.kind}:{contact.target}"


@dataclass
class _Owed:
    row: NoticeRow
    failures: int = 0
    next_at: float = 0.0  # on the monotonic clock


@dataclass(frozen=True)
class _Sharing:
    run: Run
    until: float  # wall clock: told again every RECHECK seconds while the peer does not answer, until then
    learn: Callable[[Run], None]


class Notifier:
    def __init__(self, ledger: DeliveryLedger, channels: dict[str, Channel], inventory: Inventory,
                 clock: Callable[[], float] = time.time, backoff: tuple[float, ...] = BACKOFF,
                 give_up_after: float = GIVE_UP_AFTER, max_concurrent: int = MAX_CONCURRENT,
                 monotonic: Callable[[], float] | None = None, peer: PeerLink | None = None) -> None:
        self.ledger = ledger
        self._channels = channels
        self._inventory = inventory
        self._clock = clock  # the ledger's stamps
        # What retries are scheduled on: the exporter's AnchoredClock carries its monotonic base; a plain
        # callable (a test's fake time) is both.
        if monotonic is None:
            monotonic = getattr(clock, "monotonic", time.monotonic if clock is time.time else clock)
        self._monotonic: Callable[[], float] = monotonic
        self._peer = peer
        self._holder: dict[Key, str] = {}  # with a peer: who sends each notice (this vantage, the peer's, TENTATIVE)
        self._ids: dict[Key, int] = {}
        self._receipts: dict[int, Acceptance] = {}  # accepted notices: what the peer is told
        self._unreplicated: list[tuple[NoticeRow, Acceptance]] = []  # acceptances the peer has not heard of
        self._replicate_at = 0.0
        self._backoff = backoff
        self._give_up_after = give_up_after
        self._max_concurrent = max_concurrent
        self._lock = threading.Lock()  # notices arrive from HTTP threads; attempts finish on the loop
        self._owed: dict[int, _Owed] = {}
        self._in_flight: set[int] = set()
        self._accepted: dict[int, float] = {}  # notice id -> acceptance time
        self._firing: dict[Outage, list[int]] = {}  # outage -> its firing notices (one per contact)
        self._firing_determined: dict[tuple[str, str, str], set[float]] = {}  # target -> its firing notices' outages
        self._sharing: list[_Sharing] = []  # runs to tell the peer (threenines.alerting.deadlines)
        self._share_at = 0.0
        self._share_busy = False
        self._delivered: dict[Outage, float] = {}
        self._unwritten: list[Attempt] = []  # acceptances the disk refused: written again, never re-sent
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.state = DeliveryState()
        self.collector = DeliveryCollector(self.state)
        self._rebuild()

    # -- the record -------------------------------------------------------------------------------

    def _rebuild(self) -> None:
        # Every notice first, then the attempts in the order they happened: an outage is delivered when its
        # last contact accepted, which needs all of its notices known.
        rows = {row.id: row for row in self.ledger.notices()}
        for row in rows.values():
            self._take(row)
        for attempt in self.ledger.attempts():
            owner = rows.get(attempt.notice_id)
            if owner is not None:
                self._apply(owner, attempt)

    def _take(self, row: NoticeRow) -> None:
        self._owed[row.id] = _Owed(row, next_at=self._monotonic())
        self._ids[row.key] = row.id
        if row.event == "firing":
            self._firing.setdefault(row.outage, []).append(row.id)
            self._firing_determined.setdefault(row.outage[:3], set()).add(row.outage[3])
        self.state.owed(row.customer, row.channel, +1)

    def _apply(self, row: NoticeRow, attempt: Attempt) -> None:
        owed = self._owed.get(row.id)
        if owed is None:
            return  # already accepted or given up
        if attempt.outcome == "failed":
            owed.failures += 1
            step = self._backoff[min(owed.failures - 1, len(self._backoff) - 1)]
            # finished_at + step on the wall clock, scheduled on the monotonic one (the same instant for an
            # attempt that just finished; what remains of the wait for one read back from the ledger at start)
            owed.next_at = self._monotonic() + max(0.0, min(step, attempt.finished_at + step - self._clock()))
            self.state.failed(row.customer, row.channel, attempt.reason)
            return
        del self._owed[row.id]
        if attempt.outcome == "expired":
            self.state.owed(row.customer, row.channel, -1)
            return
        self._accepted[row.id] = attempt.finished_at
        self._receipts[row.id] = Acceptance(attempt.started_at, attempt.finished_at, attempt.receipt)
        self.state.accepted(row.customer, row.channel)
        if row.event == "firing" and row.outage not in self._delivered:
            ids = self._firing.get(row.outage, [])
            if ids and all(i in self._accepted for i in ids):
                at = max(self._accepted[i] for i in ids)
                self._delivered[row.outage] = at
                self.state.outage_delivered(row.outage, at - row.determined_at)

    def accept(self, rows: list[NoticeRow]) -> int:
        """From the delivery endpoint (an HTTP thread): write the notices, then owe them. sqlite3.Error when the
        disk refuses (the post is answered 500 and Alertmanager retries it). Returns how many were new."""
        added = self.ledger.add_notices(rows)
        with self._lock:
            for row in added:
                self._take(row)
        loop, wake = self._loop, self._wake
        if added and loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop stopped meanwhile: the next run() finds them owed
                loop.call_soon_threadsafe(wake.set)
        return len(added)

    def delivered_at(self, outage: Outage) -> float | None:
        """When every designated contact had accepted the outage's notification; None while one has not.
        Keyed as the audit keys outages (threenines.ledgers.audit.outage_key)."""
        with self._lock:
            return self._delivered.get(outage_key(*outage))

    def determinations(self, customer: str, service: str, target: str) -> list[float]:
        """The determinations (to the millisecond) the target's firing notices carry: the page's, posted here or
        pushed by the replica peer. For a replica's deadline watch (threenines.alerting.deadlines)."""
        with self._lock:
            return sorted(self._firing_determined.get((customer, service, target), ()))

    def share_runs(self, runs: Iterable[Run], until: float, learn: Callable[[Run], None]) -> None:
        """Tell the replica peer these runs of this replica's (from any thread); `learn` gets each answer that is
        the peer's own run of the same outage. Told again every RECHECK seconds while the peer does not answer,
        until `until` (wall clock). Nothing without a peer."""
        if self._peer is None:
            return
        with self._lock:
            self._sharing += [_Sharing(run, until, learn) for run in runs]
            self._share_at = 0.0
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop stopped meanwhile: the next run() tells them
                loop.call_soon_threadsafe(wake.set)

    def set_inventory(self, inventory: Inventory, channels: dict[str, Channel]) -> None:
        """After a reload: contacts' secrets and the relays as they are now (notices keep what they say)."""
        with self._lock:
            self._inventory, self._channels = inventory, channels

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._owed)

    @property
    def unshared(self) -> int:
        """Runs waiting to be told to the replica peer (or being told)."""
        with self._lock:
            return len(self._sharing) + (1 if self._share_busy else 0)

    # -- the loop ---------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()
        stopper = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                self._wake.clear()
                self._write_unwritten()
                now = self._monotonic()
                if self._peer is not None and self._unreplicated and now >= self._replicate_at:
                    self._replicate_at = now + RECHECK
                    task = asyncio.create_task(self._replicate(), name="deliver-replicate")
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if self._peer is not None and self._sharing and not self._share_busy and now >= self._share_at:
                    self._share_at, self._share_busy = now + RECHECK, True
                    task = asyncio.create_task(self._share(), name="deliver-share-runs")
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                for owed in self._due(now, self._max_concurrent - len(tasks)):
                    task = asyncio.create_task(self._attempt(owed.row), name=f"deliver-{owed.row.id}")
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                waiting = asyncio.create_task(self._wake.wait())
                await asyncio.wait({waiting, stopper}, timeout=self._sleep(now),
                                   return_when=asyncio.FIRST_COMPLETED)
                waiting.cancel()
        finally:
            stopper.cancel()
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._write_unwritten()
            self._loop = self._wake = None

    def _sleep(self, now: float) -> float:
        with self._lock:
            waiting = [o.next_at for i, o in self._owed.items() if i not in self._in_flight]
        if not waiting:
            return IDLE_WAKE
        return min(IDLE_WAKE, max(0.05, min(waiting) - now))

    def _due(self, now: float, room: int) -> list[_Owed]:
        if room <= 0:
            return []
        with self._lock:
            owed_firing = {(o.row.outage, o.row.contact) for o in self._owed.values() if o.row.event == "firing"}
            due = []
            for notice_id, owed in sorted(self._owed.items(), key=lambda item: item[1].next_at):
                if owed.next_at > now or notice_id in self._in_flight:
                    continue
                if owed.row.event == "resolved" and (owed.row.outage, owed.row.contact) in owed_firing:
                    continue  # "restored" never before "unavailable"
                due.append(owed)
                self._in_flight.add(notice_id)
                if len(due) >= room:
                    break
            return due

    def _contact(self, row: NoticeRow) -> Contact:
        try:
            customer = self._inventory.customer(row.customer)
        except KeyError:
            customer = None
        for contact in customer.contacts.notify if customer is not None else ():
            if contact_key(contact) == row.contact:
                return contact
        kind, _, target = row.contact.partition(":")
        return Contact(kind, target)  # no longer in the inventory: owed all the same, without its secret

    async def _attempt(self, row: NoticeRow) -> None:
        started = self._clock()
        if started - row.received_at > self._give_up_after:
            self._finish(row, Attempt(row.id, started, started, "expired", "", "retries given up", ""))
            return
        if self._peer is not None:
            try:
                if not await self._cleared_with_peer(row, self._peer):
                    return
            except asyncio.CancelledError:
                with self._lock:
                    self._in_flight.discard(row.id)
                raise
        channel = self._channels.get(row.channel)
        try:
            if channel is None:
                raise DeliveryError("config", f"no channel for {row.channel} contacts")
            async with asyncio.timeout(channel.timeout):
                receipt = await channel.send(Notice.from_json(row.facts), self._contact(row))
        except DeliveryError as err:
            attempt = Attempt(row.id, started, self._clock(), "failed", err.reason, err.detail, "")
        except TimeoutError:
            attempt = Attempt(row.id, started, self._clock(), "failed", "timeout",
                              f"no answer within {channel.timeout if channel else 0:g} s", "")
        except asyncio.CancelledError:
            with self._lock:
                self._in_flight.discard(row.id)
            raise
        except Exception as err:  # a bug must not stop the other deliveries
            log.exception("delivery to %s failed unexpectedly", row.contact)
            attempt = Attempt(row.id, started, self._clock(), "failed", "error", type(err).__name__, "")
        else:
            attempt = Attempt(row.id, started, self._clock(), "accepted", "", "", receipt[:500])
        if self._finish(row, attempt) and attempt.outcome == "accepted" and self._peer is not None:
            with self._lock:
                self._unreplicated.append((row, Acceptance(attempt.started_at, attempt.finished_at,
                                                           attempt.receipt)))
                self._replicate_at = 0.0
        if self._wake is not None:
            self._wake.set()  # its next attempt (or a resolved notice waiting for it) is scheduled now

    # -- the replica peer (threenines.notify.peer) -----------------------------------------------------

    async def _cleared_with_peer(self, row: NoticeRow, peer: PeerLink) -> bool:
        """True: this replica sends the notice now. False: the peer sends it (asked again in RECHECK s), or had
        already delivered it (its acceptance is recorded here)."""
        with self._lock:
            if self._holder.get(row.key) == self._vantage:
                return True  # decided for this replica (this is a retry after a failure)
            # Unknown, or the peer's: ask (again: the peer may be gone, or have delivered meanwhile).
            self._holder[row.key] = TENTATIVE
        try:
            answer = await asyncio.wait_for(peer.ask(row, None), PEER_TIMEOUT)
        except (PeerError, TimeoutError) as err:
            log.warning("replica peer not answering (%s): delivering customer=%s target=%s event=%s contact=%s "
                        "from this replica (at least once beats none)", err, row.customer, row.target, row.event,
                        row.contact)
            with self._lock:
                self._holder[row.key] = self._vantage
            return True
        if answer.accepted is not None:
            self._finish(row, Attempt(row.id, answer.accepted.started_at, answer.accepted.finished_at, "accepted",
                                      "", "", _by(answer.accepted.receipt, answer.vantage)))
            return False
        with self._lock:
            if answer.holder == self._vantage:
                self._holder[row.key] = self._vantage
                return True
            if self._holder.get(row.key) == TENTATIVE:
                self._holder[row.key] = answer.holder
            self._in_flight.discard(row.id)
            owed = self._owed.get(row.id)
            if owed is not None:
                owed.next_at = self._monotonic() + RECHECK  # the peer sends: ask again, take over if it is gone
        return False

    @property
    def _vantage(self) -> str:
        return self._peer.vantage if self._peer is not None else ""

    async def _replicate(self) -> None:
        """Tell the peer of this replica's acceptances, so its ledger holds them too."""
        peer = self._peer
        with self._lock:
            pending, self._unreplicated = self._unreplicated, []
        if peer is None:
            return
        still: list[tuple[NoticeRow, Acceptance]] = []
        for row, acceptance in pending:
            try:
                await asyncio.wait_for(peer.ask(row, acceptance), PEER_TIMEOUT)
            except (PeerError, TimeoutError):
                still.append((row, acceptance))
        with self._lock:
            # Bounded: the peer also learns an acceptance when it asks about the notice itself.
            self._unreplicated = (still + self._unreplicated)[-10_000:]

    async def _share(self) -> None:
        """Tell the peer this replica's runs, in batches; each answer goes to the deadline watch."""
        try:
            peer = self._peer
            with self._lock:
                pending, self._sharing = self._sharing, []
            if peer is None:
                return
            still: list[_Sharing] = []
            for i in range(0, len(pending), RUN_BATCH):
                batch = pending[i:i + RUN_BATCH]
                try:
                    answers = await asyncio.wait_for(peer.share_runs([s.run for s in batch]), PEER_TIMEOUT)
                except (PeerError, TimeoutError) as err:
                    # The rest would wait for the same peer: all of it is told again in RECHECK seconds.
                    now, rest = self._clock(), pending[i:]
                    still = [s for s in rest if now < s.until]
                    if len(still) < len(rest):
                        log.warning("replica peer not answering (%s): %d determination(s) not told; their deadlines "
                                    "count from what this replica knows", err, len(rest) - len(still))
                    break
                for sharing, answer in zip(batch, answers, strict=True):
                    if answer is not None:
                        sharing.learn(answer)
            with self._lock:
                self._sharing = (still + self._sharing)[-10_000:]  # bounded, as the acceptances to replicate
        finally:
            self._share_busy = False

    def peer_claim(self, sender: str, row: NoticeRow, accepted: Acceptance | None) -> tuple[str, Acceptance | None]:
        """The peer asks who sends `row` (accepted None), or says it delivered it. From an HTTP thread. The notice is
        written here too if Alertmanager's post never reached this replica: it can then take over, and keep the
        proof. Returns (holder, this replica's own acceptance or None)."""
        added = self.ledger.add_notices([row])  # sqlite3.Error: answered 500, the peer treats it as unreachable
        with self._lock:
            for new in added:
                self._take(new)
            notice_id = self._ids.get(row.key)
            if accepted is not None:
                self._holder[row.key] = sender
            elif notice_id is not None and notice_id in self._receipts:
                return self._holder.get(row.key, self._vantage), self._receipts[notice_id]
            else:
                holder = self._holder.get(row.key)
                if holder is None:
                    self._holder[row.key] = holder = sender
                elif holder == TENTATIVE:  # both asked at once: the same choice on both sides
                    holder = winner(row.key, self._vantage, sender)
                    if holder == sender:
                        self._holder[row.key] = sender
                return holder, None
        if notice_id is not None:
            own = NoticeRow(**{**row.__dict__, "id": notice_id})
            self._finish(own, Attempt(notice_id, accepted.started_at, accepted.finished_at, "accepted", "", "",
                                      _by(accepted.receipt, sender)))
        with self._lock:
            return sender, self._receipts.get(notice_id) if notice_id is not None else None

    def _finish(self, row: NoticeRow, attempt: Attempt) -> bool:
        """Record an attempt's outcome; True when it is on record (or, accepted, kept to be written)."""
        with self._lock:
            self._in_flight.discard(row.id)
            if row.id not in self._owed:
                return False
            try:
                written = self.ledger.add_attempt(attempt)
            except sqlite3.Error as err:
                log.error("delivery ledger write failed (%s): %s", attempt.outcome, err)
                if attempt.outcome != "accepted":
                    self._owed[row.id].next_at = self._monotonic() + self._backoff[0]
                    return False  # a failure not on disk is tried again: it is not evidence of anything
                self._unwritten.append(attempt)  # delivered: never sent again, written when the disk takes it
                written = True
            if not written:
                return False
            self._apply(row, attempt)
        self._log(row, attempt)
        return True

    def _write_unwritten(self) -> None:
        with self._lock:
            still: list[Attempt] = []
            for attempt in self._unwritten:
                try:
                    self.ledger.add_attempt(attempt)
                except sqlite3.Error:
                    still.append(attempt)
            self._unwritten = still

    @staticmethod
    def _log(row: NoticeRow, attempt: Attempt) -> None:
        if attempt.outcome == "accepted":
            log.info("notification delivered customer=%s service=%s target=%s event=%s contact=%s receipt=%r",
                     row.customer, row.service, row.target, row.event, row.contact, attempt.receipt)
        elif attempt.outcome == "expired":
            log.error("notification never delivered, retries given up customer=%s target=%s event=%s contact=%s",
                      row.customer, row.target, row.event, row.contact)
        else:
            log.warning("notification delivery failed, will retry customer=%s service=%s target=%s event=%s "
                        "contact=%s reason=%s detail=%r", row.customer, row.service, row.target, row.event,
                        row.contact, attempt.reason, attempt.detail)


def _by(receipt: str, vantage: str) -> str:
    """The peer's receipt, marked as the peer's: this replica's ledger holds evidence it did not produce."""
    return f"{receipt} (delivered by {vantage})"[:500]


def drain(notifier: Notifier, until: Callable[[], bool], timeout: float) -> None:
    """For tools and tests: run the notifier on a private loop until `until()` or `timeout` seconds."""

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(notifier.run(stop))
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())


def rows_for(notice: Notice, contacts: Iterable[Contact], received_at: float) -> list[NoticeRow]:
    return [NoticeRow(received_at=received_at, customer=notice.customer, service=notice.service,
                      target=notice.target, determined_at=notice.determined_at, event=notice.status,
                      contact=contact_key(c), channel=c.kind, contact_version=notice.contacts_version,
                      facts=notice.to_json()) for c in contacts]
