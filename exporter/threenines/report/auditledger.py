"""Missed notification deadlines from the exporter's audit ledger (SQLite, read-only), cross-checked against
the metrics.

The exporter decides a miss when an outage's deadline (`determined_at + deadline`) passes without a first
dispatch, and writes it to the ledger's `misses` table with that instant (threenines.alerting.deadlines); it exports
the same instant per target (`threenines_notification_deadline_missed_timestamp_seconds`). So both sources
give the same misses at the same instants by construction, and any difference between them goes to review
(a ledger from another exporter, a lost scrape window). Billing may use either; `--audit-ledger` is the
record (it also holds misses decided while Prometheus was not scraping).

A ledger written by an exporter older than the `misses` table has only dispatches: its misses are the late
first dispatches (`first = 1 AND late = 1`) at `determined_at + deadline`; an outage never notified at all is
not in it, and the cross-check compares late dispatches with the counter's rises instead.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from pathlib import Path

Misses = dict[str, list[tuple[float, float]]]  # customer -> [(instant, count)]


def read_misses(path: str | Path, start: int, end: int) -> tuple[Misses, dict[str, list[float]] | None]:
    """(misses by deadline instant in [start, end), late dispatch times around (start, end] for the legacy
    cross-check, or None when the ledger has the misses table) per customer."""
    file = Path(path)
    if not file.is_file():
        raise OSError(f"{path}: no such audit ledger (threenines serve --audit-ledger writes it)")
    uri = f"file:{file.resolve()}?mode=ro"
    misses: Misses = defaultdict(list)
    try:
        with sqlite3.connect(uri, uri=True) as db:
            if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'misses'").fetchone():
                for customer, instant in db.execute(
                        "SELECT customer, deadline_at FROM misses WHERE deadline_at >= ? AND deadline_at < ?",
                        (start, end)):
                    misses[customer].append((float(instant), 1.0))
                return misses, None
            rows = db.execute(
                "SELECT customer, determined_at + deadline, dispatched_at FROM dispatches "
                "WHERE first = 1 AND late = 1 AND determined_at IS NOT NULL AND deadline IS NOT NULL "
                "AND ((determined_at + deadline >= ? AND determined_at + deadline < ?) "
                "OR (dispatched_at > ? AND dispatched_at <= ?))", (start, end, start - 86400, end + 86400)
            ).fetchall()
    except sqlite3.Error as err:
        raise OSError(f"{path}: cannot read the audit ledger: {err}") from err
    dispatched: dict[str, list[float]] = defaultdict(list)
    for customer, missed_at, dispatched_at in rows:
        if start <= missed_at < end:
            misses[customer].append((float(missed_at), 1.0))
        dispatched[customer].append(float(dispatched_at))
    return misses, dispatched


def cross_check(customer: str, ledger: list[tuple[float, float]], metric: list[tuple[float, float]],
                metric_exact: bool, dispatched: list[float] | None, start: int, end: int,
                scrape_interval: float) -> list[str]:
    """Review items when the ledger and the metrics disagree about the month's misses."""
    if dispatched is None and metric_exact:
        mine, theirs = sorted(t for t, _ in ledger), sorted(t for t, _ in metric)
        if mine != theirs:
            return [f"notifications: the audit ledger has {len(mine)} missed deadline(s) in the month, "
                    f"threenines_notification_deadline_missed_timestamp_seconds{{customer=\"{customer}\"}} shows "
                    f"{len(theirs)} (instants differ: {sorted(set(mine) ^ set(theirs))[:5]}): check the ledger file "
                    "and the exporter that wrote it"]
        return []
    late = dispatched or []
    inside = [t for t in late if start < t <= end]
    near_edge = sum(1 for t in late if abs(t - start) <= scrape_interval or abs(t - end) <= scrape_interval)
    by_metric = sum(count for _, count in metric)
    by_ledger = len(inside) if dispatched is not None else sum(count for _, count in ledger)
    if abs(by_ledger - by_metric) > near_edge:
        return [f"notifications: the audit ledger has {by_ledger:g} late first dispatch(es) in the month, "
                f"threenines_notification_deadline_missed_total{{customer=\"{customer}\"}} rose by {by_metric:g}: "
                "check the ledger file and the exporter that wrote it"]
    return []
