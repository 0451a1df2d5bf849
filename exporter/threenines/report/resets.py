"""Exact counter increases across resets without reading a month of raw samples.

An exporter restart resets every counter of the fleet at once, so "only the series that reset get their raw
samples" would read the whole fleet's month at scrape resolution (for 5,000 customers at 60 s: ~900M
samples of JSON). Instead the resets are located server-side and only their hours are read:

    increase over (start, end] = (x @ end - x @ start) + Σ over drops of the value before the drop

because the telescoping sum `x @ end - x @ start` is exact except that each drop (a reset: the new value
counts from zero) subtracts the value it fell from. Drops are located by `resets()` over the month's days,
then over the hours of the days that had one; only those hours' samples are read.

A drop belongs to the piece (s, e] holding its later sample. `resets(x[e - s + 5m] @ e)` (C) counts the
drops whose two samples both lie in [s - 5m, e]; `resets(x[5m] @ s)` (T) those inside [s - 5m, s], which
belong to the piece before; C - T are the piece's drops whose earlier sample is at most 5 minutes before s
(the scrape straddling the edge is seen). A drop across a longer scrape gap over an edge (a restart) is in
no piece: the pieces' counts then fall short of the enclosing piece's, and that series is read at the
enclosing level instead (a day, or the month). Every read is checked against the counts.

Every query stays within MAX_QUERY_BYTES, VictoriaMetrics' default -search.maxQueryLen: an exporter restart
touching 10 customers made one `or` of 48 pieces 17,083 bytes long, which VictoriaMetrics refuses. The pieces
and customers are packed into as many queries as that takes. The `@` of each piece is inside resets(), which
VictoriaMetrics honours at any query time (it ignores `@` only on a bare range selector or subquery).
"""

from __future__ import annotations

import re
from collections import defaultdict
from itertools import pairwise

from threenines.report.promclient import MAX_QUERY_BYTES, PrometheusClient, pack_queries, parallel, promql_string

LabelKey = tuple[tuple[str, str], ...]
Piece = tuple[int, int]  # (s, e]: a window of the month; the month's first piece also holds x @ start
LEVELS = (86400, 3600)  # days, then hours
LOOKBACK = 300
TAG = "threenines_report_piece"
PIECES_PER_QUERY = 48
RAW_SAMPLES_PER_QUERY = 1_000_000
SELECTOR_BYTES = MAX_QUERY_BYTES // 4  # a customer selector's share: two of them per piece, and room to pack


def _selector(customers: set[str]) -> str:
    # re.escape writes `\-`, `\.`; PromQL strings take Go escapes, so the backslashes are escaped once more
    pattern = promql_string("|".join(re.escape(c) for c in sorted(customers)))
    return '{customer=~"' + pattern + '"}'


def _customer(labels: LabelKey) -> str:
    return dict(labels).get("customer", "")


def _range(piece: Piece) -> str:
    s, e = piece
    return f"[{e - s + LOOKBACK}s] @ {e}"  # [s - 5m, e]: Prometheus 2.x ranges include the left edge


def _split(piece: Piece, size: int) -> list[Piece]:
    s, e = piece
    return [(a, min(a + size, e)) for a in range(s, e, size)]


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _customer_parts(customers: list[str], per_query: int) -> list[list[str]]:
    """Customers in parts of at most per_query whose selector stays within SELECTOR_BYTES."""
    out: list[list[str]] = []
    for part in _chunks(customers, per_query):
        current: list[str] = []
        for customer in part:
            if current and len(_selector({*current, customer}).encode()) > SELECTOR_BYTES:
                out.append(current)
                current = []
            current.append(customer)
        if current:
            out.append(current)
    return out


