"""NOC overview: what is down right now, who was told, and which power or SNMP device needs hands."""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import stat, table
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from threenines.dashboards import merge
from threenines.dashboards.common import (
    BLUE,
    CUSTOMER,
    DS,
    GREY,
    ORANGE,
    STATE_MAPPINGS,
    VERMILLION,
    at_sites,
    customer_data_link,
    customer_variable,
    dashboard,
    data_links,
    fixed_colour,
    query,
    reduce_last,
    site_variable,
    state,
    table_panel,
    threshold_colours,
    thresholds,
)
from threenines.exposition.catalogue import (
    APPLICATION_CERTIFICATE_EXPIRY_TIMESTAMP_SECONDS,
    APPLICATION_CHECK_DURATION_SECONDS,
    APPLICATION_CHECK_FAILURES_TOTAL,
    APPLICATION_CHECK_LAST_TIMESTAMP_SECONDS,
    APPLICATION_INFO,
    CUSTOMER_NOTIFICATION_DEADLINE_SECONDS,
    CUSTOMER_SERVICE_EXCLUDED,
    CUSTOMER_SERVICE_KNOWN,
    CUSTOMER_SERVICE_UP,
    DEVICE_LAST_SUCCESS_TIMESTAMP_SECONDS,
    DEVICE_UP,
    NOTIFICATION_LAST_DISPATCH_DETERMINED_TIMESTAMP_SECONDS,
    PDU_PHASE_CURRENT_AMPERES,
    PORT_INFO,
    PROBE_LAST_TIMESTAMP_SECONDS,
    PROBE_LOSS_RATIO,
    PROBE_RTT_SECONDS,
    SERVICE_KNOWN,
    SERVICE_OUTAGE_START_TIMESTAMP_SECONDS,
    SERVICE_UP,
    UPS_BATTERY_RUNTIME_SECONDS,
    UPS_OUTPUT_SOURCE,
)

# The billed services' tiles; the customer's own applications have tiles per check of their own (below).
# Merged over replica exporters (vantages) by the recording rules (threenines.dashboards.merge): one tile per
# customer and service however many replicas; with one exporter, exactly its own state.
_NOT_APPLICATION = f'{{{CUSTOMER}, service!="application"}}'
TILES = state(f"{merge.SERVICE_UP}{_NOT_APPLICATION}", f"{merge.SERVICE_KNOWN}{_NOT_APPLICATION}")


def _per_vantage(expr_of: Callable[[str], str]) -> str:
    """expr_of(label matchers) for each vantage, labelled `vantage`: a replica's own label, else its instance (an
    exporter without --vantage is the vantage named by its instance, docs/design.md "Replica exporters")."""
    unlabelled = expr_of(f'{CUSTOMER}, service!="application", vantage=""')
    labelled = expr_of(f'{CUSTOMER}, service!="application", vantage!=""')
    # label_join with one source copies it (label_replace would need "$1", which Grafana reads as a variable).
    return f'label_join({unlabelled}, "vantage", "", "instance") or {labelled}'


# Each vantage's own view of the billed services, unmerged: which replica sees what.
VANTAGE_TILES = _per_vantage(lambda matchers: state(f"{CUSTOMER_SERVICE_UP}{{{matchers}}}",
                                                    f"{CUSTOMER_SERVICE_KNOWN}{{{matchers}}}"))

# Application checks (docs/design.md "Applications"): each check is a contract target, service="application".
_APPLICATION = f'{{{CUSTOMER}, service="application"}}'
APPLICATION_STATE = state(f"{merge.TARGET_UP}{_APPLICATION}", f"{merge.TARGET_KNOWN}{_APPLICATION}")
# Reasons of the checks that failed (or could not be made) in the last 15 minutes — the contract's notification
# deadline — one per check, the most frequent. A reason's series appears at its first failure, so a series younger
# than the window counts too (increase() cannot see the step from "absent" to 1).
_FAILURES = f"{APPLICATION_CHECK_FAILURES_TOTAL}{{{CUSTOMER}}}"
RECENT_REASON = (f"topk by (customer, target) (1, sum by (customer, target, reason) ("
                 f"(increase({_FAILURES}[15m]) > 0) or ({_FAILURES} unless {_FAILURES} offset 15m)))")
# The state, labelled with the recent failure reason where there is one.
APPLICATION_TILES = (f"({APPLICATION_STATE} + on(customer, target) group_left(reason) (0 * {RECENT_REASON}))"
                     f" or on(customer, target) {APPLICATION_STATE}")
