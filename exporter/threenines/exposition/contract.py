"""Renders the exporter's state as Prometheus text exposition (docs/metrics.md).

The contract families are per target (~20 series per port, a million at 50k ports). prometheus_client
builds an object per sample and takes ~8 s of CPU for that; formatting lines directly from label strings
cached per target takes a fraction of it, and keeping the lines between renders leaves only what changed.
Small families (audit, power, process) still go through prometheus_client Collectors and are appended by
the service.

Names and help come from the catalogue (exposition/catalogue.py), read once at import: the per-sample f-strings
use module-level name strings, so a line costs what it did with the names spelled in it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from threenines import __version__
from threenines.config.inventory import Customer, TargetKey
from threenines.contract.engine import ContractChanges
from threenines.contract.machine import CustomerServiceView, TargetView
from threenines.exposition import catalogue as c
from threenines.exposition.encoding import Piece, Run
from threenines.exposition.port_lines import port_lines
from threenines.probes.ping_scheduler import LAG_BUCKETS, ProbeRecord


@dataclass(frozen=True)
class HealthView:
    reload_successful: bool
    reload_success_at: float
    lag_counts: tuple[int, ...]
    lag_sum: float
    in_flight: int
    ledger_writes: tuple[tuple[str, int, int], ...]  # (ledger, ok, error)
    render_seconds: float
    wire: str = "native"  # the prober's wire: "native" (C) or "python" (the reference; not built, or forced)
    ledger_recovery_writes: tuple[tuple[str, str, int, int], ...] = ()  # (ledger, kind, ok, error)
    ledger_pending: tuple[tuple[str, str, int], ...] = ()  # (ledger, kind, writes kept in memory)
    unmatched_replies: int = 0  # echo replies to no request in flight (the wires count them)


@dataclass(frozen=True)
class ExporterChanges:
    """What the loop publishes for the renderer: contract and probe views that changed, plus small state.

    Published at each tick and merged until a scrape renders them, so a render applies every change in order
    however many ticks passed. Layouts are set when the inventory (re)loads.
    """

    contract: ContractChanges
    probes: dict[int, ProbeRecord]  # by slot: the port's index in the probe layout last set (ScheduledPortView)
    probe_layout: tuple[TargetKey, ...] | None
    customers: tuple[Customer, ...]
    health: HealthView
    # (customer, service, reason, active) for every customer/service the exclusions ledger names.
    exclusions: tuple[tuple[str, str, str, bool], ...] = ()

    def merge(self, newer: ExporterChanges) -> ExporterChanges:
        """These changes followed by `newer`'s. Takes over (and updates) this object's dicts."""
        old, new = self.contract, newer.contract
        old.targets.update(new.targets)
        old.services.update(new.services)
        probes = newer.probes  # a new layout comes with every record, by its slots; these were by the old one's
        if newer.probe_layout is None:
            probes = self.probes
            probes.update(newer.probes)
        contract = ContractChanges(
            new.taken_at,
            new.layout if new.layout is not None else old.layout,
            new.service_layout if new.service_layout is not None else old.service_layout,
            old.targets, old.services, new.accounting_start)
        probe_layout = newer.probe_layout if newer.probe_layout is not None else self.probe_layout
        return ExporterChanges(contract, probes, probe_layout, newer.customers, newer.health,
                               newer.exclusions)


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def labels(**pairs: str) -> str:
    return "{" + ",".join(f'{name}="{escape(value)}"' for name, value in pairs.items()) + "}"


def number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


# Slots (lines of one family) per piece. A piece is rejoined, and its gzip segment made again, only when one of its
# lines changed; the probe families are laid out in schedule order (serve/process.py), so the ports probed between
# two scrapes fill a few neighbouring pieces, and the pieces at the two ends of that run are made again for the
# few lines they changed. 256 lines (~20 kB) compress almost as well as one stream (17.0 times on a 16,700-port
# exposition, against 17.5 with 512 lines and 17.8 for one stream) and halve that waste.
PIECE_SLOTS = 256


def _piece_count(slots: int) -> int:
    return max(1, -(-slots // PIECE_SLOTS))  # the first piece holds the header, even with no slots


class _Families:
    """Families with one line per slot (target, port or customer service), rejoined a piece at a time and only
    when a line in the piece changed."""

    def __init__(self, families: tuple[c.Family, ...]) -> None:
        self.families = families
        self.headers = [family.header for family in families]
        self.slots: dict[tuple[str, ...], int] = {}
        self.lines: list[list[str]] = [[] for _ in families]
        self.pieces: list[list[Piece]] = [[] for _ in families]
        self.dirty: list[set[int]] = [set() for _ in families]
        self.runs: list[Run] = [Run(()) for _ in families]  # each family's pieces, kept while they are
        self.lay_out(())

    def lay_out(self, keys: tuple[tuple[str, ...], ...]) -> None:
        old_slots, old_lines = self.slots, self.lines
        self.slots = {key: index for index, key in enumerate(keys)}
        self.lines = [["" for _ in keys] for _ in self.families]
        for key, index in self.slots.items():
            old = old_slots.get(key)
            if old is not None:
                for family, lines in enumerate(old_lines):
                    self.lines[family][index] = lines[old]
        count = _piece_count(len(keys))
        self.pieces = [[Piece(b"")] * count for _ in self.families]
        self.dirty = [set(range(count)) for _ in self.families]
        self.runs = [Run(()) for _ in self.families]  # every piece is dirty: made again at the next render

    def set(self, key: tuple[str, ...], lines: tuple[str, ...]) -> None:
        index = self.slots.get(key)
        if index is None:
            return  # left the inventory after this view was taken
        for family, line in enumerate(lines):
            column = self.lines[family]
            if column[index] != line:
                column[index] = line
                self.dirty[family].add(index // PIECE_SLOTS)

    def render(self) -> list[Run]:
        out: list[Run] = []
        for family, header in enumerate(self.headers):
            pieces, dirty = self.pieces[family], self.dirty[family]
            if dirty:
                lines = self.lines[family]
                for piece in dirty:
                    text = "".join(lines[piece * PIECE_SLOTS:(piece + 1) * PIECE_SLOTS])
                    pieces[piece] = Piece(((header if piece == 0 else "") + text).encode())
                dirty.clear()
                self.runs[family] = Run(pieces)
            out.append(self.runs[family])
        return out


class _PortFamilies:
    """The six per-port probe families, formatted from the ports' packed records when a render needs a piece.

    Every probe changes its port's lines (the count and the time at least), so comparing lines saves nothing:
    a record that arrives is only stored, and a render formats the pieces that received one in one pass over
    neighbouring records (exposition/port_lines.py, in C when built). The ports are laid out in the order they
    are probed (serve/process.py), so the ports probed since the last render fill a few pieces. Formatting when a
    record arrived cost ~13 µs a probe at 16,700 ports (the port's objects out of the cache by then).

    A piece keeps the records it was last made from, per family: a family whose lines those records and the new
    ones write alike keeps its piece (and its gzip segment). An answered probe leaves failures, errors and loss
    as they were, so in steady state three of the six families are formatted and compressed again.
    """

    def __init__(self) -> None:
        self.slots: dict[TargetKey, int] = {}
        self.labels: list[str] = []
        self.records: list[ProbeRecord | None] = []
        self.rendered: list[ProbeRecord | None] = []  # the records the pieces were made from
        self.pieces: list[list[Piece]] = [[] for _ in _PROBE_FAMILIES]
        self.runs: list[Run] = [Run(pieces) for pieces in self.pieces]
        self.dirty: set[int] = set()
        self.fresh: set[int] = set()  # pieces to make whole: laid out anew, so `rendered` says nothing of them

    def lay_out(self, keys: tuple[TargetKey, ...], own: dict[str, str]) -> None:
        old_slots, old_records = self.slots, self.records
        self.slots = {key: index for index, key in enumerate(keys)}
        self.labels = [labels(**own, customer=key.customer, target=key.target) for key in keys]
        self.records = [None] * len(keys)
        for key, index in self.slots.items():
            old = old_slots.get(key)
            if old is not None:
                self.records[index] = old_records[old]
        self.rendered = [None] * len(keys)
        count = _piece_count(len(keys))
        self.pieces = [[Piece(b"")] * count for _ in _PROBE_FAMILIES]
        self.runs = [Run(pieces) for pieces in self.pieces]
        self.dirty = set(range(count))
        self.fresh = set(range(count))

    def set(self, records: dict[int, ProbeRecord]) -> None:
        """Store the records that arrived (one per port probed since the last render, by slot in the layout last
        set), to be formatted at render."""
        stored, dirty = self.records, self.dirty
        for index, record in records.items():
            stored[index] = record
            dirty.add(index // PIECE_SLOTS)

    def render(self) -> list[Run]:
        changed = [False] * len(_PROBE_FAMILIES)
        for piece in self.dirty:
            start, end = piece * PIECE_SLOTS, (piece + 1) * PIECE_SLOTS
            records = self.records[start:end]
            texts = port_lines(_PROBE_NAMES, self.labels[start:end], records,
                               None if piece in self.fresh else self.rendered[start:end])
            for family, text in enumerate(texts):
                if text is not None:  # None: this family's lines are those of the piece already made
                    self.pieces[family][piece] = Piece(_PROBE_HEADERS[family] + text if piece == 0 else text)
                    changed[family] = True
            self.rendered[start:end] = records
        self.dirty.clear()
        self.fresh.clear()
        for family, pieces in enumerate(self.pieces):
            if changed[family]:
                self.runs[family] = Run(pieces)
        return self.runs


class SnapshotRenderer:
    """Applies published changes and renders the exposition as a list of byte chunks (one per family).

    Per-target families keep one formatted line per target; a render formats only the lines that changed
    since the last one and joins only the families they are in, so its cost follows the probes since the
    last scrape, not the size of the fleet. Used from one thread at a time (the service holds a lock).

    `vantage` (serve --vantage, exporter.vantage) labels every contract family of a replica exporter: it is
    part of the cached label strings, so it costs nothing per scrape (docs/design.md, "Replica exporters").
    """

    def __init__(self, vantage: str = "") -> None:
        self._vantage = {"vantage": vantage} if vantage else {}
        self._own = labels(**self._vantage) if vantage else ""
        self._targets = _Families(_TARGET_FAMILIES)
        self._probes = _PortFamilies()
        self._services = _Families(_SERVICE_FAMILIES)
        self._target_labels: dict[tuple[str, ...], str] = {}
        self._service_labels: dict[tuple[str, ...], str] = {}
        self._customers: tuple[Customer, ...] | None = None
        self._customer_chunk = Run(())
        self._accounting_start = 0.0

    def apply(self, changes: ExporterChanges) -> None:
        contract = changes.contract
        self._accounting_start = contract.accounting_start
        if contract.layout is not None:
            self._targets.lay_out(contract.layout)
            self._target_labels = {}
        if contract.service_layout is not None:
            self._services.lay_out(contract.service_layout)
            self._service_labels = {}
        if changes.probe_layout is not None:
            self._probes.lay_out(changes.probe_layout, self._vantage)
        for key, view in contract.targets.items():
            self._targets.set(key, self._target_lines(view))
        for group, service in contract.services.items():
            self._services.set(group, self._service_lines(service))
        self._probes.set(changes.probes)
        if changes.customers is not self._customers:
            self._customers = changes.customers
            out: list[str] = []
            _customers(out, changes.customers, self._vantage)
            self._customer_chunk = Run((Piece(("\n".join(out) + "\n").encode()),))

    def render(self, changes: ExporterChanges) -> list[Run]:
        """The exposition after `changes`: HELP/TYPE and samples, family by family, in runs of pieces (Piece.raw)
        that stay the same objects while their lines do."""
        self.apply(changes)
        out: list[str] = []
        _family(out, c.CUSTOMER_SERVICE_EXCLUDED,
                (f"{_EXCLUDED}{labels(**self._vantage, customer=cu, service=s, reason=r)} {'1' if on else '0'}"
                 for cu, s, r, on in changes.exclusions))
        _family(out, c.EXPORTER_ACCOUNTING_START_TIMESTAMP_SECONDS,
                [f"{c.EXPORTER_ACCOUNTING_START_TIMESTAMP_SECONDS}{self._own} {number(self._accounting_start)}"])
        _health(out, changes.health)
        tail = Run((Piece(("\n".join(out) + "\n").encode()),))
        return [*self._targets.render(), *self._services.render(), self._customer_chunk, *self._probes.render(),
                tail]

    def _target_lines(self, view: TargetView) -> tuple[str, ...]:
        n = self._target_labels.get(view.key)
        if n is None:
            n = self._target_labels[view.key] = labels(**self._vantage, customer=view.key[0],
                                                       service=view.key[1], target=view.key[2])
        return (  # in the order of _TARGET_FAMILIES
            f"{_UP}{n} {'1' if view.up else '0'}\n",
            f"{_KNOWN}{n} {'1' if view.known else '0'}\n",
            f"{_OUTAGE}{n} {view.outage_seconds!r}\n",
            f"{_UNKNOWN}{n} {view.unknown_seconds!r}\n",
            f"{_DETERMINED}{n} {float(view.determined_at or 0)!r}\n",
            f"{_OUTAGE_START}{n} {float(view.outage_start or 0)!r}\n",
        )

    def _service_lines(self, s: CustomerServiceView) -> tuple[str, ...]:
        group = (s.customer, s.service)
        n = self._service_labels.get(group)
        if n is None:
            n = self._service_labels[group] = labels(**self._vantage, customer=s.customer, service=s.service)
        return (  # in the order of _SERVICE_FAMILIES
            f"{_C_UP}{n} {'1' if s.up else '0'}\n",
            f"{_C_KNOWN}{n} {'1' if s.known else '0'}\n",
            f"{_C_OUTAGE}{n} {s.outage_seconds!r}\n",
            f"{_C_UNKNOWN}{n} {s.unknown_seconds!r}\n",
        )


# Families with one line per slot, in the order the _*_lines methods return their lines.
_TARGET_FAMILIES = (c.SERVICE_UP, c.SERVICE_KNOWN, c.SERVICE_OUTAGE_SECONDS_TOTAL, c.SERVICE_UNKNOWN_SECONDS_TOTAL,
                    c.SERVICE_DETERMINED_TIMESTAMP_SECONDS, c.SERVICE_OUTAGE_START_TIMESTAMP_SECONDS)
_SERVICE_FAMILIES = (c.CUSTOMER_SERVICE_UP, c.CUSTOMER_SERVICE_KNOWN, c.CUSTOMER_SERVICE_OUTAGE_SECONDS_TOTAL,
                     c.CUSTOMER_SERVICE_UNKNOWN_SECONDS_TOTAL)
_PROBE_FAMILIES = (c.PROBE_TOTAL, c.PROBE_FAILURES_TOTAL, c.PROBE_ERRORS_TOTAL, c.PROBE_RTT_SECONDS,
                   c.PROBE_LOSS_RATIO, c.PROBE_LAST_TIMESTAMP_SECONDS)
# The names as plain module strings for the per-sample f-strings (a global read, no attribute lookup per line).
_UP, _KNOWN, _OUTAGE, _UNKNOWN, _DETERMINED, _OUTAGE_START = (f.name for f in _TARGET_FAMILIES)
_C_UP, _C_KNOWN, _C_OUTAGE, _C_UNKNOWN = (f.name for f in _SERVICE_FAMILIES)
_PROBE_NAMES = tuple(f.name for f in _PROBE_FAMILIES)
_PROBE_HEADERS = tuple(f.header.encode() for f in _PROBE_FAMILIES)
_EXCLUDED = c.CUSTOMER_SERVICE_EXCLUDED.name


def _family(out: list[str], family: c.Family, lines: Iterable[str]) -> None:
    out.append(family.header[:-1])  # the lines are joined with "\n"
    out.extend(lines)


def _customers(out: list[str], customers: tuple[Customer, ...], own: dict[str, str]) -> None:
    _family(out, c.CUSTOMER_INFO,
            (f"{c.CUSTOMER_INFO}" + labels(**own, customer=cu.id, name=cu.name, site=cu.site, timezone=cu.timezone,
                                           contacts_version=cu.contacts.version) + " 1"
             for cu in customers))
    _family(out, c.CUSTOMER_OBJECTIVE_RATIO,
            (f"{c.CUSTOMER_OBJECTIVE_RATIO}{labels(**own, customer=cu.id, service=s)} {cu.objective!r}"
             for cu in customers for s in cu.services))
    _family(out, c.CUSTOMER_NOTIFICATION_DEADLINE_SECONDS,
            (f"{c.CUSTOMER_NOTIFICATION_DEADLINE_SECONDS}{labels(**own, customer=cu.id)} "
             f"{float(cu.notification_deadline)!r}" for cu in customers))
    _family(out, c.PORT_INFO,
            (f"{c.PORT_INFO}{labels(**own, customer=cu.id, target=p.id, address=p.address)} 1"
             for cu in customers for p in cu.ports))


def _health(out: list[str], health: HealthView) -> None:
    _family(out, c.CONFIG_LAST_RELOAD_SUCCESSFUL,
            [f"{c.CONFIG_LAST_RELOAD_SUCCESSFUL} {'1' if health.reload_successful else '0'}"])
    _family(out, c.CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS,
            [f"{c.CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS} {number(health.reload_success_at)}"])
    lag = c.PROBE_SCHEDULE_LAG_SECONDS
    buckets = [f'{lag}_bucket{{le="{"+Inf" if bound == math.inf else repr(float(bound))}"}} {cumulative}'
               for bound, cumulative in c.cumulative_buckets(LAG_BUCKETS, health.lag_counts)]
    buckets.append(f"{lag}_count {sum(health.lag_counts)}")
    buckets.append(f"{lag}_sum {number(health.lag_sum)}")
    _family(out, lag, buckets)
    _family(out, c.PROBES_IN_FLIGHT, [f"{c.PROBES_IN_FLIGHT} {health.in_flight}"])
    _family(out, c.PROBE_UNMATCHED_REPLIES_TOTAL, [f"{c.PROBE_UNMATCHED_REPLIES_TOTAL} {health.unmatched_replies}"])
    _family(out, c.LEDGER_WRITES_TOTAL,
            [f'{c.LEDGER_WRITES_TOTAL}{{ledger="{name}",result="{result}"}} {count}'
             for name, ok, failed in health.ledger_writes for result, count in (("ok", ok), ("error", failed))])
    _family(out, c.LEDGER_RECOVERY_WRITES_TOTAL,
            [f'{c.LEDGER_RECOVERY_WRITES_TOTAL}{{ledger="{name}",kind="{kind}",result="{result}"}} {count}'
             for name, kind, ok, failed in health.ledger_recovery_writes
             for result, count in (("ok", ok), ("error", failed))])
    _family(out, c.LEDGER_PENDING_WRITES,
            [f'{c.LEDGER_PENDING_WRITES}{{ledger="{name}",kind="{kind}"}} {count}'
             for name, kind, count in health.ledger_pending])
    _family(out, c.METRICS_RENDER_SECONDS, [f"{c.METRICS_RENDER_SECONDS} {number(health.render_seconds)}"])
    _family(out, c.BUILD_INFO, [f'{c.BUILD_INFO}{{version="{__version__}",wire="{health.wire}"}} 1'])
