"""prometheus_client Collector over the power poller's latest snapshot (no I/O in collect())."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from threenines.probes.power_poller import PowerSnapshot
from threenines.probes.snmp.readings import OUTPUT_SOURCES

_UPS_GAUGES = (
    ("threenines_ups_battery_charge_ratio", "Battery charge, 0-1.", "battery_charge_ratio"),
    ("threenines_ups_battery_runtime_seconds", "Estimated battery runtime left.", "battery_runtime_seconds"),
)
# Per input/output line (label `phase`: the line number, "1" on a single-phase UPS).
_UPS_LINE_GAUGES = (
    ("threenines_ups_input_voltage_volts", "UPS input (mains) voltage per line.", "input_voltage_volts"),
    ("threenines_ups_output_load_ratio", "UPS output load per line, 0-1 of its rated capacity.", "output_load_ratio"),
    ("threenines_ups_output_voltage_volts", "UPS output voltage per line.", "output_voltage_volts"),
)
_INFERRED_LABELS = ["customer", "device", "evidence"]
_OUTLET_GAUGES = (
    ("threenines_pdu_outlet_current_amperes", "Outlet current.", "current_amperes"),
    ("threenines_pdu_outlet_power_watts", "Outlet active power.", "power_watts"),
)
_PHASE_GAUGES = (
    ("threenines_pdu_phase_current_amperes", "Phase / inlet current.", "current_amperes"),
    ("threenines_pdu_phase_voltage_volts", "Phase / inlet voltage.", "voltage_volts"),
)
_OUTLET_LABELS = ["device", "outlet", "customer"]


def _families() -> dict[str, GaugeMetricFamily | CounterMetricFamily]:
    families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
        "source": GaugeMetricFamily(
            "threenines_ups_output_source",
            "UPS output source as a state set: exactly one source is 1 while known, all 0 while unknown.",
            labels=["device", "source"]),
    }
    for name, doc, _ in _UPS_GAUGES:
        families[name] = GaugeMetricFamily(name, doc, labels=["device"])
    for name, doc, _ in _UPS_LINE_GAUGES:
        families[name] = GaugeMetricFamily(name, doc, labels=["device", "phase"])
    families["inferred"] = GaugeMetricFamily(
        "threenines_power_inferred_down",
        "1 while the customer's power is down only by the blackout rule: UPS `device` announced its end "
        "(`evidence`), then it and every PDU it feeds went silent.", labels=_INFERRED_LABELS)
    families["inferred_since"] = GaugeMetricFamily(
        "threenines_power_inferred_down_since_timestamp_seconds",
        "Unix time from which the blackout rule holds the UPS without output (see docs/power.md).",
        labels=_INFERRED_LABELS)
    families["triggered"] = CounterMetricFamily(
        "threenines_power_triggered_polls",
        "Polls of a UPS and the PDUs it feeds outside their schedule, by trigger (trap, exhaustion).",
        labels=["device", "trigger"])
    families["on"] = GaugeMetricFamily("threenines_pdu_outlet_on", "1 when the outlet is on, 0 when off; "
                                       "absent while unknown.", labels=_OUTLET_LABELS)
    for name, doc, _ in _OUTLET_GAUGES:
        families[name] = GaugeMetricFamily(name, doc, labels=_OUTLET_LABELS)
    families["energy"] = CounterMetricFamily("threenines_pdu_outlet_energy_joules",
                                             "Outlet energy meter (the PDU's own counter).", labels=_OUTLET_LABELS)
    for name, doc, _ in _PHASE_GAUGES:
        families[name] = GaugeMetricFamily(name, doc, labels=["device", "phase"])
    families["up"] = GaugeMetricFamily("threenines_device_up", "1 when the last poll of the device succeeded.",
                                       labels=["device"])
    families["duration"] = GaugeMetricFamily("threenines_device_poll_duration_seconds",
                                             "Duration of the last poll.", labels=["device"])
    families["last"] = GaugeMetricFamily("threenines_device_last_success_timestamp_seconds",
                                         "Unix time of the last successful poll (0: never).", labels=["device"])
    families["errors"] = CounterMetricFamily("threenines_device_poll_errors",
                                             "Poll failures and bad readings by reason.", labels=["device", "reason"])
    return families


class PowerCollector(Collector):
    def __init__(self, snapshot: Callable[[], PowerSnapshot]) -> None:
        self._snapshot = snapshot

    def describe(self) -> Iterator[Metric]:
        yield from _families().values()

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        f = _families()
        for status in snap.devices:
            device = status.device.id
            f["up"].add_metric([device], 1.0 if status.up else 0.0)
            if status.polled_at:
                f["duration"].add_metric([device], status.duration)
            f["last"].add_metric([device], status.last_success)
            for reason, count in status.errors:
                f["errors"].add_metric([device, reason], count)
            reading = status.reading
            if reading is None:
                continue
            if reading.ups is not None:
                ups = reading.ups
                for source in OUTPUT_SOURCES:
                    f["source"].add_metric([device, source], 1.0 if ups.output_source == source else 0.0)
                for name, _, attr in _UPS_GAUGES:
                    value = getattr(ups, attr)
                    if value is not None:
                        f[name].add_metric([device], value)
                for name, _, attr in _UPS_LINE_GAUGES:
                    for line, value in ups.line_values(attr):
                        f[name].add_metric([device, line], value)
            for outlet in reading.outlets:
                customer = snap.outlet_customers.get((device, outlet.id)) \
                    or snap.outlet_customers.get((device, outlet.name or "")) or ""
                labels = [device, outlet.id, customer]
                if outlet.on is not None:
                    f["on"].add_metric(labels, 1.0 if outlet.on else 0.0)
                for name, _, attr in _OUTLET_GAUGES:
                    value = getattr(outlet, attr)
                    if value is not None:
                        f[name].add_metric(labels, value)
                if outlet.energy_joules is not None:
                    f["energy"].add_metric(labels, outlet.energy_joules)
            for phase in reading.phases:
                for name, _, attr in _PHASE_GAUGES:
                    value = getattr(phase, attr)
                    if value is not None:
                        f[name].add_metric([device, phase.id], value)
        for customer, e in snap.inferred:
            f["inferred"].add_metric([customer, e.ups, e.evidence], 1.0)
            f["inferred_since"].add_metric([customer, e.ups, e.evidence], e.since)
        for ups_id, trigger, count in snap.triggered:
            f["triggered"].add_metric([ups_id, trigger], count)
        yield from f.values()
