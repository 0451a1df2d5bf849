"""Statement → text table, CSV (one row per customer and service, for the billing system), JSON."""

from __future__ import annotations

import csv
import io
import json

from threenines.config.exclusions import REASONS
from threenines.report.schema import (
    ApplicationsSection,
    ContactDeliveryLine,
    CustomerStatement,
    OutageDeliveries,
    Statement,
)

CSV_FIELDS = ("month", "status", "customer", "name", "timezone", "service", "minutes_in_month", "raw_outage_seconds",
              *(f"excluded_{r}_seconds" for r in REASONS), "counted_outage_seconds", "unknown_seconds",
              "coverage_ratio", "availability_percent", "objective_ratio", "objective_met", "rent_waived",
              "notification_deduction_days", "review", "applications", "notification_deliveries")

# What a missed deadline's reason (the audit ledger's) means, as the statement says it to the customer.
MISSED = {"undelivered": "never delivered to every designated contact by the deadline",
          "not_notified": "no notification of it reached the exporter by the deadline",
          "late": "notified after the deadline"}


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
                "notification_deliveries": deliveries_summary(c.notification.deliveries or [], s.service),
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


def contact_summary(d: ContactDeliveryLine) -> str:
    """One contact's notice in one line: accepted (when, delay, receipt) or undelivered (why, attempts)."""
    who = f"{d.event} {d.contact} (contacts {d.contact_version})"
    if d.accepted_at is not None:
        return f"{who}: accepted {d.accepted_at} ({d.delay_seconds:g} s after determination), receipt {d.receipt!r}"
    why = d.last_failure or "not attempted"
    state = "given up" if d.state == "given up" else "still retried" if d.state == "failing" else "not attempted"
    return f"{who}: UNDELIVERED ({state}): {why}, {d.attempts} attempt(s)"


def outage_notification(o: OutageDeliveries) -> str:
    """An outage's notification in one line: delivered to every contact (when, delay) or not, and its miss."""
    if o.delivered_at is not None:
        text = f"delivered to every contact at {o.delivered_at} ({o.delay_seconds:g} s after determination)"
    elif o.contacts:
        text = "NOT delivered to every contact"
    else:
        text = "no notice in the delivery ledger"
    if o.missed:
        text += f"; deadline MISSED at {o.missed_at} ({o.missed}: {MISSED.get(o.missed, o.missed)})"
    return text


def deliveries_summary(outages: list[OutageDeliveries], service: str) -> str:
    """The service's outages' notifications (CSV column): empty without --delivery-ledger or outage notified."""
    return " | ".join(f"{o.target} determined {o.determined}: {outage_notification(o)}"
                      + "".join(f"; {contact_summary(d)}" for d in o.contacts if d.event == "firing")
                      for o in outages if o.service == service)


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
    notified = [(c, o) for c in statement.customers for o in c.notification.deliveries or []]
    if notified:
        lines += ["", "Notifications (delivery per designated contact):"]
        for c, o in notified:
            lines.append(f"  {c.customer} {o.service} {o.target} determined {o.determined}: {outage_notification(o)}")
            lines += [f"    {contact_summary(d)}" for d in o.contacts]
    review = statement.review + [f"prometheus warning: {w}" for w in statement.warnings]
    if review:
        lines.append("")
        lines.append("REVIEW before billing:")
        lines += [f"  - {item}" for item in review]
    return "\n".join(lines) + "\n"
