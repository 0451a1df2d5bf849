"""The statement's JSON is a published format (docs/report.md): its objects' keys, in order, are the ones billing
systems and closed months have read since schema threenines.statement/1. The lists below are that format, written
out from the statement as it was a plain dict; a change here is a new schema version."""

from __future__ import annotations

import json
from zoneinfo import ZoneInfo

from threenines.config.exclusions import Exclusion, Exclusions
from threenines.report.build import SCHEMA
from threenines.report.collect import Evidence, Outage
from threenines.report.months import Month
from threenines.report.render import to_json
from threenines.report.schema import ExclusionsSource, Statement
from threenines.report.statement import CustomerSpec, Options, customer_statement

STATEMENT_KEYS = ["schema", "month", "status", "preview_reasons", "scrape_interval_seconds", "min_coverage_ratio",
                  "bounds_source", "exclusions", "warnings", "customers", "review"]
EXCLUSIONS_KEYS = ["source", "sha256", "unreported_outages_not_counted"]
CUSTOMER_KEYS = ["customer", "name", "timezone", "month", "start", "end", "start_unix", "end_unix",
                 "seconds_in_month", "minutes_in_month", "objective_ratio", "budget_minutes", "services",
                 "notification", "review"]
SERVICE_KEYS = ["service", "raw_outage_seconds", "counter_outage_seconds", "excluded_seconds",
                "excluded_total_seconds", "counted_outage_seconds", "unknown_seconds", "unknown_gap_seconds",
                "coverage_ratio", "availability_ratio", "availability_percent", "objective_met", "budget_used_minutes",
                "rent_waived", "outages", "exclusions", "unreported_outages", "review"]
OUTAGE_KEYS = ["target", "start", "end", "start_unix", "end_unix", "determined", "seconds_in_month",
               "excluded_seconds", "classification", "exclusion_ids", "end_exact", "open", "source"]
EXCLUSION_KEYS = ["id", "reason", "start", "end"]
NOTIFICATION_KEYS = ["missed_deadlines", "days", "deduction_days", "source", "exact"]


def _statement() -> Statement:
    month = Month(2026, 10)
    spec = CustomerSpec("acme", "Acme", "Europe/Berlin", 0.999, ("connectivity",))
    start, end = month.window(ZoneInfo("Europe/Berlin"))
    t = start + 86400
    outage = Outage("p1", t, t + 1200, t + 300, True, "prometheus")
    ev = Evidence("acme", "connectivity", start, end, outage_counter=1200.0, samples=(end - start) // 60,
                  has_data=True, down_samples=15, outages=[outage])
    exclusions = Exclusions((Exclusion("CHG-1", "acme", ("connectivity",), t + 600, t + 900, "maintenance", "r",
                                       "ops"),), source="exclusions.yml", sha256="0" * 64)
    options = Options(scrape_interval=60.0)
    customer = customer_statement(spec, month, {"connectivity": ev}, exclusions, [(t + 1200.0, 1.0)], options,
                                  exact=True)
    return Statement(SCHEMA, str(month), "final", [], 60.0, options.min_coverage, "prometheus",
                     ExclusionsSource("exclusions.yml", "0" * 64, False), [], [customer],
                     [f"acme: {item}" for item in customer.review])


def test_the_json_objects_have_the_published_keys_in_order() -> None:
    data = _statement().to_dict()
    assert data["schema"] == "threenines.statement/1"
    assert list(data) == STATEMENT_KEYS
    assert list(data["exclusions"]) == EXCLUSIONS_KEYS
    [customer] = data["customers"]
    assert list(customer) == CUSTOMER_KEYS
    assert list(customer["notification"]) == NOTIFICATION_KEYS
    [service] = customer["services"]
    assert list(service) == SERVICE_KEYS
    assert list(service["excluded_seconds"]) == ["maintenance", "customer_fault", "force_majeure", "unreported"]
    [outage] = service["outages"]
    assert list(outage) == OUTAGE_KEYS
    [exclusion] = service["exclusions"]
    assert list(exclusion) == EXCLUSION_KEYS
    # the figures themselves: 1200 s outage, 300 s of it in the maintenance window
    assert (service["raw_outage_seconds"], service["excluded_seconds"]["maintenance"],
            service["counted_outage_seconds"]) == (1200.0, 300.0, 900.0)
    assert (outage["classification"], outage["exclusion_ids"]) == ("partly excluded: maintenance", ["CHG-1"])


def test_the_written_json_reads_back_as_the_same_object() -> None:
    statement = _statement()
    assert json.loads(to_json(statement)) == statement.to_dict()
