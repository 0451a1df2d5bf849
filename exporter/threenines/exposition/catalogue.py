"""Every metric family the exporter exposes, as data: the one place its name, type, help, labels and unit are
spelled (issue 17). The producers (the contract renderer, the prometheus_client collectors) take their names and
help from here, the consumers (dashboards, Zabbix templates, the report) their names; docs/metrics.md documents
the same families and tests/foundation/test_metric_catalogue.py diffs the three: a real exporter's /metrics, this
catalogue and the page.

Names are the exposed ones (a counter's with `_total`, as in docs/metrics.md and PromQL; prometheus_client's
CounterMetricFamily takes the same name and writes it unchanged). `str(family)` is its name, so PromQL reads
`f"increase({CUSTOMER_SERVICE_OUTAGE_SECONDS_TOTAL}{{...}}[1h])"`. Each constant is named after its family
without the `threenines_` prefix. Only `threenines_` families are here: `process_*` is prometheus_client's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

Kind = Literal["counter", "gauge", "histogram", "info", "stateset"]
PREFIX = "threenines_"
_NAME = re.compile(r"threenines_[a-z][a-z0-9_]*[a-z0-9]")
_LABEL = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class Family:
    """One metric family. `kind` is what it means; an info family (value 1, metadata in labels) and a state
    set (one series per state, the one in force 1) are `gauge` in the text format (`exposed_type`).
    `labels` are in the order the producer writes them, without `le` (histograms) and without `vantage`:
    a replica exporter adds that to the families marked `vantage` (docs/metrics.md, "Labels")."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    unit: str = ""  # the base unit the name ends with (before `_total`); "" for counts, states and metadata
    vantage: bool = False

    def __post_init__(self) -> None:
        # Checked at import: a family that breaks the naming conventions cannot ship (prometheus.io, "Metric and
        # label naming"). Help is written unescaped by the contract renderer, so it must need no escaping.
        problems = []
        if not _NAME.fullmatch(self.name):
            problems.append("the name is not threenines_ + snake_case")
        base = self.name.removesuffix("_total")
        if (self.kind == "counter") != self.name.endswith("_total"):
            problems.append("counters, and only counters, end with _total")
        if self.kind == "info" and not base.endswith("_info"):
            problems.append("an info family ends with _info")
        if self.unit and not (base.endswith(f"_{self.unit}") or base.endswith(f"_{self.unit}_info")):
            problems.append(f"the name does not end with its unit _{self.unit}")
        if not self.help or any(c in self.help for c in "\\\n"):
            problems.append("help must be one line without backslashes")
        if any(not _LABEL.fullmatch(label) for label in self.labels) or len(set(self.labels)) != len(self.labels):
            problems.append("labels must be distinct snake_case names")
        if {"le", "vantage"} & set(self.labels):
            problems.append("le and vantage are not listed (see the class docstring)")
        if problems:
            raise ValueError(f"metric family {self.name}: " + "; ".join(problems))

    def __str__(self) -> str:
        return self.name

    @property
    def exposed_type(self) -> str:
        """The `# TYPE` of the text format (0.0.4)."""
        return "gauge" if self.kind in ("info", "stateset") else self.kind

    @property
    def header(self) -> str:
        """`# HELP` and `# TYPE` lines, as the renderer writes them before the samples."""
        return f"# HELP {self.name} {self.help}\n# TYPE {self.name} {self.exposed_type}\n"


def metric_family(family: Family,
                  samples: Mapping[Any, float] | None = None) -> GaugeMetricFamily | CounterMetricFamily:
    """A prometheus_client family for a collector, with `samples` (label values — a tuple, or one string — to
    value) added in sorted order (histograms: ledgers.audit.DelayHistograms.family)."""
    if family.kind == "histogram":
        raise ValueError(f"{family.name} is a histogram: build it with its buckets")
    cls = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
    out = cls(family.name, family.help, labels=family.labels)
    for key, value in sorted((samples or {}).items()):
        out.add_metric(list(key) if isinstance(key, tuple) else [key], value)
    return out


def cumulative_buckets(bounds: Sequence[float], counts: Sequence[int]) -> Iterator[tuple[float, int]]:
    """(upper bound, cumulative count) per bucket, +Inf last, from per-bucket counts (len(bounds) + 1 of them):
    the one place a histogram is made cumulative, for the text renderer and the collectors alike."""
    cumulative = 0
    for bound, count in zip((*bounds, math.inf), counts, strict=True):
        cumulative += count
        yield bound, cumulative


