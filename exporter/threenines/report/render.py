"""Statement → text table, CSV (one row per customer and service, for the billing system), JSON."""

from __future__ import annotations

import csv
import io
import json

from threenines.config.exclusions import REASONS
from threenines.report.schema import ApplicationsSection, CustomerStatement, Statement

CSV_FIELDS = ("month", "status", "customer", "name", "timezone", "service", "minutes_in_month", "raw_outage_seconds",
              *(f"excluded_{r}_seconds" for r in REASONS), "counted_outage_seconds", "unknown_seconds",
              "coverage_ratio", "availability_percent", "objective_ratio", "objective_met", "rent_waived",
              "notification_deduction_days", "review", "applications")


def rows(statement: Statement) -> list[dict[str, object]]:
    """One CSV row (CSV_FIELDS) per customer and service."""
    out: list[dict[str, object]] = []
    for c in statement.customers:
        for s in c.services:
            out.append({
                "month": c.month, "status": statement.status,
                "customer": c.customer, "name": c.name, "timezone": c.timezone,
                "service": s.service, "minutes_in_month": c.minutes_in_month,
                "raw_outage_seconds": s.raw_outage_seconds,
                **{f"excluded_{r}_seconds": s.excluded_seconds[r] for r in REASONS},
                "counted_outage_seconds": s.counted_outage_seconds, "unknown_seconds": s.unknown_seconds,
                "coverage_ratio": s.coverage_ratio, "availability_percent": s.availability_percent,
                "objective_ratio": c.objective_ratio, "objective_met": s.objective_met,
                "rent_waived": s.rent_waived, "notification_deduction_days": c.notification.deduction_days,
                "review": " | ".join(s.review),
                "applications": applications_summary(c.applications),
            })
    return out


def applications_summary(section: ApplicationsSection | None) -> str:
    """The customer's applications section in one line (CSV column, table): empty without application checks."""
    if section is None:
        return ""
    head = "billed" if section.billable else "not billed"
    if not section.outages:
        return f"{head}: no application outage"
    return (f"{head}: {len(section.outages)} outage(s), {section.outage_seconds:g} s: ports answered "
            f"{section.ports_answered_seconds:g} s (customer_fault evidence), inside connectivity outage "
            f"{section.inside_connectivity_outage_seconds:g} s, connectivity unknown "
            f"{section.connectivity_unknown_seconds:g} s")


def _sections(c: CustomerStatement) -> list[str]:
    """The table's lines for a customer's power inferences and applications (none when it has neither)."""
    lines: list[str] = []
    for s in c.services:
        for o in s.outages:
            for e in o.inferred_from or []:
                lines.append(f"  {c.customer} {s.service} outage {o.start} - {o.end}: INFERRED (blackout rule) from "
                             f"UPS {e.device} {e.evidence}, without output since {e.since}")
    if c.applications is not None:
        lines.append(f"  {c.customer} applications: {applications_summary(c.applications)}")
        for a in c.applications.outages:
            lines.append(f"    {a.check} {a.start} - {'ongoing' if a.open else a.end}: {a.seconds_in_month:g} s, "
                         f"{a.classification}" + (" (billed)" if a.billed else ""))
    return lines


def to_csv(statement: Statement) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows(statement))
    return buffer.getvalue()


def to_json(statement: Statement) -> str:
    return json.dumps(statement.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def to_table(statement: Statement) -> str:
    head = ("customer", "service", "raw s", "excluded s", "counted s", "unknown s", "avail %", "met",
            "rent", "notif days")
    body = [(c.customer, s.service, f"{s.raw_outage_seconds:g}",
             f"{sum(s.excluded_seconds[x] for x in REASONS):g}", f"{s.counted_outage_seconds:g}",
             f"{s.unknown_seconds:g}", f"{s.availability_percent:.4f}", "yes" if s.objective_met else "NO",
             "WAIVED" if s.rent_waived else "-", str(c.notification.deduction_days))
            for c in statement.customers for s in c.services]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=False)]
    lines = [f"SLA statement {statement.month}"]
    if statement.status == "preview":
        lines[0] += f" -- PREVIEW, NOT FINAL: {'; '.join(statement.preview_reasons)}"
    lines += ["  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in (head, *body)]
    sections = [line for c in statement.customers for line in _sections(c)]
    if sections:
        lines += ["", "Power inferences and applications:", *sections]
    review = statement.review + [f"prometheus warning: {w}" for w in statement.warnings]
    if review:
        lines.append("")
        lines.append("REVIEW before billing:")
        lines += [f"  - {item}" for item in review]
    return "\n".join(lines) + "\n"
