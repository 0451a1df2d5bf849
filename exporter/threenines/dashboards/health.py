"""Exporter health: is the evidence itself trustworthy — probe loop, SNMP polls, scrapes, ledgers, notifications."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from threenines.dashboards.common import (
    BLUE,
    CUSTOMER,
    DS,
    GREY,
    ORANGE,
    VERMILLION,
    at_sites,
    customer_variable,
    dashboard,
    device_variable,
    fixed_colour,
    legend_table,
    query,
    reduce_last,
    site_variable,
    threshold_colours,
    thresholds,
    tooltip,
)
from threenines.exposition.catalogue import (
    BUILD_INFO,
    CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS,
    CONFIG_LAST_RELOAD_SUCCESSFUL,
    DEVICE_POLL_DURATION_SECONDS,
    DEVICE_POLL_ERRORS_TOTAL,
    LEDGER_WRITES_TOTAL,
    METRICS_RENDER_SECONDS,
    NOTIFICATION_DEADLINE_MISSED_TOTAL,
    NOTIFICATION_DELAY_SECONDS,
    PROBE_ERRORS_TOTAL,
    PROBE_FAILURES_TOTAL,
    PROBE_SCHEDULE_LAG_SECONDS,
    PROBE_TOTAL,
    PROBES_IN_FLIGHT,
)

JOB = 'job=~"$job"'
DEVICE = 'device=~"$device"'


def _series(title: str, description: str, targets: list[tuple[str, str]], unit: str, span: int = 12
            ) -> timeseries.Panel:
    panel = (timeseries.Panel().title(title).description(description).datasource(DS).span(span).height(8)
             .unit(unit).color_scheme(db.FieldColor().mode(dm.FieldColorModeId.PALETTE_CLASSIC))
             .legend(legend_table("mean", "max", "lastNotNull")).tooltip(tooltip()))
    for ref, (expr, legend) in zip("ABCDEF", targets, strict=False):
        panel = panel.with_target(query(expr, legend, ref=ref))
    return panel


def _tiles(title: str, description: str, expr: str, legend: str) -> stat.Panel:
    return (stat.Panel().title(title).description(description).datasource(DS).span(6).height(5)
            .with_target(query(expr, legend, instant=True))
            .mappings([dm.ValueMap(options={
                "0": dm.ValueMappingResult(text="FAILING", color=VERMILLION, index=0),
                "1": dm.ValueMappingResult(text="OK", color=BLUE, index=1),
            })])
            .color_scheme(threshold_colours()).thresholds(thresholds((None, GREY)))
            .reduce_options(reduce_last()).color_mode(cm.BigValueColorMode.BACKGROUND_SOLID)
            .graph_mode(cm.BigValueGraphMode.NONE).text_mode(cm.BigValueTextMode.VALUE_AND_NAME))


def _notification_delay(quantile: float) -> stat.Panel:
    buckets = f"increase({NOTIFICATION_DELAY_SECONDS}_bucket{{{CUSTOMER}}}[$__range])"
    expr = at_sites(f"histogram_quantile({quantile}, sum by (customer, le) ({buckets}))")
    return (stat.Panel().title(f"Notification delay p{round(quantile * 100)} in the range").datasource(DS)
            .span(8).height(6)
            .description("Determination → Alertmanager dispatch as recorded by the audit webhook, per customer, over "
                         "the selected range. The contract's deadline is usually 15 min: orange from 10 min, "
                         "vermillion from 15 min.")
            .with_target(query(expr, "{{name}}", instant=True))
            .unit("s").color_scheme(threshold_colours())
            .thresholds(thresholds((None, BLUE), (600, ORANGE), (900, VERMILLION)))
            .no_value("No notification in the range").reduce_options(reduce_last())
            .color_mode(cm.BigValueColorMode.BACKGROUND_SOLID).graph_mode(cm.BigValueGraphMode.NONE)
            .text_mode(cm.BigValueTextMode.VALUE_AND_NAME))


def _deadline_misses() -> stat.Panel:
    missed = f"sum by (customer) (increase({NOTIFICATION_DEADLINE_MISSED_TOTAL}{{{CUSTOMER}}}[$__range]))"
    return (stat.Panel().title("Notification deadline misses in the range").datasource(DS).span(8).height(6)
            .description("Notifications that reached Alertmanager's receivers later than the customer's deadline. "
                         "Each one is a credit of one day's rent (at most one per calendar day).")
            .with_target(query(at_sites(missed), "{{name}}", instant=True))
            .unit("none").decimals(0).color_scheme(threshold_colours())
            .thresholds(thresholds((None, BLUE), (0.5, VERMILLION))).reduce_options(reduce_last())
            .color_mode(cm.BigValueColorMode.BACKGROUND_SOLID).graph_mode(cm.BigValueGraphMode.NONE)
            .text_mode(cm.BigValueTextMode.VALUE_AND_NAME))


def _last_reload() -> stat.Panel:
    return (stat.Panel().title("Last successful reload").datasource(DS).span(6).height(5)
            .description("When the running inventory was last loaded successfully (start-up or reload). A recent "
                         "edit that does not show here was rejected: see 'Configuration reload'.")
            .with_target(query(f"{CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS}{{{JOB}}} * 1000",
                               "{{instance}}", instant=True))
            .unit("dateTimeFromNow").color_scheme(fixed_colour(BLUE)).reduce_options(reduce_last())
            .graph_mode(cm.BigValueGraphMode.NONE).text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
            .color_mode(cm.BigValueColorMode.VALUE))


def build() -> db.Dashboard:
    lag = f"sum by (le) (rate({PROBE_SCHEDULE_LAG_SECONDS}_bucket{{" + JOB + "}[$__rate_interval]))"
    return (dashboard("health", "threenines / Exporter health",
                      "Whether the evidence is trustworthy: probe-loop lag, SNMP polls, scrapes, ledger writes and "
                      "notification delays.")
            .time("now-24h", "now")
            .with_variable(db.QueryVariable("job").label("Job").datasource(DS)
                           .query(f"label_values({BUILD_INFO}, job)")
                           .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).multi(True).include_all(True)
                           .current(dm.VariableOption(selected=True, text="All", value="$__all"))
                           .description("Prometheus jobs scraping a threenines exporter."))
            .with_variable(site_variable()).with_variable(customer_variable()).with_variable(device_variable())
            .with_row(db.Row("Exporter"))
            .with_panel(_tiles("Exporter scraped", "Prometheus' `up` for each exporter, with its version. FAILING "
                               "means no evidence at all: every service of its customers turns UNKNOWN.",
                               f"up{{{JOB}}} * on(job, instance) group_left(version) {BUILD_INFO}{{{JOB}}}",
                               "{{instance}} {{version}}"))
            .with_panel(_tiles("Configuration reload", "0 after a rejected reload: the previous inventory keeps "
                               "running until the file is fixed (run `threenines check`).",
                               f"{CONFIG_LAST_RELOAD_SUCCESSFUL}{{{JOB}}}", "{{instance}}"))
            .with_panel(_last_reload())
            .with_panel(_series("Probes in flight", "ICMP probes waiting for replies; a plateau at the configured "
                                "maximum means the probe loop is saturated and probes start late.",
                                [(f"{PROBES_IN_FLIGHT}{{{JOB}}}", "{{instance}}")], "none", span=6)
                        .height(5))
            .with_panel(_series("Probe-loop lag", "How late contract probes start against their 5-minute schedule "
                                "(p50 and p99). Lag eats into the 15-minute notification promise.",
                                [(f"histogram_quantile(0.5, {lag})", "p50"),
                                 (f"histogram_quantile(0.99, {lag})", "p99")], "s"))
            .with_panel(_series("Probe failures and errors", "Share of contract probes that failed (no echo reply) per "
                                "customer, and probes that could not be sent (unknown, not failure) by reason.",
                                [(at_sites(f"sum by (customer) (rate({PROBE_FAILURES_TOTAL}{{{CUSTOMER}}}"
                                           f"[$__rate_interval])) / sum by (customer) (rate({PROBE_TOTAL}"
                                           f"{{{CUSTOMER}}}[$__rate_interval]))"), "{{name}} failed"),
                                 (f"sum by (reason) (rate({PROBE_ERRORS_TOTAL}{{{CUSTOMER}}}"
                                  "[$__rate_interval]))", "not sent: {{reason}}")], "percentunit"))
            .with_row(db.Row("SNMP"))
            .with_panel(_series("SNMP poll duration", "Duration of the last poll of each device. Close to the "
                                "device's timeout × retries means polls are about to fail.",
                                [(f"{DEVICE_POLL_DURATION_SECONDS}{{{DEVICE}}}", "{{device}}")], "s"))
            .with_panel(_series("SNMP poll errors by reason", "Failed polls per second by device and reason "
                                "(timeout, auth, …): the device's power readings are UNKNOWN meanwhile.",
                                [(f"sum by (device, reason) (rate({DEVICE_POLL_ERRORS_TOTAL}{{{DEVICE}}}"
                                  "[$__rate_interval]))", "{{device}} {{reason}}")], "reqps"))
            .with_row(db.Row("Scrapes and ledgers"))
            .with_panel(_series("Scrape duration", "How long Prometheus takes to scrape /metrics, and how long the "
                                "exporter takes to render its snapshot. Near the scrape timeout, scrapes fail and "
                                "evidence turns UNKNOWN.",
                                [(f"scrape_duration_seconds{{{JOB}}}", "scrape {{instance}}"),
                                 (f"{METRICS_RENDER_SECONDS}{{{JOB}}}", "render {{instance}}")], "s"))
            .with_panel(_series("Ledger writes", "Outage and audit ledger writes per second by result. Any error "
                                "means evidence for billing disputes may be missing: check the state directory.",
                                [(f"sum by (ledger, result) (rate({LEDGER_WRITES_TOTAL}{{{JOB}}}"
                                  "[$__rate_interval]))", "{{ledger}} {{result}}")], "wps"))
            .with_row(db.Row("Notifications"))
            .with_panel(_notification_delay(0.5)).with_panel(_notification_delay(0.95))
            .with_panel(_deadline_misses()))
