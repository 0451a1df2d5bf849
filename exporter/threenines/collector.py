"""Turns one immutable exporter snapshot into metric families (docs/metrics.md). No I/O, no locks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from threenines import __version__
from threenines.engine import ContractSnapshot
from threenines.inventory import Customer
from threenines.scheduler import LAG_BUCKETS, ProbeStatsView

TARGET_LABELS = ["customer", "service", "target"]
SERVICE_LABELS = ["customer", "service"]
PORT_LABELS = ["customer", "target"]


@dataclass(frozen=True)
class HealthView:
    reload_successful: bool
    reload_success_at: float
    lag_counts: tuple[int, ...]
    lag_sum: float
    in_flight: int
    ledger_writes_ok: int
    ledger_writes_failed: int
    render_seconds: float


@dataclass(frozen=True)
class ExporterSnapshot:
    contract: ContractSnapshot
    probes: tuple[ProbeStatsView, ...]
    customers: tuple[Customer, ...]
    health: HealthView


class ContractCollector:
    """prometheus_client Collector over the latest snapshot (swapped by the service, read here)."""

    def __init__(self, source: Callable[[], ExporterSnapshot | None]) -> None:
        self._source = source

    def describe(self) -> list[Metric]:
        return []  # no describe-time collect(): the registry must not run collect() at registration

    def collect(self) -> Iterator[Metric]:
        snap = self._source()
        if snap is None:
            return
        yield from _contract_families(snap.contract)
        yield from _customer_families(snap.customers)
        yield from _probe_families(snap.probes)
        yield from _health_families(snap.health)


def _contract_families(contract: ContractSnapshot) -> Iterator[Metric]:
    up = GaugeMetricFamily("threenines_service_up",
                           "Contract state per target: 0 while a determined outage is open.", labels=TARGET_LABELS)
    known = GaugeMetricFamily("threenines_service_known",
                              "0 while the target's state cannot be told (no fresh evidence).", labels=TARGET_LABELS)
    outage = CounterMetricFamily("threenines_service_outage_seconds",
                                 "Outage seconds, retroactive to the first failed probe at determination.",
                                 labels=TARGET_LABELS)
    unknown = CounterMetricFamily("threenines_service_unknown_seconds", "Seconds without evidence.",
                                  labels=TARGET_LABELS)
    determined = GaugeMetricFamily("threenines_service_determined_timestamp_seconds",
                                   "Unix time the open outage was determined; 0 when none is open.",
                                   labels=TARGET_LABELS)
    started = GaugeMetricFamily("threenines_service_outage_start_timestamp_seconds",
                                "Unix time of the first failed probe of the open outage; 0 when none is open.",
                                labels=TARGET_LABELS)
    for view in contract.targets:
        labels = list(view.key)
        up.add_metric(labels, 1.0 if view.up else 0.0)
        known.add_metric(labels, 1.0 if view.known else 0.0)
        outage.add_metric(labels, view.outage_seconds)
        unknown.add_metric(labels, view.unknown_seconds)
        determined.add_metric(labels, view.determined_at or 0.0)
        started.add_metric(labels, view.outage_start or 0.0)
    yield from (up, known, outage, unknown, determined, started)

    c_up = GaugeMetricFamily("threenines_customer_service_up",
                             "0 while any target of the customer's service is in a determined outage.",
                             labels=SERVICE_LABELS)
    c_known = GaugeMetricFamily("threenines_customer_service_known",
                                "0 while the customer's service state cannot be told.", labels=SERVICE_LABELS)
    c_outage = CounterMetricFamily("threenines_customer_service_outage_seconds",
                                   "Billed outage seconds: union over the service's targets, final values.",
                                   labels=SERVICE_LABELS)
    c_unknown = CounterMetricFamily("threenines_customer_service_unknown_seconds",
                                    "Seconds the customer's service state could not be told (union, final values).",
                                    labels=SERVICE_LABELS)
    for service in contract.services:
        labels = [service.customer, service.service]
        c_up.add_metric(labels, 1.0 if service.up else 0.0)
        c_known.add_metric(labels, 1.0 if service.known else 0.0)
        c_outage.add_metric(labels, service.outage_seconds)
        c_unknown.add_metric(labels, service.unknown_seconds)
    yield from (c_up, c_known, c_outage, c_unknown)


def _customer_families(customers: tuple[Customer, ...]) -> Iterator[Metric]:
    info = GaugeMetricFamily("threenines_customer_info", "Customer metadata from the inventory.",
                             labels=["customer", "name", "site", "timezone", "contacts_version"])
    objective = GaugeMetricFamily("threenines_customer_objective_ratio",
                                  "Contract availability objective per calendar month.", labels=SERVICE_LABELS)
    deadline = GaugeMetricFamily("threenines_customer_notification_deadline_seconds",
                                 "Contracted time from determination to notification.", labels=["customer"])
    port_info = GaugeMetricFamily("threenines_port_info", "Customer port addresses from the inventory.",
                                  labels=["customer", "target", "address"])
    for customer in customers:
        info.add_metric([customer.id, customer.name, customer.site, customer.timezone, customer.contacts.version], 1)
        for service in customer.services:
            objective.add_metric([customer.id, service], customer.objective)
        deadline.add_metric([customer.id], customer.notification_deadline)
        for port in customer.ports:
            port_info.add_metric([customer.id, port.id, port.address], 1)
    yield from (info, objective, deadline, port_info)


def _probe_families(probes: tuple[ProbeStatsView, ...]) -> Iterator[Metric]:
    total = CounterMetricFamily("threenines_probe", "Contract probes completed.", labels=PORT_LABELS)
    failures = CounterMetricFamily("threenines_probe_failures", "Contract probes that got no reply.",
                                   labels=PORT_LABELS)
    errors = CounterMetricFamily("threenines_probe_errors", "Probes that could not be sent (no evidence).",
                                 labels=[*PORT_LABELS, "reason"])
    rtt = GaugeMetricFamily("threenines_probe_rtt_seconds", "Mean round-trip time of the last probe's replies.",
                            labels=PORT_LABELS)
    loss = GaugeMetricFamily("threenines_probe_loss_ratio", "Lost/sent echo requests of the last probe.",
                             labels=PORT_LABELS)
    last = GaugeMetricFamily("threenines_probe_last_timestamp_seconds", "Unix time of the last completed probe.",
                             labels=PORT_LABELS)
    for view in probes:
        labels = [view.key.customer, view.key.target]
        total.add_metric(labels, view.total)
        failures.add_metric(labels, view.failures)
        errors.add_metric([*labels, "send_failed"], view.errors)
        if view.last_rtt is not None:
            rtt.add_metric(labels, view.last_rtt)
        if view.last_loss is not None:
            loss.add_metric(labels, view.last_loss)
            last.add_metric(labels, view.last_at)
    yield from (total, failures, errors, rtt, loss, last)


def _health_families(health: HealthView) -> Iterator[Metric]:
    yield GaugeMetricFamily("threenines_config_last_reload_successful",
                            "1 if the last inventory (re)load succeeded; 0 keeps the previous one running.",
                            value=1.0 if health.reload_successful else 0.0)
    yield GaugeMetricFamily("threenines_config_last_reload_success_timestamp_seconds",
                            "Unix time of the last successful inventory load.", value=health.reload_success_at)
    buckets = []
    cumulative = 0
    for bound, count in zip((*LAG_BUCKETS, float("inf")), health.lag_counts, strict=True):
        cumulative += count
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
    yield HistogramMetricFamily("threenines_probe_schedule_lag_seconds",
                                "How late probes start against their schedule.", buckets=buckets,
                                sum_value=health.lag_sum)
    yield GaugeMetricFamily("threenines_probes_in_flight", "ICMP probes in flight.", value=health.in_flight)
    writes = CounterMetricFamily("threenines_ledger_writes", "Ledger writes by result.",
                                 labels=["ledger", "result"])
    writes.add_metric(["outage", "ok"], health.ledger_writes_ok)
    writes.add_metric(["outage", "error"], health.ledger_writes_failed)
    yield writes
    yield GaugeMetricFamily("threenines_metrics_render_seconds", "Seconds to render the previous /metrics snapshot.",
                            value=health.render_seconds)
    info = GaugeMetricFamily("threenines_build_info", "threenines version.", labels=["version"])
    info.add_metric([__version__], 1)
    yield info
