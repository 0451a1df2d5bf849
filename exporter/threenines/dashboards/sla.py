"""SLA review: per customer and service, this calendar month so far against the 99.9% objective.

The time range defaults to Grafana's "This month" (now/M → now), so `$__range` is the month so far and
`increase(...[$__range])` is the month's outage time. The budget is the whole month's: (1 − objective) ×
days_in_month() × 86400 s, which is 40.32 min for 28 days and 44.64 min for 31 days at 99.9%. Billing uses
`threenines report`, which counts months in each customer's contract time zone; this dashboard counts them
in the dashboard's time zone (and days_in_month() in UTC), which can differ for the first hours of a month.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import stat, statetimeline, table, timeseries
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
    customer_variable,
    dashboard,
    legend_list,
    legend_table,
    query,
    reduce_last,
    site_variable,
    state,
    table_panel,
    threshold_colours,
    thresholds,
    tooltip,
)
from threenines.dashboards.merge import merged_increase
from threenines.exposition.catalogue import (
    CUSTOMER_OBJECTIVE_RATIO,
    CUSTOMER_SERVICE_EXCLUDED,
    CUSTOMER_SERVICE_OUTAGE_SECONDS_TOTAL,
    CUSTOMER_SERVICE_UNKNOWN_SECONDS_TOTAL,
    NOTIFICATION_DEADLINE_MISSED_TOTAL,
    NOTIFICATION_DISPATCHES_TOTAL,
    SERVICE_DETERMINED_TIMESTAMP_SECONDS,
    SERVICE_KNOWN,
    SERVICE_OUTAGE_SECONDS_TOTAL,
    SERVICE_UNKNOWN_SECONDS_TOTAL,
    SERVICE_UP,
)

# Merged over replica exporters (vantages) by the contract's rule with the exporters' merge policy, as the
# recording rules do (threenines.dashboards.merge): one series per customer and service, approximate with several
# vantages, exactly the exporter's own increase() with one.
_OUTAGE_TOTAL = f"{CUSTOMER_SERVICE_OUTAGE_SECONDS_TOTAL}{{{CUSTOMER}}}"
_UNKNOWN_TOTAL = f"{CUSTOMER_SERVICE_UNKNOWN_SECONDS_TOTAL}{{{CUSTOMER}}}"
OUTAGE, UNKNOWN = merged_increase(_OUTAGE_TOTAL, _UNKNOWN_TOTAL, "$__range", "$__range_s")
OBJECTIVE = f"{CUSTOMER_OBJECTIVE_RATIO}{{{CUSTOMER}}}"
# One objective per customer and service, however many replicas export it.
BUDGET_SECONDS = f"((1 - max by (customer, service) ({OBJECTIVE})) * scalar(days_in_month()) * 86400)"
AVAILABILITY = f"1 - {OUTAGE} / $__range_s"
ROLLING_30D = f"1 - {merged_increase(_OUTAGE_TOTAL, _UNKNOWN_TOTAL, '30d', '2592000')[0]} / (30 * 86400)"
BUDGET_USED_RATIO = f"{OUTAGE} / {BUDGET_SECONDS}"


def billed(expr: str) -> str:
    """Only the customer's billed services: those with an objective. The exporter writes one for connectivity and
    power, and for the application service only where the customer has applications_billable (docs/design.md
    "Applications"), so the customer's own applications never show against the objective unless billed."""
    return f"({expr}) and on(customer, service) {OBJECTIVE}"


# Application checks this month, per check (service="application", target = the check's id).
_APPLICATION = f'{{{CUSTOMER}, service="application"}}'
_DETERMINED = f"{SERVICE_DETERMINED_TIMESTAMP_SECONDS}{_APPLICATION}"
_CHANGES = f"changes({_DETERMINED}[$__range])"
# Outages with time in the range: determined_at steps 0 → t at determination and back to 0 at the end, so each
# outage is two changes, less one for an outage open at either end of the range (counted by the two flags).
APPLICATION_OUTAGES = (
    f"max by (customer, target) (ceil(({_CHANGES} + (last_over_time({_DETERMINED}[$__range]) > bool 0)"
    f" + (({_DETERMINED} offset $__range > bool 0) or {_CHANGES} * 0)) / 2))")
