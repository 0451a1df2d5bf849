"""The outage ledger: an append-only SQLite record of every outage, plus what a restart needs to resume.

`outage_events` is insert-only (triggers refuse UPDATE and DELETE); the `outages` view pairs each
determination with its end. Recovery state (failure runs in progress, the heartbeat, the targets known)
lives in separate small tables that are updated in place: they are checkpoints, not the record.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from threenines.contract import Checkpoint, OutageEvent, TargetKey

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outage_events (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('determined', 'ended')),
    customer TEXT NOT NULL,
    service TEXT NOT NULL,
    target TEXT NOT NULL,
    at REAL NOT NULL,
    first_failed_at REAL NOT NULL,
    determined_at REAL NOT NULL,
    end_reason TEXT NOT NULL DEFAULT '',
    recorded_at REAL NOT NULL
);
-- One determination and at most one end per outage: a retried write can never count an outage twice.
CREATE UNIQUE INDEX IF NOT EXISTS outage_events_once
    ON outage_events (customer, service, target, determined_at, kind);
CREATE TRIGGER IF NOT EXISTS outage_events_no_update BEFORE UPDATE ON outage_events
    BEGIN SELECT RAISE(ABORT, 'outage_events is append-only'); END;
CREATE TRIGGER IF NOT EXISTS outage_events_no_delete BEFORE DELETE ON outage_events
    BEGIN SELECT RAISE(ABORT, 'outage_events is append-only'); END;
CREATE VIEW IF NOT EXISTS outages AS
    SELECT d.customer, d.service, d.target, d.first_failed_at, d.determined_at,
           e.at AS ended_at, e.end_reason
    FROM outage_events d
    LEFT JOIN outage_events e
        ON e.kind = 'ended' AND e.customer = d.customer AND e.service = d.service
       AND e.target = d.target AND e.determined_at = d.determined_at
    WHERE d.kind = 'determined';
-- Time inside an open outage without evidence (the exporter was down, probes went stale): unknown, not outage.
CREATE TABLE IF NOT EXISTS outage_gaps (
    id INTEGER PRIMARY KEY,
    customer TEXT NOT NULL,
    service TEXT NOT NULL,
    target TEXT NOT NULL,
    determined_at REAL NOT NULL,
    gap_start REAL NOT NULL,
    gap_end REAL NOT NULL,
    recorded_at REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS outage_gaps_once ON outage_gaps (customer, service, target, determined_at, gap_start);
CREATE TRIGGER IF NOT EXISTS outage_gaps_no_update BEFORE UPDATE ON outage_gaps
    BEGIN SELECT RAISE(ABORT, 'outage_gaps is append-only'); END;
CREATE TRIGGER IF NOT EXISTS outage_gaps_no_delete BEFORE DELETE ON outage_gaps
    BEGIN SELECT RAISE(ABORT, 'outage_gaps is append-only'); END;
CREATE TABLE IF NOT EXISTS checkpoints (
    customer TEXT NOT NULL, service TEXT NOT NULL, target TEXT NOT NULL,
    fail_start REAL NOT NULL, fail_count INTEGER NOT NULL, last_probe_at REAL, pending TEXT NOT NULL,
    PRIMARY KEY (customer, service, target)
);
CREATE TABLE IF NOT EXISTS targets (
    customer TEXT NOT NULL, service TEXT NOT NULL, target TEXT NOT NULL, added_at REAL NOT NULL,
    PRIMARY KEY (customer, service, target)
);
CREATE TABLE IF NOT EXISTS heartbeat (instance TEXT PRIMARY KEY, alive_at REAL NOT NULL);
"""


@dataclass(frozen=True)
class OutageRecord:
    key: TargetKey
    first_failed_at: float
    determined_at: float
    ended_at: float | None
    end_reason: str


