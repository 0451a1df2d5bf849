"""Missed notification deadlines from the exporter's audit ledger (SQLite, read-only), cross-checked against
`threenines_notification_deadline_missed_total`.

The ledger (threenines.audit.AuditLedger) records every Alertmanager dispatch; the notification that counts
for an outage is its `first = 1` row, and `late = 1` when its delay exceeded the customer's deadline. A miss
happened when the deadline passed: `determined_at + deadline`, exact to the second, so the ledger puts it on
the contract day it belongs to (the metric only shows it at the scrape after the late dispatch arrived).

The metric rises when the late dispatch arrives, so both count the same events by `dispatched_at`: per
customer, the ledger's late first dispatches in (start, end] must equal the metric's increase in the month,
except for dispatches within one scrape interval of a month edge (the metric sees them at the next scrape).
Any other difference goes to review, never silently resolved.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from pathlib import Path


def read_misses(path: str | Path, start: int, end: int) -> tuple[dict[str, list[tuple[float, float]]],
                                                                 dict[str, list[float]]]:
    """(misses by deadline moment in [start, end), late dispatch times around (start, end]) per customer."""
    file = Path(path)
    if not file.is_file():
        raise OSError(f"{path}: no such audit ledger (threenines serve --audit-ledger writes it)")
    uri = f"file:{file.resolve()}?mode=ro"
    try:
        with sqlite3.connect(uri, uri=True) as db:
            rows = db.execute(
                "SELECT customer, determined_at + deadline, dispatched_at FROM dispatches "
                "WHERE first = 1 AND late = 1 AND determined_at IS NOT NULL AND deadline IS NOT NULL "
                "AND ((determined_at + deadline >= ? AND determined_at + deadline < ?) "
                "OR (dispatched_at > ? AND dispatched_at <= ?))", (start, end, start - 86400, end + 86400)
            ).fetchall()
    except sqlite3.Error as err:
        raise OSError(f"{path}: cannot read the audit ledger's dispatches table: {err}") from err
    misses: dict[str, list[tuple[float, float]]] = defaultdict(list)
    dispatched: dict[str, list[float]] = defaultdict(list)
    for customer, missed_at, dispatched_at in rows:
        if start <= missed_at < end:
            misses[customer].append((float(missed_at), 1.0))
        dispatched[customer].append(float(dispatched_at))
    return misses, dispatched


def cross_check(customer: str, dispatched: list[float], metric: list[tuple[float, float]], start: int, end: int,
                scrape_interval: float) -> list[str]:
    """Review items when the ledger and the metric disagree about the month's late dispatches."""
    inside = [t for t in dispatched if start < t <= end]
    near_edge = sum(1 for t in dispatched if abs(t - start) <= scrape_interval or abs(t - end) <= scrape_interval)
    by_metric = sum(count for _, count in metric)
    if abs(len(inside) - by_metric) > near_edge:
        return [f"notifications: the audit ledger has {len(inside)} late first dispatch(es) in the month, "
                f"threenines_notification_deadline_missed_total{{customer=\"{customer}\"}} rose by {by_metric:g}: "
                "check the ledger file and the exporter that wrote it"]
    return []
