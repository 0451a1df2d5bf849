"""The outage ledger: an append-only SQLite record of every outage, plus what a restart needs to resume.

`outage_events` is insert-only (triggers refuse UPDATE and DELETE); the `outages` view pairs each
determination with its end. Recovery state (failure runs in progress, the heartbeat, the targets known)
lives in separate small tables that are updated in place: they are checkpoints, not the record.
The file is opened by `threenines.ledgers.sqlite.LedgerFile`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sqlite3
import time
from collections import deque
from pathlib import Path

from threenines.config.inventory import TargetKey
from threenines.contract.machine import Checkpoint, OutageEvent
from threenines.ledgers.sqlite import LedgerFile, LedgerReader, describe_error

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


# What the outage ledger writes besides the record (outage events and gaps): the recovery state, in this order.
RECOVERY_KINDS = ("target", "checkpoint", "heartbeat")


@dataclasses.dataclass(frozen=True)
class OutageRecord:
    key: TargetKey
    first_failed_at: float
    determined_at: float
    ended_at: float | None
    end_reason: str


@dataclasses.dataclass(frozen=True)
class OutageGap:
    """A stretch inside an outage that had no evidence (an exporter restart, stale probes): unknown, not outage."""

    key: TargetKey
    determined_at: float  # of the outage it is inside
    start: float
    end: float


# The record as both the exporter (OutageLedger) and the readers in other processes (OutageLedgerReader) read it.
# Overlapping [since, until): NULL bounds mean open-ended.
_OUTAGES_SQL = ("SELECT customer, service, target, first_failed_at, determined_at, ended_at, end_reason FROM outages"
                " WHERE (? IS NULL OR ended_at IS NULL OR ended_at > ?) AND (? IS NULL OR first_failed_at < ?)"
                " ORDER BY first_failed_at")
_GAPS_SQL = "SELECT customer, service, target, determined_at, gap_start, gap_end FROM outage_gaps ORDER BY gap_start"


def _record(row: tuple) -> OutageRecord:
    return OutageRecord(TargetKey(*row[:3]), row[3], row[4], row[5], row[6] or "")


def _gap(row: tuple) -> OutageGap:
    return OutageGap(TargetKey(*row[:3]), row[3], row[4], row[5])


class OutageLedger:
    """Opened once per process; used from one thread (the event loop).

    Every write goes to memory first, then to disk in a fixed order of kinds: the record (outage events and gaps,
    in the order they happened), new targets, checkpoints, the heartbeat; a kind is written only once the kinds
    before it are. What the disk refuses (full, an I/O error, a file system turned read-only) stays queued and
    `flush()` retries it at every tick; every write is idempotent (unique indexes, keyed upserts), so a retried
    write lands exactly once. The heartbeat comes last because it claims that everything before it is on disk:
    a restart that lost queued writes counts the time since the last heartbeat as unknown, never as up. Reads
    include what is queued.
    """

    def __init__(self, path: str | Path, instance: str = "default") -> None:
        self.path = Path(path)
        self.instance = instance
        self._events: deque[OutageEvent] = deque()
        self._targets: dict[TargetKey, float] = {}
        self._checkpoints: dict[TargetKey, Checkpoint | None] = {}
        self._alive_at: float | None = None
        self.writes_ok = 0  # the record: threenines_ledger_writes_total
        self.writes_failed = 0
        self.recovery_writes = {kind: [0, 0] for kind in RECOVERY_KINDS}  # [ok, error]
        self._failing: tuple[str, str] | None = None  # (kind, error) of the failure logged, until writes work
        self._file = LedgerFile(self.path, SCHEMA, "outage ledger")

    def close(self) -> None:
        """Close the file. Writes the disk still refuses are lost with the process: each is logged, so the
        evidence survives in the log at least."""
        self.flush()
        for event in self._events:
            log.error("outage ledger: not written, lost with this process: kind=%s customer=%s service=%s target=%s"
                      " at=%.3f first_failed_at=%.3f determined_at=%.3f end_reason=%s gap_start=%.3f",
                      event.kind, *event.key, event.at, event.first_failed_at, event.determined_at,
                      event.end_reason, event.gap_start)
        if any(self.pending().values()):
            log.error("outage ledger %s closed with writes the disk refused (%s): %s", self.path,
                      self._file.error or (self._failing or ("", ""))[1], self._queued())
        self._file.close()

    def pending(self) -> dict[str, int]:
        """Writes kept in memory, by kind (threenines_ledger_pending_writes)."""
        return {"record": len(self._events), "target": len(self._targets), "checkpoint": len(self._checkpoints),
                "heartbeat": int(self._alive_at is not None)}

    # -- writes -----------------------------------------------------------------------------------

    def record(self, event: OutageEvent) -> None:
        """Append an event; if the disk refuses, keep it in memory and retry on the next flush."""
        self._events.append(event)
        self.flush()

    def add_targets(self, keys: list[TargetKey], at: float) -> None:
        for key in keys:
            self._targets.setdefault(key, at)
        self.flush()

    def save_checkpoint(self, key: TargetKey, checkpoint: Checkpoint | None) -> None:
        self._checkpoints[key] = checkpoint  # the latest state of a target's run is the one that counts
        self._write(open_file=False)

    def heartbeat(self, at: float) -> None:
        self._alive_at = at
        self._write(open_file=False)

    def flush(self) -> None:
        """Write what is queued, opening the file first if the disk refused it so far (at every tick)."""
        self._write(open_file=True)

    def _write(self, open_file: bool) -> None:
        if not (self._events or self._targets or self._checkpoints or self._alive_at is not None):
            return
        db = self._file.db
        if db is None:
            if not open_file:
                return  # a checkpoint or heartbeat while the file is not open: the next flush opens it
            if not self._file.open():
                self._failed(next(k for k, n in self.pending().items() if n), self._file.error)
                return
            db = self._file.db
            assert db is not None
        kind = "record"
        try:
            while self._events:
                self._insert(db, self._events[0])
                self._events.popleft()
                self.writes_ok += 1
            if self._targets:
                kind = "target"
                rows = [(*key, at) for key, at in self._targets.items()]
                db.execute("BEGIN")
                db.executemany("INSERT OR IGNORE INTO targets VALUES (?, ?, ?, ?)", rows)
                db.execute("COMMIT")
                self._targets.clear()
                self.recovery_writes["target"][0] += len(rows)
            kind = "checkpoint"
            while self._checkpoints:
                key, checkpoint = next(iter(self._checkpoints.items()))
                if checkpoint is None or checkpoint.fail_start is None:
                    db.execute("DELETE FROM checkpoints WHERE customer = ? AND service = ? AND target = ?",
                               tuple(key))
                else:
                    db.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?, ?, ?, ?)",
                               (*key, checkpoint.fail_start, checkpoint.fail_count, checkpoint.last_probe_at,
                                json.dumps(checkpoint.pending)))
                del self._checkpoints[key]
                self.recovery_writes["checkpoint"][0] += 1
            if self._alive_at is not None:
                kind = "heartbeat"
                db.execute("INSERT OR REPLACE INTO heartbeat VALUES (?, ?)", (self.instance, self._alive_at))
                self._alive_at = None
                self.recovery_writes["heartbeat"][0] += 1
        except sqlite3.Error as err:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            self._failed(kind, describe_error(err))
            return
        if self._failing is not None:
            self._failing = None
            log.warning("outage ledger writes work again: everything queued is on disk (ledger %s)", self.path)

    @staticmethod
    def _insert(db: sqlite3.Connection, event: OutageEvent) -> None:
        if event.kind == "gap":
            db.execute(
                "INSERT OR IGNORE INTO outage_gaps (customer, service, target, determined_at, gap_start,"
                " gap_end, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*event.key, event.determined_at, event.gap_start, event.at, time.time()))
        else:
            db.execute(
                "INSERT OR IGNORE INTO outage_events (kind, customer, service, target, at, first_failed_at,"
                " determined_at, end_reason, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (event.kind, *event.key, event.at, event.first_failed_at, event.determined_at,
                 event.end_reason, time.time()))

    def _failed(self, kind: str, error: str) -> None:
        if kind == "record":
            self.writes_failed += 1
        else:
            self.recovery_writes[kind][1] += 1
        if self._failing == (kind, error):
            return  # counted; logged when it began
        self._failing = (kind, error)
        log.error("outage ledger %s write failed: %s (ledger %s). Kept in memory and retried at every tick, in order"
                  " (queued: %s); logged once until writes work again. Free space or fix the file system, and do"
                  " not restart the exporter before they are on disk", kind, error, self.path, self._queued())

    def _queued(self) -> str:
        return ", ".join(f"{kind}={count}" for kind, count in self.pending().items() if count) or "nothing"

    # -- the record -------------------------------------------------------------------------------

    def outages(self, since: float | None = None, until: float | None = None) -> list[OutageRecord]:
        """Outages overlapping [since, until) (all when both are None), oldest first."""
        rows = self._file.read(_OUTAGES_SQL, (since, since, until, until), needs="outages")
        records = [_record(row) for row in rows]
        if not self._events:
            return records
        # As they will be once the queued events are on disk.
        found = {(r.key, r.determined_at): r for r in records}
        for event in self._events:
            outage = (event.key, event.determined_at)
            if event.kind == "determined":
                found.setdefault(outage, OutageRecord(event.key, event.first_failed_at, event.determined_at,
                                                      None, ""))
            elif event.kind == "ended" and outage in found and found[outage].ended_at is None:
                found[outage] = dataclasses.replace(found[outage], ended_at=event.at, end_reason=event.end_reason)
        return sorted((r for r in found.values()
                       if (since is None or r.ended_at is None or r.ended_at > since)
                       and (until is None or r.first_failed_at < until)), key=lambda r: r.first_failed_at)

    def outage_gaps(self) -> list[tuple[TargetKey, float, float, float]]:
        """(target, determined_at, gap_start, gap_end) of every stretch without evidence inside an outage."""
        rows = self._file.read(_GAPS_SQL, needs="outage_gaps")
        gaps = [(TargetKey(*row[:3]), row[3], row[4], row[5]) for row in rows]
        seen = {gap[:3] for gap in gaps}
        queued = [(e.key, e.determined_at, e.gap_start, e.at) for e in self._events
                  if e.kind == "gap" and (e.key, e.determined_at, e.gap_start) not in seen]
        return sorted(gaps + queued, key=lambda gap: gap[2]) if queued else gaps

    def open_outages(self) -> dict[TargetKey, tuple[float, float]]:
        rows = self._file.read("SELECT customer, service, target, first_failed_at, determined_at FROM outages"
                               " WHERE ended_at IS NULL", needs="outages")
        found = {(TargetKey(*row[:3]), row[4]): row[3] for row in rows}
        for event in self._events:
            if event.kind == "determined":
                found.setdefault((event.key, event.determined_at), event.first_failed_at)
            elif event.kind == "ended":
                found.pop((event.key, event.determined_at), None)
        return {key: (first_failed, determined) for (key, determined), first_failed in found.items()}

    # -- recovery state ---------------------------------------------------------------------------

    def checkpoints(self) -> dict[TargetKey, Checkpoint]:
        found: dict[TargetKey, Checkpoint] = {
            key: Checkpoint(open_outage=bounds, fail_start=None, fail_count=0, last_probe_at=None, pending=())
            for key, bounds in self.open_outages().items()
        }
        saved: dict[TargetKey, Checkpoint | None] = {}
        for row in self._file.read("SELECT * FROM checkpoints", needs="checkpoints"):
            pending = tuple((float(a), float(b)) for a, b in json.loads(row[6]))
            saved[TargetKey(*row[:3])] = Checkpoint(None, row[3], row[4], row[5], pending)
        saved.update(self._checkpoints)
        for key, checkpoint in saved.items():
            if key in found or checkpoint is None or checkpoint.fail_start is None:
                continue
            found[key] = Checkpoint(None, checkpoint.fail_start, checkpoint.fail_count, checkpoint.last_probe_at,
                                    tuple((float(a), float(b)) for a, b in checkpoint.pending))
        return found

    def known_targets(self) -> set[TargetKey]:
        rows = self._file.read("SELECT customer, service, target FROM targets", needs="targets")
        return {TargetKey(*row) for row in rows} | set(self._targets)

    def last_alive(self) -> float | None:
        if self._alive_at is not None:
            return self._alive_at
        rows = self._file.read("SELECT alive_at FROM heartbeat WHERE instance = ?", (self.instance,),
                               needs="heartbeat")
        return rows[0][0] if rows else None


class OutageLedgerReader(LedgerReader):
    """The outage ledger read by another process (`threenines report --ledger`, `threenines status`), read-only
    (threenines.ledgers.sqlite.open_read_only): what is on disk, while the exporter runs or not. The exporter
    itself reads through OutageLedger, which adds what its disk has not taken yet.

        with OutageLedgerReader(path) as ledger:
            records, gaps = ledger.outages(start, end), ledger.gaps()
    """

    what = "outage ledger"

    def outages(self, since: float | None = None, until: float | None = None) -> list[OutageRecord]:
        """Outages overlapping [since, until) (all when both are None), oldest first; open ones end None."""
        return [_record(row) for row in self._rows(_OUTAGES_SQL, (since, since, until, until))]

    def gaps(self) -> list[OutageGap]:
        """Every stretch without evidence inside an outage, oldest first (none in a ledger older than the
        `outage_gaps` table)."""
        return [_gap(row) for row in self._rows(_GAPS_SQL)] if self._has_table("outage_gaps") else []

    def last_alive(self) -> float | None:
        """The latest heartbeat: the exporter ran, with everything before it on disk, until then (None: none)."""
        return self._rows("SELECT max(alive_at) FROM heartbeat")[0][0] if self._has_table("heartbeat") else None

    def targets_added(self) -> dict[TargetKey, float] | None:
        """When the ledger first knew each target: no probe of it is older (None: a ledger older than the
        `targets` table)."""
        if not self._has_table("targets"):
            return None
        return {TargetKey(*row[:3]): row[3]
                for row in self._rows("SELECT customer, service, target, added_at FROM targets")}
