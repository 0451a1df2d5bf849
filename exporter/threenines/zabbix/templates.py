"""The Zabbix 6.0 templates, generated from the metric contract (docs/metrics.md) so nothing is written twice.

`threenines by HTTP` scrapes the exporter's /metrics with one HTTP agent item; everything else is a dependent
item with Prometheus-pattern preprocessing, discovered per customer/service/target, UPS, PDU outlet and device.
The outage trigger reads `threenines_service_up` as is: the exporter already applied the contract's
determination rule, and a second rule in Zabbix would make the two disagree. Application checks (the
customer's own WWW, e-mail, FTP) are discovered apart from the billed services, from the same exporter state
(docs/zabbix.md says why not from Zabbix's net.tcp.service).

`threenines contract ping` is for sites that want Zabbix itself to ping a customer port at the contract
interval; its trigger fires after the contract's consecutive misses (a macro, default 2 × 5 min).

`threenines merged by Prometheus` is the view over replica exporters (vantages): one HTTP agent item asks
Prometheus' /api/v1/query for the `threenines-vantages-merge` recording rules (threenines.dashboards.merge),
which apply the contract's merge rule with the billing policy; dependent items read that result with JSONPath.
Zabbix cannot merge the replicas' own hosts (docs/zabbix.md "Replica exporters" says why), so it reads the merge.

Run `threenines zabbix-templates -o zabbix_templates` (make zabbix-templates) to rewrite zabbix_templates/;
tests/zabbix checks the files are current.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from threenines.dashboards import merge
from threenines.exposition.catalogue import (
    APPLICATION_CERTIFICATE_EXPIRY_TIMESTAMP_SECONDS,
    APPLICATION_CHECK_DURATION_SECONDS,
    APPLICATION_CHECK_FAILURES_TOTAL,
    APPLICATION_CHECK_LAST_TIMESTAMP_SECONDS,
    APPLICATION_CHECKS_TOTAL,
    APPLICATION_INFO,
    BUILD_INFO,
    CONFIG_LAST_RELOAD_SUCCESSFUL,
    CUSTOMER_INFO,
    CUSTOMER_OBJECTIVE_RATIO,
    CUSTOMER_SERVICE_KNOWN,
    CUSTOMER_SERVICE_OUTAGE_SECONDS_TOTAL,
    CUSTOMER_SERVICE_UNKNOWN_SECONDS_TOTAL,
    CUSTOMER_SERVICE_UP,
    DEVICE_LAST_SUCCESS_TIMESTAMP_SECONDS,
    DEVICE_POLL_DURATION_SECONDS,
    DEVICE_UP,
    PDU_OUTLET_CURRENT_AMPERES,
    PDU_OUTLET_ENERGY_JOULES_TOTAL,
    PDU_OUTLET_ON,
    PDU_OUTLET_POWER_WATTS,
    PDU_PHASE_CURRENT_AMPERES,
    PDU_PHASE_VOLTAGE_VOLTS,
    PORT_INFO,
    PROBE_FAILURES_TOTAL,
    PROBE_LOSS_RATIO,
    PROBE_RTT_SECONDS,
    PROBE_TOTAL,
    SERVICE_DETERMINED_TIMESTAMP_SECONDS,
    SERVICE_KNOWN,
    SERVICE_OUTAGE_SECONDS_TOTAL,
    SERVICE_OUTAGE_START_TIMESTAMP_SECONDS,
    SERVICE_UNKNOWN_SECONDS_TOTAL,
    SERVICE_UP,
    UPS_BATTERY_CHARGE_RATIO,
    UPS_BATTERY_RUNTIME_SECONDS,
    UPS_INPUT_VOLTAGE_VOLTS,
    UPS_OUTPUT_LOAD_RATIO,
    UPS_OUTPUT_SOURCE,
)

HTTP_TEMPLATE = "threenines by HTTP"
PING_TEMPLATE = "threenines contract ping"
GROUP = "Templates/threenines"
MASTER_KEY = "threenines.metrics"
EXPORT_VERSION = "6.0"

# Problem tags: `customer`, `service`, `target` route actions; `threenines` says what kind of problem it is,
# so SLA services select contract outages only (never "unknown" or a single feed's outlet).
KIND_TAG = "threenines"
OUTAGE = "outage"
# Only contract-outage triggers carry `sla=<customer>/<service>`: one exact tag for a Zabbix service to match,
# whatever else a site adds.
SLA_TAG = "sla"


def uuid_for(*parts: str) -> str:
    """A stable UUIDv4-shaped id (Zabbix 6.0 insists on version and variant bits) derived from a name."""
    raw = bytearray(hashlib.sha256("/".join(("threenines", *parts)).encode()).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return raw.hex()


@dataclass(frozen=True)
class Macro:
    name: str
    value: str
    description: str
    secret: bool = False


@dataclass(frozen=True)
class Trigger:
    name: str
    expression: str  # with {ITEM} where the item's `/template/key` goes
    priority: str
    description: str
    tags: tuple[tuple[str, str], ...]
    recovery: str = ""  # a recovery expression ({ITEM} as above); empty: recover when the problem clears
    opdata: str = ""


@dataclass(frozen=True)
class Metric:
    """One dependent item (or item prototype) reading one series of the metric contract."""

    metric: str
    key: str
    name: str
    labels: tuple[str, ...] = ()  # label=LLD macro pairs that select the series, in order
    value_type: str = "FLOAT"
    units: str = ""
    valuemap: str | None = None
    description: str = ""
    fixed: tuple[tuple[str, str], ...] = ()  # label="literal" selectors
    output_label: str = ""  # take this label's value instead of the sample value
    function: str = ""  # aggregate the matching series (sum|min|max|avg|count): a family with one series per line
    compare: str = ""  # e.g. "== 1" in the pattern
    tags: tuple[tuple[str, str], ...] = ()
    triggers: tuple[Trigger, ...] = ()
    trends: bool = True
    delta: bool = False  # store the change since the previous scrape (Zabbix "simple change") of a counter

    def pattern(self) -> str:
        selectors = [f'{label}="{{#{label.upper()}}}"' for label in self.labels]
        selectors += [f'{label}="{value}"' for label, value in self.fixed]
        body = f"{self.metric}{{{','.join(selectors)}}}" if selectors else self.metric
        return f"{body} {self.compare}" if self.compare else body

    def full_key(self) -> str:
        if not self.labels:
            return self.key
        params = ",".join('"{#' + label.upper() + '}"' for label in self.labels)
        return f"{self.key}[{params}]"


@dataclass(frozen=True)
class Discovery:
    """A low-level discovery rule over one metric family: one LLD row per series, macros from its labels."""

    key: str
    name: str
    metric: str
    macros: tuple[str, ...]  # label names; {#LABEL} macros
    description: str
    prototypes: tuple[Metric, ...]
    selector: str = ""  # extra label matchers for the discovery pattern, e.g. customer=~".+"


@dataclass(frozen=True)
class ValueMap:
    name: str
    mappings: tuple[tuple[str, str], ...]


SERVICE_LABELS = ("customer", "service", "target")
SCOPE_TAGS = (("customer", "{#CUSTOMER}"), ("service", "{#SERVICE}"), ("target", "{#TARGET}"))

VALUE_MAPS = (
    ValueMap("threenines contract state", (("0", "Unavailable"), ("1", "Available"))),
    ValueMap("threenines evidence", (("0", "Unknown"), ("1", "Known"))),
    ValueMap("threenines device state", (("0", "Unreachable"), ("1", "Reachable"))),
    ValueMap("threenines outlet state", (("0", "Off"), ("1", "On"))),
    ValueMap("threenines flag", (("0", "No"), ("1", "Yes"))),
    ValueMap("threenines ping", (("0", "No answer"), ("1", "Answered"))),
)

HTTP_MACROS = (
    Macro("{$THREENINES.URL}", "http://127.0.0.1:9839/metrics", "The exporter's /metrics URL (https:// for TLS)."),
    Macro("{$THREENINES.INTERVAL}", "1m", "How often Zabbix scrapes /metrics."),
    Macro("{$THREENINES.USER}", "", "Basic-auth user for /metrics, if the exporter's web config has basic_auth_users."),
    Macro("{$THREENINES.PASSWORD}", "", "Basic-auth password for /metrics.", secret=True),
    Macro("{$THREENINES.TLS.CERT}", "", "Client certificate file for mutual TLS (on the Zabbix server)."),
    Macro("{$THREENINES.TLS.KEY}", "", "Client key file for mutual TLS (on the Zabbix server)."),
    Macro("{$THREENINES.NODATA}", "5m", "No scrape for this long raises 'exporter scrape failing'."),
    Macro("{$THREENINES.UPS.RUNTIME.MIN}", "600",
          "Seconds of battery runtime below which 'UPS runtime low' fires (context: {#DEVICE})."),
    Macro("{$THREENINES.APP.CERT.DAYS}", "14",
          "Days before its expiry that an application's TLS certificate raises 'certificate expires soon' "
          "(context: {#TARGET}); the alert ThreeninesApplicationCertificateExpiring uses 14."),
)

PING_MACROS = (
    Macro("{$THREENINES.PING.INTERVAL}", "5m", "Probe interval from the contract (inventory ping.interval)."),
    Macro("{$THREENINES.PING.PACKETS}", "3", "Echo requests per probe; a probe fails only when none is answered."),
    Macro("{$THREENINES.PING.PACKET_INTERVAL}", "200", "Milliseconds between the echo requests of one probe."),
    Macro("{$THREENINES.PING.TIMEOUT}", "2000", "Milliseconds to wait for each reply."),
    Macro("{$THREENINES.PING.MISSES}", "#2",
          "Consecutive failed probes that determine an outage, as #N (the contract's threshold)."),
    Macro("{$THREENINES.CUSTOMER}", "", "Inventory customer id (set by threenines zabbix-sync)."),
    Macro("{$THREENINES.TARGET}", "", "Inventory port id (set by threenines zabbix-sync)."),
)


def _state(metric: str, key: str, name: str, valuemap: str, description: str,
           triggers: tuple[Trigger, ...] = ()) -> Metric:
    return Metric(metric, key, name, SERVICE_LABELS, valuemap=valuemap, description=description,
                  tags=SCOPE_TAGS, triggers=triggers, value_type="UNSIGNED")


SERVICE_TARGETS = Discovery(
    key="threenines.service.discovery",
    name="Contract targets",
    metric=SERVICE_UP.name,
    # Application checks are contract targets too, but not the provider's service: they have a discovery of
    # their own (APPLICATIONS), whose trigger never calls them a service outage (docs/design.md "Applications").
    selector='service!="application"',
    macros=SERVICE_LABELS,
    description="One row per customer × service × target the exporter holds a contract state for (billed "
                "services: connectivity, power; application checks are discovered under 'Application checks').",
    prototypes=(
        _state(SERVICE_UP.name, "threenines.service.up",
               "{#CUSTOMER} {#SERVICE} {#TARGET}: contract state", "threenines contract state",
               "0 while a determined outage is open (the exporter applied the contract's determination rule).",
               (Trigger("{#CUSTOMER} {#SERVICE} {#TARGET}: service unavailable",
                        "last({ITEM})=0", "HIGH",
                        "The exporter determined an outage under the contract (threshold consecutive failed "
                        "probes). The outage is counted from the first failed probe; Zabbix opens the problem "
                        "at determination.",
                        (*SCOPE_TAGS, (KIND_TAG, OUTAGE), (SLA_TAG, "{#CUSTOMER}/{#SERVICE}"))),)),
        _state(SERVICE_KNOWN.name, "threenines.service.known",
               "{#CUSTOMER} {#SERVICE} {#TARGET}: evidence", "threenines evidence",
               "0 while the state cannot be told (no fresh probe or poll result).",
               (Trigger("{#CUSTOMER} {#SERVICE} {#TARGET}: state unknown", "last({ITEM})=0", "WARNING",
                        "No fresh evidence: neither up nor down. Unknown time is reported separately (coverage), "
                        "never as outage.",
                        (*SCOPE_TAGS, (KIND_TAG, "unknown"))),)),
        Metric(SERVICE_OUTAGE_SECONDS_TOTAL.name, "threenines.service.outage_seconds",
               "{#CUSTOMER} {#SERVICE} {#TARGET}: outage seconds", SERVICE_LABELS, units="s", tags=SCOPE_TAGS,
               description="Counter; jumps by the pending time at determination (retroactive to the first "
                           "failed probe). Restarts at 0 with the exporter."),
        Metric(SERVICE_UNKNOWN_SECONDS_TOTAL.name, "threenines.service.unknown_seconds",
               "{#CUSTOMER} {#SERVICE} {#TARGET}: unknown seconds", SERVICE_LABELS, units="s", tags=SCOPE_TAGS,
               description="Counter of seconds without evidence."),
        Metric(SERVICE_DETERMINED_TIMESTAMP_SECONDS.name, "threenines.service.determined",
               "{#CUSTOMER} {#SERVICE} {#TARGET}: outage determined at", SERVICE_LABELS, units="unixtime",
               tags=SCOPE_TAGS, trends=False, description="When the open outage was determined; 0 when none is open."),
        Metric(SERVICE_OUTAGE_START_TIMESTAMP_SECONDS.name, "threenines.service.outage_start",
               "{#CUSTOMER} {#SERVICE} {#TARGET}: outage started at", SERVICE_LABELS, units="unixtime",
               tags=SCOPE_TAGS, trends=False,
               description="First failed probe of the open outage (where the contract starts counting); 0 when none."),
    ),
)

CUSTOMER_SERVICES = Discovery(
    key="threenines.customer_service.discovery",
    name="Billed customer services",
    # The objective exists exactly for the billed services: the application service only where the customer's
    # contract has applications_billable.
    metric=CUSTOMER_OBJECTIVE_RATIO.name,
    macros=("customer", "service"),
    description="One row per billed customer × service: the union of its targets, as billed.",
    prototypes=(
        Metric(CUSTOMER_SERVICE_UP.name, "threenines.customer_service.up",
               "{#CUSTOMER} {#SERVICE}: contract state", ("customer", "service"), value_type="UNSIGNED",
               valuemap="threenines contract state", tags=SCOPE_TAGS[:2]),
        Metric(CUSTOMER_SERVICE_KNOWN.name, "threenines.customer_service.known",
               "{#CUSTOMER} {#SERVICE}: evidence", ("customer", "service"), value_type="UNSIGNED",
               valuemap="threenines evidence", tags=SCOPE_TAGS[:2]),
        Metric(CUSTOMER_SERVICE_OUTAGE_SECONDS_TOTAL.name, "threenines.customer_service.outage_seconds",
               "{#CUSTOMER} {#SERVICE}: outage seconds", ("customer", "service"), units="s", tags=SCOPE_TAGS[:2],
               description="What the billing report counts (union of the targets, never double counted)."),
        Metric(CUSTOMER_SERVICE_UNKNOWN_SECONDS_TOTAL.name, "threenines.customer_service.unknown_seconds",
               "{#CUSTOMER} {#SERVICE}: unknown seconds", ("customer", "service"), units="s", tags=SCOPE_TAGS[:2]),
        Metric(CUSTOMER_OBJECTIVE_RATIO.name, "threenines.customer_service.objective",
               "{#CUSTOMER} {#SERVICE}: objective", ("customer", "service"), tags=SCOPE_TAGS[:2], trends=False,
               description="The contract's monthly availability objective, e.g. 0.999."),
    ),
)

PORTS = Discovery(
    key="threenines.port.discovery",
    name="Customer ports",
    metric=PORT_INFO.name,
    macros=("customer", "target", "address"),
    description="One row per customer port pinged by the exporter.",
    prototypes=(
        Metric(PROBE_RTT_SECONDS.name, "threenines.probe.rtt", "{#CUSTOMER} {#TARGET}: probe RTT",
               ("customer", "target"), units="s", tags=(SCOPE_TAGS[0], SCOPE_TAGS[2]),
               description="Mean RTT of the last probe's answered packets (absent until one is answered)."),
        Metric(PROBE_LOSS_RATIO.name, "threenines.probe.loss", "{#CUSTOMER} {#TARGET}: probe loss",
               ("customer", "target"), tags=(SCOPE_TAGS[0], SCOPE_TAGS[2]), description="Lost/sent of the last probe."),
        Metric(PROBE_TOTAL.name, "threenines.probe.count", "{#CUSTOMER} {#TARGET}: probes sent",
               ("customer", "target"), value_type="UNSIGNED", tags=(SCOPE_TAGS[0], SCOPE_TAGS[2])),
        Metric(PROBE_FAILURES_TOTAL.name, "threenines.probe.failures", "{#CUSTOMER} {#TARGET}: probes failed",
               ("customer", "target"), value_type="UNSIGNED", tags=(SCOPE_TAGS[0], SCOPE_TAGS[2])),
    ),
)

APPLICATION = "application"
APP_LABELS = ("customer", "target")
APP_SCOPE = (SCOPE_TAGS[0], ("service", APPLICATION), SCOPE_TAGS[2])
APP_FIXED = (("service", APPLICATION),)

APPLICATIONS = Discovery(
    key="threenines.application.discovery",
    name="Application checks",
    metric=APPLICATION_INFO.name,
    macros=("customer", "target", "kind"),
    description="One row per application check of the inventory (the customer's own WWW, e-mail, FTP…): its "
                "contract state as the exporter determined it, and the check's own measurements.",
    prototypes=(
        Metric(SERVICE_UP.name, "threenines.application.up", "{#CUSTOMER} application {#TARGET}: contract state",
               APP_LABELS, fixed=APP_FIXED, value_type="UNSIGNED", valuemap="threenines contract state",
               tags=APP_SCOPE,
               description="0 while a determined outage of the check is open (threshold consecutive failed checks, "
                           "the exporter's determination).",
               triggers=(Trigger("{#CUSTOMER} application {#TARGET} ({#KIND}): unavailable", "last({ITEM})=0",
                                 "HIGH",
                                 "The customer's own application failed its check on consecutive runs (the "
                                 "contract's determination rule, applied by the exporter). The contract promises "
                                 "the customer the same notification as for an outage, but it is not the "
                                 "provider's outage time unless the customer's contract has applications_billable "
                                 "(only then does threenines zabbix-sync create the SLA service this problem's sla "
                                 "tag feeds). The failure reason is in the item 'failures (<reason>)' of this check.",
                                 (*APP_SCOPE, (KIND_TAG, APPLICATION), (SLA_TAG, "{#CUSTOMER}/" + APPLICATION))),)),
        Metric(SERVICE_KNOWN.name, "threenines.application.known", "{#CUSTOMER} application {#TARGET}: evidence",
               APP_LABELS, fixed=APP_FIXED, value_type="UNSIGNED", valuemap="threenines evidence", tags=APP_SCOPE,
               description="0 while the check's state cannot be told (the check could not be made here: reason "
                           "local or config).",
               triggers=(Trigger("{#CUSTOMER} application {#TARGET}: state unknown", "last({ITEM})=0", "WARNING",
                                 "The check could not be made from the exporter: neither up nor down.",
                                 (*APP_SCOPE, (KIND_TAG, "unknown"))),)),
        Metric(SERVICE_OUTAGE_SECONDS_TOTAL.name, "threenines.application.outage_seconds",
               "{#CUSTOMER} application {#TARGET}: outage seconds", APP_LABELS, fixed=APP_FIXED, units="s",
               tags=APP_SCOPE, description="Counter, retroactive to the first failed check at determination."),
        Metric(APPLICATION_CHECKS_TOTAL.name, "threenines.application.checks",
               "{#CUSTOMER} application {#TARGET}: checks", APP_LABELS, value_type="UNSIGNED", tags=APP_SCOPE,
               description="Checks completed (counter)."),
        Metric(APPLICATION_CHECK_DURATION_SECONDS.name, "threenines.application.duration",
               "{#CUSTOMER} application {#TARGET}: check duration", APP_LABELS, units="s", tags=APP_SCOPE),
        Metric(APPLICATION_CHECK_LAST_TIMESTAMP_SECONDS.name, "threenines.application.last_check",
               "{#CUSTOMER} application {#TARGET}: last check", APP_LABELS, units="unixtime", tags=APP_SCOPE,
               trends=False),
    ),
)

APPLICATION_FAILURES = Discovery(
    key="threenines.application.failure.discovery",
    name="Application check failure reasons",
    metric=APPLICATION_CHECK_FAILURES_TOTAL.name,
    macros=("customer", "target", "reason"),
    description="One row per application check and failure reason seen (connect_refused, timeout, tls_expired, "
                "bad_status…; local and config: the check could not be made, unknown rather than failed).",
    prototypes=(
        Metric(APPLICATION_CHECK_FAILURES_TOTAL.name, "threenines.application.failures",
               "{#CUSTOMER} application {#TARGET}: failures ({#REASON})", ("customer", "target", "reason"),
               value_type="UNSIGNED", tags=(*APP_SCOPE, ("reason", "{#REASON}")), delta=True,
               description="Checks that failed with this reason since the previous scrape: non-zero on the "
                           "reason the check fails with now."),
    ),
)

APPLICATION_CERTIFICATES = Discovery(
    key="threenines.application.certificate.discovery",
    name="Application TLS certificates",
    metric=APPLICATION_CERTIFICATE_EXPIRY_TIMESTAMP_SECONDS.name,
    macros=("customer", "target"),
    description="One row per application check that presented a TLS certificate (https; smtp, imap, pop3, ftp "
                "with TLS).",
    prototypes=(
        Metric(APPLICATION_CERTIFICATE_EXPIRY_TIMESTAMP_SECONDS.name, "threenines.application.certificate_expiry",
               "{#CUSTOMER} application {#TARGET}: certificate expires", APP_LABELS, units="unixtime",
               tags=APP_SCOPE, trends=False,
               triggers=(Trigger("{#CUSTOMER} application {#TARGET}: TLS certificate expires soon",
                                 'last({ITEM})-now()<{$THREENINES.APP.CERT.DAYS:"{#TARGET}"}*86400', "WARNING",
                                 "The certificate the application presents expires within "
                                 "{$THREENINES.APP.CERT.DAYS} days (or has expired): tell the customer before the "
                                 "check, and its visitors, fail with tls_expired.",
                                 (*APP_SCOPE, (KIND_TAG, "certificate"))),)),
    ),
)

DEVICE_TAG = (("device", "{#DEVICE}"),)

UPSES = Discovery(
    key="threenines.ups.discovery",
    name="UPSes",
    metric=UPS_OUTPUT_SOURCE.name,
    selector='source="normal"',
    macros=("device",),
    description="One row per UPS (the output-source state set has one series per source; 'normal' picks one).",
    prototypes=(
        Metric(UPS_OUTPUT_SOURCE.name, "threenines.ups.source", "UPS {#DEVICE}: output source",
               ("device",), value_type="CHAR", output_label="source", compare="== 1", tags=DEVICE_TAG, trends=False,
               description="normal, battery, bypass, none or other."),
        Metric(UPS_OUTPUT_SOURCE.name, "threenines.ups.on_battery", "UPS {#DEVICE}: on battery",
               ("device",), fixed=(("source", "battery"),), value_type="UNSIGNED", valuemap="threenines flag",
               tags=DEVICE_TAG,
               triggers=(Trigger("UPS {#DEVICE}: on battery", "last({ITEM})=1", "AVERAGE",
                                 "Mains is gone at this UPS; customers fed through it run on battery.",
                                 (*DEVICE_TAG, (KIND_TAG, "ups"))),)),
        Metric(UPS_BATTERY_RUNTIME_SECONDS.name, "threenines.ups.runtime", "UPS {#DEVICE}: battery runtime",
               ("device",), units="s", tags=DEVICE_TAG,
               triggers=(Trigger("UPS {#DEVICE}: runtime low", 'last({ITEM})<{$THREENINES.UPS.RUNTIME.MIN:"{#DEVICE}"}',
                                 "HIGH", "Estimated battery runtime is below {$THREENINES.UPS.RUNTIME.MIN}s.",
                                 (*DEVICE_TAG, (KIND_TAG, "ups")), opdata="Runtime: {ITEM.LASTVALUE1}"),)),
        Metric(UPS_BATTERY_CHARGE_RATIO.name, "threenines.ups.charge", "UPS {#DEVICE}: battery charge",
               ("device",), tags=DEVICE_TAG),
        # One series per UPS line (label phase): with three, a plain pattern matches three and the item fails.
        Metric(UPS_INPUT_VOLTAGE_VOLTS.name, "threenines.ups.input_voltage",
               "UPS {#DEVICE}: input voltage (lowest line)", ("device",), units="V", tags=DEVICE_TAG, function="min",
               description="The lowest line's input voltage: a lost phase shows."),
        Metric(UPS_OUTPUT_LOAD_RATIO.name, "threenines.ups.load", "UPS {#DEVICE}: output load (highest line)",
               ("device",), tags=DEVICE_TAG, function="max",
               description="The most loaded line's output load."),
    ),
)

OUTLET_TAGS = (("device", "{#DEVICE}"), ("outlet", "{#OUTLET}"))

OUTLETS = Discovery(
    key="threenines.pdu.outlet.discovery",
    name="PDU outlets",
    metric=PDU_OUTLET_ON.name,
    macros=("device", "outlet"),
    description="Every outlet of every polled PDU.",
    prototypes=(
        Metric(PDU_OUTLET_ON.name, "threenines.pdu.outlet.on", "PDU {#DEVICE} outlet {#OUTLET}: state",
               ("device", "outlet"), value_type="UNSIGNED", valuemap="threenines outlet state", tags=OUTLET_TAGS),
        Metric(PDU_OUTLET_CURRENT_AMPERES.name, "threenines.pdu.outlet.current",
               "PDU {#DEVICE} outlet {#OUTLET}: current", ("device", "outlet"), units="A", tags=OUTLET_TAGS),
        Metric(PDU_OUTLET_POWER_WATTS.name, "threenines.pdu.outlet.power",
               "PDU {#DEVICE} outlet {#OUTLET}: power", ("device", "outlet"), units="W", tags=OUTLET_TAGS),
        Metric(PDU_OUTLET_ENERGY_JOULES_TOTAL.name, "threenines.pdu.outlet.energy",
               "PDU {#DEVICE} outlet {#OUTLET}: energy", ("device", "outlet"), units="J", tags=OUTLET_TAGS),
    ),
)

CUSTOMER_OUTLETS = Discovery(
    key="threenines.pdu.customer_outlet.discovery",
    name="Customer outlets",
    metric=PDU_OUTLET_ON.name,
    selector='customer=~".+"',
    macros=("customer", "device", "outlet"),
    description="Outlets the inventory maps to a customer (one feed of possibly several).",
    prototypes=(
        Metric(PDU_OUTLET_ON.name, "threenines.pdu.customer_outlet.on",
               "{#CUSTOMER} outlet {#DEVICE}/{#OUTLET}: state", ("customer", "device", "outlet"),
               value_type="UNSIGNED", valuemap="threenines outlet state",
               tags=(SCOPE_TAGS[0], *OUTLET_TAGS),
               triggers=(Trigger("{#CUSTOMER}: outlet {#DEVICE}/{#OUTLET} off", "last({ITEM})=0", "AVERAGE",
                                 "One of the customer's outlets is off. With A/B feeds this is a lost feed, not yet "
                                 "a power interruption: that is the power service's own 'service unavailable'.",
                                 (SCOPE_TAGS[0], *OUTLET_TAGS, (KIND_TAG, "outlet"))),)),
    ),
)

PHASES = Discovery(
    key="threenines.pdu.phase.discovery",
    name="PDU phases",
    metric=PDU_PHASE_CURRENT_AMPERES.name,
    macros=("device", "phase"),
    description="Every input phase of every polled PDU.",
    prototypes=(
        Metric(PDU_PHASE_CURRENT_AMPERES.name, "threenines.pdu.phase.current",
               "PDU {#DEVICE} phase {#PHASE}: current", ("device", "phase"), units="A", tags=DEVICE_TAG),
        Metric(PDU_PHASE_VOLTAGE_VOLTS.name, "threenines.pdu.phase.voltage",
               "PDU {#DEVICE} phase {#PHASE}: voltage", ("device", "phase"), units="V", tags=DEVICE_TAG),
    ),
)

DEVICES = Discovery(
    key="threenines.device.discovery",
    name="SNMP devices",
    metric=DEVICE_UP.name,
    macros=("device",),
    description="Every UPS and PDU the exporter polls.",
    prototypes=(
        Metric(DEVICE_UP.name, "threenines.device.up", "Device {#DEVICE}: SNMP", ("device",),
               value_type="UNSIGNED", valuemap="threenines device state", tags=DEVICE_TAG,
               triggers=(Trigger("Device {#DEVICE}: SNMP device unreachable", "last({ITEM})=0", "AVERAGE",
                                 "The last SNMP poll failed. Customers fed through it are 'unknown', not down, "
                                 "until evidence returns.", (*DEVICE_TAG, (KIND_TAG, "device"))),)),
        Metric(DEVICE_POLL_DURATION_SECONDS.name, "threenines.device.poll_duration",
               "Device {#DEVICE}: poll duration", ("device",), units="s", tags=DEVICE_TAG),
        Metric(DEVICE_LAST_SUCCESS_TIMESTAMP_SECONDS.name, "threenines.device.last_success",
               "Device {#DEVICE}: last successful poll", ("device",), units="unixtime", tags=DEVICE_TAG,
               trends=False),
    ),
)

DISCOVERIES = (SERVICE_TARGETS, CUSTOMER_SERVICES, PORTS, APPLICATIONS, APPLICATION_FAILURES,
               APPLICATION_CERTIFICATES, UPSES, OUTLETS, CUSTOMER_OUTLETS, PHASES, DEVICES)

EXPORTER_ITEMS = (
    Metric(BUILD_INFO.name, "threenines.build_info", "Exporter: scraped", value_type="UNSIGNED",
           tags=(("component", "exporter"),),
           description="1 on every successful scrape of /metrics; nothing when the scrape fails.",
           triggers=(Trigger("threenines exporter: scrape failing", "nodata({ITEM},{$THREENINES.NODATA})=1", "HIGH",
                             "No successful scrape of {$THREENINES.URL} for {$THREENINES.NODATA}. Every contract "
                             "state is unknown in Zabbix until scrapes return (the exporter keeps probing).",
                             (("component", "exporter"), (KIND_TAG, "exporter"))),)),
    Metric(CONFIG_LAST_RELOAD_SUCCESSFUL.name, "threenines.config.reload_ok",
           "Exporter: last configuration reload", value_type="UNSIGNED", valuemap="threenines flag",
           tags=(("component", "exporter"),),
           triggers=(Trigger("threenines exporter: configuration reload rejected", "last({ITEM})=0", "WARNING",
                             "The exporter refused a new inventory and keeps running the previous one.",
                             (("component", "exporter"), (KIND_TAG, "exporter"))),)),
)


def metric_names() -> set[str]:
    """Every contract metric the templates read (tests check each against docs/metrics.md)."""
    metrics = [m for d in DISCOVERIES for m in d.prototypes] + list(EXPORTER_ITEMS)
    return {m.metric for m in metrics} | {d.metric for d in DISCOVERIES}


# ---------------------------------------------------------------------------------------------------
# Rendering to the 6.0 export structure


def _tags(tags: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    return [{"tag": tag, "value": value} for tag, value in tags]


def _trigger(template: str, item_key: str, trigger: Trigger, scope: str) -> dict[str, Any]:
    ref = f"/{template}/{item_key}"
    out: dict[str, Any] = {
        "uuid": uuid_for(template, scope, "trigger", trigger.name),
        "expression": trigger.expression.replace("{ITEM}", ref),
        "name": trigger.name,
    }
    if trigger.opdata:
        out["opdata"] = trigger.opdata
    if trigger.recovery:
        out["recovery_mode"] = "RECOVERY_EXPRESSION"
        out["recovery_expression"] = trigger.recovery.replace("{ITEM}", ref)
    out |= {"priority": trigger.priority, "description": trigger.description, "tags": _tags(trigger.tags)}
    return out


def _dependent(template: str, metric: Metric, scope: str, master: str = MASTER_KEY,
               preprocessing: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    key = metric.full_key()
    item: dict[str, Any] = {
        "uuid": uuid_for(template, scope, "item", key),
        "name": metric.name,
        "type": "DEPENDENT",
        "key": key,
        "delay": "0",
        "history": "31d",
    }
    if not metric.trends or metric.value_type == "CHAR":
        item["trends"] = "0"
    item["value_type"] = metric.value_type
    if metric.units:
        item["units"] = metric.units
    item["description"] = "\n".join(filter(None, (metric.description, metric.metric and f"Metric: {metric.metric}")))
    if metric.valuemap:
        item["valuemap"] = {"name": metric.valuemap}
    item["preprocessing"] = preprocessing if preprocessing is not None else [{
        "type": "PROMETHEUS_PATTERN",
        # 6.0 takes three parameters: pattern, what to output (value|label|function), and the label name.
        "parameters": [metric.pattern(), *(("function", metric.function) if metric.function
                                           else ("label", metric.output_label) if metric.output_label
                                           else ("value", ""))],
    }]
    if metric.delta:
        # A counter reset (exporter restart) gives a negative change, which Zabbix discards.
        item["preprocessing"].append({"type": "SIMPLE_CHANGE", "parameters": [""]})
    item["master_item"] = {"key": master}
    if metric.tags:
        item["tags"] = _tags(metric.tags)
    return item


def _with_triggers(template: str, metric: Metric, scope: str, prototype: bool,
                   **dependent: Any) -> tuple[dict[str, Any], list]:
    item = _dependent(template, metric, scope, **dependent)
    triggers = [_trigger(template, item["key"], t, scope) for t in metric.triggers]
    if triggers and not prototype:
        item["triggers"] = triggers
        return item, []
    return item, triggers


def _lld(template: str, rule: Discovery | MergedDiscovery, master: str, macro_path: str, step: dict[str, Any],
         prototype_steps: Callable[[Metric], list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """A dependent discovery rule on `master`: its prototypes, LLD macros at `macro_path`.<label> of each row."""
    items, triggers = [], []
    for metric in rule.prototypes:
        item, item_triggers = _with_triggers(
            template, metric, rule.key, prototype=True, master=master,
            preprocessing=prototype_steps(metric) if prototype_steps else None)
        items.append(item)
        triggers.extend(item_triggers)
    out: dict[str, Any] = {
        "uuid": uuid_for(template, "discovery", rule.key),
        "name": rule.name,
        "type": "DEPENDENT",
        "key": rule.key,
        "delay": "0",
        "lifetime": "7d",
        "description": rule.description,
        "item_prototypes": items,
    }
    if triggers:
        out["trigger_prototypes"] = triggers
    return out | {
        "master_item": {"key": master},
        "lld_macro_paths": [{"lld_macro": f"{{#{label.upper()}}}", "path": f"{macro_path}.{label}"}
                            for label in rule.macros],
        "preprocessing": [step],
    }


def _discovery(template: str, rule: Discovery) -> dict[str, Any]:
    pattern = f"{rule.metric}{{{rule.selector}}}" if rule.selector else rule.metric
    return _lld(template, rule, MASTER_KEY, "$.labels", {"type": "PROMETHEUS_TO_JSON", "parameters": [pattern]})


def _macros(macros: tuple[Macro, ...]) -> list[dict[str, str]]:
    out = []
    for macro in macros:
        entry = {"macro": macro.name}
        if macro.secret:
            entry["type"] = "SECRET_TEXT"
        entry |= {"value": macro.value, "description": macro.description}
        out.append(entry)
    return out


def _valuemaps(template: str, names: set[str]) -> list[dict[str, Any]]:
    return [{"uuid": uuid_for(template, "valuemap", vm.name), "name": vm.name,
             "mappings": [{"value": v, "newvalue": text} for v, text in vm.mappings]}
            for vm in VALUE_MAPS if vm.name in names]


def _http_agent(template: str, key: str, name: str, macros: str, component: str, description: str,
                request: dict[str, Any]) -> dict[str, Any]:
    """The master item of a template: one HTTP request every {$<macros>.INTERVAL}, kept only for its dependents,
    with TLS verified and client certificates from {$<macros>.TLS.CERT|KEY}."""
    return {
        "uuid": uuid_for(template, "item", key),
        "name": name,
        "type": "HTTP_AGENT",
        "key": key,
        "delay": f"{{${macros}.INTERVAL}}",
        "history": "0",
        "trends": "0",
        "value_type": "TEXT",
        "description": description,
        "timeout": "10s",
        **request,
        "ssl_cert_file": f"{{${macros}.TLS.CERT}}",
        "ssl_key_file": f"{{${macros}.TLS.KEY}}",
        "verify_peer": "YES",
        "verify_host": "YES",
        "tags": [{"tag": "component", "value": component}],
    }


def http_template() -> dict[str, Any]:
    t = HTTP_TEMPLATE
    master = _http_agent(
        t, MASTER_KEY, "Exporter: get /metrics", "THREENINES", "exporter",
        "The whole /metrics page; every other item reads it with Prometheus-pattern preprocessing.",
        # The exporter's web config (exporter-toolkit format) does basic auth; with no users configured it
        # ignores the header an empty user produces.
        {"authtype": "BASIC", "username": "{$THREENINES.USER}", "password": "{$THREENINES.PASSWORD}",
         "url": "{$THREENINES.URL}"})
    items = [master]
    for metric in EXPORTER_ITEMS:
        item, _ = _with_triggers(t, metric, "exporter", prototype=False)
        items.append(item)
    used_maps = {m.valuemap for d in DISCOVERIES for m in d.prototypes if m.valuemap}
    used_maps |= {m.valuemap for m in EXPORTER_ITEMS if m.valuemap}
    return {
        "uuid": uuid_for(t),
        "template": t,
        "name": t,
        "description": (
            "threenines: colocation SLA contract state from the threenines exporter's /metrics.\n"
            f"Service unavailable comes from {SERVICE_UP} as the exporter determined it (no second "
            "rule here). Problem tags customer/service/target route actions; tag threenines=outage marks "
            "contract outages for SLA services (threenines zabbix-sync creates those).\n"
            "Generated by `threenines zabbix-templates` from the metric contract (docs/metrics.md)."
        ),
        "groups": [{"name": GROUP}],
        "items": items,
        "discovery_rules": [_discovery(t, rule) for rule in DISCOVERIES],
        # No template-level "target" tag (official templates have one): problems inherit it, and ours names a port.
        "tags": [{"tag": "class", "value": "application"}],
        "macros": _macros(HTTP_MACROS),
        "valuemaps": _valuemaps(t, used_maps),
    }


PING_KEY_PARAMS = ",{$THREENINES.PING.PACKETS},{$THREENINES.PING.PACKET_INTERVAL},,{$THREENINES.PING.TIMEOUT}"
PING_TAGS = (("customer", "{$THREENINES.CUSTOMER}"), ("service", "connectivity"), ("target", "{$THREENINES.TARGET}"))


def ping_template() -> dict[str, Any]:
    t = PING_TEMPLATE
    ping_key = f"icmpping[{PING_KEY_PARAMS}]"
    outage = Trigger(
        "{$THREENINES.CUSTOMER} connectivity {$THREENINES.TARGET}: service unavailable",
        "max({ITEM},{$THREENINES.PING.MISSES})=0", "HIGH",
        "{$THREENINES.PING.MISSES} consecutive probes (each {$THREENINES.PING.PACKETS} echo requests) got no "
        "answer: the contract's determination rule. Recovers at the first answered probe.",
        (*PING_TAGS, (KIND_TAG, OUTAGE), (SLA_TAG, "{$THREENINES.CUSTOMER}/connectivity")))

    def simple(key: str, name: str, value_type: str, units: str, valuemap: str | None,
               triggers: list[Trigger]) -> dict[str, Any]:
        item: dict[str, Any] = {
            "uuid": uuid_for(t, "item", key.split("[")[0]),
            "name": name,
            "type": "SIMPLE",
            "key": key,
            "delay": "{$THREENINES.PING.INTERVAL}",
            "history": "31d",
            "value_type": value_type,
        }
        if units:
            item["units"] = units
        if valuemap:
            item["valuemap"] = {"name": valuemap}
        item["tags"] = _tags(PING_TAGS)
        if triggers:
            item["triggers"] = [_trigger(t, key, trig, "ping") for trig in triggers]
        return item

    return {
        "uuid": uuid_for(t),
        "template": t,
        "name": t,
        "description": (
            "threenines: Zabbix itself pings one customer port at the contract interval (icmpping via fping; "
            "fping needs cap_net_raw or root). Link it to one host per port whose interface is the port address; "
            "threenines zabbix-sync --native-ping creates those hosts with the contract's macros.\n"
            "Generated by `threenines zabbix-templates`."
        ),
        "groups": [{"name": GROUP}],
        "items": [
            simple(ping_key, "Contract probe", "UNSIGNED", "", "threenines ping", [outage]),
            simple(f"icmppingloss[{PING_KEY_PARAMS}]", "Contract probe loss", "FLOAT", "%", None, []),
            simple(f"icmppingsec[{PING_KEY_PARAMS},avg]", "Contract probe RTT", "FLOAT", "s", None, []),
        ],
        "tags": [{"tag": "class", "value": "network"}],
        "macros": _macros(PING_MACROS),
        "valuemaps": _valuemaps(t, {"threenines ping"}),
    }


# ---------------------------------------------------------------------------------------------------
# threenines merged by Prometheus: the replicas' evidence merged by the recording rules, read from Prometheus

MERGED_TEMPLATE = "threenines merged by Prometheus"
MERGED_MASTER_KEY = "threenines.merged.query"
# The merged view's problems carry vantage=merged: the replicas' own hosts raise the same `sla` tag from their
# per-vantage triggers, so a Zabbix service that must follow the merge alone asks for both tags (problem tags
# of a 6.0 service are AND-ed). threenines zabbix-sync does that when it creates the merged host.
VANTAGE_TAG = "vantage"
MERGED = "merged"
# The query's one series that is no rule: how many exporters Prometheus scraped at the query's time.
EXPORTERS = "exporters"
MERGED_QUERY = (
    '{__name__=~"' + "|".join(merge.RULES) + '"}'
    # An exporter answers when Prometheus holds its threenines_customer_info (by job and instance, as the merge
    # rules match an exporter's series), which every exporter version exports: threenines_merge_policy_info is
    # newer, and counting it would say "no exporter answers" while older replicas still run.
    # `or vector(0)`: with every replica down the count is 0, not absent, so a trigger can say so.
    f' or label_replace(count(count by (job, instance) ({CUSTOMER_INFO.name})) or vector(0), "{KIND_TAG}", '
    f'"{EXPORTERS}", "", "")'
)
MERGED_TAG = (VANTAGE_TAG, MERGED)
# A series that left the result (every replica down, or the customer left the inventory) is an error on the
# item, never a value: Zabbix then keeps the trigger's state, and "no exporter answers" says why.
MISSING = ("Not in Prometheus' merged result: no replica exporter exports it now (all down, or it left the "
           "inventory).")

MERGED_MACROS = (
    Macro("{$THREENINES.PROMETHEUS.URL}", "http://127.0.0.1:9090",
          "Base URL of a Prometheus that scrapes every replica exporter and evaluates the shipped rules (or of the "
          "store it writes them to), as Zabbix reaches it; https:// for TLS. The item asks <URL>/api/v1/query."),
    Macro("{$THREENINES.PROMETHEUS.INTERVAL}", "1m", "How often Zabbix queries Prometheus."),
    Macro("{$THREENINES.PROMETHEUS.AUTHORIZATION}", "",
          "The whole Authorization header, if Prometheus asks for one: 'Basic <base64 of user:password>' (its web "
          "config's basic_auth_users) or 'Bearer <token>' (a proxy in front of it). Empty: no header.", secret=True),
    Macro("{$THREENINES.PROMETHEUS.TLS.CERT}", "", "Client certificate file for mutual TLS (on the Zabbix server)."),
    Macro("{$THREENINES.PROMETHEUS.TLS.KEY}", "", "Client key file for mutual TLS (on the Zabbix server)."),
    Macro("{$THREENINES.PROMETHEUS.NODATA}", "5m",
          "No successful query for this long raises 'Prometheus query failing'."),
)


@dataclass(frozen=True)
class MergedDiscovery(Discovery):
    """A discovery rule over one merged record (`metric`, and each prototype's `metric`, name a recording rule):
    one LLD row per series of the query's JSON answer, picked by `where` rather than a Prometheus selector."""

    where: tuple[tuple[str, str, str], ...] = ()  # (label, == or !=, value)


def _conditions(metric: Metric) -> list[str]:
    conditions = [f"@.metric.__name__ == '{metric.metric}'"] if metric.metric else []
    conditions += [f"@.metric.{label} == '{{#{label.upper()}}}'" for label in metric.labels]
    return conditions + [f"@.metric.{label} == '{value}'" for label, value in metric.fixed]


def merged_path(metric: Metric) -> str:
    """The JSONPath that takes one item's value out of the /api/v1/query answer (a vector's [time, "value"])."""
    return f"$.data.result[?({' && '.join(_conditions(metric))})].value[1].first()"


def _merged_steps(metric: Metric) -> list[dict[str, Any]]:
    step: dict[str, Any] = {"type": "JSONPATH", "parameters": [merged_path(metric)]}
    if metric.metric:  # a record's series; the exporter count is in every answer
        step |= {"error_handler": "CUSTOM_ERROR", "error_handler_params": MISSING}
    return [step]


def merged_rows_path(rule: MergedDiscovery) -> str:
    conditions = [f"@.metric.__name__ == '{rule.metric}'"]
    conditions += [f"@.metric.{label} {op} '{value}'" for label, op, value in rule.where]
    return f"$.data.result[?({' && '.join(conditions)})]"


MERGED_SERVICE_LABELS = ("customer", "service")
MERGED_SERVICE_SCOPE = SCOPE_TAGS[:2]
MERGED_APP_SCOPE = (SCOPE_TAGS[0], ("service", APPLICATION))

MERGED_SERVICES = MergedDiscovery(
    key="threenines.merged.customer_service.discovery",
    name="Merged customer services",
    metric=merge.SERVICE_UP,
    macros=MERGED_SERVICE_LABELS,
    where=(("service", "!=", APPLICATION),),
    description="One row per customer × service (connectivity, power) the replicas export: the union of its "
                "targets per vantage, merged over the vantages by the billing policy (merge: all | any).",
    prototypes=(
        Metric(merge.SERVICE_UP, "threenines.merged.customer_service.up", "{#CUSTOMER} {#SERVICE}: contract state "
               "(merged)", MERGED_SERVICE_LABELS, value_type="UNSIGNED", valuemap="threenines contract state",
               tags=(*MERGED_SERVICE_SCOPE, MERGED_TAG),
               description="0 while the merge says outage: under `all` every vantage with evidence has determined "
                           "one, under `any` one of them has; a dead replica and a vantage blind for the site hold "
                           "nothing back (docs/ha.md \"Merged views\").",
               triggers=(Trigger("{#CUSTOMER} {#SERVICE}: service unavailable (merged)", "last({ITEM})=0", "HIGH",
                                 "The replica exporters' evidence, merged by the contract's rule with the policy the "
                                 "report bills by, says the customer's service is in outage. The outage is counted "
                                 "from the first failed probe; Zabbix opens the problem when the merge turns. Which "
                                 "target, and when it was determined: the items '{#CUSTOMER} {#SERVICE} <target>: "
                                 "… (merged)'.",
                                 (*MERGED_SERVICE_SCOPE, (KIND_TAG, OUTAGE), (SLA_TAG, "{#CUSTOMER}/{#SERVICE}"),
                                  MERGED_TAG)),)),
        Metric(merge.SERVICE_KNOWN, "threenines.merged.customer_service.known", "{#CUSTOMER} {#SERVICE}: evidence "
               "(merged)", MERGED_SERVICE_LABELS, value_type="UNSIGNED", valuemap="threenines evidence",
               tags=(*MERGED_SERVICE_SCOPE, MERGED_TAG),
               description="0 when no vantage has evidence for the customer's service (then the state is unknown, "
                           "never outage).",
               triggers=(Trigger("{#CUSTOMER} {#SERVICE}: no vantage has evidence", "last({ITEM})=0", "WARNING",
                                 "No replica exporter has fresh evidence for this service: neither up nor down. "
                                 "Unknown time is reported apart (coverage), never as outage.",
                                 (*MERGED_SERVICE_SCOPE, (KIND_TAG, "unknown"), MERGED_TAG)),)),
    ),
)

MERGED_APPLICATIONS = MergedDiscovery(
    key="threenines.merged.application.discovery",
    name="Merged application services",
    metric=merge.SERVICE_UP,
    macros=("customer",),
    where=(("service", "==", APPLICATION),),
    description="One row per customer with application checks: the union of its checks per vantage, merged. "
                "Notified like an outage, billed only with applications_billable (docs/design.md "
                "\"Applications\"), so its problem never says \"service unavailable\".",
    prototypes=(
        Metric(merge.SERVICE_UP, "threenines.merged.application.up", "{#CUSTOMER} application: contract state "
               "(merged)", ("customer",), fixed=APP_FIXED, value_type="UNSIGNED", valuemap="threenines contract state",
               tags=(*MERGED_APP_SCOPE, MERGED_TAG),
               triggers=(Trigger("{#CUSTOMER} application: unavailable (merged)", "last({ITEM})=0", "HIGH",
                                 "The customer's own applications failed their checks on consecutive runs, merged "
                                 "over the replica exporters by the billing policy. Provider outage time only where "
                                 "the contract has applications_billable (only then does threenines zabbix-sync "
                                 "create the SLA service this problem's sla tag feeds).",
                                 (*MERGED_APP_SCOPE, (KIND_TAG, APPLICATION), (SLA_TAG, "{#CUSTOMER}/" + APPLICATION),
                                  MERGED_TAG)),)),
        Metric(merge.SERVICE_KNOWN, "threenines.merged.application.known", "{#CUSTOMER} application: evidence "
               "(merged)", ("customer",), fixed=APP_FIXED, value_type="UNSIGNED", valuemap="threenines evidence",
               tags=(*MERGED_APP_SCOPE, MERGED_TAG),
               triggers=(Trigger("{#CUSTOMER} application: no vantage has evidence", "last({ITEM})=0", "WARNING",
                                 "No replica exporter could check the customer's applications: neither up nor down.",
                                 (*MERGED_APP_SCOPE, (KIND_TAG, "unknown"), MERGED_TAG)),)),
    ),
)

MERGED_TARGET_SCOPE = (*SCOPE_TAGS, MERGED_TAG)

MERGED_TARGETS = MergedDiscovery(
    key="threenines.merged.target.discovery",
    name="Merged contract targets",
    metric=merge.TARGET_UP,
    macros=SERVICE_LABELS,
    description="One row per customer × service × target (ports, power, application checks), merged over the "
                "vantages: which target is down, and since when the open outage is determined.",
    prototypes=(
        Metric(merge.TARGET_UP, "threenines.merged.target.up", "{#CUSTOMER} {#SERVICE} {#TARGET}: contract state "
               "(merged)", SERVICE_LABELS, value_type="UNSIGNED", valuemap="threenines contract state",
               tags=MERGED_TARGET_SCOPE),
        Metric(merge.TARGET_KNOWN, "threenines.merged.target.known", "{#CUSTOMER} {#SERVICE} {#TARGET}: evidence "
               "(merged)", SERVICE_LABELS, value_type="UNSIGNED", valuemap="threenines evidence",
               tags=MERGED_TARGET_SCOPE),
        Metric(merge.TARGET_DETERMINED, "threenines.merged.target.determined", "{#CUSTOMER} {#SERVICE} {#TARGET}: "
               "outage determined at (merged)", SERVICE_LABELS, units="unixtime", trends=False,
               tags=MERGED_TARGET_SCOPE,
               description="The open outage as ThreeninesServiceUnavailable pages it: the earliest determination "
                           "among the vantages that count (the notification deadline runs from it); 0 while up."),
    ),
)

MERGED_DISCOVERIES = (MERGED_SERVICES, MERGED_APPLICATIONS, MERGED_TARGETS)

MERGED_EXPORTERS = Metric(
    "", "threenines.merged.exporters", "Prometheus: replica exporters answering", fixed=((KIND_TAG, EXPORTERS),),
    value_type="UNSIGNED", tags=(("component", "prometheus"), MERGED_TAG),
    description="Exporters Prometheus scraped at the query (the job and instance pairs exporting "
                "threenines_customer_info, as every exporter version does); a value on every successful query.",
    triggers=(
        Trigger("threenines merged: Prometheus query failing", "nodata({ITEM},{$THREENINES.PROMETHEUS.NODATA})=1",
                "HIGH",
                "No successful query of {$THREENINES.PROMETHEUS.URL} for {$THREENINES.PROMETHEUS.NODATA}: the merged "
                "states here stand still. The replicas' own hosts still show each vantage.",
                (("component", "prometheus"), (KIND_TAG, "prometheus"), MERGED_TAG)),
        Trigger("threenines merged: no replica exporter answers Prometheus", "last({ITEM})=0", "HIGH",
                "Prometheus scrapes no threenines exporter: no vantage has evidence for any customer, and the "
                "merged items say 'not in the merged result' until one answers.",
                (("component", "exporter"), (KIND_TAG, "exporter"), MERGED_TAG)),
    ),
)


def _merged_discovery(template: str, rule: MergedDiscovery) -> dict[str, Any]:
    return _lld(template, rule, MERGED_MASTER_KEY, "$.metric",
                {"type": "JSONPATH", "parameters": [merged_rows_path(rule)]}, _merged_steps)


def merged_template() -> dict[str, Any]:
    t = MERGED_TEMPLATE
    master = _http_agent(
        t, MERGED_MASTER_KEY, "Prometheus: merged contract state", "THREENINES.PROMETHEUS", "prometheus",
        "One instant query of the threenines-vantages-merge recording rules (and the count of exporters answering); "
        "every other item reads its JSON answer.",
        {"url": "{$THREENINES.PROMETHEUS.URL}/api/v1/query",
         "query_fields": [{"name": "query", "value": MERGED_QUERY}],
         # One header macro for basic auth and bearer alike: Zabbix 6.0's HTTP agent has no bearer type, and an
         # Authorization header beside its basic auth would replace that (curl keeps the item's own header).
         "headers": [{"name": "Authorization", "value": "{$THREENINES.PROMETHEUS.AUTHORIZATION}"}]})
    exporters, _ = _with_triggers(t, MERGED_EXPORTERS, "exporters", prototype=False, master=MERGED_MASTER_KEY,
                                  preprocessing=_merged_steps(MERGED_EXPORTERS))
    return {
        "uuid": uuid_for(t),
        "template": t,
        "name": t,
        "description": (
            "threenines: the replica exporters' (vantages') contract state merged by the contract's rule with the "
            "billing policy, as Prometheus' threenines-vantages-merge recording rules compute it; one instant "
            "query of {$THREENINES.PROMETHEUS.URL}.\n"
            "Problem tags vantage=merged and sla=<customer>/<service> feed the SLA services threenines zabbix-sync "
            "--prometheus-url creates; the replicas' own hosts (threenines by HTTP) stay the per-vantage view.\n"
            "Generated by `threenines zabbix-templates` (docs/zabbix.md \"Replica exporters\")."
        ),
        "groups": [{"name": GROUP}],
        "items": [master, exporters],
        "discovery_rules": [_merged_discovery(t, rule) for rule in MERGED_DISCOVERIES],
        "tags": [{"tag": "class", "value": "application"}],
        "macros": _macros(MERGED_MACROS),
        "valuemaps": _valuemaps(t, {m.valuemap for d in MERGED_DISCOVERIES for m in d.prototypes if m.valuemap}),
    }


def export(template: dict[str, Any]) -> dict[str, Any]:
    # No `date`: the files are generated and diffed; import does not need it.
    return {"zabbix_export": {"version": EXPORT_VERSION,
                              "groups": [{"uuid": uuid_for("group", GROUP), "name": GROUP}],
                              "templates": [template]}}


def render(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=1000, default_flow_style=False)


@dataclass(frozen=True)
class TemplateFile:
    filename: str
    name: str
    text: str = field(repr=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def template_files() -> tuple[TemplateFile, ...]:
    return (
        TemplateFile("threenines_by_http.yaml", HTTP_TEMPLATE, render(export(http_template()))),
        TemplateFile("threenines_contract_ping.yaml", PING_TEMPLATE, render(export(ping_template()))),
        TemplateFile("threenines_merged_by_prometheus.yaml", MERGED_TEMPLATE, render(export(merged_template()))),
    )