def histogram_family(family: Family, bounds: Sequence[float], counts: Mapping[str, Sequence[int]],
                     sums: Mapping[str, float]) -> HistogramMetricFamily:
    """A one-label histogram family from per-bucket counts and sums per label value, in sorted order."""
    out = HistogramMetricFamily(family.name, family.help, labels=family.labels)
    for key, per_bucket in sorted(counts.items()):
        out.add_metric([key], [(floatToGoString(b), n) for b, n in cumulative_buckets(bounds, per_bucket)], sums[key])
    return out


_TARGET = ("customer", "service", "target")
_SERVICE = ("customer", "service")
_PORT = ("customer", "target")
_CHANNEL = ("customer", "channel")
_OUTLET = ("device", "outlet", "customer")
_LINE = ("device", "phase")
_INFERRED = ("customer", "device", "evidence")

# --- Contract state, per target (exposition/contract.py) ---
SERVICE_UP = Family("threenines_service_up", "gauge",
                    "Contract state per target: 0 while a determined outage is open.", _TARGET, vantage=True)
SERVICE_KNOWN = Family("threenines_service_known", "gauge",
                       "0 while the target's state cannot be told (no fresh evidence).", _TARGET, vantage=True)
SERVICE_OUTAGE_SECONDS_TOTAL = Family(
    "threenines_service_outage_seconds_total", "counter",
    "Outage seconds, retroactive to the first failed probe at determination.", _TARGET, "seconds", vantage=True)
SERVICE_UNKNOWN_SECONDS_TOTAL = Family("threenines_service_unknown_seconds_total", "counter",
                                       "Seconds without evidence.", _TARGET, "seconds", vantage=True)
SERVICE_DETERMINED_TIMESTAMP_SECONDS = Family(
    "threenines_service_determined_timestamp_seconds", "gauge",
    "Unix time the open outage was determined; 0 when none is open.", _TARGET, "seconds", vantage=True)
SERVICE_OUTAGE_START_TIMESTAMP_SECONDS = Family(
    "threenines_service_outage_start_timestamp_seconds", "gauge",
    "Unix time of the first failed probe of the open outage; 0 when none is open.", _TARGET, "seconds",
    vantage=True)

# --- Contract state, per customer and service: what is billed (exposition/contract.py) ---
CUSTOMER_SERVICE_UP = Family("threenines_customer_service_up", "gauge",
                             "0 while any target of the customer's service is in a determined outage.", _SERVICE,
                             vantage=True)
CUSTOMER_SERVICE_KNOWN = Family("threenines_customer_service_known", "gauge",
                                "0 while the customer's service state cannot be told.", _SERVICE, vantage=True)
CUSTOMER_SERVICE_OUTAGE_SECONDS_TOTAL = Family(
    "threenines_customer_service_outage_seconds_total", "counter",
    "Billed outage seconds: union over the service's targets, final values.", _SERVICE, "seconds", vantage=True)
CUSTOMER_SERVICE_UNKNOWN_SECONDS_TOTAL = Family(
    "threenines_customer_service_unknown_seconds_total", "counter",
    "Seconds the customer's service state could not be told (union, final values).", _SERVICE, "seconds",
    vantage=True)
CUSTOMER_SERVICE_EXCLUDED = Family(
    "threenines_customer_service_excluded", "gauge",
    "1 while an exclusion window of this reason is active (exclusions ledger).", (*_SERVICE, "reason"),
    vantage=True)

# --- Customer metadata, from the inventory (exposition/contract.py) ---
CUSTOMER_INFO = Family("threenines_customer_info", "info", "Customer metadata from the inventory.",
                       ("customer", "name", "site", "timezone", "contacts_version"), vantage=True)
CUSTOMER_OBJECTIVE_RATIO = Family("threenines_customer_objective_ratio", "gauge",
                                  "Contract availability objective per calendar month.", _SERVICE, "ratio",
                                  vantage=True)
CUSTOMER_NOTIFICATION_DEADLINE_SECONDS = Family(
    "threenines_customer_notification_deadline_seconds", "gauge",
    "Contracted time from determination to notification.", ("customer",), "seconds", vantage=True)
PORT_INFO = Family("threenines_port_info", "info", "Customer port addresses from the inventory.",
                   (*_PORT, "address"), vantage=True)

# --- Probes (connectivity), per port (exposition/contract.py) ---
PROBE_TOTAL = Family("threenines_probe_total", "counter", "Contract probes completed.", _PORT, vantage=True)
PROBE_FAILURES_TOTAL = Family("threenines_probe_failures_total", "counter", "Contract probes that got no reply.",
                              _PORT, vantage=True)
