"""`threenines status` with replica exporters (vantages: docs/design.md, "Replica exporters"; docs/ha.md).

Each replica is read on its own: its /metrics for the state now, its ledgers for the outages, their notification
and the month so far. A replica whose exporter does not answer (within --timeout, all asked at once) or whose
ledgers cannot be read is shown as such, with one line saying why, and the others still count.

The merge is the contract's rule from its one home, threenines.contract.vantages.merge_views: a second of a
customer's service is outage when every vantage with evidence says outage (`merge: all`, the default, or the
exclusions file's policy.merge) or when any does (`merge: any`); unknown only when no vantage has evidence.

* **Now**: a vantage has evidence when its exporter answers and exports the service as known; unknown there, a
  replica that does not answer and one not asked (no --exporter) have none.
* **The month so far and its outages**: a vantage says outage in its ledger's outage runs minus their gaps. It has
  no evidence before its ledger knew any target of the service, in those gaps, after its last heartbeat while its
  exporter does not answer (its ledger shows nothing after it), and from its accounting start to its process's
  start (to a second) when it answers: the downtime before its latest restart, resumed from its last heartbeat. A
  ledger does not record the downtime of earlier restarts outside an outage, nor stale probes outside one: that
  time stays the replica's evidence here, so under `merge: all` it can hide another replica's outage seconds.
  The statement (`threenines report --ledger a=… --ledger b=…`) takes them from Prometheus: it is the bill.
* **A merged outage** starts where the rule first holds (under `all`, with both vantages having evidence, where
  the later one failed) and ends where it stops holding; each vantage's share and runs are listed, and the
  earliest first failed probe among them (what the customer's message states).
* **Notification**: the page carries one determined_at (the earliest determination among the vantages that
  paged) and the audit and the notices are keyed by it (customer, service, target, determined_at), so an outage's
  notices are looked up under the determination of every vantage run behind it, in every replica's ledgers. One
  replica sends each notice and pushes the acceptance to its peer (docs/alerting.md, "HA"): a contact counts as
  delivered when any replica's ledger holds its acceptance (a replica killed before the push lacks it), and the
  outage as notified when every contact is.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import re
import sys
import urllib.parse
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from threenines.commands.status_sources import (
    ContactDelivery,
    ExporterError,
    Http,
    Samples,
    contact_line,
    contacts,
    fetch,
    http_options,
    notification_words,
    samples,
    shown_url,
)

if TYPE_CHECKING:
    from threenines.config.inventory import Customer, TargetKey
    from threenines.contract.vantages import View
    from threenines.intervals import Interval
    from threenines.ledgers.audit import AuditLedgerReader, Dispatch, Miss
    from threenines.ledgers.delivery import Delivery, DeliveryLedgerReader
    from threenines.report.collect import Outage

_NAMED = re.compile(r"^([^=/]+)=(.+)$")  # VANTAGE=VALUE, as `report --ledger`: a vantage name has no "/"
PROCESS_START = "process_start_time_seconds"  # prometheus_client's process collector, in every exporter


@dataclass(frozen=True)
class ReplicaSpec:
    vantage: str
    exporter: str | None  # its URL, None when not given
    state_dir: Path | None


def _instance(url: str) -> str:
    """An unnamed exporter's vantage: its host:port, the `instance` Prometheus gives an exporter without one."""
    return urllib.parse.urlsplit(url).netloc.rpartition("@")[2] or url


