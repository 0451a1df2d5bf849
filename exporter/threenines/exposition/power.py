"""prometheus_client Collector over the power poller's and the power evaluator's latest snapshots (no I/O in
collect())."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from threenines.contract.power_state import CustomerPowerSnapshot
from threenines.exposition import catalogue as c
from threenines.probes.power_poller import PowerSnapshot
from threenines.probes.snmp.readings import OUTPUT_SOURCES

# (family, the reading's attribute it shows)
_UPS_GAUGES = ((c.UPS_BATTERY_CHARGE_RATIO, "battery_charge_ratio"),
               (c.UPS_BATTERY_RUNTIME_SECONDS, "battery_runtime_seconds"))
# Per input/output line (label `phase`: the line number, "1" on a single-phase UPS).
_UPS_LINE_GAUGES = ((c.UPS_INPUT_VOLTAGE_VOLTS, "input_voltage_volts"),
                    (c.UPS_OUTPUT_LOAD_RATIO, "output_load_ratio"),
                    (c.UPS_OUTPUT_VOLTAGE_VOLTS, "output_voltage_volts"))
_OUTLET_GAUGES = ((c.PDU_OUTLET_CURRENT_AMPERES, "current_amperes"), (c.PDU_OUTLET_POWER_WATTS, "power_watts"))
_PHASE_GAUGES = ((c.PDU_PHASE_CURRENT_AMPERES, "current_amperes"), (c.PDU_PHASE_VOLTAGE_VOLTS, "voltage_volts"))
_FAMILIES = (c.UPS_OUTPUT_SOURCE, *(f for f, _ in _UPS_GAUGES), *(f for f, _ in _UPS_LINE_GAUGES),
             c.POWER_INFERRED_DOWN, c.POWER_INFERRED_DOWN_SINCE_TIMESTAMP_SECONDS, c.POWER_TRIGGERED_POLLS_TOTAL,
             c.PDU_OUTLET_ON, *(f for f, _ in _OUTLET_GAUGES), c.PDU_OUTLET_ENERGY_JOULES_TOTAL,
             *(f for f, _ in _PHASE_GAUGES), c.DEVICE_UP, c.DEVICE_POLL_DURATION_SECONDS,
             c.DEVICE_LAST_SUCCESS_TIMESTAMP_SECONDS, c.DEVICE_POLL_ERRORS_TOTAL)


def _families() -> dict[c.Family, GaugeMetricFamily | CounterMetricFamily]:
    return {family: c.metric_family(family) for family in _FAMILIES}


class PowerCollector(Collector):
    def __init__(self, devices: Callable[[], PowerSnapshot],
                 customers: Callable[[], CustomerPowerSnapshot] = CustomerPowerSnapshot) -> None:
        self._snapshot = devices
        self._customers = customers  # default: no customer evaluated (an exporter polling devices only)

    def describe(self) -> Iterator[Metric]:
        yield from _families().values()

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        f = _families()
        for status in snap.devices:
            device = status.device.id
            f[c.DEVICE_UP].add_metric([device], 1.0 if status.up else 0.0)
            if status.polled_at:
                f[c.DEVICE_POLL_DURATION_SECONDS].add_metric([device], status.duration)
            f[c.DEVICE_LAST_SUCCESS_TIMESTAMP_SECONDS].add_metric([device], status.last_success)
            for reason, count in status.errors:
                f[c.DEVICE_POLL_ERRORS_TOTAL].add_metric([device, reason], count)
            reading = status.reading
            if reading is None:
                continue
            if reading.ups is not None:
                ups = reading.ups
                for source in OUTPUT_SOURCES:
                    f[c.UPS_OUTPUT_SOURCE].add_metric([device, source], 1.0 if ups.output_source == source else 0.0)
                for family, attr in _UPS_GAUGES:
                    value = getattr(ups, attr)
                    if value is not None:
                        f[family].add_metric([device], value)
                for family, attr in _UPS_LINE_GAUGES:
                    for line, value in ups.line_values(attr):
                        f[family].add_metric([device, line], value)
            for outlet in reading.outlets:
                customer = snap.outlet_customers.get((device, outlet.id)) \
                    or snap.outlet_customers.get((device, outlet.name or "")) or ""
                labels = [device, outlet.id, customer]
                if outlet.on is not None:
                    f[c.PDU_OUTLET_ON].add_metric(labels, 1.0 if outlet.on else 0.0)
                for family, attr in _OUTLET_GAUGES:
                    value = getattr(outlet, attr)
                    if value is not None:
                        f[family].add_metric(labels, value)
                if outlet.energy_joules is not None:
                    f[c.PDU_OUTLET_ENERGY_JOULES_TOTAL].add_metric(labels, outlet.energy_joules)
            for phase in reading.phases:
                for family, attr in _PHASE_GAUGES:
                    value = getattr(phase, attr)
                    if value is not None:
                        f[family].add_metric([device, phase.id], value)
        for customer, e in self._customers().inferred:
            f[c.POWER_INFERRED_DOWN].add_metric([customer, e.ups, e.evidence], 1.0)
            f[c.POWER_INFERRED_DOWN_SINCE_TIMESTAMP_SECONDS].add_metric([customer, e.ups, e.evidence], e.since)
        for ups_id, trigger, count in snap.triggered:
            f[c.POWER_TRIGGERED_POLLS_TOTAL].add_metric([ups_id, trigger], count)
        yield from f.values()
