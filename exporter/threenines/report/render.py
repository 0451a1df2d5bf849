"""Statement → text table, CSV (one row per customer and service, for the billing system), JSON."""

from __future__ import annotations

import csv
import io
import json

from threenines.config.exclusions import REASONS

CSV_FIELDS = ("month", "status", "customer", "name", "timezone", "service", "minutes_in_month", "raw_outage_seconds",
              *(f"excluded_{r}_seconds" for r in REASONS), "counted_outage_seconds", "unknown_seconds",
              "coverage_ratio", "availability_percent", "objective_ratio", "objective_met", "rent_waived",
              "notification_deduction_days", "review")


def rows(statement: dict) -> list[dict]:
    out = []
    for c in statement["customers"]:
        for s in c["services"]:
            out.append({
                "month": c["month"], "status": statement["status"],
                "customer": c["customer"], "name": c["name"], "timezone": c["timezone"],
                "service": s["service"], "minutes_in_month": c["minutes_in_month"],
                "raw_outage_seconds": s["raw_outage_seconds"],
                **{f"excluded_{r}_seconds": s["excluded_seconds"][r] for r in REASONS},
                "counted_outage_seconds": s["counted_outage_seconds"], "unknown_seconds": s["unknown_seconds"],
                "coverage_ratio": s["coverage_ratio"], "availability_percent": s["availability_percent"],
                "objective_ratio": c["objective_ratio"], "objective_met": s["objective_met"],
                "rent_waived": s["rent_waived"], "notification_deduction_days": c["notification"]["deduction_days"],
                "review": " | ".join(s["review"]),
            })
    return out


def to_csv(statement: dict) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows(statement))
    return buffer.getvalue()


def to_json(statement: dict) -> str:
    return json.dumps(statement, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def to_table(statement: dict) -> str:
    head = ("customer", "service", "raw s", "excluded s", "counted s", "unknown s", "avail %", "met",
            "rent", "notif days")
    body = [(r["customer"], r["service"], f"{r['raw_outage_seconds']:g}",
             f"{sum(r[f'excluded_{x}_seconds'] for x in REASONS):g}", f"{r['counted_outage_seconds']:g}",
             f"{r['unknown_seconds']:g}", f"{r['availability_percent']:.4f}", "yes" if r["objective_met"] else "NO",
             "WAIVED" if r["rent_waived"] else "-", str(r["notification_deduction_days"])) for r in rows(statement)]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=False)]
    lines = [f"SLA statement {statement['month']}"]
    if statement["status"] == "preview":
        lines[0] += f" -- PREVIEW, NOT FINAL: {'; '.join(statement['preview_reasons'])}"
    lines += ["  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in (head, *body)]
    review = statement["review"] + [f"prometheus warning: {w}" for w in statement["warnings"]]
    if review:
        lines.append("")
        lines.append("REVIEW before billing:")
        lines += [f"  - {item}" for item in review]
    return "\n".join(lines) + "\n"