APPLICATION_OUTAGE_SECONDS = (f"max by (customer, target) "
                              f"(increase({SERVICE_OUTAGE_SECONDS_TOTAL}{_APPLICATION}[$__range]))")
APPLICATION_UNKNOWN_SECONDS = (f"max by (customer, target) "
                               f"(increase({SERVICE_UNKNOWN_SECONDS_TOTAL}{_APPLICATION}[$__range]))")
# 1 where the customer's contract bills its applications (an objective for service="application"), else 0.
_CHECKS = f"max by (customer, target) ({SERVICE_UP}{_APPLICATION})"
APPLICATION_BILLED = (f"(0 * {_CHECKS} + 1 and on(customer) {CUSTOMER_OBJECTIVE_RATIO}{_APPLICATION})"
                      f" or 0 * {_CHECKS}")
BILLED_MAPPINGS: list[dm.ValueMapping] = [
    dm.ValueMap(options={
        "0": dm.ValueMappingResult(text="not billed (customer's own)", color=GREY, index=0),
        "1": dm.ValueMappingResult(text="billed (applications_billable)", color=ORANGE, index=1),
    }),
]


def _availability() -> stat.Panel:
    return (stat.Panel().title("Availability this month").datasource(DS).span(8).height(8)
            .description("1 − outage time ÷ time elapsed in the selected range (This month: the month so far), per "
                         "customer and billed service. Vermillion below the 99.9% objective. Excluded windows are "
                         "still counted here; the billing report subtracts them. With replica exporters, merged "
                         "over vantages by their merge policy (approximate; the report is exact).")
            .with_target(query(at_sites(billed(AVAILABILITY)), "{{name}} · {{service}}", instant=True))
            .unit("percentunit").decimals(3).min(0).max(1).color_scheme(threshold_colours())
            .thresholds(thresholds((None, VERMILLION), (0.999, BLUE)))
            .reduce_options(reduce_last()).color_mode(cm.BigValueColorMode.BACKGROUND_SOLID)
            .graph_mode(cm.BigValueGraphMode.NONE).text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
            .justify_mode(cm.BigValueJustifyMode.CENTER))


def _budget_table() -> table.Panel:
    return (table_panel().title("Error budget this month").datasource(DS).span(16).height(8)
            .description("Outage minutes so far against the whole calendar month's budget: (1 − objective) × days in "
                         "the month × 1440 min, i.e. 43.2 min for a 30-day month at 99.9%. 'Used' above 100% means "
                         "the month is lost: credit 1 waives the month's rent for that service.")
            .with_target(query(at_sites(billed(f"{OUTAGE} / 60")), instant=True, ref="A", table=True))
            .with_target(query(at_sites(f"{BUDGET_SECONDS} / 60"), instant=True, ref="B", table=True))
            .with_target(query(at_sites(BUDGET_USED_RATIO), instant=True, ref="C", table=True))
            .with_target(query(at_sites(billed(f"{UNKNOWN} / 60")), instant=True, ref="D", table=True))
            .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
            .with_transformation(dm.DataTransformerConfig(id_val="organize", options={
                "excludeByName": {"Time": True, "__name__": True, "job": True, "instance": True},
                "indexByName": {"name": 0, "customer": 1, "service": 2,
                                "Value #A": 3, "Value #B": 4, "Value #C": 5, "Value #D": 6},
                "renameByName": {"name": "Customer", "customer": "id", "service": "Service",
                                 "Value #A": "Outage (min)", "Value #B": "Month budget (min)",
                                 "Value #C": "Budget used", "Value #D": "Unknown (min)"},
            }))
            .override_by_name("Outage (min)", [dm.DynamicConfigValue(id_val="unit", value="m"),
                                               dm.DynamicConfigValue(id_val="decimals", value=1)])
            .override_by_name("Month budget (min)", [dm.DynamicConfigValue(id_val="unit", value="m"),
                                                     dm.DynamicConfigValue(id_val="decimals", value=2)])
            .override_by_name("Unknown (min)", [dm.DynamicConfigValue(id_val="unit", value="m"),
                                                dm.DynamicConfigValue(id_val="decimals", value=1)])
            .override_by_name("Budget used", [
                dm.DynamicConfigValue(id_val="unit", value="percentunit"),
                dm.DynamicConfigValue(id_val="decimals", value=0),
                dm.DynamicConfigValue(id_val="thresholds", value=dm.ThresholdsConfig(
                    mode=dm.ThresholdsMode.ABSOLUTE, steps=[dm.Threshold(value=None, color=BLUE),
                                                            dm.Threshold(value=0.5, color=ORANGE),
                                                            dm.Threshold(value=1, color=VERMILLION)])),
                dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"}),
            ]))


