"""Building blocks every threenines dashboard shares: the datasource, the variables, colours, state mappings.

Everything here is written against the metric contract (docs/metrics.md) and nothing else; family names come
from its catalogue (threenines.exposition.catalogue). Each panel query
reads the raw contract metrics with `increase(...[$__range])`, so dashboards never wait for recording rules.
"""

from __future__ import annotations

from typing import Any, cast

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as pq
from grafana_foundation_sdk.builders import table
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as prom_models

from threenines.exposition.catalogue import CUSTOMER_INFO, DEVICE_UP

TAG = "threenines"
# Stable uids: links between dashboards and bookmarks use them; never change one once released.
UIDS = {
    "noc": "threenines-noc",
    "sla": "threenines-sla",
    "power": "threenines-power",
    "health": "threenines-exporter",
}
# Bumped by hand when a dashboard changes in a way a viewer should notice; the golden test keeps it stable.
VERSION = 1

# Every panel and every query names the datasource through this variable, never a fixed uid.
DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")

# Okabe-Ito palette: up, down and unknown stay distinguishable with any colour-vision deficiency,
# and every state also carries a word ("UP", "DOWN", "UNKNOWN"), so colour is never the only signal.
BLUE = "#0072B2"
VERMILLION = "#D55E00"
ORANGE = "#E69F00"
GREY = "#999999"
GREEN = "#009E73"

CUSTOMER = 'customer=~"$customer"'

# The customers of the selected sites; multiplying by it filters any per-customer vector and adds `name`
# (the customer's display name from the inventory). `max by` keeps it one series per customer even when
# two Prometheus jobs scrape the same exporter.
_SITE_CUSTOMERS = f'max by (customer, name) ({CUSTOMER_INFO}{{site=~"$site", customer=~"$customer"}})'


def at_sites(expr: str) -> str:
    """Restrict a per-customer vector to the customers of the selected sites and label it with their name."""
    return f"({expr}) * on(customer) group_left(name) {_SITE_CUSTOMERS}"


def state(up: str, known: str) -> str:
    """One number per series: 1 up, 0 down, 2 unknown. A determined outage wins over missing evidence."""
    return f"{up} * (2 - {known})"


STATE_MAPPINGS: list[dm.ValueMapping] = [
    dm.ValueMap(options={
        "0": dm.ValueMappingResult(text="DOWN", color=VERMILLION, index=0),
        "1": dm.ValueMappingResult(text="UP", color=BLUE, index=1),
        "2": dm.ValueMappingResult(text="UNKNOWN", color=GREY, index=2),
    }),
]


def thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    """Absolute thresholds; the first step's value must be None (Grafana's -Infinity base)."""
    return db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(
        [dm.Threshold(value=value, color=color) for value, color in steps])


def fixed_colour(colour: str) -> db.FieldColor:
    return db.FieldColor().mode(dm.FieldColorModeId.FIXED).fixed_color(colour)


def threshold_colours() -> db.FieldColor:
    return db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS)


def query(expr: str, legend: str = "", *, instant: bool = False, ref: str = "A", table: bool = False
          ) -> pq.Dataquery:
    """A Prometheus query through the datasource variable; instant queries answer "now", range ones draw."""
    # Code mode: these expressions join and filter more than the query builder can show.
    target = (pq.Dataquery().expr(expr).ref_id(ref).datasource(DS).legend_format(legend or "__auto")
              .editor_mode(prom_models.QueryEditorMode.CODE))
    target = target.instant() if instant else target.range()
    if table:
        target = target.format(prom_models.PromQueryFormat.TABLE)
    return target


def table_panel() -> table.Panel:
    """A table panel with the options Grafana 11.6 requires (the schema check fails without them)."""
    return table.Panel().show_header(True).frame_index(0)


def reduce_last() -> cb.ReduceDataOptions:
    return cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False).fields("")


def legend_table(*calcs: str) -> cb.VizLegendOptions:
    return (cb.VizLegendOptions().display_mode(cm.LegendDisplayMode.TABLE).placement(cm.LegendPlacement.BOTTOM)
            .show_legend(True).calcs(list(calcs)))


def legend_list() -> cb.VizLegendOptions:
    return (cb.VizLegendOptions().display_mode(cm.LegendDisplayMode.LIST).placement(cm.LegendPlacement.BOTTOM)
            .show_legend(True).calcs([]))


def tooltip() -> cb.VizTooltipOptions:
    return cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING)


def datasource_variable() -> db.DatasourceVariable:
    return (db.DatasourceVariable("datasource").label("Prometheus").type("prometheus")
            .description("The Prometheus (or Thanos/Mimir) that scrapes threenines."))


def site_variable() -> db.QueryVariable:
    return (db.QueryVariable("site").label("Site").datasource(DS)
            .query(f"label_values({CUSTOMER_INFO}, site)")
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC)
            .multi(True).include_all(True).current(_all_option())
            .description(f"Data-centre sites from the inventory ({CUSTOMER_INFO})."))


def customer_variable() -> db.QueryVariable:
    # No custom "All" value: Grafana then expands All to the customers of the selected sites only.
    return (db.QueryVariable("customer").label("Customer").datasource(DS)
            .query(f'label_values({CUSTOMER_INFO}{{site=~"$site"}}, customer)')
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC)
            .multi(True).include_all(True).current(_all_option())
            .description("Inventory customer ids at the selected sites."))


def device_variable() -> db.QueryVariable:
    return (db.QueryVariable("device").label("SNMP device").datasource(DS)
            .query(f"label_values({DEVICE_UP}, device)")
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC)
            .multi(True).include_all(True).current(_all_option())
            .description("UPSes and PDUs the exporter polls over SNMP."))


def _all_option() -> dm.VariableOption:
    return dm.VariableOption(selected=True, text="All", value="$__all")


def links() -> list[db.DashboardLink]:
    """A dropdown to every other threenines dashboard, keeping the time range and the variables."""
    return [
        db.DashboardLink("threenines").type(dm.DashboardLinkType.DASHBOARDS).tags([TAG]).as_dropdown(True)
        .include_vars(True).keep_time(True).target_blank(False).icon("external link")
        .tooltip("Other threenines dashboards").url(""),
    ]


def dashboard(key: str, title: str, description: str) -> db.Dashboard:
    """A dashboard with the shared uid scheme, tags, links and the datasource variable first."""
    return (db.Dashboard(title).uid(UIDS[key]).version(VERSION).description(description).tags([TAG])
            .editable().timezone("").week_start("").refresh("1m")
            .tooltip(dm.DashboardCursorSync.CROSSHAIR).links(cast(list[Any], links()))
            .with_variable(datasource_variable()))


class DataLink:
    """A field data link as Grafana stores it: {title, url, targetBlank}.

    The SDK only has DashboardLink builders, whose extra keys (asDropdown, tags, type…) do not belong in a
    data link; the schema check types data links with Grafana's DataLink.
    """

    def __init__(self, title: str, url: str) -> None:
        self.title = title
        self.url = url

    def build(self) -> DataLink:
        return self

    def to_json(self) -> dict[str, object]:
        return {"title": self.title, "url": self.url, "targetBlank": False}


def data_links(*links: DataLink) -> list[Any]:
    """Data links for a panel's data_links(): the SDK types them as DashboardLink builders (see DataLink)."""
    return list(links)


def customer_data_link(dashboard_key: str, title: str) -> DataLink:
    """A data link that opens another dashboard for the customer of the clicked series."""
    return DataLink(title, f"/d/{UIDS[dashboard_key]}?${{__url_time_range}}&${{datasource:queryparam}}"
                           "&var-customer=${__field.labels.customer}")