# The alert ThreeninesApplicationCertificateExpiring fires at the same 14 days.
CERTIFICATE_DAYS_LEFT = (f"(min by (customer, target) ({APPLICATION_CERTIFICATE_EXPIRY_TIMESTAMP_SECONDS}"
                         f"{{{CUSTOMER}}}) - time()) / 86400")
CERTIFICATE_SOON_DAYS = 14

# Open outages per target: every column of the table is one series per (customer, service, target). Merged over
# vantages as ThreeninesServiceUnavailable pages it: open when every vantage with evidence determined it (`all`) or
# one did (`any`), at the earliest determination (the one the notification deadline counts from).
PER_TARGET = "max by (customer, service, target)"
DETERMINED = f"({merge.TARGET_DETERMINED}{{{CUSTOMER}}} > 0)"
# The first failed probe the customer's message gives: the earliest among the vantages (the alert's
# first_failed_at), for the merged open outages only.
OUTAGE_STARTED = (f"1000 * (min by (customer, service, target) ({SERVICE_OUTAGE_START_TIMESTAMP_SECONDS}"
                  f"{{{CUSTOMER}}} > 0) and on(customer, service, target) {DETERMINED})")
# determined_at of the latest outage whose notification reached the audit ledger (docs/alerting.md).
LAST_AUDITED = f"{PER_TARGET} ({NOTIFICATION_LAST_DISPATCH_DETERMINED_TIMESTAMP_SECONDS}{{{CUSTOMER}}})"
DEADLINE = f"max by (customer) ({CUSTOMER_NOTIFICATION_DEADLINE_SECONDS}{{{CUSTOMER}}})"
IN_MAINTENANCE = (f'(max by (customer, service) ({CUSTOMER_SERVICE_EXCLUDED}{{{CUSTOMER}, '
                  f'reason="maintenance"}}) == 1)')
# 2 audited, 3 agreed maintenance (customer pages are silenced: nothing owed), 1 not yet but within the
# deadline, 0 overdue. Same rule as the ThreeninesNotificationOverdue alert, including its 1 s tolerance.
NOTIFICATION_STATUS = (
    f"(0 * ({DETERMINED} <= on(customer, service, target) ({LAST_AUDITED} + 1)) + 2)"
    f" or (0 * ({DETERMINED} and on(customer, service) {IN_MAINTENANCE}) + 3)"
    f" or (0 * ((time() - {DETERMINED}) <= on(customer) group_left() {DEADLINE}) + 1)"
    f" or (0 * {DETERMINED})"
)
NOTIFICATION_MAPPINGS: list[dm.ValueMapping] = [
    dm.ValueMap(options={
        "0": dm.ValueMappingResult(text="OVERDUE", color=VERMILLION, index=0),
        "1": dm.ValueMappingResult(text="pending (within deadline)", color=ORANGE, index=1),
        "2": dm.ValueMappingResult(text="audited", color=BLUE, index=2),
        "3": dm.ValueMappingResult(text="maintenance (not owed)", color=GREY, index=3),
    }),
]


def _tiles() -> stat.Panel:
    return (stat.Panel().title("Service state per customer").datasource(DS).span(24).height(7)
            .description("One tile per customer and service (connectivity, power; the customer's own applications "
                         "have tiles per check in 'Applications'): UP, DOWN (a determined outage is open: 2 "
                         "consecutive failed probes, or every power feed down) or UNKNOWN (no fresh evidence: "
                         "exporter, probe or SNMP gap). Colours are colour-blind safe and every tile also says its "
                         "state in words. Click a tile for the customer's SLA month. With replica exporters the "
                         "tile is merged over vantages by the exporters' merge policy: DOWN when every vantage with "
                         "evidence says down (merge: all), or any of them (merge: any) ('Service state per vantage' "
                         "below shows each one).")
            .with_target(query(at_sites(TILES), "{{name}} · {{service}}", instant=True))
            .mappings(STATE_MAPPINGS).color_scheme(threshold_colours())
            .thresholds(thresholds((None, GREY))).no_value("No customer at the selected sites")
            .reduce_options(reduce_last()).color_mode(cm.BigValueColorMode.BACKGROUND_SOLID)
            .text_mode(cm.BigValueTextMode.VALUE_AND_NAME).graph_mode(cm.BigValueGraphMode.NONE)
            .justify_mode(cm.BigValueJustifyMode.CENTER).orientation(cm.VizOrientation.AUTO)
            .data_links(data_links(customer_data_link("sla", "SLA month of ${__field.labels.customer}"))))