def _timeline() -> statetimeline.Panel:
    up = f"{merge.SERVICE_UP}{{{CUSTOMER}}}"
    known = f"{merge.SERVICE_KNOWN}{{{CUSTOMER}}}"
    return (statetimeline.Panel().title("Outage timeline").datasource(DS).span(24).height(9)
            .description("Contract state over the range per customer and billed service: UP, DOWN (determined "
                         "outage) or UNKNOWN (no evidence). Hover a DOWN band for its start and end. Application "
                         "checks have their own timeline below. With replica exporters (vantages) this is the "
                         "merged state of the recording rules: DOWN when every vantage with evidence says down "
                         "(merge: all) or any of them (merge: any), at their evaluation interval.")
            .with_target(query(at_sites(billed(state(up, known))), "{{name}} · {{service}}"))
            .mappings(STATE_MAPPINGS).color_scheme(threshold_colours()).thresholds(thresholds((None, GREY)))
            .show_value(cm.VisibilityMode.NEVER).merge_values(True).row_height(0.8).fill_opacity(90)
            .legend(legend_list()).tooltip(tooltip()))


def _exclusion_timeline() -> statetimeline.Panel:
    excluded = f"max by (customer, service, reason) ({CUSTOMER_SERVICE_EXCLUDED}{{{CUSTOMER}}})"
    return (statetimeline.Panel().title("Exclusion windows").datasource(DS).span(24).height(6)
            .description("When an exclusion was active (agreed maintenance, customer's fault, force majeure, "
                         "unreported within 5 days): outage time inside these windows is not billed.")
            .with_target(query(at_sites(excluded), "{{name}} · {{service}} · {{reason}}"))
            .mappings([dm.ValueMap(options={
                "0": dm.ValueMappingResult(text="counted", color="transparent", index=0),
                "1": dm.ValueMappingResult(text="excluded", color=ORANGE, index=1),
            })])
            .color_scheme(threshold_colours()).thresholds(thresholds((None, GREY)))
            .show_value(cm.VisibilityMode.NEVER).merge_values(True).row_height(0.8).fill_opacity(90)
            .legend(legend_list()).tooltip(tooltip()))


def _unknown() -> stat.Panel:
    coverage = f"1 - {UNKNOWN} / $__range_s"
    return (stat.Panel().title("Evidence coverage this month").datasource(DS).span(8).height(7)
            .description("Share of the month so far with evidence (1 − unknown time ÷ elapsed time). Unknown time "
                         "is neither up nor down; a month with coverage below 99% is flagged for review before "
                         "billing.")
            .with_target(query(at_sites(billed(coverage)), "{{name}} · {{service}}", instant=True))
            .unit("percentunit").decimals(2).min(0).max(1).color_scheme(threshold_colours())
            .thresholds(thresholds((None, ORANGE), (0.99, BLUE)))
            .reduce_options(reduce_last()).color_mode(cm.BigValueColorMode.BACKGROUND_SOLID)
            .graph_mode(cm.BigValueGraphMode.NONE).text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
            .justify_mode(cm.BigValueJustifyMode.CENTER))