def replica_specs(exporters: list[str], state_dirs: list[str]) -> list[ReplicaSpec] | None:
    """The replicas of `--exporter [VANTAGE=]URL` and `--state-dir [VANTAGE=]DIR` (repeatable; a DIR may be a quoted
    glob), or None for one exporter: at most one of each, neither named nor a glob (the single invocation)."""
    values = [*exporters, *state_dirs]
    if (len(exporters) <= 1 and len(state_dirs) <= 1 and not any(_NAMED.match(v) for v in values)
            and not any(glob.has_magic(v) for v in state_dirs)):
        return None
    urls: dict[str, str] = {}
    for value in exporters:
        named = _NAMED.match(value)
        name, url = (named.group(1), named.group(2)) if named else (_instance(value), value)
        if name in urls:
            raise ValueError(f"--exporter {shown_url(value)}: two exporters for vantage {name!r}; name each: "
                             "--exporter VANTAGE=URL")
        urls[name] = url
    dirs: dict[str, Path] = {}
    for value in state_dirs:
        named = _NAMED.match(value)
        name, pattern = (named.group(1), named.group(2)) if named else (None, value)
        paths = [p for p in sorted(glob.glob(pattern)) if Path(p).is_dir()] if glob.has_magic(pattern) else [pattern]
        if not paths:
            raise ValueError(f"--state-dir {value}: the pattern matches no directory")
        if name is not None and len(paths) > 1:
            raise ValueError(f"--state-dir {value}: one vantage name for {len(paths)} directories; name each: "
                             "--state-dir VANTAGE=DIR")
        for path in paths:
            vantage = name if name is not None else Path(path).resolve().name
            if vantage in dirs:
                raise ValueError(f"--state-dir {value}: two state directories for vantage {vantage!r} "
                                 f"({dirs[vantage]} and {path}); one per vantage, named by the directory or with "
                                 "--state-dir VANTAGE=DIR")
            dirs[vantage] = Path(path)
    # A replica's ledgers may live on a host this one cannot read (an exporter alone is fine), but a state
    # directory whose name matches no exporter is a pair named apart: it would be merged as a vantage of its own.
    stray = sorted(set(dirs) - set(urls)) if urls else []
    if stray:
        raise ValueError(f"--state-dir {dirs[stray[0]]}: vantage {stray[0]!r} has no --exporter (exporters: "
                         f"{', '.join(sorted(urls))}): name each replica's pair alike, --exporter VANTAGE=URL "
                         "--state-dir VANTAGE=DIR")
    return [ReplicaSpec(v, urls.get(v), dirs.get(v)) for v in sorted(set(urls) | set(dirs))]


# -- what the command prints (JSON: the same tree) ------------------------------------------------------------


@dataclass
class Replica:
    vantage: str
    exporter: str | None  # the URL as given (without any user:password); None: not asked
    exporter_error: str | None  # why it did not answer; None when it did or was not asked
    exported_vantages: list[str]  # the `vantage` label on its series (serve --vantage), when it answered
    state_dir: str | None  # None: not given, so not in the month so far
    ledger_error: str | None  # why a ledger there could not be read
    last_heartbeat: str | None  # its outage ledger's: the exporter ran, with everything before on disk, until then
    accounting_start: str | None  # from /metrics: its process counts from there (the heartbeat it resumed from)
    process_start: str | None


@dataclass
class VantageNow:
    vantage: str
    state: str  # up | down | unknown | absent | unreachable | not asked
    evidence: bool  # counts in the merge: up, or down with the service known


@dataclass
class VantageMonth:
    """One vantage's own view of the month so far, as the merge takes it."""

    vantage: str
    outage_seconds: float
    no_evidence_seconds: float


@dataclass
class VantageRun:
    vantage: str
    target: str
    first_failed_at: str
    determined_at: str
    ended_at: str | None  # None: open in its ledger


@dataclass
class VantageShare:
    """What one vantage said during a merged outage (the seconds add up to the outage's)."""

    vantage: str
    outage_seconds: float
    up_seconds: float
    no_evidence_seconds: float
    runs: list[VantageRun]


@dataclass
class ReplicaContactDelivery(ContactDelivery):
    ledgers: list[str] = field(default_factory=list)  # the replicas whose delivery ledger shows this


@dataclass
class TargetNotification:
    target: str
    determined_at: str  # the determination the notices are keyed by (the page's), or the earliest of the runs'
    notification: str
    deliveries: list[ReplicaContactDelivery]