PROBE_ERRORS_TOTAL = Family("threenines_probe_errors_total", "counter",
                            "Probes that could not be sent (no evidence).", (*_PORT, "reason"), vantage=True)
PROBE_RTT_SECONDS = Family("threenines_probe_rtt_seconds", "gauge",
                           "Mean round-trip time of the last probe's replies.", _PORT, "seconds", vantage=True)
PROBE_LOSS_RATIO = Family("threenines_probe_loss_ratio", "gauge", "Lost/sent echo requests of the last probe.",
                          _PORT, "ratio", vantage=True)
PROBE_LAST_TIMESTAMP_SECONDS = Family("threenines_probe_last_timestamp_seconds", "gauge",
                                      "Unix time of the last completed probe.", _PORT, "seconds", vantage=True)

# --- Power (SNMP, NUT), per device (exposition/power.py) ---
UPS_OUTPUT_SOURCE = Family(
    "threenines_ups_output_source", "stateset",
    "UPS output source as a state set: exactly one source is 1 while known, all 0 while unknown.",
    ("device", "source"))
UPS_BATTERY_CHARGE_RATIO = Family("threenines_ups_battery_charge_ratio", "gauge", "Battery charge, 0-1.",
                                  ("device",), "ratio")
UPS_BATTERY_RUNTIME_SECONDS = Family("threenines_ups_battery_runtime_seconds", "gauge",
                                     "Estimated battery runtime left.", ("device",), "seconds")
UPS_INPUT_VOLTAGE_VOLTS = Family("threenines_ups_input_voltage_volts", "gauge",
                                 "UPS input (mains) voltage per line.", _LINE, "volts")
UPS_OUTPUT_LOAD_RATIO = Family("threenines_ups_output_load_ratio", "gauge",
                               "UPS output load per line, 0-1 of its rated capacity.", _LINE, "ratio")
UPS_OUTPUT_VOLTAGE_VOLTS = Family("threenines_ups_output_voltage_volts", "gauge", "UPS output voltage per line.",
                                  _LINE, "volts")
POWER_INFERRED_DOWN = Family(
    "threenines_power_inferred_down", "gauge",
    "1 while the customer's power is down only by the blackout rule: UPS `device` announced its end "
    "(`evidence`), then it and every PDU it feeds went silent.", _INFERRED)
POWER_INFERRED_DOWN_SINCE_TIMESTAMP_SECONDS = Family(
    "threenines_power_inferred_down_since_timestamp_seconds", "gauge",
    "Unix time from which the blackout rule holds the UPS without output (see docs/power.md).", _INFERRED,
    "seconds")
POWER_TRIGGERED_POLLS_TOTAL = Family(
    "threenines_power_triggered_polls_total", "counter",
    "Polls of a UPS and the PDUs it feeds outside their schedule, by trigger (trap, exhaustion).",
    ("device", "trigger"))
PDU_OUTLET_ON = Family("threenines_pdu_outlet_on", "gauge", "1 when the outlet is on, 0 when off; absent while "
                       "unknown.", _OUTLET)
PDU_OUTLET_CURRENT_AMPERES = Family("threenines_pdu_outlet_current_amperes", "gauge", "Outlet current.", _OUTLET,
                                    "amperes")
PDU_OUTLET_POWER_WATTS = Family("threenines_pdu_outlet_power_watts", "gauge", "Outlet active power.", _OUTLET,
                                "watts")
PDU_OUTLET_ENERGY_JOULES_TOTAL = Family("threenines_pdu_outlet_energy_joules_total", "counter",
                                        "Outlet energy meter (the PDU's own counter).", _OUTLET, "joules")
PDU_PHASE_CURRENT_AMPERES = Family("threenines_pdu_phase_current_amperes", "gauge", "Phase / inlet current.",
                                   _LINE, "amperes")
PDU_PHASE_VOLTAGE_VOLTS = Family("threenines_pdu_phase_voltage_volts", "gauge", "Phase / inlet voltage.", _LINE,
                                 "volts")
DEVICE_UP = Family("threenines_device_up", "gauge", "1 when the last poll of the device succeeded.", ("device",))
DEVICE_POLL_DURATION_SECONDS = Family("threenines_device_poll_duration_seconds", "gauge",
                                      "Duration of the last poll.", ("device",), "seconds")