def _open_outages() -> table.Panel:
    hidden = dm.DynamicConfigValue(id_val="custom.hidden", value=True)
    return (table_panel().title("Open outages and notification status").datasource(DS).span(24).height(8)
            .description("Every target with a determined outage open now (application checks too: their outages are "
                         "notified like any other): when its first failed probe was, how long "
                         "ago the outage was determined, and whether the customer's designated contacts were "
                         "notified: 'audited' = the audit ledger holds a dispatch for this outage, 'maintenance' = "
                         "agreed maintenance, customer pages are silenced and nothing is owed, 'pending' = not yet "
                         "but within the customer's notification deadline, 'OVERDUE' = the deadline passed without "
                         "an audited dispatch (each miss costs a day's rent; ThreeninesNotificationOverdue pages "
                         "the NOC at two thirds of the deadline).")
            .with_target(query(at_sites(f"time() - {DETERMINED}"), instant=True, ref="A", table=True))
            .with_target(query(at_sites(OUTAGE_STARTED), instant=True, ref="B", table=True))
            .with_target(query(at_sites(NOTIFICATION_STATUS), instant=True, ref="C", table=True))
            .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
            .with_transformation(dm.DataTransformerConfig(id_val="organize", options={
                "excludeByName": {"Time": True, "__name__": True, "job": True, "instance": True},
                "indexByName": {"name": 0, "customer": 1, "service": 2, "target": 3,
                                "Value #B": 4, "Value #A": 5, "Value #C": 6},
                "renameByName": {"name": "Customer", "customer": "id", "service": "Service", "target": "Target",
                                 "Value #A": "Since determination", "Value #B": "Outage started",
                                 "Value #C": "Notification"},
            }))
            .override_by_name("Since determination", [dm.DynamicConfigValue(id_val="unit", value="s")])
            .override_by_name("Outage started", [dm.DynamicConfigValue(id_val="unit", value="dateTimeAsIso")])
            .override_by_name("Notification", [
                dm.DynamicConfigValue(id_val="mappings", value=NOTIFICATION_MAPPINGS),
                dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"}),
            ])
            .override_by_name("id", [hidden])
            .no_value("No open outage"))


def _vantages() -> table.Panel:
    return (table_panel().title("Service state per vantage").datasource(DS).span(24).height(7)
            .description("Each replica exporter's (vantage's) own view of every customer and billed service, before "
                         "the merge: UP, DOWN or UNKNOWN as that vantage alone says it. The tiles above merge them by "
                         "the contract's rule with the exporters' merge policy: DOWN when every vantage with "
                         "evidence says down (merge: all) or any of them (merge: any), UNKNOWN only when none has "
                         "evidence; a dead replica (no row here) or a vantage blind for the site never holds DOWN "
                         "back (docs/ha.md). Under merge: all, one vantage DOWN while another says UP is a path "
                         "problem of that vantage, not a customer outage. Without --vantage the vantage is the "
                         "instance.")
            .with_target(query(at_sites(VANTAGE_TILES), instant=True, table=True))
            .with_transformation(dm.DataTransformerConfig(id_val="organize", options={
                "excludeByName": {"Time": True, "__name__": True, "job": True, "instance": True},
                "indexByName": {"name": 0, "customer": 1, "service": 2, "vantage": 3, "Value": 4},
                "renameByName": {"name": "Customer", "customer": "id", "service": "Service", "vantage": "Vantage",
                                 "Value": "State"},
            }))
            .override_by_name("State", [
                dm.DynamicConfigValue(id_val="mappings", value=STATE_MAPPINGS),
                dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"}),
            ])
            .override_by_name("id", [dm.DynamicConfigValue(id_val="custom.hidden", value=True)])
            .no_value("No customer at the selected sites"))