@dataclass
class MergedOutage:
    targets: list[str]
    start: str  # where the merge rule first holds
    end: str | None  # where it stops holding; None while it still holds
    first_failed_at: str  # the earliest first failed probe among the runs behind it
    seconds: float
    vantages: list[VantageShare]
    notifications: list[TargetNotification]


@dataclass
class MergedServiceStatus:
    service: str
    state: str  # merged now: up | down | unknown
    vantages: list[VantageNow]
    # None when no replica's outage ledger could be read
    month_outage_seconds: float | None
    month_unknown_seconds: float | None
    month_availability_ratio: float | None
    month_budget_left_seconds: float | None
    month_vantages: list[VantageMonth]  # the replicas whose ledgers the month merges
    open_outages: list[MergedOutage] = field(default_factory=list)
    ended_outages: list[MergedOutage] = field(default_factory=list)  # this month's


@dataclass
class MergedCustomerStatus:
    customer: str
    name: str
    timezone: str
    services: list[MergedServiceStatus]


@dataclass
class ReplicasStatus:
    merge: str  # all | any
    merge_from: str  # the exclusions file it came from, or "default"
    replicas: list[Replica]
    customers: list[MergedCustomerStatus]


# -- reading each replica ---------------------------------------------------------------------------------------


@dataclass
class _Read:
    spec: ReplicaSpec
    samples: Samples | None = None  # None: did not answer, or not asked
    exporter_error: str | None = None
    exported: set[str] = field(default_factory=set)
    ledger_error: str | None = None
    outages: Path | None = None  # its outage ledger, once found readable
    alive: float | None = None
    added: dict[TargetKey, float] | None = None
    delivery: DeliveryLedgerReader | None = None
    audit: AuditLedgerReader | None = None
    runs: dict[tuple[int, int], dict[tuple[str, str], list[Outage]]] = field(default_factory=dict)

    def value(self, name: str) -> float | None:
        series = (self.samples or {}).get(name, {})
        return next(iter(series.values()), None) if series else None

    def restart_gap(self) -> Interval | None:
        """From the heartbeat the running process resumed from to its start: nobody probed for this replica."""
        from threenines.exposition import catalogue

        accounting = self.value(str(catalogue.EXPORTER_ACCOUNTING_START_TIMESTAMP_SECONDS))
        started = self.value(PROCESS_START)
        if accounting is None or started is None:
            return None
        # The kernel states the boot time the start is computed from in whole seconds: the process started in
        # [started, started + 1 s). The later bound is taken: start-up and the first probe's phase outlast it.
        started += 1.0
        return (accounting, started) if accounting < started else None


def _ask(specs: list[ReplicaSpec], http: Http) -> dict[str, tuple[str | None, str | None]]:
    """Every exporter at once, so dead replicas cost one timeout, not one each: {vantage: (text, error)}."""
    asked = [s for s in specs if s.exporter is not None]

    def one(spec: ReplicaSpec) -> tuple[str | None, str | None]:
        assert spec.exporter is not None
        try:
            return fetch(spec.exporter, http), None
        except ExporterError as err:
            return None, err.why

    if not asked:
        return {}
    with ThreadPoolExecutor(max_workers=len(asked)) as pool:
        return dict(zip((s.vantage for s in asked), pool.map(one, asked), strict=True))


def _open_ledgers(read: _Read, stack: contextlib.ExitStack) -> None:
    from threenines.ledgers.audit import AuditLedgerReader
    from threenines.ledgers.delivery import DeliveryLedgerReader
    from threenines.ledgers.outages import OutageLedgerReader

    state_dir = read.spec.state_dir
    if state_dir is None:
        return
    problems = []
    outages = state_dir / "outages.sqlite"
    if not state_dir.is_dir():
        problems.append(f"{state_dir}: no such directory")
    elif not outages.is_file():
        problems.append(f"no outage ledger in {state_dir} (outages.sqlite): not an exporter's state directory")
    else:
        try:
            with OutageLedgerReader(outages) as ledger:
                read.alive, read.added = ledger.last_alive(), ledger.targets_added()
            read.outages = outages
        except OSError as err:
            problems.append(str(err))
    # An exporter older than these ledgers (or one that never notified) has none: nothing to read there.
    for name, reader in (("delivery", DeliveryLedgerReader), ("audit", AuditLedgerReader)):
        path = state_dir / f"{name}.sqlite"
        if read.outages is None or not path.is_file():
            continue
        try:
            setattr(read, name, stack.enter_context(reader(path)))
        except OSError as err:
            problems.append(str(err))
    read.ledger_error = "; ".join(problems) or None