DEVICE_LAST_SUCCESS_TIMESTAMP_SECONDS = Family("threenines_device_last_success_timestamp_seconds", "gauge",
                                               "Unix time of the last successful poll (0: never).", ("device",),
                                               "seconds")
DEVICE_POLL_ERRORS_TOTAL = Family("threenines_device_poll_errors_total", "counter",
                                  "Poll failures and bad readings by reason.", ("device", "reason"))

# --- Notifications: the audit webhook (exposition/audit.py) ---
NOTIFICATION_DELAY_SECONDS = Family(
    "threenines_notification_delay_seconds", "histogram",
    "Determination to the first audited Alertmanager dispatch of each outage.", ("customer",), "seconds")
NOTIFICATION_DEADLINE_MISSED_TOTAL = Family(
    "threenines_notification_deadline_missed_total", "counter",
    "Outages with no audited first dispatch by their notification deadline (counted when it passed).",
    ("customer",))
NOTIFICATION_DEADLINE_MISSED_TIMESTAMP_SECONDS = Family(
    "threenines_notification_deadline_missed_timestamp_seconds", "gauge",
    "The deadline instant (determined_at + deadline) of this target's latest missed notification.", _TARGET,
    "seconds")
NOTIFICATION_DISPATCHES_TOTAL = Family(
    "threenines_notification_dispatches_total", "counter",
    "Alerts delivered to the audit webhook (every delivery, repeats included).", ("customer", "receiver"))
NOTIFICATION_LAST_DISPATCH_DETERMINED_TIMESTAMP_SECONDS = Family(
    "threenines_notification_last_dispatch_determined_timestamp_seconds", "gauge",
    "determined_at of the latest outage whose firing notification reached the audit ledger.", _TARGET, "seconds")
NOTIFICATION_REJECTED_ALERTS_TOTAL = Family(
    "threenines_notification_rejected_alerts_total", "counter",
    "Alerts the audit webhook did not record: their customer, target or receiver is not the inventory's.",
    ("reason",))

# --- Deliveries: the exporter delivers the customers' notifications (exposition/delivery.py) ---
NOTIFICATION_DELIVERIES_TOTAL = Family(
    "threenines_notification_deliveries_total", "counter",
    "Notifications a designated contact's channel accepted (SMTP 250, HTTP 2xx, PagerDuty 202).", _CHANNEL)
NOTIFICATION_DELIVERY_FAILURES_TOTAL = Family(
    "threenines_notification_delivery_failures_total", "counter",
    "Delivery attempts a contact's channel did not accept, by reason; each is retried with backoff.",
    (*_CHANNEL, "reason"))
NOTIFICATION_DELIVERY_PENDING = Family(
    "threenines_notification_delivery_pending", "gauge",
    "Notifications owed to a designated contact and not accepted by its channel yet.", _CHANNEL)
NOTIFICATION_DELIVERY_DELAY_SECONDS = Family(
    "threenines_notification_delivery_delay_seconds", "histogram",
    "Determination to the acceptance of an outage's notification by every designated contact.", ("customer",),
    "seconds")
NOTIFICATION_LAST_DELIVERY_DETERMINED_TIMESTAMP_SECONDS = Family(
    "threenines_notification_last_delivery_determined_timestamp_seconds", "gauge",
    "determined_at of the latest outage whose notification every designated contact accepted.", _TARGET,
    "seconds")
NOTIFICATION_WEBHOOK_REQUESTS_TOTAL = Family(
    "threenines_notification_webhook_requests_total", "counter",
    "Posts to the exporter's Alertmanager webhooks (audit, deliver) by status code; 4xx were refused.",
    ("endpoint", "code"))

# --- Application checks, per check (exposition/applications.py) ---
APPLICATION_INFO = Family("threenines_application_info", "info",
                          "Application checks from the inventory, by kind (http, smtp, imap, pop3, ftp, tcp); 1.",
                          (*_PORT, "kind"))
APPLICATION_CHECKS_TOTAL = Family("threenines_application_checks_total", "counter", "Application checks completed.",
                                  _PORT)
APPLICATION_CHECK_FAILURES_TOTAL = Family(
    "threenines_application_check_failures_total", "counter",
    "Application checks that failed (or could not be made), by reason.", (*_PORT, "reason"))
APPLICATION_CHECK_DURATION_SECONDS = Family("threenines_application_check_duration_seconds", "gauge",
                                            "Duration of the last application check.", _PORT, "seconds")
