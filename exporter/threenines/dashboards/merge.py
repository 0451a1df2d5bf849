"""Replica exporters (vantages) in the dashboards: the merged views of prometheus/rules/threenines.rules.yml.

The contract's merge rule (docs/design.md, "Replica exporters") with the policy the report bills by, as the
exporters export it (threenines_merge_policy_info): under `all` a customer's service is DOWN when every vantage
with evidence says down, under `any` when any does; UNKNOWN only when none has evidence. Instant state comes from
the recording rules of the `threenines-vantages-merge` group (names below, one series per
customer/service[/target] whatever the number of replicas). Figures over the dashboard's range cannot come from
a rule (a rule has no `$__range`), so `merged_increase` writes the rules' window formula with the range in it:
the same PromQL as the `increase1h/1d/30d` rules, approximate (docs/ha.md "Merged views"). With one exporter both
give exactly what the dashboards showed before vantages.
"""

from __future__ import annotations

from threenines.exposition.catalogue import CUSTOMER_INFO, MERGE_POLICY_INFO

# Recording rules (prometheus/rules/threenines.rules.yml); tests/grafana checks that each is recorded there.
TARGET_UP = "customer_service_target:threenines_service_up:merged"
TARGET_KNOWN = "customer_service_target:threenines_service_known:merged"
TARGET_DETERMINED = "customer_service_target:threenines_service_determined_timestamp_seconds:merged"
SERVICE_UP = "customer_service:threenines_customer_service_up:merged"
SERVICE_KNOWN = "customer_service:threenines_customer_service_known:merged"
RULES = (TARGET_UP, TARGET_KNOWN, TARGET_DETERMINED, SERVICE_UP, SERVICE_KNOWN)

_BY = "customer, service"
# The customers merged by `any`: those any exporter of which says `any` (the rules' selection, threenines.rules.yml).
MERGED_BY_ANY = f'({CUSTOMER_INFO} * on (job, instance) group_left () {MERGE_POLICY_INFO}{{merge="any"}})'


def _per_vantage(outage: str, unknown: str, window: str, seconds: str) -> tuple[str, str]:
    """(outage, no-evidence seconds) per vantage over window, as the rules' customer_service_vantage records."""
    increase = f"increase({outage}[{window}])"
    scraped_at_start = f"on (job, instance) (up offset {window})"
    # The vantages scraped at the window's start (a younger replica cannot speak for it), or all if none was.
    outage_v = (f"({increase} and {scraped_at_start} or ({increase} unless on ({_BY}) "
                f"({increase} and {scraped_at_start})))")
    # Its unknown counter plus the window's share of failed scrapes (the counters stop while it is down).
    down = f"({seconds} * (1 - avg_over_time(up[{window}])))"
    no_evidence = (f"((increase({unknown}[{window}]) + on (job, instance) group_left () {down} "
                   f"or increase({unknown}[{window}])) and {outage_v})")
    return outage_v, no_evidence


def merged_increase(outage: str, unknown: str, window: str, seconds: str) -> tuple[str, str]:
    """(merged outage seconds, merged unknown seconds) per customer and service over window.

    outage/unknown are the counter selectors (threenines_customer_service_*_seconds_total{...}); seconds is the
    window in seconds as PromQL text ("$__range_s", "2592000"). Merged outage under `all` = min over vantages of
    (outage + no evidence) - min over vantages of no evidence, under `any` = max over vantages of outage; merged
    unknown (both) = min over vantages of no evidence. One vantage: `max by (customer, service)` of its own
    counters, exactly what the panels read before vantages.
    """
    outage_v, no_evidence = _per_vantage(outage, unknown, window, seconds)
    several = f"on ({_BY}) count by ({_BY}) ({no_evidence}) > 1"
    merged_outage = (f"((min by ({_BY}) ({outage_v} + {no_evidence}) - min by ({_BY}) ({no_evidence})) "
                     f"and {several} unless on (customer) {MERGED_BY_ANY} or max by ({_BY}) ({outage_v}))")
    merged_unknown = (f"(min by ({_BY}) ({no_evidence}) and {several} "
                      f"or max by ({_BY}) (increase({unknown}[{window}])))")
    return merged_outage, merged_unknown