def _application_tiles() -> stat.Panel:
    return (stat.Panel().title("Application checks per customer").datasource(DS).span(16).height(7)
            .description("One tile per application check of the customer's own WWW, e-mail, FTP… (inventory "
                         "applications:): UP, DOWN (threshold consecutive checks failed: an outage the customer's "
                         "contacts are notified of within the deadline, not provider outage time unless the "
                         "customer's contract has applications_billable) or UNKNOWN (the check could not be made "
                         "here: reason local or config). The tile names the most frequent failure reason of the "
                         "last 15 minutes, if any, also on an UP tile (a failure below the threshold).")
            .with_target(query(at_sites(APPLICATION_TILES), "{{name}} · {{target}} {{reason}}", instant=True))
            .mappings(STATE_MAPPINGS).color_scheme(threshold_colours())
            .thresholds(thresholds((None, GREY))).no_value("No application check at the selected sites")
            .reduce_options(reduce_last()).color_mode(cm.BigValueColorMode.BACKGROUND_SOLID)
            .text_mode(cm.BigValueTextMode.VALUE_AND_NAME).graph_mode(cm.BigValueGraphMode.NONE)
            .justify_mode(cm.BigValueJustifyMode.CENTER).orientation(cm.VizOrientation.AUTO)
            .data_links(data_links(customer_data_link("sla", "SLA month of ${__field.labels.customer}"))))


def _certificates_expiring() -> stat.Panel:
    return (stat.Panel().title(f"TLS certificates expiring within {CERTIFICATE_SOON_DAYS} days")
            .datasource(DS).span(8).height(7)
            .description("Days left on the certificate each application check last saw (https; smtp, imap, pop3, "
                         f"ftp with TLS), shown below {CERTIFICATE_SOON_DAYS} days, the threshold of "
                         "ThreeninesApplicationCertificateExpiring. Negative: expired (the check fails with "
                         "tls_expired). Tell the customer before its visitors see it.")
            .with_target(query(at_sites(f"{CERTIFICATE_DAYS_LEFT} < {CERTIFICATE_SOON_DAYS}"),
                               "{{name}} · {{target}}", instant=True))
            .unit("d").decimals(1).color_scheme(threshold_colours())
            .thresholds(thresholds((None, VERMILLION), (0, ORANGE)))
            .no_value(f"No certificate expires within {CERTIFICATE_SOON_DAYS} days").reduce_options(reduce_last())
            .color_mode(cm.BigValueColorMode.BACKGROUND_SOLID).graph_mode(cm.BigValueGraphMode.NONE)
            .text_mode(cm.BigValueTextMode.VALUE_AND_NAME).justify_mode(cm.BigValueJustifyMode.CENTER))


def _application_checks() -> table.Panel:
    own = f"{{{CUSTOMER}}}"
    kind = f" * on(customer, target) group_left(kind) max by (customer, target, kind) ({APPLICATION_INFO}{own})"
    return (table_panel().title("Application checks: state, failure reason, last check, certificate")
            .datasource(DS).span(24).height(8)
            .description("Every application check with its kind, contract state, the most frequent failure reason "
                         "of the last 15 minutes and how many checks failed with it, how long ago the last check "
                         "completed and how long it took, and the days left on its TLS certificate. An application "
                         "outage appears in 'Open outages' above with its notification status, like any outage.")
            .with_target(query(at_sites(f"({APPLICATION_STATE}){kind}"), instant=True, ref="A", table=True))
            .with_target(query(at_sites(RECENT_REASON), instant=True, ref="B", table=True))
            .with_target(query(at_sites(f"time() - max by (customer, target) "
                                        f"({APPLICATION_CHECK_LAST_TIMESTAMP_SECONDS}{own})"),
                               instant=True, ref="C", table=True))
            .with_target(query(at_sites(f"max by (customer, target) ({APPLICATION_CHECK_DURATION_SECONDS}{own})"),
                               instant=True, ref="D", table=True))
            .with_target(query(at_sites(CERTIFICATE_DAYS_LEFT), instant=True, ref="E", table=True))
            .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
            .with_transformation(dm.DataTransformerConfig(id_val="organize", options={
                "excludeByName": {"Time": True, "__name__": True, "job": True, "instance": True, "service": True},
                "indexByName": {"name": 0, "customer": 1, "target": 2, "kind": 3, "Value #A": 4, "reason": 5,
                                "Value #B": 6, "Value #C": 7, "Value #D": 8, "Value #E": 9},
                "renameByName": {"name": "Customer", "customer": "id", "target": "Check", "kind": "Kind",
                                 "Value #A": "State", "reason": "Failing with", "Value #B": "Failures (15 min)",
                                 "Value #C": "Last check", "Value #D": "Duration", "Value #E": "Certificate"},
            }))
            .override_by_name("State", [
                dm.DynamicConfigValue(id_val="mappings", value=STATE_MAPPINGS),
                dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"}),
            ])
            .override_by_name("Failures (15 min)", [dm.DynamicConfigValue(id_val="decimals", value=0)])
            .override_by_name("Last check", [dm.DynamicConfigValue(id_val="unit", value="s")])
            .override_by_name("Duration", [dm.DynamicConfigValue(id_val="unit", value="s")])
            .override_by_name("Certificate", [
                dm.DynamicConfigValue(id_val="unit", value="d"),
                dm.DynamicConfigValue(id_val="decimals", value=0),
                dm.DynamicConfigValue(id_val="thresholds", value=dm.ThresholdsConfig(
                    mode=dm.ThresholdsMode.ABSOLUTE, steps=[dm.Threshold(value=None, color=VERMILLION),
                                                            dm.Threshold(value=0, color=ORANGE),
                                                            dm.Threshold(value=CERTIFICATE_SOON_DAYS, color=BLUE)])),
                dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"}),
            ])
            .override_by_name("id", [dm.DynamicConfigValue(id_val="custom.hidden", value=True)])
            .no_value("No application check at the selected sites"))