APPLICATION_CHECK_LAST_TIMESTAMP_SECONDS = Family("threenines_application_check_last_timestamp_seconds", "gauge",
                                                  "Unix time of the last completed application check.", _PORT,
                                                  "seconds")
APPLICATION_CERTIFICATE_EXPIRY_TIMESTAMP_SECONDS = Family(
    "threenines_application_certificate_expiry_timestamp_seconds", "gauge",
    "Unix time the TLS certificate the application last presented expires.", _PORT, "seconds")

# --- Vantage health: the canaries of each site (exposition/vantage_health.py, docs/ha.md) ---
VANTAGE_BLIND = Family(
    "threenines_vantage_blind", "gauge",
    "1 while no canary of the site answers: this exporter's probe failures of the site's customers are no "
    "evidence (unknown, not outage).", ("site",), vantage=True)
CANARY_UP = Family("threenines_canary_up", "gauge",
                   "1 if the canary's latest probe was answered, 0 if not; absent before its first probe.",
                   ("site", "canary"), vantage=True)
VANTAGE_BLIND_FAILURES_TOTAL = Family(
    "threenines_vantage_blind_failures_total", "counter",
    "Customer probe failures seen while blind for the site, passed on as no evidence.", ("site",), vantage=True)

# --- Replica exporters: how their evidence merges (exposition/merge_policy.py, docs/ha.md "Merged views") ---
MERGE_POLICY_INFO = Family(
    "threenines_merge_policy_info", "info",
    "The exclusions file's policy.merge for replica exporters (all: the default, also without the file; any); 1.",
    ("merge",), vantage=True)

# --- The exporter's own health (exposition/contract.py, serve/process.py, exposition/clock.py) ---
CONFIG_LAST_RELOAD_SUCCESSFUL = Family(
    "threenines_config_last_reload_successful", "gauge",
    "1 if the last inventory (re)load succeeded; 0 keeps the previous one running.")
CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS = Family(
    "threenines_config_last_reload_success_timestamp_seconds", "gauge",
    "Unix time of the last successful inventory load.", unit="seconds")
PROBE_SCHEDULE_LAG_SECONDS = Family("threenines_probe_schedule_lag_seconds", "histogram",
                                    "How late probes start against their schedule.", unit="seconds")
PROBES_IN_FLIGHT = Family("threenines_probes_in_flight", "gauge", "ICMP probes in flight.")
PROBE_UNMATCHED_REPLIES_TOTAL = Family(
    "threenines_probe_unmatched_replies_total", "counter",
    "Echo replies that matched no request in flight (late past the timeout, duplicated, or from an address not "
    "pinged): many of them mean probe timeouts are too short.")
LEDGER_WRITES_TOTAL = Family("threenines_ledger_writes_total", "counter", "Ledger writes by result.",
                             ("ledger", "result"))
LEDGER_RECOVERY_WRITES_TOTAL = Family(
    "threenines_ledger_recovery_writes_total", "counter",
    "Writes of the ledger's recovery state (targets known, failure-run checkpoints, heartbeat) by result.",
    ("ledger", "kind", "result"))
LEDGER_PENDING_WRITES = Family("threenines_ledger_pending_writes", "gauge",
                               "Ledger writes the disk refused so far, kept in memory and retried at every tick.",
                               ("ledger", "kind"))
METRICS_RENDER_SECONDS = Family(
    "threenines_metrics_render_seconds", "gauge",
    "Seconds the last render took (a scrape renders the changes published since the previous one).",
    unit="seconds")
EXPORTER_ACCOUNTING_START_TIMESTAMP_SECONDS = Family(
    "threenines_exporter_accounting_start_timestamp_seconds", "gauge",
    "Unix time from which this process's counters count (the heartbeat it resumed from, or its start).",
    unit="seconds", vantage=True)
TICK_ERRORS_TOTAL = Family("threenines_tick_errors_total", "counter",
                           "Exceptions a tick (or another loop callback) caught and counted instead of stopping, "
                           "by stage.", ("stage",))
CLOCK_STEPS_TOTAL = Family("threenines_clock_steps_total", "counter",
                           "Steps of the system clock (more than 1 s against the monotonic clock) seen by the "
                           "exporter, by direction; durations never include them.", ("direction",))
BUILD_INFO = Family("threenines_build_info", "info", "threenines version, and which prober wire runs.",
                    ("version", "wire"))

# Every family by name, in the order above.
FAMILIES: dict[str, Family] = {f.name: f for f in list(globals().values()) if isinstance(f, Family)}
