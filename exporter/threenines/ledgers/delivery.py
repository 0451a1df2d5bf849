"""The delivery ledger, `<state_dir>/delivery.sqlite`: per outage event and designated contact, what was owed and
what each attempt to deliver it got.

Append-only SQLite (WAL, synchronous=FULL, triggers refuse UPDATE and DELETE), opened like the outage and audit
ledgers (threenines.ledgers.sqlite.LedgerFile): refused at start when corrupt or not writable. A notice is on disk
before the delivery webhook is acknowledged (Alertmanager retries what is not); an attempt is written when the
channel answered. A unique index allows one acceptance per notice: whatever the interleaving of attempts, retries
and restarts, the ledger holds one first delivery per contact and outage event.
"""

from __future__ import annotations

import sqlite3
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from threenines.ledgers.audit import outage_key
from threenines.ledgers.sqlite import LedgerFile, LedgerReader

_SCHEMA = """
CREATE TABLE IF NOT EXISTS notices (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at     REAL    NOT NULL,   -- when Alertmanager's post arrived (exporter clock, Unix seconds)
    customer        TEXT    NOT NULL,
    service         TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    determined_at   REAL    NOT NULL,   -- the alert's determined_at annotation
    event           TEXT    NOT NULL,   -- 'firing' | 'resolved'
    contact         TEXT    NOT NULL,   -- 'email:noc@acme.example', 'sms:+31…', 'webhook:https://…' (never a secret)
    channel         TEXT    NOT NULL,   -- email | webhook | sms | phone | pagerduty
    contact_version TEXT    NOT NULL,   -- the customer's contacts.version when the notice was taken
    facts           TEXT    NOT NULL    -- JSON (threenines.notify.message.Notice): every attempt says the same
);
CREATE UNIQUE INDEX IF NOT EXISTS one_notice_per_event_and_contact
    ON notices (customer, service, target, determined_at, event, contact);
CREATE TABLE IF NOT EXISTS attempts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    notice_id       INTEGER NOT NULL REFERENCES notices (id),
    started_at      REAL    NOT NULL,
    finished_at     REAL    NOT NULL,   -- accepted: the delivery time (the channel's acceptance)
    outcome         TEXT    NOT NULL,   -- 'accepted' | 'failed' | 'expired' (retries given up)
    reason          TEXT    NOT NULL,   -- '' when accepted; else threenines.notify.channels.REASONS
    detail          TEXT    NOT NULL,   -- what the far end said (never a secret)
    receipt         TEXT    NOT NULL    -- accepted: relay reply and queue id, HTTP status and body, dedup_key
);
CREATE UNIQUE INDEX IF NOT EXISTS one_acceptance_per_notice ON attempts (notice_id) WHERE outcome = 'accepted';
CREATE UNIQUE INDEX IF NOT EXISTS one_expiry_per_notice ON attempts (notice_id) WHERE outcome = 'expired';
CREATE TRIGGER IF NOT EXISTS notices_append_only_update BEFORE UPDATE ON notices
    BEGIN SELECT RAISE(ABORT, 'the delivery ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS notices_append_only_delete BEFORE DELETE ON notices
    BEGIN SELECT RAISE(ABORT, 'the delivery ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS attempts_append_only_update BEFORE UPDATE ON attempts
    BEGIN SELECT RAISE(ABORT, 'the delivery ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS attempts_append_only_delete BEFORE DELETE ON attempts
    BEGIN SELECT RAISE(ABORT, 'the delivery ledger is append-only'); END;
-- One row per notice: first attempt, delivery (or not yet), receipt, failures so far.
CREATE VIEW IF NOT EXISTS deliveries AS
SELECT n.id, n.customer, n.service, n.target, n.determined_at, n.event, n.contact, n.channel, n.contact_version,
       n.received_at,
       (SELECT min(a.started_at) FROM attempts a WHERE a.notice_id = n.id) AS first_attempt_at,
       (SELECT a.finished_at FROM attempts a WHERE a.notice_id = n.id AND a.outcome = 'accepted') AS accepted_at,
       (SELECT a.receipt FROM attempts a WHERE a.notice_id = n.id AND a.outcome = 'accepted') AS receipt,
       (SELECT count(*) FROM attempts a WHERE a.notice_id = n.id AND a.outcome = 'failed') AS failures,
       (SELECT a.reason || ': ' || a.detail FROM attempts a WHERE a.notice_id = n.id AND a.outcome = 'failed'
        ORDER BY a.id DESC LIMIT 1) AS last_failure
FROM notices n;
"""

_NOTICE_COLUMNS = ("received_at", "customer", "service", "target", "determined_at", "event", "contact", "channel",
                   "contact_version", "facts")
