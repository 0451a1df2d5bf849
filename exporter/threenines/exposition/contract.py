"""Renders the exporter's state as Prometheus text exposition (docs/metrics.md).

The contract families are per target (~20 series per port, a million at 50k ports). prometheus_client
builds an object per sample and takes ~8 s of CPU for that; formatting lines directly from label strings
cached per target takes a fraction of it, and keeping the lines between renders leaves only what changed.
Small families (audit, power, process) still go through prometheus_client Collectors and are appended by
the service.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from threenines import __version__
from threenines.config.inventory import Customer, TargetKey
from threenines.contract.engine import ContractChanges
from threenines.contract.machine import CustomerServiceView, TargetView
from threenines.probes.ping_scheduler import LAG_BUCKETS, ProbeRecord, ProbeStatsView


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
    probes: dict[TargetKey, ProbeRecord]  # ProbeStatsView.decode() reads them
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
        self.probes.update(newer.probes)
        contract = ContractChanges(
            new.taken_at,
            new.layout if new.layout is not None else old.layout,
            new.service_layout if new.service_layout is not None else old.service_layout,
            old.targets, old.services, new.accounting_start)
        probe_layout = newer.probe_layout if newer.probe_layout is not None else self.probe_layout
        return ExporterChanges(contract, self.probes, probe_layout, newer.customers, newer.health,
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


class _Families:
    """Families with one line per slot (target, port or customer service), joined only when a line changed."""

    def __init__(self, families: tuple[tuple[str, str, str], ...]) -> None:
        self.families = families
        self.slots: dict[tuple[str, ...], int] = {}
        self.lines: list[list[str]] = [[] for _ in families]
        self.chunks: list[bytes] = [b""] * len(families)
        self.dirty = [True] * len(families)

    def lay_out(self, keys: tuple[tuple[str, ...], ...]) -> None:
        old_slots, old_lines = self.slots, self.lines
        self.slots = {key: index for index, key in enumerate(keys)}
        self.lines = [["" for _ in keys] for _ in self.families]
        for key, index in self.slots.items():
            old = old_slots.get(key)
            if old is not None:
                for family, lines in enumerate(old_lines):
                    self.lines[family][index] = lines[old]
        self.dirty = [True] * len(self.families)

    def set(self, key: tuple[str, ...], lines: tuple[str, ...]) -> None:
        index = self.slots.get(key)
        if index is None:
            return  # left the inventory after this view was taken
        for family, line in enumerate(lines):
            column = self.lines[family]
            if column[index] != line:
                column[index] = line
                self.dirty[family] = True

    def render(self) -> list[bytes]:
        for family, (name, kind, help_text) in enumerate(self.families):
            if self.dirty[family]:
                self.chunks[family] = (f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"
                                       + "".join(self.lines[family])).encode()
                self.dirty[family] = False
        return self.chunks


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
        self._probes = _Families(_PROBE_FAMILIES)
        self._services = _Families(_SERVICE_FAMILIES)
        self._target_labels: dict[tuple[str, ...], str] = {}
        self._service_labels: dict[tuple[str, ...], str] = {}
        self._port_labels: dict[tuple[str, ...], str] = {}
        self._customers: tuple[Customer, ...] | None = None
        self._customer_chunk = b""
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
            self._probes.lay_out(changes.probe_layout)
            self._port_labels = {}
        for key, view in contract.targets.items():
            self._targets.set(key, self._target_lines(view))
        for group, service in contract.services.items():
            self._services.set(group, self._service_lines(service))
        decode = ProbeStatsView.decode
        for key, record in changes.probes.items():
            self._probes.set(key, self._probe_lines(decode(key, record)))
        if changes.customers is not self._customers:
            self._customers = changes.customers
            out: list[str] = []
            _customers(out, changes.customers, self._vantage)
            self._customer_chunk = ("\n".join(out) + "\n").encode()

    def render(self, changes: ExporterChanges) -> list[bytes]:
        """The exposition after `changes`: HELP/TYPE and samples, family by family."""
        self.apply(changes)
        out: list[str] = []
        _family(out, "threenines_customer_service_excluded", "gauge",
                "1 while an exclusion window of this reason is active (exclusions ledger).",
                (f"threenines_customer_service_excluded{labels(**self._vantage, customer=c, service=s, reason=r)} "
                 f"{'1' if on else '0'}"
                 for c, s, r, on in changes.exclusions))
        _family(out, "threenines_exporter_accounting_start_timestamp_seconds", "gauge",
                "Unix time from which this process's counters count (the heartbeat it resumed from, or its start).",
                [f"threenines_exporter_accounting_start_timestamp_seconds{self._own} {number(self._accounting_start)}"])
        _health(out, changes.health)
        tail = ("\n".join(out) + "\n").encode()
        return [*self._targets.render(), *self._services.render(), self._customer_chunk, *self._probes.render(),
                tail]

    def _target_lines(self, view: TargetView) -> tuple[str, ...]:
        n = self._target_labels.get(view.key)
        if n is None:
            n = self._target_labels[view.key] = labels(**self._vantage, customer=view.key[0],
                                                       service=view.key[1], target=view.key[2])
        return (
            f"threenines_service_up{n} {'1' if view.up else '0'}\n",
            f"threenines_service_known{n} {'1' if view.known else '0'}\n",
            f"threenines_service_outage_seconds_total{n} {view.outage_seconds!r}\n",
            f"threenines_service_unknown_seconds_total{n} {view.unknown_seconds!r}\n",
            f"threenines_service_determined_timestamp_seconds{n} {float(view.determined_at or 0)!r}\n",
            f"threenines_service_outage_start_timestamp_seconds{n} {float(view.outage_start or 0)!r}\n",
        )

    def _service_lines(self, s: CustomerServiceView) -> tuple[str, ...]:
        group = (s.customer, s.service)
        n = self._service_labels.get(group)
        if n is None:
            n = self._service_labels[group] = labels(**self._vantage, customer=s.customer, service=s.service)
        return (
            f"threenines_customer_service_up{n} {'1' if s.up else '0'}\n",
            f"threenines_customer_service_known{n} {'1' if s.known else '0'}\n",
            f"threenines_customer_service_outage_seconds_total{n} {s.outage_seconds!r}\n",
            f"threenines_customer_service_unknown_seconds_total{n} {s.unknown_seconds!r}\n",
        )

    def _probe_lines(self, p: ProbeStatsView) -> tuple[str, ...]:
        n = self._port_labels.get(p.key)
        if n is None:
            n = self._port_labels[p.key] = labels(**self._vantage, customer=p.key.customer, target=p.key.target)
        answered = p.last_loss is not None
        return (
            f"threenines_probe_total{n} {float(p.total)!r}\n",
            f"threenines_probe_failures_total{n} {float(p.failures)!r}\n",
            f'threenines_probe_errors_total{n[:-1]},reason="send_failed"}} {float(p.errors)!r}\n',
            f"threenines_probe_rtt_seconds{n} {p.last_rtt!r}\n" if p.last_rtt is not None else "",
            f"threenines_probe_loss_ratio{n} {p.last_loss!r}\n" if answered else "",
            f"threenines_probe_last_timestamp_seconds{n} {p.last_at!r}\n" if answered else "",
        )


_TARGET_FAMILIES = (
    ("threenines_service_up", "gauge", "Contract state per target: 0 while a determined outage is open."),
    ("threenines_service_known", "gauge", "0 while the target's state cannot be told (no fresh evidence)."),
    ("threenines_service_outage_seconds_total", "counter",
     "Outage seconds, retroactive to the first failed probe at determination."),
    ("threenines_service_unknown_seconds_total", "counter", "Seconds without evidence."),
    ("threenines_service_determined_timestamp_seconds", "gauge",
     "Unix time the open outage was determined; 0 when none is open."),
    ("threenines_service_outage_start_timestamp_seconds", "gauge",
     "Unix time of the first failed probe of the open outage; 0 when none is open."),
)
_SERVICE_FAMILIES = (
    ("threenines_customer_service_up", "gauge",
     "0 while any target of the customer's service is in a determined outage."),
    ("threenines_customer_service_known", "gauge", "0 while the customer's service state cannot be told."),
    ("threenines_customer_service_outage_seconds_total", "counter",
     "Billed outage seconds: union over the service's targets, final values."),
    ("threenines_customer_service_unknown_seconds_total", "counter",
     "Seconds the customer's service state could not be told (union, final values)."),
)
_PROBE_FAMILIES = (
    ("threenines_probe_total", "counter", "Contract probes completed."),
    ("threenines_probe_failures_total", "counter", "Contract probes that got no reply."),
    ("threenines_probe_errors_total", "counter", "Probes that could not be sent (no evidence)."),
    ("threenines_probe_rtt_seconds", "gauge", "Mean round-trip time of the last probe's replies."),
    ("threenines_probe_loss_ratio", "gauge", "Lost/sent echo requests of the last probe."),
    ("threenines_probe_last_timestamp_seconds", "gauge", "Unix time of the last completed probe."),
)


def _family(out: list[str], name: str, kind: str, help_text: str, lines: Iterable[str]) -> None:
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} {kind}")
    out.extend(lines)


def _customers(out: list[str], customers: tuple[Customer, ...], own: dict[str, str]) -> None:
    _family(out, "threenines_customer_info", "gauge", "Customer metadata from the inventory.",
            ("threenines_customer_info" + labels(**own, customer=c.id, name=c.name, site=c.site,
                                                 timezone=c.timezone, contacts_version=c.contacts.version) + " 1"
             for c in customers))
    _family(out, "threenines_customer_objective_ratio", "gauge",
            "Contract availability objective per calendar month.",
            (f"threenines_customer_objective_ratio{labels(**own, customer=c.id, service=s)} {c.objective!r}"
             for c in customers for s in c.services))
    _family(out, "threenines_customer_notification_deadline_seconds", "gauge",
            "Contracted time from determination to notification.",
            (f"threenines_customer_notification_deadline_seconds{labels(**own, customer=c.id)} "
             f"{float(c.notification_deadline)!r}" for c in customers))
    _family(out, "threenines_port_info", "gauge", "Customer port addresses from the inventory.",
            (f"threenines_port_info{labels(**own, customer=c.id, target=p.id, address=p.address)} 1"
             for c in customers for p in c.ports))


def _health(out: list[str], health: HealthView) -> None:
    _family(out, "threenines_config_last_reload_successful", "gauge",
            "1 if the last inventory (re)load succeeded; 0 keeps the previous one running.",
            [f"threenines_config_last_reload_successful {'1' if health.reload_successful else '0'}"])
    _family(out, "threenines_config_last_reload_success_timestamp_seconds", "gauge",
            "Unix time of the last successful inventory load.",
            [f"threenines_config_last_reload_success_timestamp_seconds {number(health.reload_success_at)}"])
    cumulative = 0
    buckets = []
    for bound, count in zip((*LAG_BUCKETS, math.inf), health.lag_counts, strict=True):
        cumulative += count
        le = "+Inf" if bound == math.inf else repr(float(bound))
        buckets.append(f'threenines_probe_schedule_lag_seconds_bucket{{le="{le}"}} {cumulative}')
    buckets.append(f"threenines_probe_schedule_lag_seconds_count {cumulative}")
    buckets.append(f"threenines_probe_schedule_lag_seconds_sum {number(health.lag_sum)}")
    _family(out, "threenines_probe_schedule_lag_seconds", "histogram",
            "How late probes start against their schedule.", buckets)
    _family(out, "threenines_probes_in_flight", "gauge", "ICMP probes in flight.",
            [f"threenines_probes_in_flight {health.in_flight}"])
    _family(out, "threenines_probe_unmatched_replies_total", "counter",
            "Echo replies that matched no request in flight (late past the timeout, duplicated, or from an "
            "address not pinged): many of them mean probe timeouts are too short.",
            [f"threenines_probe_unmatched_replies_total {health.unmatched_replies}"])
    _family(out, "threenines_ledger_writes_total", "counter", "Ledger writes by result.",
            [f'threenines_ledger_writes_total{{ledger="{name}",result="{result}"}} {count}'
             for name, ok, failed in health.ledger_writes for result, count in (("ok", ok), ("error", failed))])
    _family(out, "threenines_ledger_recovery_writes_total", "counter",
            "Writes of the ledger's recovery state (targets known, failure-run checkpoints, heartbeat) by result.",
            [f'threenines_ledger_recovery_writes_total{{ledger="{name}",kind="{kind}",result="{result}"}} {count}'
             for name, kind, ok, failed in health.ledger_recovery_writes
             for result, count in (("ok", ok), ("error", failed))])
    _family(out, "threenines_ledger_pending_writes", "gauge",
            "Ledger writes the disk refused so far, kept in memory and retried at every tick.",
            [f'threenines_ledger_pending_writes{{ledger="{name}",kind="{kind}"}} {count}'
             for name, kind, count in health.ledger_pending])
    _family(out, "threenines_metrics_render_seconds", "gauge",
            "Seconds the last render took (a scrape renders the changes published since the previous one).",
            [f"threenines_metrics_render_seconds {number(health.render_seconds)}"])
    _family(out, "threenines_build_info", "gauge", "threenines version, and which prober wire runs.",
            [f'threenines_build_info{{version="{__version__}",wire="{health.wire}"}} 1'])