def _notifications() -> table.Panel:
    missed = f"increase({NOTIFICATION_DEADLINE_MISSED_TOTAL}{{{CUSTOMER}}}[$__range])"
    dispatches = f"sum by (customer) (increase({NOTIFICATION_DISPATCHES_TOTAL}{{{CUSTOMER}}}[$__range]))"
    return (table_panel().title("Notifications this month").datasource(DS).span(16).height(7)
            .description("Audited dispatches to the customer's designated contacts and notifications later than the "
                         "deadline in the range. Each late notification costs one day's rent, at most one per "
                         "calendar day: the report computes the credit.")
            .with_target(query(at_sites(f"sum by (customer) ({missed})"), instant=True, ref="A", table=True))
            .with_target(query(at_sites(dispatches), instant=True, ref="B", table=True))
            .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
            .with_transformation(dm.DataTransformerConfig(id_val="organize", options={
                "excludeByName": {"Time": True},
                "indexByName": {"name": 0, "customer": 1, "Value #B": 2, "Value #A": 3},
                "renameByName": {"name": "Customer", "customer": "id", "Value #A": "Deadline missed",
                                 "Value #B": "Dispatches audited"},
            }))
            .override_by_name("Deadline missed", [
                dm.DynamicConfigValue(id_val="decimals", value=0),
                dm.DynamicConfigValue(id_val="thresholds", value=dm.ThresholdsConfig(
                    mode=dm.ThresholdsMode.ABSOLUTE, steps=[dm.Threshold(value=None, color=BLUE),
                                                            dm.Threshold(value=0.5, color=VERMILLION)])),
                dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"}),
            ])
            .override_by_name("Dispatches audited", [dm.DynamicConfigValue(id_val="decimals", value=0)]))


def _per_port() -> table.Panel:
    targets = f'{{{CUSTOMER}, service="connectivity"}}'
    return (table_panel().title("Outage and unknown time per port this month").datasource(DS).span(24).height(8)
            .description("Which port caused the customer's outage minutes: determined outage and unknown minutes "
                         "per port. Overlapping outages of two ports count once in the customer's total above.")
            .with_target(query(at_sites(f"increase({SERVICE_OUTAGE_SECONDS_TOTAL}{targets}[$__range]) / 60"),
                               instant=True, ref="A", table=True))
            .with_target(query(at_sites(f"increase({SERVICE_UNKNOWN_SECONDS_TOTAL}{targets}[$__range]) / 60"),
                               instant=True, ref="B", table=True))
            .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
            .with_transformation(dm.DataTransformerConfig(id_val="organize", options={
                "excludeByName": {"Time": True, "__name__": True, "job": True, "instance": True, "service": True},
                "indexByName": {"name": 0, "customer": 1, "target": 2, "Value #A": 3, "Value #B": 4},
                "renameByName": {"name": "Customer", "customer": "id", "target": "Port",
                                 "Value #A": "Outage (min)", "Value #B": "Unknown (min)"},
            }))
            .override_by_name("Outage (min)", [dm.DynamicConfigValue(id_val="unit", value="m"),
                                               dm.DynamicConfigValue(id_val="decimals", value=1)])
            .override_by_name("Unknown (min)", [dm.DynamicConfigValue(id_val="unit", value="m"),
                                                dm.DynamicConfigValue(id_val="decimals", value=1)]))


def _rolling() -> timeseries.Panel:
    return (timeseries.Panel().title("Availability, rolling 30 days").datasource(DS).span(16).height(8)
            .description("Availability over the 30 days before each point, per customer and service: the trend "
                         "behind the calendar month. The dashed line is the 99.9% objective.")
            .with_target(query(at_sites(billed(ROLLING_30D)), "{{name}} · {{service}}"))
            .unit("percentunit").decimals(3).max(1).color_scheme(
                db.FieldColor().mode(dm.FieldColorModeId.PALETTE_CLASSIC))
            .thresholds(thresholds((None, VERMILLION), (0.999, "transparent")))
            .thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED))
            .legend(legend_table("lastNotNull", "min")).tooltip(tooltip()))


def _rolling_now() -> stat.Panel:
    return (stat.Panel().title("Availability, last 30 days").datasource(DS).span(8).height(8)
            .description("The same 30-day rolling availability at the end of the range, one tile per customer and "
                         "service.")
            .with_target(query(at_sites(billed(ROLLING_30D)), "{{name}} · {{service}}", instant=True))
            .unit("percentunit").decimals(3).color_scheme(threshold_colours())
            .thresholds(thresholds((None, VERMILLION), (0.999, BLUE)))
            .reduce_options(reduce_last()).color_mode(cm.BigValueColorMode.BACKGROUND_SOLID)
            .graph_mode(cm.BigValueGraphMode.NONE).text_mode(cm.BigValueTextMode.VALUE_AND_NAME))


