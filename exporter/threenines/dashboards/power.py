"""Power: per UPS and PDU, what the SNMP poller reads — inputs, load, battery, phases, and outlets per customer."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import stat, statetimeline, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

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
    device_variable,
    fixed_colour,
    legend_list,
    legend_table,
    query,
    reduce_last,
    site_variable,
    state,
    threshold_colours,
    thresholds,
    tooltip,
)
from threenines.exposition.catalogue import (
    CUSTOMER_SERVICE_KNOWN,
    CUSTOMER_SERVICE_UP,
    PDU_OUTLET_CURRENT_AMPERES,
    PDU_OUTLET_ENERGY_JOULES_TOTAL,
    PDU_OUTLET_ON,
    PDU_OUTLET_POWER_WATTS,
    PDU_PHASE_CURRENT_AMPERES,
    PDU_PHASE_VOLTAGE_VOLTS,
    UPS_BATTERY_CHARGE_RATIO,
    UPS_BATTERY_RUNTIME_SECONDS,
    UPS_INPUT_VOLTAGE_VOLTS,
    UPS_OUTPUT_LOAD_RATIO,
    UPS_OUTPUT_SOURCE,
)

DEVICE = 'device=~"$device"'
# The state set has one series per source, exactly one at 1; fold it into one number per UPS for a timeline.
SOURCES = ("normal", "battery", "bypass", "none", "other")
UPS_SOURCE = "max by (device) (" + " or ".join(
    f'({UPS_OUTPUT_SOURCE}{{{DEVICE}, source="{source}"}} == 1) * {code}'
    for code, source in enumerate(SOURCES, start=1)) + ")"
SOURCE_COLOURS = {"normal": BLUE, "battery": VERMILLION, "bypass": ORANGE, "none": "#000000", "other": GREY}


def _series(title: str, description: str, expr: str, legend: str, unit: str, span: int = 12
            ) -> timeseries.Panel:
    return (timeseries.Panel().title(title).description(description).datasource(DS).span(span).height(8)
            .with_target(query(expr, legend)).unit(unit)
            .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.PALETTE_CLASSIC))
            .legend(legend_table("lastNotNull", "min", "max")).tooltip(tooltip()))


def _ups_source() -> statetimeline.Panel:
    return (statetimeline.Panel().title("UPS output source").datasource(DS).span(24).height(6)
            .description("Where each UPS takes its output from: mains (normal), battery, bypass (no protection), "
                         "none (output off: customers on this UPS lose that feed) or other.")
            .with_target(query(UPS_SOURCE, "{{device}}"))
            .mappings([dm.ValueMap(options={
                str(code): dm.ValueMappingResult(text=source, color=SOURCE_COLOURS[source], index=code - 1)
                for code, source in enumerate(SOURCES, start=1)})])
            .color_scheme(threshold_colours()).thresholds(thresholds((None, GREY)))
            .show_value(cm.VisibilityMode.AUTO).merge_values(True).fill_opacity(90)
            .legend(legend_list()).tooltip(tooltip()))


def _customer_power() -> statetimeline.Panel:
    up = f'{CUSTOMER_SERVICE_UP}{{{CUSTOMER}, service="power"}}'
    known = f'{CUSTOMER_SERVICE_KNOWN}{{{CUSTOMER}, service="power"}}'
    return (statetimeline.Panel().title("Customer power (all feeds combined)").datasource(DS).span(24).height(6)
            .description("The power service per customer: DOWN only when mains and UPS are both without power on "
                         "every feed (A and B) for the determination threshold; UNKNOWN while a feed's device "
                         "cannot be polled.")
            .with_target(query(at_sites(state(up, known)), "{{name}}"))
            .mappings(STATE_MAPPINGS).color_scheme(threshold_colours()).thresholds(thresholds((None, GREY)))
            .show_value(cm.VisibilityMode.NEVER).merge_values(True).fill_opacity(90)
            .legend(legend_list()).tooltip(tooltip()))


def _energy() -> stat.Panel:
    energy = (f"sum by (customer) (increase({PDU_OUTLET_ENERGY_JOULES_TOTAL}{{{CUSTOMER}, {DEVICE}}}"
              "[$__range])) / 3.6e6")
    return (stat.Panel().title("Energy per customer in the range").datasource(DS).span(24).height(5)
            .description("Energy the customer's outlets used over the selected range, in kWh: set the range to a "
                         "month for power billing.")
            .with_target(query(at_sites(energy), "{{name}}", instant=True))
            .unit("kwatth").decimals(1).color_scheme(fixed_colour(BLUE)).reduce_options(reduce_last())
            .graph_mode(cm.BigValueGraphMode.NONE).text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
            .color_mode(cm.BigValueColorMode.VALUE))


def build() -> db.Dashboard:
    return (dashboard("power", "threenines / Power",
                      "Per UPS and PDU: input voltage, load, battery, phases, and each customer's outlets.")
            .time("now-24h", "now")
            .with_variable(site_variable()).with_variable(customer_variable()).with_variable(device_variable())
            .with_row(db.Row("UPS"))
            .with_panel(_ups_source())
            .with_panel(_series("UPS input voltage per line", "Mains voltage at each UPS input line (a 3-phase UPS "
                                "has three; a single-phase one line 1). One line at 0 V is a lost phase; all of them "
                                "with the output on battery is a mains failure.",
                                f"{UPS_INPUT_VOLTAGE_VOLTS}{{{DEVICE}}}", "{{device}} line {{phase}}", "volt"))
            .with_panel(_series("UPS output load per line", "Output load per line as a share of the UPS's rated "
                                "capacity; the most loaded line is the one that trips (ThreeninesUpsLoadHigh takes "
                                "the highest). Above ~80% the runtime on battery shrinks fast and an A/B failover "
                                "may overload it.",
                                f"{UPS_OUTPUT_LOAD_RATIO}{{{DEVICE}}}", "{{device}} line {{phase}}", "percentunit"))
            .with_panel(_series("UPS battery charge", "Battery charge as reported by the UPS.",
                                f"{UPS_BATTERY_CHARGE_RATIO}{{{DEVICE}}}", "{{device}}", "percentunit"))
            .with_panel(_series("UPS battery runtime", "Estimated runtime on battery at the current load.",
                                f"{UPS_BATTERY_RUNTIME_SECONDS}{{{DEVICE}}}", "{{device}}", "s"))
            .with_row(db.Row("PDU"))
            .with_panel(_series("PDU phase current", "Current per PDU phase; compare with the phase's rated current "
                                "(the NOC overview flags phases at 80% of it).",
                                f"{PDU_PHASE_CURRENT_AMPERES}{{{DEVICE}}}", "{{device}} phase {{phase}}",
                                "amp"))
            .with_panel(_series("PDU phase voltage", "Voltage per PDU phase.",
                                f"{PDU_PHASE_VOLTAGE_VOLTS}{{{DEVICE}}}", "{{device}} phase {{phase}}",
                                "volt"))
            .with_row(db.Row("Outlets per customer"))
            .with_panel(_customer_power())
            .with_panel(_series("Outlets powered per customer", "How many of the customer's outlets are on. An "
                                "outlet switched off on a single feed leaves the customer on the other feed.",
                                at_sites(f"sum by (customer) ({PDU_OUTLET_ON}{{{CUSTOMER}, {DEVICE}}})"),
                                "{{name}}", "none", span=8))
            .with_panel(_series("Power draw per customer", "Sum of the customer's outlet power across devices.",
                                at_sites(f"sum by (customer) ({PDU_OUTLET_POWER_WATTS}{{{CUSTOMER}, "
                                         f"{DEVICE}}})"), "{{name}}", "watt", span=8))
            .with_panel(_series("Outlet current per customer", "Current per outlet, labelled with the device and "
                                "outlet, for the customer's outlets.",
                                at_sites(f"{PDU_OUTLET_CURRENT_AMPERES}{{{CUSTOMER}, {DEVICE}}}"),
                                "{{name}} {{device}}/{{outlet}}", "amp", span=8))
            .with_panel(_energy()))