def _runs(read: _Read, start: int, end: int, now: float) -> dict[tuple[str, str], list[Outage]] | None:
    from threenines.report.collect import outages_from_ledger

    if read.outages is None:
        return None
    if (start, end) not in read.runs:
        try:
            read.runs[(start, end)] = outages_from_ledger(read.outages, start, end, now)
        except OSError as err:
            read.ledger_error, read.outages = str(err), None
            return None
    return read.runs[(start, end)]


# -- the merge ------------------------------------------------------------------------------------------------


def _now_state(read: _Read, customer: str, service: str) -> VantageNow:
    from threenines.exposition import catalogue

    vantage = read.spec.vantage
    if read.spec.exporter is None:
        return VantageNow(vantage, "not asked", False)
    if read.samples is None:
        return VantageNow(vantage, "unreachable", False)
    key = (("customer", customer), ("service", service))
    up = read.samples.get(str(catalogue.CUSTOMER_SERVICE_UP), {})
    known = read.samples.get(str(catalogue.CUSTOMER_SERVICE_KNOWN), {})
    if key not in up:
        return VantageNow(vantage, "absent", False)
    if up[key] == 0:
        return VantageNow(vantage, "down", known.get(key) != 0)
    if known.get(key) == 0:
        return VantageNow(vantage, "unknown", False)
    return VantageNow(vantage, "up", True)


def _merged_now(states: list[VantageNow], now: float, policy: str) -> str:
    """The merge rule at this instant: each vantage's state as a one-second view, merged where the rule lives."""
    from threenines.contract.vantages import View, merge_views

    instant = (now, now + 1.0)
    views = {s.vantage: View((instant,) if s.evidence and s.state == "down" else (),
                             () if s.evidence else (instant,)) for s in states}
    merged = merge_views(views, instant, policy)
    return "down" if merged.outage else "unknown" if merged.unknown else "up"


def _view(read: _Read, customer: str, service: str, runs: list[Outage], window: Interval) -> View:
    """One vantage's evidence for the service in window, from its ledger (and whether its exporter answered)."""
    from threenines.contract.vantages import View
    from threenines.intervals import clip, subtract

    begin, now = window
    blind: list[Interval] = []
    if read.added is not None:
        known = [at for key, at in read.added.items() if (key.customer, key.service) == (customer, service)]
        blind.append((begin, min(known)) if known else window)
    for run in runs:
        blind += subtract([(run.start, run.end)], run.outage_pieces())
    if read.samples is None:  # dead, or not asked: its ledger says nothing after its last heartbeat
        blind.append((read.alive, now) if read.alive is not None else window)
    elif (gap := read.restart_gap()) is not None:
        blind.append(gap)
    no_evidence = clip(blind, window)
    said = subtract(clip((p for run in runs for p in run.outage_pieces()), window), no_evidence)
    return View(tuple(said), tuple(no_evidence))