def _application_outages() -> table.Panel:
    return (table_panel().title("Application outages this month").datasource(DS).span(24).height(8)
            .description("The customer's own applications (WWW, e-mail, FTP… checks of the inventory's "
                         "applications:), per check: outages with time in the range (determined: threshold "
                         "consecutive failed checks, counted from the first), their outage and unknown time. The "
                         "contract promises the same notification for them but excludes the customer's own "
                         "applications from the provider's outage time: they are not billed unless the customer's "
                         "contract has applications_billable (then they also appear in the panels above). The "
                         "statement's 'applications' section lists the same outages.")
            .with_target(query(at_sites(APPLICATION_OUTAGES), instant=True, ref="A", table=True))
            .with_target(query(at_sites(APPLICATION_OUTAGE_SECONDS), instant=True, ref="B", table=True))
            .with_target(query(at_sites(APPLICATION_UNKNOWN_SECONDS), instant=True, ref="C", table=True))
            .with_target(query(at_sites(APPLICATION_BILLED), instant=True, ref="D", table=True))
            .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
            .with_transformation(dm.DataTransformerConfig(id_val="organize", options={
                "excludeByName": {"Time": True},
                "indexByName": {"name": 0, "customer": 1, "target": 2, "Value #A": 3, "Value #B": 4, "Value #C": 5,
                                "Value #D": 6},
                "renameByName": {"name": "Customer", "customer": "id", "target": "Check", "Value #A": "Outages",
                                 "Value #B": "Outage time", "Value #C": "Unknown time", "Value #D": "Billing"},
            }))
            .override_by_name("Outages", [dm.DynamicConfigValue(id_val="decimals", value=0)])
            .override_by_name("Outage time", [dm.DynamicConfigValue(id_val="unit", value="s"),
                                              dm.DynamicConfigValue(id_val="decimals", value=0)])
            .override_by_name("Unknown time", [dm.DynamicConfigValue(id_val="unit", value="s"),
                                               dm.DynamicConfigValue(id_val="decimals", value=0)])
            .override_by_name("Billing", [
                dm.DynamicConfigValue(id_val="mappings", value=BILLED_MAPPINGS),
                dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
            ])
            .override_by_name("id", [dm.DynamicConfigValue(id_val="custom.hidden", value=True)])
            .no_value("No application check at the selected sites"))


def _application_timeline() -> statetimeline.Panel:
    up = f"{SERVICE_UP}{_APPLICATION}"
    known = f"{SERVICE_KNOWN}{_APPLICATION}"
    return (statetimeline.Panel().title("Application checks timeline").datasource(DS).span(24).height(7)
            .description("Contract state of each application check over the range: UP, DOWN (determined outage: "
                         "notified, not billed unless applications_billable) or UNKNOWN (the check could not be "
                         "made).")
            .with_target(query(at_sites(state(up, known)), "{{name}} · {{target}}"))
            .mappings(STATE_MAPPINGS).color_scheme(threshold_colours()).thresholds(thresholds((None, GREY)))
            .show_value(cm.VisibilityMode.NEVER).merge_values(True).row_height(0.8).fill_opacity(90)
            .legend(legend_list()).tooltip(tooltip()))


def build() -> db.Dashboard:
    return (dashboard("sla", "threenines / SLA month",
                      "Per customer and service: availability this calendar month so far, error budget used, "
                      "outage timeline, unknown time and notifications; plus the 30-day rolling view.")
            .time("now/M", "now").with_variable(site_variable()).with_variable(customer_variable())
            .with_row(db.Row("This month"))
            .with_panel(_availability()).with_panel(_budget_table())
            .with_panel(_timeline()).with_panel(_exclusion_timeline())
            .with_panel(_unknown()).with_panel(_notifications())
            .with_panel(_per_port())
            .with_row(db.Row("Applications (the customer's own)"))
            .with_panel(_application_outages()).with_panel(_application_timeline())
            .with_row(db.Row("Rolling 30 days"))
            .with_panel(_rolling_now()).with_panel(_rolling()))