def _ups_on_battery() -> stat.Panel:
    on_battery = f'{UPS_OUTPUT_SOURCE}{{source="battery"}} == 1'
    return (stat.Panel().title("UPSes on battery: runtime left").datasource(DS).span(8).height(6)
            .description("UPSes whose output source is the battery right now, with the battery runtime the UPS "
                         "reports. Below 10 minutes the tile turns vermillion: start the generator procedure.")
            .with_target(query(f"{UPS_BATTERY_RUNTIME_SECONDS} and on(device) ({on_battery})", "{{device}}",
                               instant=True))
            .unit("s").color_scheme(threshold_colours())
            .thresholds(thresholds((None, VERMILLION), (600, ORANGE), (1800, BLUE)))
            .no_value("No UPS on battery").reduce_options(reduce_last())
            .color_mode(cm.BigValueColorMode.BACKGROUND_SOLID).graph_mode(cm.BigValueGraphMode.NONE)
            .text_mode(cm.BigValueTextMode.VALUE_AND_NAME).justify_mode(cm.BigValueJustifyMode.CENTER))


def _phases_near_rating() -> stat.Panel:
    return (stat.Panel().title("PDU phases near rated current").datasource(DS).span(8).height(6)
            .description("PDU phases drawing at least 80% of the rated phase current chosen in the 'Phase rating' "
                         "variable (the metric contract carries no per-phase rating yet). Above 100% the breaker "
                         "may trip and every customer on that phase loses one feed.")
            .with_target(query(f"{PDU_PHASE_CURRENT_AMPERES} / $phase_rating >= 0.8",
                               "{{device}} phase {{phase}}", instant=True))
            .unit("percentunit").decimals(0).color_scheme(threshold_colours())
            .thresholds(thresholds((None, ORANGE), (1, VERMILLION)))
            .no_value("No phase at 80% of rating").reduce_options(reduce_last())
            .color_mode(cm.BigValueColorMode.BACKGROUND_SOLID).graph_mode(cm.BigValueGraphMode.NONE)
            .text_mode(cm.BigValueTextMode.VALUE_AND_NAME).justify_mode(cm.BigValueJustifyMode.CENTER))


def _devices_unreachable() -> stat.Panel:
    return (stat.Panel().title("SNMP devices unreachable").datasource(DS).span(8).height(6)
            .description("UPSes and PDUs whose last SNMP poll failed, with the time since their last successful "
                         "poll. While a device is unreachable its customers' power state is UNKNOWN, not up.")
            .with_target(query(f"time() - {DEVICE_LAST_SUCCESS_TIMESTAMP_SECONDS} "
                               f"and on(device) ({DEVICE_UP} == 0)", "{{device}}", instant=True))
            .unit("s").color_scheme(fixed_colour(VERMILLION)).no_value("Every device answers")
            .reduce_options(reduce_last()).color_mode(cm.BigValueColorMode.BACKGROUND_SOLID)
            .graph_mode(cm.BigValueGraphMode.NONE).text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
            .justify_mode(cm.BigValueJustifyMode.CENTER))