def _notification(reads: list[_Read], customer: str, service: str, target: str, determinations: list[float],
                  deadline: float, now: float, iso: Callable[[float], str]) -> TargetNotification:
    from threenines.ledgers.audit import outage_key

    keys = sorted({outage_key(customer, service, target, d) for d in determinations})
    found: dict[tuple[str, str, str, float], tuple[str, Delivery]] = {}
    firsts: list[Dispatch] = []
    missed_in: dict[tuple[str, tuple[str, str, str, float]], Miss] = {}  # two keys within a millisecond: one miss
    for read in reads:
        for key in keys:
            if read.delivery is not None:
                for d in read.delivery.for_outage(key):  # two keys within a millisecond find the same notice
                    found[(read.spec.vantage, d.event, d.contact, d.determined_at)] = (read.spec.vantage, d)
            if read.audit is not None:
                first, miss = read.audit.first_dispatch(key), read.audit.miss(key)
                firsts += [first] if first is not None else []
                if miss is not None:
                    missed_in[(read.spec.vantage, miss.outage)] = miss
    by_notice: dict[tuple[str, str], list[tuple[str, Delivery]]] = defaultdict(list)
    for vantage, d in found.values():
        by_notice[(d.event, d.contact)].append((vantage, d))
    chosen: list[tuple[Delivery, list[str]]] = []
    for _, rows in sorted(by_notice.items(), key=lambda item: (item[0][0] != "firing", item[0][1])):
        # The acceptance any replica holds (the earliest); else the notice tried most.
        _, best = min(rows, key=lambda r: (r[1].accepted_at is None, r[1].accepted_at or 0.0, -r[1].attempts, r[0]))
        alike = sorted({v for v, d in rows if (d.accepted_at is not None) == (best.accepted_at is not None)})
        chosen.append((best, alike))
    firing = [d for d, _ in chosen if d.event == "firing"]
    determined = min(d.determined_at for d in firing) if firing else min(determinations)
    on_time = bool(firing) and all(d.accepted_at is not None and d.accepted_at <= d.determined_at + deadline
                                   for d in firing)
    misses = sorted(missed_in.items())
    missed = None if on_time or not misses else min((m for _, m in misses), key=lambda m: m.deadline_at)
    if not chosen and not any(read.audit is not None for read in reads):
        text = "unknown (no audit ledger)"
    else:
        first = min(firsts, key=lambda f: f.dispatched_at) if firsts else None
        text = notification_words(first, missed, [d for d, _ in chosen], determined, deadline, now, iso)
        if on_time and misses:
            # A replica decides its deadline under its own determination; the page's may be the other replica's.
            text += "; " + "; ".join(f"replica {v}'s audit ledger records a miss ({m.reason}) under the "
                                     f"determination {iso(m.determined_at)}" for (v, _), m in misses)
    shown = contacts([d for d, _ in chosen], deadline, now, missed is not None, iso)
    return TargetNotification(target, iso(determined), text, [
        ReplicaContactDelivery(**asdict(c), ledgers=alike) for c, (_, alike) in zip(shown, chosen, strict=True)])


def _merged_outages(views: dict[str, View], runs: dict[str, list[Outage]], outage: list[Interval],
                    month: Interval, notify: Callable[[str, list[float]], TargetNotification],
                    iso: Callable[[float], str]) -> tuple[list[MergedOutage], list[MergedOutage]]:
    """The merged outage's stretches that overlap the month: (open ones, ended ones)."""
    from threenines.intervals import intersect, measure, merge

    opened: list[MergedOutage] = []
    ended: list[MergedOutage] = []
    for start, end in merge(outage):
        if end <= month[0]:
            continue
        behind = {v: [o for o in runs[v] if o.start < end and o.end > start] for v in views}
        shares = []
        for vantage, view in sorted(views.items()):
            said = measure(intersect(view.outage, [(start, end)]))
            up = measure(view.up((start, end)))
            shares.append(VantageShare(vantage, round(said, 3), round(up, 3), round(end - start - said - up, 3), [
                VantageRun(vantage, o.target, iso(o.start), iso(o.determined or o.start),
                           None if o.open else iso(o.end)) for o in behind[vantage]]))
        mine = [o for v in sorted(behind) for o in behind[v]]
        targets = sorted({o.target for o in mine})
        still = end >= month[1]
        merged = MergedOutage(
            targets, iso(start), None if still else iso(end), iso(min(o.start for o in mine)), round(end - start, 3),
            shares, [notify(t, [o.determined or o.start for o in mine if o.target == t]) for t in targets])
        (opened if still else ended).append(merged)
    return opened, ended


