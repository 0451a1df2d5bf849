"""Statement → one self-contained HTML page per run: a section per customer with figures, budget used, an
inline SVG timeline of outages and exclusions (no JavaScript), credits and review items."""

from __future__ import annotations

from html import escape

from threenines.report.render import outage_notification
from threenines.report.schema import (
    ApplicationsSection,
    CustomerStatement,
    InferredEvidence,
    OutageDeliveries,
    ServiceStatement,
    Statement,
)

WIDTH, ROW = 720, 18
COLORS = {"outage": "#c0392b", "excluded": "#7f8c8d", "exclusion": "#f1c40f"}


def _timeline(customer: CustomerStatement, service: ServiceStatement) -> str:
    start, end = customer.start_unix, customer.end_unix
    scale = WIDTH / (end - start)

    def x(t: float) -> float:
        return round((min(max(t, start), end) - start) * scale, 2)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{2 * ROW + 14}" '
             f'role="img" aria-label="{escape(service.service)} timeline">',
             f'<rect x="0" y="0" width="{WIDTH}" height="{2 * ROW}" fill="#ecf0f1"/>']
    for day in range(0, int(end - start), 86400):
        parts.append(f'<line x1="{x(start + day)}" y1="0" x2="{x(start + day)}" y2="{2 * ROW}" stroke="#fff"/>')
    for ex in service.exclusions:
        s, e = _unix(ex.start), _unix(ex.end)
        parts.append(f'<rect x="{x(s)}" y="{ROW}" width="{max(x(e) - x(s), 1)}" height="{ROW}" '
                     f'fill="{COLORS["exclusion"]}"><title>{escape(ex.id)} {escape(ex.reason)}</title></rect>')
    for o in service.outages:
        color = COLORS["outage"] if o.classification.startswith(("counted", "partly")) else COLORS["excluded"]
        s, e = o.start_unix, o.end_unix
        parts.append(f'<rect x="{x(s)}" y="0" width="{max(x(e) - x(s), 1)}" height="{ROW}" fill="{color}">'
                     f'<title>{escape(o.target)} {escape(o.start)} – '
                     f'{escape("ongoing" if o.open else o.end)}: '
                     f'{escape(o.classification)}</title></rect>')
    parts.append(f'<text x="0" y="{2 * ROW + 12}" font-size="10">{escape(customer.start[:10])}</text>')
    parts.append(f'<text x="{WIDTH}" y="{2 * ROW + 12}" font-size="10" text-anchor="end">'
                 f'{escape(customer.end[:10])}</text></svg>')
    return "".join(parts)