def _exclusions() -> table.Panel:
    return (table_panel().title("Active exclusion windows").datasource(DS).span(24).height(5)
            .description("Customers and services inside an exclusion window now (agreed maintenance, customer's "
                         "own fault, force majeure, unreported): outage time in these windows is not billed.")
            .with_target(query(at_sites(f"{CUSTOMER_SERVICE_EXCLUDED}{{{CUSTOMER}}} == 1"),
                               instant=True, table=True))
            .with_transformation(dm.DataTransformerConfig(id_val="organize", options={
                "excludeByName": {"Time": True, "Value": True, "__name__": True, "job": True, "instance": True},
                "indexByName": {"name": 0, "customer": 1, "service": 2, "reason": 3},
                "renameByName": {"name": "Customer", "customer": "id", "service": "Service", "reason": "Reason"},
            }))
            .no_value("No exclusion window active"))


def _ports() -> table.Panel:
    selector = f'{{{CUSTOMER}, service="connectivity"}}'
    port = f"{{{CUSTOMER}}}"
    # Per-port series carry `target`; probe series name the same port `target` too, so they join on it.
    state_expr = state(f"{SERVICE_UP}{selector}", f"{SERVICE_KNOWN}{selector}")
    with_address = f" * on(customer, target) group_left(address) max by (customer, target, address) " \
                   f"({PORT_INFO}{port})"
    return (table_panel().title("Ports: state, last probe, RTT, loss").datasource(DS).span(24).height(10)
            .description("Every customer port with its contract state (UP / DOWN / UNKNOWN), the address probed, "
                         "how long ago the last contract probe ran (older than 1.5 x the interval = UNKNOWN), and "
                         "the last probe's mean round-trip time and packet loss. The customer tiles above combine "
                         "these ports: any port DOWN makes the service DOWN.")
            .with_target(query(at_sites(f"({state_expr}){with_address}"), instant=True, ref="A", table=True))
            .with_target(query(at_sites(f"time() - {PROBE_LAST_TIMESTAMP_SECONDS}{port}"), instant=True,
                               ref="B", table=True))
            .with_target(query(at_sites(f"{PROBE_RTT_SECONDS}{port}"), instant=True, ref="C", table=True))
            .with_target(query(at_sites(f"{PROBE_LOSS_RATIO}{port}"), instant=True, ref="D", table=True))
            .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
            .with_transformation(dm.DataTransformerConfig(id_val="organize", options={
                "excludeByName": {"Time": True, "__name__": True, "job": True, "instance": True, "service": True},
                "indexByName": {"name": 0, "customer": 1, "target": 2, "address": 3, "Value #A": 4, "Value #B": 5,
                                "Value #C": 6, "Value #D": 7},
                "renameByName": {"name": "Customer", "customer": "id", "target": "Port", "address": "Address",
                                 "Value #A": "State", "Value #B": "Last probe", "Value #C": "RTT",
                                 "Value #D": "Loss"},
            }))
            .override_by_name("State", [
                dm.DynamicConfigValue(id_val="mappings", value=STATE_MAPPINGS),
                dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"}),
            ])
            .override_by_name("Last probe", [dm.DynamicConfigValue(id_val="unit", value="s")])
            .override_by_name("RTT", [dm.DynamicConfigValue(id_val="unit", value="s")])
            .override_by_name("Loss", [dm.DynamicConfigValue(id_val="unit", value="percentunit")])
            .override_by_name("id", [dm.DynamicConfigValue(id_val="custom.hidden", value=True)])
            .no_value("No port at the selected sites"))


def build() -> db.Dashboard:
    return (dashboard("noc", "threenines / NOC overview",
                      "What is down now, whether the customer was told in time, and which power or SNMP device "
                      "needs attention.")
            .time("now-6h", "now")
            .with_variable(site_variable()).with_variable(customer_variable())
            .with_variable(db.CustomVariable("phase_rating").label("Phase rating (A)").values("16,32,63")
                           .current(dm.VariableOption(selected=True, text="16", value="16"))
                           .description("Rated current of a PDU phase, for the 'near rated current' panel."))
            .with_row(db.Row("Services"))
            .with_panel(_tiles())
            .with_panel(_open_outages())
            .with_panel(_vantages())
            .with_row(db.Row("Power and devices"))
            .with_panel(_ups_on_battery()).with_panel(_phases_near_rating()).with_panel(_devices_unreachable())
            .with_panel(_exclusions())
            .with_row(db.Row("Applications (the customer's own)"))
            .with_panel(_application_tiles()).with_panel(_certificates_expiring())
            .with_panel(_application_checks())
            .with_row(db.Row("Ports"))
            .with_panel(_ports()))