def _count_resets(client: PrometheusClient, metric: str, parent: Piece, series: set[LabelKey], size: int,
                  scrape_interval: float, budget: int) -> dict[LabelKey, dict[Piece, float]]:
    """The drops (C - T) of these series in each `size` piece of parent, where any."""
    pieces = _split(parent, size)
    customers = sorted({_customer(labels) for labels in series})
    per_customer = (parent[1] - parent[0] + LOOKBACK) / scrape_interval * len(series) / len(customers)
    per_query = max(1, int(budget // max(per_customer, 1.0)))
    out: dict[LabelKey, dict[Piece, float]] = defaultdict(lambda: defaultdict(float))
    queries = []
    for part in _customer_parts(customers, per_query):
        sel = _selector(set(part))
        queries += pack_queries([
            f'label_replace(resets({metric}{sel}{rng}) > 0, "{TAG}", "{sign}{p[0]}:{p[1]}", "", "")'
            for p in pieces for sign, rng in (("+", _range(p)), ("-", f"[{LOOKBACK}s] @ {p[0]}"))],
            2 * PIECES_PER_QUERY)
    answers = parallel(client, {str(i): (lambda q=q: client.vector(q, parent[1])) for i, q in enumerate(queries)})
    for answer in answers.values():
        for labels, count in answer.items():
            lab = dict(labels)
            tag = lab.pop(TAG)
            key = tuple(sorted(lab.items()))
            s, e = tag[1:].split(":")
            if key in series:
                out[key][(int(s), int(e))] += count if tag[0] == "+" else -count
    return {key: {p: n for p, n in found.items() if n} for key, found in out.items()}


def _drops(samples: list[tuple[float, float]], piece: Piece) -> tuple[float, int]:
    """Σ of the values before each drop, and the number of drops, of the piece's drops (later sample in it)."""
    total, drops = 0.0, 0
    for (_, previous), (t, value) in pairwise(samples):
        if t > piece[0] and value < previous:
            total += previous
            drops += 1
    return total, drops


def corrections(client: PrometheusClient, metric: str, month_resets: dict[LabelKey, float], start: int, end: int,
                scrape_interval: float, budget: int) -> tuple[dict[LabelKey, float], set[LabelKey]]:
    """For series with resets in the month (and samples at both edges): the amount to add to
    `x @ end - x @ start`. Series whose drops could not all be placed in the month's pieces are returned
    apart (the caller reads their month of raw samples)."""
    # month_resets counted [start - 5m, end]; the drops inside [start - 5m, start] are before the month
    customers = sorted({_customer(labels) for labels in month_resets})
    before: dict[LabelKey, float] = {}
    for part in _customer_parts(customers, len(customers) or 1):
        before.update(client.vector(f"resets({metric}{_selector(set(part))}[{LOOKBACK}s] @ {start}) > 0", start))
    located: dict[LabelKey, list[tuple[Piece, float]]] = {labels: [((start, end), n - before.get(labels, 0))]
                                                          for labels, n in month_resets.items()}
    narrowable = {(labels, (start, end)) for labels in located}  # pieces the last level narrowed (or the month)
    for size in LEVELS:
        parents: dict[Piece, set[LabelKey]] = defaultdict(set)
        for labels, piece in narrowable:
            if piece[1] - piece[0] > size:
                parents[piece].add(labels)
        counted: dict[LabelKey, dict[Piece, float]] = defaultdict(dict)
        for parent, series in parents.items():
            for labels, found in _count_resets(client, metric, parent, series, size, scrape_interval,
                                               budget).items():
                counted[labels].update(found)
        narrowed: set[tuple[LabelKey, Piece]] = set()
        for labels, pieces in located.items():
            refined: list[tuple[Piece, float]] = []
            for piece, n in pieces:
                if labels not in parents.get(piece, ()):
                    refined.append((piece, n))
                    continue
                inside = {p: c for p, c in counted.get(labels, {}).items() if piece[0] <= p[0] and p[1] <= piece[1]}
                if sum(inside.values()) == n:  # every drop placed in a sub-piece: narrow
                    refined.extend(inside.items())
                    narrowed.update((labels, p) for p in inside)
                else:  # a drop spans a sub-piece edge across a long scrape gap: read this piece
                    refined.append((piece, n))
            located[labels] = refined
        narrowable = narrowed
    unresolved = {labels for labels, pieces in located.items() if any(p == (start, end) for p, _ in pieces)}
    wanted: dict[Piece, set[LabelKey]] = defaultdict(set)
    for labels, pieces in located.items():
        if labels not in unresolved:
            for piece, _ in pieces:
                wanted[piece].add(labels)
    out: dict[LabelKey, float] = defaultdict(float)
    read: set[tuple[Piece, LabelKey]] = set()
    for piece, series in sorted(wanted.items()):
        per_series = max(1.0, (piece[1] - piece[0] + LOOKBACK) / scrape_interval)
        per_query = max(1, int(RAW_SAMPLES_PER_QUERY // per_series))
        for part in _customer_parts(sorted({_customer(labels) for labels in series}), per_query):
            raw = client.matrix(f"{metric}{_selector(set(part))}{_range(piece)}", piece[1])
            for labels, samples in raw.items():
                if labels in series:
                    read.add((piece, labels))
                    total, drops = _drops(samples, piece)
                    expected = dict(located[labels]).get(piece, 0)
                    if drops != expected:  # the raw samples disagree with resets(): do not guess
                        unresolved.add(labels)
                    out[labels] += total
    unresolved.update(labels for piece, series in wanted.items() for labels in series if (piece, labels) not in read)
    return {labels: out[labels] for labels in month_resets if labels not in unresolved}, unresolved
