"""One opener for the SQLite evidence files (outage, audit and delivery ledgers): WAL, synchronous=FULL,
append-only by triggers in each schema. Refused at start when a file is corrupt or cannot be written, opened
later when the disk is full (docs/design.md, "Faults").
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self, TypeVar

log = logging.getLogger(__name__)
_T = TypeVar("_T")


# What SQLite calls a file it cannot read as a database (as opposed to a disk that refused a write).
_CORRUPT_ERRORS = ("SQLITE_CORRUPT", "SQLITE_NOTADB")


# A write refused for want of room, not of permission: the exporter starts and retries until there is room.
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


RUNBOOK = "docs/alerting.md#a-ledger-refused-at-start"


class LedgerError(OSError):
    """A ledger the exporter must not run on: corrupt, unreadable, or where it cannot write.

    The message names the file and what to do. An OSError, so `threenines serve` prints it (`error: cannot
    start: ...`) and exits 1, with no traceback.
    """


def _error_name(err: BaseException) -> str:
    return getattr(err, "sqlite_errorname", "") or ""


def describe_error(err: BaseException) -> str:
    name = _error_name(err)
    return f"{err} ({name})" if name else str(err)


def open_read_only(path: str | Path, what: str) -> sqlite3.Connection:
    """A ledger opened for reading only, by a process that is not the exporter writing it (`threenines report`,
    `threenines status`), while the exporter runs or not: `mode=ro` never creates the file nor writes to it, and
    query_only refuses a write on this connection whatever the file's permissions. The readers of each ledger
    (threenines.ledgers.outages.OutageLedgerReader, threenines.ledgers.audit.AuditLedgerReader) share it.

    OSError naming the file when there is none or SQLite cannot open it: a report must not read a missing
    ledger as an empty one.
    """
    file = Path(path)
    if not file.is_file():
        raise OSError(f"{path}: no such {what} (`threenines serve` writes it in its state directory)")
    uri = f"file:{urllib.parse.quote(str(file.resolve()))}?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as err:
        raise OSError(f"{path}: cannot open the {what}: {describe_error(err)}") from err
    try:
        db.execute("PRAGMA busy_timeout=5000")  # the exporter may be checkpointing its WAL this very moment
        db.execute("PRAGMA query_only=1")
    except sqlite3.Error as err:
        db.close()
        raise OSError(f"{path}: cannot read the {what}: {describe_error(err)}") from err
    return db


def has_table(db: sqlite3.Connection, name: str) -> bool:
    """Whether a ledger has this table or view: one written by an older exporter may lack it."""
    return db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None



class LedgerReader:
    """A ledger read by another process through open_read_only: the one opener, context manager and query
    wrapper of the outage, audit and delivery readers (each sets `what`). An SQLite error while reading is an
    OSError naming the file."""

    what = "ledger"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = open_read_only(self.path, self.what)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def _read(self, query: Callable[[], _T]) -> _T:
        try:
            return query()
        except sqlite3.Error as err:
            raise OSError(f"{self.path}: cannot read the {self.what}: {describe_error(err)}") from err

    def _rows(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple]:
        return self._read(lambda: self._db.execute(sql, params).fetchall())

    def _has_table(self, name: str) -> bool:
        return self._read(lambda: has_table(self._db, name))

class LedgerFile:
    """One SQLite evidence file (WAL, synchronous=FULL), checked before the exporter relies on it.

    At start the state directory and the ledger's files must be writable, or LedgerError: the exporter would
    measure without recording. An existing file must pass `PRAGMA quick_check`, or LedgerError: the exporter
    never starts over evidence it cannot read, and never deletes it. A full disk is not refused: a new ledger
    needs room for its header and an existing WAL ledger for its `-shm` index, so `db` stays None until `open()`
    succeeds (its owner retries), and `read()` meanwhile uses a connection in exclusive locking mode, which keeps
    the WAL index in memory and needs no room.
    """

    def __init__(self, path: Path, schema: str, what: str) -> None:
        self.path = path
        self.what = what  # "outage ledger", "audit ledger"
        self._schema = schema
        self.db: sqlite3.Connection | None = None
        self.error = ""  # why the last open() failed
        self._check_writable()
        if self._has_content():
            self._check_intact()
        if not self.open():
            log.error("%s %s cannot be opened for writing: %s. The exporter runs and retries its writes until the "
                      "disk takes them (threenines_ledger_pending_writes, threenines_ledger_writes_total); free "
                      "space in %s", what, path, self.error, path.parent)

    @property
    def _wal(self) -> Path:
        return Path(f"{self.path}-wal")

    def _has_content(self) -> bool:
        return any(p.is_file() and p.stat().st_size > 0 for p in (self.path, self._wal))

    def _check_writable(self) -> None:
        """LedgerError unless the directory takes a new file and every file of the ledger opens for writing. A
        full disk passes: that is room, not permission, and open() is retried until there is some."""
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            if err.errno in _FULL_ERRNOS:
                return  # nothing there yet to check
            raise self._not_writable(err) from None
        probe = directory / f".{self.path.name}.write-check"
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
            probe.unlink()
        except OSError as err:
            if err.errno not in _FULL_ERRNOS:
                raise self._not_writable(err) from None
        for name in (self.path, self._wal, Path(f"{self.path}-shm"), Path(f"{self.path}-journal")):
            try:
                os.close(os.open(name, os.O_RDWR))
            except FileNotFoundError:
                continue
            except OSError as err:
                raise self._not_writable(err) from None

    def _not_writable(self, err: OSError) -> LedgerError:
        return LedgerError(
            f"{self.path}: the {self.what} cannot be written ({err.strerror or err}: {err.filename or self.path})."
            " The exporter does not start: it would measure without recording evidence. Make the state directory"
            " and its ledger files writable by the user the exporter runs as (a read-only mount: remount it"
            " read-write; an immutable file or directory: chattr -i; another owner: chown), or point --state-dir"
            f" (exporter.state_dir) at a directory that is; see {RUNBOOK}")

    def _check_intact(self) -> None:
        try:
            problems = self._quick_check()
        except sqlite3.Error as err:
            if _error_name(err).startswith(_CORRUPT_ERRORS):
                raise LedgerError(self._corrupt(describe_error(err))) from None
            raise LedgerError(
                f"{self.path}: the {self.what} cannot be read ({describe_error(err)}). The exporter does not start on"
                " evidence it cannot read: it would resume no open outage and count it again. Fix the cause (the"
                f" system log, dmesg for I/O errors) and start it again; see {RUNBOOK}") from None
        if problems != ["ok"]:
            raise LedgerError(self._corrupt("quick_check: " + "; ".join(p.replace("\n", " ") for p in problems[:3])))

    def _quick_check(self) -> list[str]:
        try:
            with contextlib.closing(sqlite3.connect(self.path, isolation_level=None)) as db:
                db.execute("PRAGMA busy_timeout=5000")
                return [row[0] for row in db.execute("PRAGMA quick_check")]
        except sqlite3.Error as err:
            if _error_name(err).startswith(_CORRUPT_ERRORS):
                raise
        # A full disk: a WAL ledger needs room for its -shm index, and a snapshot does not.
        with contextlib.closing(self._snapshot()) as db:
            return [row[0] for row in db.execute("PRAGMA quick_check")]

    def _corrupt(self, detail: str) -> str:
        return (f"{self.path}: the {self.what} is corrupt ({detail}). The exporter does not start over evidence it"
                f" cannot read, and never deletes it. Keep the file: copy {self.path.name}* aside, recover what"
                f" SQLite can still read (sqlite3 {self.path} .recover | sqlite3 {self.path}.recovered), then"
                f" follow {RUNBOOK}")

    def _snapshot(self) -> sqlite3.Connection:
        """A connection for reading that needs no room on the disk: in exclusive locking mode SQLite keeps the WAL
        index in memory instead of the -shm file. (Not mode=ro: SQLite cannot lock a WAL file read-only without
        the -shm.) query_only: it never writes a row."""
        db = sqlite3.connect(f"file:{urllib.parse.quote(str(self.path))}?mode=rw", uri=True, isolation_level=None)
        try:
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            db.execute("PRAGMA query_only=1")
        except sqlite3.Error:
            db.close()
            raise
        return db

    def open(self) -> bool:
        """Open for writing (WAL, synchronous=FULL, the schema); False, and `error` says why, if the disk refuses."""
        if self.db is not None:
            return True
        db = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout=5000")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(f"BEGIN IMMEDIATE;\n{self._schema}\nCOMMIT;")  # all of the schema or none
        except (sqlite3.Error, OSError) as err:
            self.error = describe_error(err)
            if db is not None:
                with contextlib.suppress(sqlite3.Error):
                    db.close()
            return False
        self.db, self.error = db, ""
        return True

    def transaction(self, write: Callable[[sqlite3.Connection], object]) -> None:
        """One write transaction, opening the file first if the disk refused it so far (OperationalError when it
        still does). Any exception rolls back and is raised: a transaction left open would refuse the next write.
        Callers hold their own lock and count the outcome."""
        if not self.open():
            raise sqlite3.OperationalError(f"{self.path} is not open for writing: {self.error}")
        db = self.db
        assert db is not None
        try:
            db.execute("BEGIN IMMEDIATE")
            write(db)
            db.execute("COMMIT")
        except Exception:  # not only sqlite3.Error
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def read(self, sql: str, params: tuple[object, ...] = (), needs: str = "") -> list[tuple[Any, ...]]:
        """A query's rows; while the file is not open for writing, from a snapshot (none without table `needs`)."""
        if self.db is not None:
            return self.db.execute(sql, params).fetchall()
        if not self._has_content():
            return []
        with contextlib.closing(self._snapshot()) as db:
            if needs and not has_table(db, needs):
                return []
            return db.execute(sql, params).fetchall()

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