class Ledger:
    """Opened once per process; used from one thread (the event loop)."""

    def __init__(self, path: str | Path, instance: str = "default") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.instance = instance
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        self._unwritten: deque[OutageEvent] = deque()
        self.writes_ok = 0
        self.writes_failed = 0

    def close(self) -> None:
        self._db.close()

    # -- the record -------------------------------------------------------------------------------

    def record(self, event: OutageEvent) -> None:
        """Append an event; if the disk refuses, keep it in memory and retry on the next flush."""
        self._unwritten.append(event)
        self.flush()

    def flush(self) -> None:
        while self._unwritten:
            event = self._unwritten[0]
            try:
                if event.kind == "gap":
                    self._db.execute(
                        "INSERT OR IGNORE INTO outage_gaps (customer, service, target, determined_at, gap_start,"
                        " gap_end, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (*event.key, event.determined_at, event.gap_start, event.at, time.time()))
                else:
                    self._db.execute(
                        "INSERT OR IGNORE INTO outage_events (kind, customer, service, target, at, first_failed_at,"
                        " determined_at, end_reason, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (event.kind, *event.key, event.at, event.first_failed_at, event.determined_at,
                         event.end_reason, time.time()))
            except sqlite3.Error as err:
                self.writes_failed += 1
                log.error("outage ledger write failed, will retry: %s (ledger %s)", err, self.path)
                return
            self.writes_ok += 1
            self._unwritten.popleft()

    @property
    def unwritten(self) -> int:
        return len(self._unwritten)

    def outages(self, since: float | None = None, until: float | None = None) -> list[OutageRecord]:
        """Outages overlapping [since, until) (all when both are None), oldest first."""
        rows = self._db.execute(
            "SELECT customer, service, target, first_failed_at, determined_at, ended_at, end_reason FROM outages"
            " WHERE (? IS NULL OR ended_at IS NULL OR ended_at > ?) AND (? IS NULL OR first_failed_at < ?)"
            " ORDER BY first_failed_at",
            (since, since, until, until),
        ).fetchall()
        return [OutageRecord(TargetKey(*row[:3]), row[3], row[4], row[5], row[6] or "") for row in rows]

    def outage_gaps(self) -> list[tuple[TargetKey, float, float, float]]:
        """(target, determined_at, gap_start, gap_end) of every stretch without evidence inside an outage."""
        rows = self._db.execute("SELECT customer, service, target, determined_at, gap_start, gap_end FROM outage_gaps"
                                " ORDER BY gap_start").fetchall()
        return [(TargetKey(*row[:3]), row[3], row[4], row[5]) for row in rows]

    def open_outages(self) -> dict[TargetKey, tuple[float, float]]:
        rows = self._db.execute(
            "SELECT customer, service, target, first_failed_at, determined_at FROM outages WHERE ended_at IS NULL"
        ).fetchall()
        return {TargetKey(*row[:3]): (row[3], row[4]) for row in rows}

    # -- recovery state ---------------------------------------------------------------------------

    def save_checkpoint(self, key: TargetKey, checkpoint: Checkpoint | None) -> None:
        try:
            if checkpoint is None or checkpoint.fail_start is None:
                self._db.execute(
                    "DELETE FROM checkpoints WHERE customer = ? AND service = ? AND target = ?", tuple(key)
                )
            else:
                self._db.execute(
                    "INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (*key, checkpoint.fail_start, checkpoint.fail_count, checkpoint.last_probe_at,
                     json.dumps(checkpoint.pending)),
                )
        except sqlite3.Error as err:
            # A lost checkpoint only shortens a failure run after a restart; the record is unaffected.
            log.warning("checkpoint write failed: %s (ledger %s)", err, self.path)

    def checkpoints(self) -> dict[TargetKey, Checkpoint]:
        open_outages = self.open_outages()
        found: dict[TargetKey, Checkpoint] = {
            key: Checkpoint(open_outage=bounds, fail_start=None, fail_count=0, last_probe_at=None, pending=())
            for key, bounds in open_outages.items()
        }
        for row in self._db.execute("SELECT * FROM checkpoints").fetchall():
            key = TargetKey(*row[:3])
            if key in found:
                continue
            pending = tuple((float(a), float(b)) for a, b in json.loads(row[6]))
            found[key] = Checkpoint(None, row[3], row[4], row[5], pending)
        return found

    def known_targets(self) -> set[TargetKey]:
        return {TargetKey(*row) for row in self._db.execute("SELECT customer, service, target FROM targets")}

    def add_targets(self, keys: list[TargetKey], at: float) -> None:
        self._db.execute("BEGIN")
        self._db.executemany("INSERT OR IGNORE INTO targets VALUES (?, ?, ?, ?)", [(*k, at) for k in keys])
        self._db.execute("COMMIT")

    def heartbeat(self, at: float) -> None:
        try:
            self._db.execute("INSERT OR REPLACE INTO heartbeat VALUES (?, ?)", (self.instance, at))
        except sqlite3.Error as err:
            log.warning("heartbeat write failed: %s (ledger %s)", err, self.path)

    def last_alive(self) -> float | None:
        row = self._db.execute("SELECT alive_at FROM heartbeat WHERE instance = ?", (self.instance,)).fetchone()
        return row[0] if row else None