def _unix(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def _customer(c: CustomerStatement) -> str:
    rows = []
    for s in c.services:
        excluded = ", ".join(f"{r} {v:g} s" for r, v in s.excluded_seconds.items() if v) or "none"
        rows.append(
            f"<h3>{escape(s.service)}: {s.availability_percent:.4f}% "
            f"({'objective met' if s.objective_met else 'OBJECTIVE MISSED — rent waived'})</h3>"
            f"<p>Budget used: {s.budget_used_minutes:g} of {c.budget_minutes:g} minutes. "
            f"Outage {s.raw_outage_seconds:g} s, excluded {escape(excluded)}, counted "
            f"{s.counted_outage_seconds:g} s, unknown {s.unknown_seconds:g} s "
            f"(coverage {100 * s.coverage_ratio:.3f}%).</p>{_timeline(c, s)}"
            + _outage_table(s))
    n = c.notification
    review = "".join(f"<li>{escape(item)}</li>" for item in c.review)
    return (f"<section><h2>{escape(c.name)} ({escape(c.customer)}) — {escape(c.month)}</h2>"
            f"<p>{escape(c.start)} to {escape(c.end)} ({escape(c.timezone)}), "
            f"{c.minutes_in_month:g} minutes, objective {100 * c.objective_ratio:g}%.</p>{''.join(rows)}"
            f"<h3>Credits</h3><ul><li>Rent waived for: "
            f"{escape(', '.join(s.service for s in c.services if s.rent_waived) or 'no service')}</li>"
            f"<li>Notification deductions: {n.deduction_days} day(s) {escape(', '.join(n.days))}</li></ul>"
            + (_deliveries(n.deliveries) if n.deliveries else "")
            + (_applications(c.applications) if c.applications is not None else "")
            + (f"<h3>Review</h3><ul>{review}</ul>" if review else "") + "</section>")


def _outage_table(s: ServiceStatement) -> str:
    if not s.outages:
        return "<p>No outages.</p>"
    # The "inferred from" column only where an outage rests on the blackout rule (docs/power.md).
    inferred = any(o.inferred_from for o in s.outages)
    body = "".join(f"<tr><td>{escape(o.target)}</td><td>{escape(o.start)}</td><td>{escape(o.end)}</td>"
                   f"<td>{o.seconds_in_month:g}</td><td>{escape(o.classification)}</td>"
                   + (f"<td>{_inferred(o.inferred_from)}</td>" if inferred else "") + "</tr>"
                   for o in s.outages)
    return ("<table><tr><th>target</th><th>start</th><th>end</th><th>seconds in month</th><th>classification</th>"
            + ("<th>inferred from (review)</th>" if inferred else "") + f"</tr>{body}</table>")


def _inferred(items: list[InferredEvidence] | None) -> str:
    return "<br>".join(f"UPS {escape(e.device)}: {escape(e.evidence)}, without output since {escape(e.since)}"
                       for e in items or [])


def _deliveries(outages: list[OutageDeliveries]) -> str:
    """The notification of each outage per designated contact: accepted (when, delay, receipt) or undelivered."""
    rows = []
    for o in outages:
        rows.append(f'<tr><td colspan="7"><b>{escape(o.service)} {escape(o.target)}</b>, determined '
                    f"{escape(o.determined)}: {escape(outage_notification(o))}</td></tr>")
        for d in o.contacts:
            if d.accepted_at is not None:
                outcome = f"<td>{escape(d.accepted_at)}</td><td>{d.delay_seconds:g}</td><td>{escape(d.receipt)}</td>"
            else:
                why = f"{d.last_failure or 'not attempted'} ({d.attempts} attempt(s), {d.state})"
                outcome = f"<td>UNDELIVERED</td><td></td><td>{escape(why)}</td>"
            rows.append(f"<tr><td>{escape(d.event)}</td><td>{escape(d.channel)}</td><td>{escape(d.contact)}</td>"
                        f"<td>{escape(d.contact_version)}</td>{outcome}</tr>")
    return ("<h3>Notifications</h3><table><tr><th>event</th><th>channel</th><th>contact</th><th>contact version</th>"
            "<th>accepted at</th><th>delay s</th><th>receipt, or why undelivered</th></tr>" + "".join(rows)
            + "</table>")


def _applications(a: ApplicationsSection) -> str:
    head = (f"<h3>Applications ({'billed' if a.billable else 'not billed: the contract excludes them'})</h3>"
            f"<p>Outage {a.outage_seconds:g} s: ports answered {a.ports_answered_seconds:g} s (customer_fault "
            f"evidence), inside connectivity outage {a.inside_connectivity_outage_seconds:g} s, connectivity "
            f"unknown {a.connectivity_unknown_seconds:g} s.</p>")
    if not a.outages:
        return head + "<p>No application outages.</p>"
    body = "".join(f"<tr><td>{escape(o.check)}</td><td>{escape(o.start)}</td>"
                   f"<td>{escape('ongoing' if o.open else o.end)}</td><td>{o.seconds_in_month:g}</td>"
                   f"<td>{o.ports_answered_seconds:g}</td><td>{o.inside_connectivity_outage_seconds:g}</td>"
                   f"<td>{o.connectivity_unknown_seconds:g}</td><td>{escape(o.classification)}</td>"
                   f"<td>{'yes' if o.billed else 'no'}</td></tr>" for o in a.outages)
    return (head + "<table><tr><th>check</th><th>start</th><th>end</th><th>seconds in month</th>"
            "<th>ports answered s</th><th>inside connectivity outage s</th><th>connectivity unknown s</th>"
            f"<th>classification</th><th>billed</th></tr>{body}</table>")


def to_html(statement: Statement) -> str:
    return ("<!doctype html><html><head><meta charset=\"utf-8\"><title>SLA statement "
            f"{escape(statement.month)}</title><style>body{{font-family:sans-serif;max-width:760px;margin:auto}}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px}"
            "section{page-break-after:always}.preview{background:#f1c40f;padding:6px;font-weight:bold}"
            "</style></head><body>"
            + (f'<p class="preview">PREVIEW, NOT FINAL: {escape("; ".join(statement.preview_reasons))}</p>'
               if statement.status == "preview" else "")
            + "".join(_customer(c) for c in statement.customers) + "</body></html>\n")
