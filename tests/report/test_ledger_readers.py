"""The ledgers' read-only readers (what `threenines report --ledger/--audit-ledger` and `threenines status` read):
they give back what the exporter's ledgers wrote, never write, and name a missing ledger instead of reading
it as empty. Real SQLite files written by the exporter's own ledger classes."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from threenines.config.inventory import TargetKey
from threenines.contract.machine import OutageEvent
from threenines.ledgers.audit import AuditLedger, AuditLedgerReader, Dispatch, Miss, outage_key
from threenines.ledgers.outages import OutageGap, OutageLedger, OutageLedgerReader
from threenines.ledgers.sqlite import open_read_only
from threenines.report.build import audit_misses

P1 = TargetKey("acme", "connectivity", "p1")
P2 = TargetKey("acme", "connectivity", "p2")


def _digest(path: Path) -> str:
    """The ledger file's bytes. (A reader of a WAL file may leave an empty -wal and the -shm index beside it when the
    directory lets it: SQLite needs the index to read a WAL database consistently while the exporter writes.)"""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _outage_ledger(path: Path) -> None:
    ledger = OutageLedger(path)
    # p1: [1000, 1600) with a restart's 100 s without evidence inside; p2: from 5000, still open
    ledger.record(OutageEvent("determined", P1, 1300.0, 1000.0, 1300.0))
    ledger.record(OutageEvent("gap", P1, 1400.0, 1000.0, 1300.0, gap_start=1300.0))
    ledger.record(OutageEvent("ended", P1, 1600.0, 1000.0, 1300.0, "recovered"))
    ledger.record(OutageEvent("determined", P2, 5300.0, 5000.0, 5300.0))
    ledger.close()


def test_the_outage_reader_gives_what_the_ledger_wrote_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "outages.sqlite"
    _outage_ledger(path)
    before = _digest(path)
    with OutageLedgerReader(path) as reader:
        assert [(r.key, r.first_failed_at, r.determined_at, r.ended_at, r.end_reason) for r in reader.outages()] == [
            (P1, 1000.0, 1300.0, 1600.0, "recovered"), (P2, 5000.0, 5300.0, None, "")]
        # overlapping [since, until): p1 ended at 1600, so a window from 1600 on holds only the open p2
        assert [r.key for r in reader.outages(1600, 10_000)] == [P2]
        assert [r.key for r in reader.outages(0, 1000)] == []
        assert [r.key for r in reader.outages(1599, 5001)] == [P1, P2]
        assert reader.gaps() == [OutageGap(P1, 1300.0, 1300.0, 1400.0)]
    assert _digest(path) == before


def test_a_read_only_connection_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "outages.sqlite"
    _outage_ledger(path)
    db = open_read_only(path, "outage ledger")
    try:
        with pytest.raises(sqlite3.OperationalError, match=r"readonly|read-only|query_only"):
            db.execute("CREATE TABLE intruder (x)")
    finally:
        db.close()


@pytest.mark.parametrize("reader", [OutageLedgerReader, AuditLedgerReader])
def test_a_missing_ledger_is_named_not_read_as_empty(tmp_path: Path, reader: type) -> None:
    missing = tmp_path / "state" / "none.sqlite"
    with pytest.raises(OSError, match=r"none\.sqlite: no such (outage|audit) ledger"):
        reader(missing)
    assert not missing.parent.exists()  # nothing created on the way


def test_a_file_that_is_not_a_ledger_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "outages.sqlite"
    path.write_bytes(b"this is not an SQLite file, and long enough to have a header" * 4)
    with pytest.raises(OSError, match=r"outages\.sqlite: cannot (open|read) the outage ledger"), \
            OutageLedgerReader(path) as reader:
        reader.outages()


def _dispatch(determined_at: float, delay: float, first: bool = True, deadline: float = 900.0) -> Dispatch:
    return Dispatch(dispatched_at=determined_at + delay, receiver="customer-acme", fingerprint="f",
                    alertname="ThreeninesOutage", customer="acme", service="connectivity", target="p1",
                    determined_at=determined_at, starts_at="", ends_at="", resolved=False, contact_version="1",
                    deadline=deadline, delay=delay if first else None, first=first, late=first and delay > deadline,
                    group_key="g")


def test_the_audit_reader_finds_an_outages_notification_and_its_miss_to_the_half_millisecond(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    ledger = AuditLedger(path)
    # The engine's determination, to the microsecond; the alert annotation (and so the ledger) has milliseconds.
    determined = 10_000.123456
    ledger.append([_dispatch(round(determined, 3), 1200.0), _dispatch(round(determined, 3), 1500.0, first=False)])
    ledger.append_miss(Miss("acme", "connectivity", "p1", round(determined, 3), round(determined, 3) + 900.0,
                            12_000.0, "late"))
    ledger.append([_dispatch(20_000.0, 60.0)])  # another outage, notified in time
    ledger.close()
    before = _digest(path)
    with AuditLedgerReader(path) as reader:
        assert reader.has_misses
        first = reader.first_dispatch(outage_key("acme", "connectivity", "p1", determined))
        assert first is not None and (first.first, first.dispatched_at) == (True, round(determined, 3) + 1200.0)
        miss = reader.miss(outage_key("acme", "connectivity", "p1", determined))
        assert miss is not None and (miss.reason, miss.deadline_at) == ("late", round(determined, 3) + 900.0)
        assert reader.miss(outage_key("acme", "connectivity", "p1", 20_000.0)) is None
        assert reader.first_dispatch(outage_key("acme", "connectivity", "p1", 20_000.002)) is None  # 2 ms away
        # misses by deadline instant in [since, until)
        assert [m.deadline_at for m in reader.misses(10_900.123, 10_900.124)] == [10_900.123]
        assert reader.misses(0, 10_900.123) == []
    assert _digest(path) == before


def test_a_ledger_older_than_the_misses_table_gives_its_late_first_dispatches(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    ledger = AuditLedger(path)
    day = 86400.0
    ledger.append([_dispatch(10 * day, 1200.0),  # deadline passed at 10 d + 900 s: a miss in the month
                   _dispatch(10 * day, 1300.0, first=False),  # a repeat: not the notification that counts
                   _dispatch(12 * day, 300.0),  # in time
                   _dispatch(30 * day - 1000, 1200.0)])  # deadline passed at 30 d - 100 s, dispatched after it
    ledger.close()
    # An exporter before the misses table wrote only dispatches (a test stands in for it by dropping the table).
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE misses")
    with AuditLedgerReader(path) as reader:
        assert not reader.has_misses
        assert reader.misses(0, 100 * day) == [] and reader.miss(("acme", "connectivity", "p1", 10 * day)) is None
    misses, dispatched = audit_misses(path, int(day), int(30 * day))
    assert misses == {"acme": [(10 * day + 900.0, 1.0), (30 * day - 100.0, 1.0)]}
    assert dispatched == {"acme": [10 * day + 1200.0, 30 * day + 200.0]}  # around the month for the cross-check
    # the misses table present: its rows are the misses, no legacy cross-check
    fresh = tmp_path / "fresh.sqlite"
    ledger = AuditLedger(fresh)
    ledger.append_miss(Miss("acme", "connectivity", "p1", 10 * day, 10 * day + 900.0, 10 * day + 901.0, "late"))
    ledger.close()
    assert audit_misses(fresh, int(day), int(30 * day)) == ({"acme": [(10 * day + 900.0, 1.0)]}, None)