_ATTEMPT_COLUMNS = ("notice_id", "started_at", "finished_at", "outcome", "reason", "detail", "receipt")


@dataclass(frozen=True)
class NoticeRow:
    """One notification owed: one outage event to one designated contact."""

    received_at: float
    customer: str
    service: str
    target: str
    determined_at: float
    event: str
    contact: str
    channel: str
    contact_version: str
    facts: str
    id: int = 0

    @property
    def key(self) -> tuple[str, str, str, float, str, str]:
        return (self.customer, self.service, self.target, self.determined_at, self.event, self.contact)

    @property
    def outage(self) -> tuple[str, str, str, float]:
        return outage_key(self.customer, self.service, self.target, self.determined_at)


@dataclass(frozen=True)
class Attempt:
    notice_id: int
    started_at: float
    finished_at: float
    outcome: str  # accepted | failed | expired
    reason: str
    detail: str
    receipt: str


class DeliveryLedger:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = LedgerFile(self.path, _SCHEMA, "delivery ledger")
        self._lock = threading.Lock()
        self.writes_ok = 0
        self.writes_failed = 0

    def add_notices(self, notices: list[NoticeRow]) -> list[NoticeRow]:
        """All of one post or none; returns the notices that are new, with their ids (a repeat adds nothing)."""
        sql = (f"INSERT OR IGNORE INTO notices ({', '.join(_NOTICE_COLUMNS)}) "
               f"VALUES ({', '.join('?' * len(_NOTICE_COLUMNS))})")
        added: list[NoticeRow] = []

        def write(db: sqlite3.Connection) -> None:
            for notice in notices:
                cursor = db.execute(sql, tuple(getattr(notice, c) for c in _NOTICE_COLUMNS))
                if cursor.rowcount == 1:
                    added.append(NoticeRow(**{**notice.__dict__, "id": int(cursor.lastrowid or 0)}))

        self._transaction(write)
        return added

    def add_attempt(self, attempt: Attempt) -> bool:
        """False when the notice already has an acceptance (or an expiry) of record: nothing was written."""
        sql = (f"INSERT INTO attempts ({', '.join(_ATTEMPT_COLUMNS)}) "
               f"VALUES ({', '.join('?' * len(_ATTEMPT_COLUMNS))})")
        try:
            self._transaction(lambda db: db.execute(sql, tuple(getattr(attempt, c) for c in _ATTEMPT_COLUMNS)))
        except sqlite3.IntegrityError:
            return False
        return True

    def _transaction(self, write: Callable[[sqlite3.Connection], object]) -> None:
        with self._lock:
            try:
                self._file.transaction(write)
            except sqlite3.IntegrityError:
                raise  # a second acceptance: refused by the index, not a write error
            except Exception:
                self.writes_failed += 1
                raise
            self.writes_ok += 1

    def notices(self) -> list[NoticeRow]:
        with self._lock:
            rows = self._file.read(f"SELECT {', '.join(_NOTICE_COLUMNS)}, id FROM notices ORDER BY id",
                                   needs="notices")
        return [NoticeRow(*row) for row in rows]

    def attempts(self) -> list[Attempt]:
        with self._lock:
            rows = self._file.read(f"SELECT {', '.join(_ATTEMPT_COLUMNS)} FROM attempts ORDER BY id", needs="attempts")
        return [Attempt(*row) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._file.close()


def shown_contact(contact: str) -> str:
    """A ledger's contact (`kind:target`) as a report or status prints it. E-mail addresses and phone numbers are
    the customer's designated contacts, stored whole (a dispute turns on which one was reached) and printed
    whole. A URL (webhook, PagerDuty) is cut to its origin: some receivers carry a token in the path, the query
    or the userinfo (`https://hooks.example/services/T0/B0/XXXX`), and the ledger stores the URL as given."""
    kind, sep, target = contact.partition(":")
    if not sep or "://" not in target:
        return contact
    try:
        parts = urllib.parse.urlsplit(target)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return f"{kind}:(URL)"
    if ":" in host:
        host = f"[{host}]"
    rest = "/…" if parts.path.strip("/") or parts.query or parts.fragment else ""
    return f"{kind}:{parts.scheme}://{host}{f':{port}' if port else ''}{rest}"


@dataclass(frozen=True)
class Delivery:
    """One notice and what its attempts got, as `threenines status` and `threenines report --delivery-ledger`
    read it (DeliveryLedgerReader). Times are the exporter's wall clock, Unix seconds."""

    customer: str
    service: str
    target: str
    determined_at: float  # the alert's determined_at annotation (milliseconds)
    event: str  # firing | resolved
    contact: str  # shown_contact(): a URL only as its origin
    channel: str
    contact_version: str
    received_at: float  # when Alertmanager's post (or the replica peer) brought the notice
    first_attempt_at: float | None
    accepted_at: float | None  # the channel's acceptance: the delivery time
    receipt: str  # relay reply and queue id, HTTP status and body excerpt, dedup_key ('' until accepted)
    attempts: int  # attempts that reached an outcome (accepted or failed); an expiry is not one
    failures: int
    last_failure_at: float | None
    last_reason: str  # threenines.notify.channels.REASONS, '' without a failure
    last_detail: str  # what the far end said (the writer removed any secret it sent)
    expired_at: float | None  # retries given up: never delivered

    @property
    def outage(self) -> tuple[str, str, str, float]:
        return outage_key(self.customer, self.service, self.target, self.determined_at)

    @property
    def state(self) -> str:
        """delivered | failing (refused so far, still retried) | given up | pending (not attempted yet)."""
        if self.accepted_at is not None:
            return "delivered"
        if self.expired_at is not None:
            return "given up"
        return "failing" if self.failures else "pending"

    @property
    def delay(self) -> float | None:
        """Determination → acceptance (for the firing notice: the contract's notification delay)."""
        return None if self.accepted_at is None else self.accepted_at - self.determined_at


_DELIVERY_SQL = """
SELECT n.customer, n.service, n.target, n.determined_at, n.event, n.contact, n.channel, n.contact_version,
       n.received_at,
       (SELECT min(a.started_at) FROM attempts a WHERE a.notice_id = n.id),
       ok.finished_at, coalesce(ok.receipt, ''),
       (SELECT count(*) FROM attempts a WHERE a.notice_id = n.id AND a.outcome IN ('accepted', 'failed')),
       (SELECT count(*) FROM attempts a WHERE a.notice_id = n.id AND a.outcome = 'failed'),
       bad.finished_at, coalesce(bad.reason, ''), coalesce(bad.detail, ''),
       gone.finished_at
FROM notices n
LEFT JOIN attempts ok ON ok.notice_id = n.id AND ok.outcome = 'accepted'
LEFT JOIN attempts gone ON gone.notice_id = n.id AND gone.outcome = 'expired'
LEFT JOIN attempts bad ON bad.id = (SELECT max(a.id) FROM attempts a WHERE a.notice_id = n.id AND a.outcome = 'failed')
"""
# One outage in the delivery and outage ledgers: the notice holds determined_at to the millisecond (the alert's
# annotation), the outage ledger to the microsecond (as threenines.ledgers.audit reads it).
_SAME_OUTAGE = "n.customer = ? AND n.service = ? AND n.target = ? AND abs(n.determined_at - ?) < 0.0005"
_ORDER = " ORDER BY n.determined_at, n.customer, n.service, n.target, n.event = 'resolved', n.contact"


def _delivery(row: tuple) -> Delivery:
    values = list(row)
    values[5] = shown_contact(values[5])
    return Delivery(*values)


class DeliveryLedgerReader(LedgerReader):
    """The delivery ledger read by another process (`threenines status`, `threenines report --delivery-ledger`),
    read-only (threenines.ledgers.sqlite.open_read_only), while the exporter runs or not: per outage event and
    designated contact, the channel, contact version, first attempt, acceptance and receipt, or the failures
    and the last reason. OSError naming the file when it is missing or unreadable.

        with DeliveryLedgerReader(path) as ledger:
            rows = ledger.for_outage(outage_key(customer, service, target, determined_at))
    """

    what = "delivery ledger"

    def for_outage(self, outage: tuple[str, str, str, float]) -> list[Delivery]:
        """Every notice of one outage (firing first, then resolved; by contact), within half a millisecond of
        its determination."""
        return [_delivery(r) for r in self._rows(f"{_DELIVERY_SQL} WHERE {_SAME_OUTAGE}{_ORDER}", outage)]

    def deliveries(self, since: float | None = None, until: float | None = None,
                   customers: Iterable[str] | None = None) -> list[Delivery]:
        """The notices of outages determined in [since, until) (either bound None: open), of these customers
        (None: all), by determination."""
        where: list[str] = ["1"]
        params: list[object] = []
        if since is not None:
            where.append("n.determined_at >= ?")
            params.append(since)
        if until is not None:
            where.append("n.determined_at < ?")
            params.append(until)
        if customers is not None:
            wanted = sorted(set(customers))
            where.append(f"n.customer IN ({', '.join('?' * len(wanted))})" if wanted else "0")
            params += wanted
        return [_delivery(r) for r in self._rows(f"{_DELIVERY_SQL} WHERE {' AND '.join(where)}{_ORDER}",
                                                 tuple(params))]
