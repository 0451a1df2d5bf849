"""Renders one immutable exporter snapshot as Prometheus text exposition (docs/metrics.md).

The contract families are per target (~20 series per port, a million at 50k ports). prometheus_client
builds an object per sample and takes ~8 s of CPU for that; formatting lines directly from label strings
cached per target takes a fraction of it. Small families (audit, power, process) still go through
prometheus_client Collectors and are appended by the service.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from threenines import __version__
from threenines.contract import TargetView
from threenines.engine import ContractSnapshot
from threenines.inventory import Customer
from threenines.scheduler import LAG_BUCKETS, ProbeStatsView


@dataclass(frozen=True)
class HealthView:
    reload_successful: bool
    reload_success_at: float
    lag_counts: tuple[int, ...]
    lag_sum: float
    in_flight: int
    ledger_writes: tuple[tuple[str, int, int], ...]  # (ledger, ok, error)
    render_seconds: float


@dataclass(frozen=True)
class ExporterSnapshot:
    contract: ContractSnapshot
    probes: tuple[ProbeStatsView, ...]
    customers: tuple[Customer, ...]
    health: HealthView
    # (customer, service, reason, active) for every customer/service the exclusions ledger names.
    exclusions: tuple[tuple[str, str, str, bool], ...] = ()


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


class SnapshotRenderer:
    """Keeps label strings between renders; used from one thread (the render worker)."""

    def __init__(self) -> None:
        self._target_labels: dict[tuple[str, ...], str] = {}
        self._service_labels: dict[tuple[str, str], str] = {}
        self._port_labels: dict[tuple[str, str], str] = {}
        self._target_cache: dict[tuple[str, ...], tuple[TargetView, tuple[str, ...]]] = {}
        self._probe_cache: dict[tuple[str, ...], tuple[ProbeStatsView, tuple[str, ...]]] = {}

    def render(self, snap: ExporterSnapshot) -> str:
        out: list[str] = []
        self._contract(out, snap.contract)
        _customers(out, snap.customers)
        _family(out, "threenines_customer_service_excluded", "gauge",
                "1 while an exclusion window of this reason is active (exclusions ledger).",
                (f"threenines_customer_service_excluded{labels(customer=c, service=s, reason=r)} {'1' if on else '0'}"
                 for c, s, r, on in snap.exclusions))
        self._probes(out, snap.probes)
        _health(out, snap.health)
        out.append("")
        return "\n".join(out)

    def _target(self, key: tuple[str, ...]) -> str:
        text = self._target_labels.get(key)
        if text is None:
            text = self._target_labels[key] = labels(customer=key[0], service=key[1], target=key[2])
        return text

    def _service(self, customer: str, service: str) -> str:
        text = self._service_labels.get((customer, service))
        if text is None:
            text = self._service_labels[(customer, service)] = labels(customer=customer, service=service)
        return text

    def _port(self, customer: str, target: str) -> str:
        text = self._port_labels.get((customer, target))
        if text is None:
            text = self._port_labels[(customer, target)] = labels(customer=customer, target=target)
        return text

    def _contract(self, out: list[str], contract: ContractSnapshot) -> None:
        rows = [self._target_lines(v) for v in contract.targets]
        for index, (name, kind, help_text) in enumerate(_TARGET_FAMILIES):
            _family(out, name, kind, help_text, [row[index] for row in rows])
        services = contract.services
        snames = [self._service(s.customer, s.service) for s in services]
        _family(out, "threenines_customer_service_up", "gauge",
                "0 while any target of the customer's service is in a determined outage.",
                (f"threenines_customer_service_up{n} {'1' if s.up else '0'}" for n, s in zip(snames, services,
                                                                                              strict=True)))
        _family(out, "threenines_customer_service_known", "gauge",
                "0 while the customer's service state cannot be told.",
                (f"threenines_customer_service_known{n} {'1' if s.known else '0'}"
                 for n, s in zip(snames, services, strict=True)))
        _family(out, "threenines_customer_service_outage_seconds_total", "counter",
                "Billed outage seconds: union over the service's targets, final values.",
                (f"threenines_customer_service_outage_seconds_total{n} {s.outage_seconds!r}"
                 for n, s in zip(snames, services, strict=True)))
        _family(out, "threenines_customer_service_unknown_seconds_total", "counter",
                "Seconds the customer's service state could not be told (union, final values).",
                (f"threenines_customer_service_unknown_seconds_total{n} {s.unknown_seconds!r}"
                 for n, s in zip(snames, services, strict=True)))

    def _target_lines(self, view: TargetView) -> tuple[str, ...]:
        # Views are reused by the machines while nothing exported changed: so are their lines.
        cached = self._target_cache.get(view.key)
        if cached is not None and cached[0] is view:
            return cached[1]
        n = self._target(view.key)
        lines = (
            f"threenines_service_up{n} {'1' if view.up else '0'}",
            f"threenines_service_known{n} {'1' if view.known else '0'}",
            f"threenines_service_outage_seconds_total{n} {view.outage_seconds!r}",
            f"threenines_service_unknown_seconds_total{n} {view.unknown_seconds!r}",
            f"threenines_service_determined_timestamp_seconds{n} {float(view.determined_at or 0)!r}",
            f"threenines_service_outage_start_timestamp_seconds{n} {float(view.outage_start or 0)!r}",
        )
        self._target_cache[view.key] = (view, lines)
        return lines

    def _probes(self, out: list[str], probes: tuple[ProbeStatsView, ...]) -> None:
        rows = [self._probe_lines(p) for p in probes]
        for index, (name, kind, help_text) in enumerate(_PROBE_FAMILIES):
            _family(out, name, kind, help_text, [row[index] for row in rows if row[index]])

    def _probe_lines(self, p: ProbeStatsView) -> tuple[str, ...]:
        cached = self._probe_cache.get(p.key)
        if cached is not None and cached[0] is p:
            return cached[1]
        n = self._port(p.key.customer, p.key.target)
        answered = p.last_loss is not None
        lines = (
            f"threenines_probe_total{n} {float(p.total)!r}",
            f"threenines_probe_failures_total{n} {float(p.failures)!r}",
            f'threenines_probe_errors_total{n[:-1]},reason="send_failed"}} {float(p.errors)!r}',
            f"threenines_probe_rtt_seconds{n} {p.last_rtt!r}" if p.last_rtt is not None else "",
            f"threenines_probe_loss_ratio{n} {p.last_loss!r}" if answered else "",
            f"threenines_probe_last_timestamp_seconds{n} {p.last_at!r}" if answered else "",
        )
        self._probe_cache[p.key] = (p, lines)
        return lines


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


def _customers(out: list[str], customers: tuple[Customer, ...]) -> None:
    _family(out, "threenines_customer_info", "gauge", "Customer metadata from the inventory.",
            ("threenines_customer_info" + labels(customer=c.id, name=c.name, site=c.site, timezone=c.timezone,
                                                 contacts_version=c.contacts.version) + " 1" for c in customers))
    _family(out, "threenines_customer_objective_ratio", "gauge",
            "Contract availability objective per calendar month.",
            (f"threenines_customer_objective_ratio{labels(customer=c.id, service=s)} {c.objective!r}"
             for c in customers for s in c.services))
    _family(out, "threenines_customer_notification_deadline_seconds", "gauge",
            "Contracted time from determination to notification.",
            (f"threenines_customer_notification_deadline_seconds{labels(customer=c.id)} "
             f"{float(c.notification_deadline)!r}" for c in customers))
    _family(out, "threenines_port_info", "gauge", "Customer port addresses from the inventory.",
            (f"threenines_port_info{labels(customer=c.id, target=p.id, address=p.address)} 1"
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
    _family(out, "threenines_ledger_writes_total", "counter", "Ledger writes by result.",
            [f'threenines_ledger_writes_total{{ledger="{name}",result="{result}"}} {count}'
             for name, ok, failed in health.ledger_writes for result, count in (("ok", ok), ("error", failed))])
    _family(out, "threenines_metrics_render_seconds", "gauge", "Seconds to render the previous /metrics snapshot.",
            [f"threenines_metrics_render_seconds {number(health.render_seconds)}"])
    _family(out, "threenines_build_info", "gauge", "threenines version.",
            [f'threenines_build_info{{version="{__version__}"}} 1'])