def _service(reads: list[_Read], customer: Customer, service: str, month: tuple[int, int], now: float, policy: str,
             iso: Callable[[float], str]) -> MergedServiceStatus:
    from threenines.contract.vantages import merge_views
    from threenines.intervals import clip, measure
    from threenines.report.months import budget_seconds

    start, end = month
    states = [_now_state(read, customer.id, service) for read in reads]
    runs = {read.spec.vantage: got.get((customer.id, service), []) for read in reads
            if (got := _runs(read, start, end, now)) is not None}
    if not runs:
        return MergedServiceStatus(service, _merged_now(states, now, policy), states, None, None, None, None, [])
    # Outages that began last month are merged from their start: where the rule first held.
    window = (min([start, *(o.start for rs in runs.values() for o in rs)]), now)
    views = {read.spec.vantage: _view(read, customer.id, service, runs[read.spec.vantage], window)
             for read in reads if read.spec.vantage in runs}
    merged = merge_views(views, window, policy)
    so_far = (start, min(now, end))
    seconds = measure(clip(merged.outage, so_far))

    def notify(target: str, determinations: list[float]) -> TargetNotification:
        return _notification(reads, customer.id, service, target, determinations, customer.notification_deadline,
                             now, iso)

    opened, ended = _merged_outages(views, runs, merged.outage, so_far, notify, iso)
    return MergedServiceStatus(
        service, _merged_now(states, now, policy), states, round(seconds, 3),
        round(measure(clip(merged.unknown, so_far)), 3), round(1 - seconds / max(1.0, so_far[1] - start), 6),
        round(budget_seconds(start, end, customer.objective) - seconds, 3),
        [VantageMonth(v, round(measure(clip(view.outage, so_far)), 3),
                      round(measure(clip(view.no_evidence, so_far)), 3)) for v, view in sorted(views.items())],
        opened, ended)


def collect(args: argparse.Namespace, specs: list[ReplicaSpec], now: float) -> ReplicasStatus:
    from threenines.config.exclusions import load_exclusions
    from threenines.config.inventory_load import load_inventory
    from threenines.exposition import catalogue
    from threenines.report.months import Month

    inventory = load_inventory(args.config)
    policy = (load_exclusions(args.exclusions, {c.id: c.zone for c in inventory.customers}).policy.merge
              if args.exclusions else "all")
    answers = _ask(specs, http_options(args))
    reads = []
    for spec in specs:
        text, error = answers.get(spec.vantage, (None, None))
        found, exported = samples(text) if text is not None else (None, set[str]())
        reads.append(_Read(spec, found, error, exported))
    wanted = set(args.customer)
    customers = []
    with contextlib.ExitStack() as stack:
        for read in reads:
            _open_ledgers(read, stack)
        for customer in inventory.customers:
            if wanted and customer.id not in wanted:
                continue
            zone = customer.zone
            local = datetime.fromtimestamp(now, zone)
            month = Month(local.year, local.month).window(zone)

            def iso(t: float, zone=zone) -> str:
                return datetime.fromtimestamp(t, zone).isoformat(timespec="seconds")

            customers.append(MergedCustomerStatus(customer.id, customer.name, customer.timezone, [
                _service(reads, customer, service, month, now, policy, iso) for service in customer.services]))

    def utc(t: float | None) -> str | None:
        return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")

    replicas = [Replica(
        read.spec.vantage, shown_url(read.spec.exporter) if read.spec.exporter else None, read.exporter_error,
        sorted(read.exported), str(read.spec.state_dir) if read.spec.state_dir else None, read.ledger_error,
        utc(read.alive), utc(read.value(str(catalogue.EXPORTER_ACCOUNTING_START_TIMESTAMP_SECONDS))),
        utc(read.value(PROCESS_START))) for read in reads]
    return ReplicasStatus(policy, args.exclusions or "default", replicas, customers)


# -- output ---------------------------------------------------------------------------------------------------


