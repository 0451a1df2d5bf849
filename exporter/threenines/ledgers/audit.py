"""The audit ledger: every dispatch Alertmanager made to a customer receiver, and every missed deadline.

Append-only SQLite, and its in-memory state (delays, misses, the first dispatch of each outage) rebuilt from the
rows at start. The webhook that writes it is threenines.alerting.webhook; its metrics threenines.exposition.audit.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from threenines.ledgers.sqlite import LedgerFile, LedgerReader

log = logging.getLogger(__name__)

_T = TypeVar("_T")


DELAY_BUCKETS = (30.0, 60.0, 120.0, 180.0, 300.0, 450.0, 600.0, 750.0, 900.0, 1200.0, 1800.0, 3600.0)


# determined_at is stamped by the exporter's own clock, so it can never be after the dispatch; the allowance
# covers an HA peer's clock (NTP keeps them within milliseconds). More than this is a forged or broken value:
# a future (or +Inf) determination would satisfy ThreeninesNotificationOverdue for that target for good.
MAX_CLOCK_SKEW = 10.0


# The floor: no outage goes a year with its alert still firing; older values are garbage (a unit error, 0).
MAX_DETERMINATION_AGE = 366 * 86400.0


# Alerts the webhook does not record, by reason: they would create series the inventory does not have.
REJECT_REASONS = ("unknown_customer", "unknown_target", "wrong_receiver")


_SCHEMA = """
CREATE TABLE IF NOT EXISTS dispatches (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    dispatched_at   REAL    NOT NULL,   -- when the webhook arrived (exporter clock, Unix seconds)
    receiver        TEXT    NOT NULL,
    fingerprint     TEXT    NOT NULL,   -- Alertmanager's alert fingerprint
    alertname       TEXT    NOT NULL,
    customer        TEXT    NOT NULL,
    service         TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    determined_at   REAL,               -- from the alert's determined_at annotation; NULL when it has none
    starts_at       TEXT    NOT NULL,
    ends_at         TEXT    NOT NULL,
    resolved        INTEGER NOT NULL,   -- 1 for a resolved notification
    contact_version TEXT    NOT NULL,   -- the customer's contacts.version when dispatched ('' if unknown)
    deadline        REAL,               -- the customer's notification deadline in seconds (NULL if unknown)
    delay           REAL,               -- dispatched_at - determined_at, on the first firing dispatch only
    first           INTEGER NOT NULL,   -- 1: the notification of this outage that counts
    late            INTEGER NOT NULL,   -- 1: first dispatch later than the deadline
    group_key       TEXT    NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS one_first_dispatch_per_outage
    ON dispatches (customer, service, target, determined_at) WHERE first = 1;
CREATE TRIGGER IF NOT EXISTS dispatches_append_only_update BEFORE UPDATE ON dispatches
    BEGIN SELECT RAISE(ABORT, 'the audit ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS dispatches_append_only_delete BEFORE DELETE ON dispatches
    BEGIN SELECT RAISE(ABORT, 'the audit ledger is append-only'); END;
-- A missed notification deadline, decided when the deadline passed (threenines.alerting.deadlines): one per outage.
CREATE TABLE IF NOT EXISTS misses (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    customer        TEXT    NOT NULL,
    service         TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    determined_at   REAL    NOT NULL,
    deadline_at     REAL    NOT NULL,   -- determined_at + the customer's deadline: when the miss happened
    recorded_at     REAL    NOT NULL,   -- when the exporter wrote it (later if it was not running then)
    reason          TEXT    NOT NULL    -- 'late' (a first dispatch came after the deadline) | 'not_notified'
);
CREATE UNIQUE INDEX IF NOT EXISTS one_miss_per_outage ON misses (customer, service, target, determined_at);
CREATE TRIGGER IF NOT EXISTS misses_append_only_update BEFORE UPDATE ON misses
    BEGIN SELECT RAISE(ABORT, 'the audit ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS misses_append_only_delete BEFORE DELETE ON misses
    BEGIN SELECT RAISE(ABORT, 'the audit ledger is append-only'); END;
"""


_COLUMNS = ("dispatched_at", "receiver", "fingerprint", "alertname", "customer", "service", "target",
            "determined_at", "starts_at", "ends_at", "resolved", "contact_version", "deadline", "delay", "first",
            "late", "group_key")


@dataclass(frozen=True)
class Dispatch:
    """One alert in one webhook delivery, as recorded in the ledger."""

    dispatched_at: float
    receiver: str
    fingerprint: str
    alertname: str
    customer: str
    service: str
    target: str
    determined_at: float | None
    starts_at: str
    ends_at: str
    resolved: bool
    contact_version: str
    deadline: float | None
    delay: float | None
    first: bool
    late: bool
    group_key: str

    @property
    def outage(self) -> tuple[str, str, str, float] | None:
        if self.determined_at is None:
            return None
        return outage_key(self.customer, self.service, self.target, self.determined_at)


def outage_key(customer: str, service: str, target: str, determined_at: float) -> tuple[str, str, str, float]:
    """One outage as the audit, the deadline watch and the notifier key it: determined_at to the millisecond.

    The alert carries determined_at as an annotation printed to the millisecond, the engine holds it to the
    microsecond: keyed by the engine's value, a dispatch of the outage was not found at its deadline (a miss
    counted beside a dispatch on time) and a miss not found by a later dispatch (late=0 beside a miss).
    """
    return (customer, service, target, round(determined_at, 3))


@dataclass(frozen=True)
class Miss:
    """A notification deadline that passed without a first dispatch of the outage (threenines.alerting.deadlines)."""

    customer: str
    service: str
    target: str
    determined_at: float
    deadline_at: float
    recorded_at: float
    reason: str  # "late" | "not_notified" | "undelivered" (dispatched, not accepted by every contact)

    @property
    def outage(self) -> tuple[str, str, str, float]:
        return outage_key(self.customer, self.service, self.target, self.determined_at)


_MISS_COLUMNS = ("customer", "service", "target", "determined_at", "deadline_at", "recorded_at", "reason")


class AuditLedger:
    """Append-only SQLite (WAL, synchronous=FULL): a dispatch acknowledged to Alertmanager is on disk.

    Opened like the outage ledger (threenines.ledgers.sqlite.LedgerFile): refused at start when corrupt or not writable;
    on a full disk the exporter starts and each write opens the file first, so a delivery the disk refuses is a
    500 that Alertmanager retries, and a miss is decided again at the next check: the callers are the queue.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = LedgerFile(self.path, _SCHEMA, "audit ledger")
        self._lock = threading.Lock()
        self.writes_ok = 0
        self.writes_failed = 0

    def append(self, dispatches: list[Dispatch]) -> None:
        """All of one delivery or none of it."""
        rows = [tuple(_to_sql(getattr(d, c)) for c in _COLUMNS) for d in dispatches]
        sql = f"INSERT INTO dispatches ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
        self._transaction(lambda db: db.executemany(sql, rows))

    def append_miss(self, miss: Miss) -> None:
        """Once per outage: a retried write of the same miss is ignored."""
        sql = (f"INSERT OR IGNORE INTO misses ({', '.join(_MISS_COLUMNS)}) "
               f"VALUES ({', '.join('?' * len(_MISS_COLUMNS))})")
        values = tuple(getattr(miss, c) for c in _MISS_COLUMNS)
        self._transaction(lambda db: db.execute(sql, values))

    def _transaction(self, write: Callable[[sqlite3.Connection], object]) -> None:
        with self._lock:
            try:
                self._file.transaction(write)
            except Exception:
                self.writes_failed += 1
                raise
            self.writes_ok += 1

    def misses(self) -> Iterator[Miss]:
        with self._lock:
            rows = self._file.read(f"SELECT {', '.join(_MISS_COLUMNS)} FROM misses ORDER BY id", needs="misses")
        for row in rows:
            yield Miss(*row)

    def dispatches(self) -> Iterator[Dispatch]:
        with self._lock:
            rows = self._file.read(f"SELECT {', '.join(_COLUMNS)} FROM dispatches ORDER BY id", needs="dispatches")
        for row in rows:
            yield _dispatch(row)

    def close(self) -> None:
        with self._lock:
            self._file.close()


def _to_sql(value: object) -> object:
    return int(value) if isinstance(value, bool) else value


def _dispatch(row: tuple) -> Dispatch:
    values = dict(zip(_COLUMNS, row, strict=True))
    for flag in ("resolved", "first", "late"):
        values[flag] = bool(values[flag])
    return Dispatch(**values)


# One outage in both ledgers: the audit holds determined_at to the millisecond (outage_key), the outage ledger and
# the engine to the microsecond, so the same outage is the one within half a millisecond.
_SAME_OUTAGE = "customer = ? AND service = ? AND target = ? AND abs(determined_at - ?) < 0.0005"


class AuditLedgerReader(LedgerReader):
    """The audit ledger read by another process (`threenines report --audit-ledger`, `threenines status`),
    read-only (threenines.ledgers.sqlite.open_read_only), while the exporter runs or not.

    A ledger written by an exporter older than the `misses` table has only dispatches (`has_misses` False): its
    misses are its late first dispatches, and an outage never notified at all is not in it.
    """

    what = "audit ledger"

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self.has_misses = self._has_table("misses")

    def misses(self, since: float, until: float) -> list[Miss]:
        """The misses whose deadline passed in [since, until), in the order they were written (none without the
        `misses` table)."""
        if not self.has_misses:
            return []
        return [Miss(*row) for row in self._rows(
            f"SELECT {', '.join(_MISS_COLUMNS)} FROM misses WHERE deadline_at >= ? AND deadline_at < ? ORDER BY id",
            (since, until))]

    def late_first_dispatches(self, since: float, until: float) -> list[Dispatch]:
        """First dispatches later than their deadline (with a determination and a deadline) whose deadline passed
        in [since, until) or that arrived in (since, until]: the misses of a ledger without the `misses` table."""
        return [_dispatch(row) for row in self._rows(
            f"SELECT {', '.join(_COLUMNS)} FROM dispatches WHERE first = 1 AND late = 1 AND determined_at IS NOT NULL"
            " AND deadline IS NOT NULL AND ((determined_at + deadline >= ? AND determined_at + deadline < ?)"
            " OR (dispatched_at > ? AND dispatched_at <= ?)) ORDER BY id", (since, until, since, until))]

    def first_dispatch(self, outage: tuple[str, str, str, float]) -> Dispatch | None:
        """The dispatch that counts as the notification of this outage (outage_key), if any."""
        rows = self._rows(f"SELECT {', '.join(_COLUMNS)} FROM dispatches WHERE first = 1 AND {_SAME_OUTAGE}"
                          " ORDER BY id LIMIT 1", outage)
        return _dispatch(rows[0]) if rows else None

    def miss(self, outage: tuple[str, str, str, float]) -> Miss | None:
        """The missed deadline of this outage (outage_key), if any."""
        if not self.has_misses:
            return None
        rows = self._rows(f"SELECT {', '.join(_MISS_COLUMNS)} FROM misses WHERE {_SAME_OUTAGE} ORDER BY id LIMIT 1",
                          outage)
        return Miss(*rows[0]) if rows else None


class DelayHistograms:
    """Notification delays per customer in DELAY_BUCKETS (the audit's dispatches, the notifier's deliveries).
    Not locked: its owner's state object holds the lock. Exposed by exposition.catalogue.histogram_family."""

    def __init__(self) -> None:
        self.buckets: dict[str, list[int]] = {}
        self.sums: dict[str, float] = {}

    def observe(self, customer: str, delay: float) -> None:
        value = max(0.0, delay)
        counts = self.buckets.setdefault(customer, [0] * (len(DELAY_BUCKETS) + 1))
        counts[next((i for i, bound in enumerate(DELAY_BUCKETS) if value <= bound), len(DELAY_BUCKETS))] += 1
        self.sums[customer] = self.sums.get(customer, 0.0) + value

    def copy(self) -> DelayHistograms:
        out = DelayHistograms()
        out.buckets = {k: list(v) for k, v in self.buckets.items()}
        out.sums = dict(self.sums)
        return out


class AuditState:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.delays = DelayHistograms()
        self.missed: dict[str, int] = {}
        self.dispatches: dict[tuple[str, str], int] = {}
        self.last_determined: dict[tuple[str, str, str], float] = {}
        self.counted: set[tuple[str, str, str, float]] = set()
        self.first_at: dict[tuple[str, str, str, float], float] = {}  # outage -> its first dispatch's arrival
        self.missed_outages: set[tuple[str, str, str, float]] = set()
        self.last_missed: dict[tuple[str, str, str], float] = {}  # target -> deadline instant of its latest miss
        self.rejected: dict[str, int] = {}
        # What the inventory has (customer ids, (customer, service, target)); None: everything counts.
        self.customers: frozenset[str] | None = None
        self.targets: frozenset[tuple[str, str, str]] | None = None

    def apply(self, dispatch: Dispatch) -> None:
        with self._lock:
            self._apply(dispatch)

    def reject(self, reason: str, count: int = 1) -> None:
        with self._lock:
            self.rejected[reason] = self.rejected.get(reason, 0) + count

    def _apply(self, d: Dispatch) -> None:
        # Rows already in the append-only ledger are neutralised here, at every rebuild: one for a customer the
        # inventory lacks creates no series, and an impossible determined_at (+Inf, a year ahead, from an
        # exporter before the webhook refused them) counts as no determination instead of disabling the
        # overdue alert for its target for good.
        if self.customers is not None and d.customer not in self.customers:
            return
        key = (d.customer, d.receiver)
        self.dispatches[key] = self.dispatches.get(key, 0) + 1
        if d.determined_at is None or determination_problem(d.determined_at, d.dispatched_at) is not None:
            return
        target = (d.customer, d.service, d.target)
        if not d.resolved and (self.targets is None or target in self.targets):
            self.last_determined[target] = max(self.last_determined.get(target, 0.0), d.determined_at)
        if d.first and d.delay is not None and d.outage is not None:
            self.counted.add(d.outage)
            self.first_at.setdefault(d.outage, d.dispatched_at)
            self.delays.observe(d.customer, d.delay)
            self.missed.setdefault(d.customer, 0)  # the counter exists from the first dispatch; misses: apply_miss

    def apply_miss(self, miss: Miss) -> None:
        with self._lock:
            if miss.outage in self.missed_outages:
                return
            self.missed_outages.add(miss.outage)
            self.missed[miss.customer] = self.missed.get(miss.customer, 0) + 1
            target = (miss.customer, miss.service, miss.target)
            self.last_missed[target] = max(self.last_missed.get(target, 0.0), miss.deadline_at)

    def is_missed(self, outage: tuple[str, str, str, float]) -> bool:
        with self._lock:
            return outage in self.missed_outages

    def first_dispatch_at(self, outage: tuple[str, str, str, float]) -> float | None:
        with self._lock:
            return self.first_at.get(outage)

    def is_counted(self, outage: tuple[str, str, str, float]) -> bool:
        with self._lock:
            return outage in self.counted

    def copy(self) -> AuditState:
        with self._lock:
            out = AuditState()
            out.delays = self.delays.copy()
            out.missed = dict(self.missed)
            out.dispatches = dict(self.dispatches)
            out.last_determined = dict(self.last_determined)
            out.last_missed = dict(self.last_missed)
            out.rejected = dict(self.rejected)
            return out


def determination_problem(determined_at: float, dispatched_at: float) -> str | None:
    """Why determined_at cannot be the determination of an outage dispatched at dispatched_at, or None."""
    if not math.isfinite(determined_at) or determined_at <= 0:
        return "is not a time"
    if determined_at > dispatched_at + MAX_CLOCK_SKEW:
        return (f"is {determined_at - dispatched_at:.6g} s after this delivery arrived: a notification cannot "
                f"precede its determination (allowance {MAX_CLOCK_SKEW:.0f} s)")
    if determined_at < dispatched_at - MAX_DETERMINATION_AGE:
        return "is more than a year before this delivery arrived"
    return None