def _replica_line(r: Replica) -> str:
    if r.exporter is None:
        asked = "no --exporter (state now not asked)"
    elif r.exporter_error is not None:
        asked = f"exporter {r.exporter} UNREACHABLE: {r.exporter_error}"
    else:
        asked = f"exporter {r.exporter} answered"
        if r.exported_vantages and r.vantage not in r.exported_vantages:
            asked += f" (its series say vantage {', '.join(map(repr, r.exported_vantages))})"
    if r.state_dir is None:
        ledgers = "no --state-dir (not in the month so far)"
    elif r.ledger_error is not None:
        ledgers = f"ledgers {r.state_dir} UNREADABLE: {r.ledger_error}"
    else:
        ledgers = f"ledgers {r.state_dir}, last heartbeat {r.last_heartbeat or 'none'}"
    return f"replica {r.vantage}: {asked}; {ledgers}"


def _word(state: str) -> str:
    return state if state == "up" else state.upper()


def _vantage_word(v: VantageNow) -> str:
    return _word(v.state) + (" (no evidence)" if v.state == "down" and not v.evidence else "")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _outage_lines(c: MergedCustomerStatus, s: MergedServiceStatus, o: MergedOutage, policy: str) -> list[str]:
    until = "so far" if o.end is None else f"until {o.end}"
    lines = [f"  {c.customer} {s.service} {','.join(o.targets)}: outage from {o.start} {until} ({o.seconds:g} s, "
             f"merge {policy}); earliest first failed probe {o.first_failed_at}"]
    for share in o.vantages:
        runs = "; ".join(f"{r.target} first failed probe {r.first_failed_at}, determined {r.determined_at}, "
                         + (f"ended {r.ended_at}" if r.ended_at else "open") for r in share.runs)
        lines.append(f"    {share.vantage}: says outage {share.outage_seconds:g} s, up {share.up_seconds:g} s, no "
                     f"evidence {share.no_evidence_seconds:g} s" + (f"; {runs}" if runs else ""))
    for n in o.notifications:
        lines.append(f"    notification {n.target} (determined {n.determined_at}): {n.notification}")
        lines += ["  " + contact_line(d, f" [ledgers {', '.join(d.ledgers)}]") for d in n.deliveries]
    return lines


def table(report: ReplicasStatus) -> str:
    source = "the default" if report.merge_from == "default" else f"policy.merge of {report.merge_from}"
    lines = [f"merge: {report.merge} ({source})", *(_replica_line(r) for r in report.replicas), ""]
    names = [r.vantage for r in report.replicas]
    head = ("customer", "service", "now", *names, "month outage s", "unknown s", "availability %", "budget left s")
    rows = [(c.customer, s.service, _word(s.state), *(_vantage_word(v) for v in s.vantages),
             _seconds(s.month_outage_seconds), _seconds(s.month_unknown_seconds),
             "-" if s.month_availability_ratio is None else f"{100 * s.month_availability_ratio:.4f}",
             _seconds(s.month_budget_left_seconds))
            for c in report.customers for s in c.services]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=False)]
    lines += ["  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in (head, *rows)]
    for title, which in (("open outages (merged):", "open_outages"), ("ended outages this month (merged):",
                                                                       "ended_outages")):
        found = [(c, s, o) for c in report.customers for s in c.services for o in getattr(s, which)]
        if found:
            lines += ["", title]
            for c, s, o in found:
                lines += _outage_lines(c, s, o, report.merge)
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, specs: list[ReplicaSpec], now: float) -> int:
    """Exit 0 with whatever replicas could be read; 1 (after the output) when not one exporter answered and not
    one outage ledger could be read: then nothing is known."""
    report = collect(args, specs, now)
    if args.format == "json":
        print(json.dumps(asdict(report), indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(table(report))
    for r in report.replicas:
        if r.exporter_error is not None or r.ledger_error is not None:
            print(f"warning: {_replica_line(r)}", file=sys.stderr)
    if all(r.exporter_error is not None or r.exporter is None for r in report.replicas) and all(
            r.ledger_error is not None or r.state_dir is None for r in report.replicas):
        print("error: no replica's exporter answered and no replica's ledgers could be read", file=sys.stderr)
        return 1
    return 0
