"""Prometheus → where a customer's connectivity had no evidence during its application outages, so the statement
can tell "the ports answered" (evidence for customer_fault) from "nobody knew" (docs/report.md, "Applications").

Only customers whose connectivity had unknown time in the month are asked (the others had evidence throughout,
exactly), and only over their application outages: one subquery per outage of the connectivity known gauge
(`threenines_customer_service_known`, max over the exporters that export it: a second is known when any vantage
has evidence for it, the merge rule's "unknown only when no vantage has evidence"). A grid point with the gauge
at 1 is evidence for the scrape interval ending there; the rest of the outage is unknown, to scrape resolution.
"""

from __future__ import annotations

import math

from threenines.intervals import Interval, merge, subtract
from threenines.report.collect import M_KNOWN
from threenines.report.promclient import PrometheusClient, parallel, promql_string


def connectivity_unknown(client: PrometheusClient, outages: dict[str, list[Interval]], scrape_interval: float
                         ) -> dict[str, list[Interval]]:
    """Per customer, the parts of the given spans (its application outages) in which its connectivity had no
    evidence."""
    step = max(1, int(scrape_interval))
    calls = {}
    for customer, spans in outages.items():
        for i, (lo, hi) in enumerate(merge(spans)):
            at = math.ceil(hi / step) * step + step  # the grid point whose interval holds the span's last second
            length = at - math.floor(lo / step) * step
            selector = f'{M_KNOWN}{{customer="{promql_string(customer)}",service="connectivity"}}'
            expr = (f"(max by (customer) ({selector}) == 1)"
                    f"[{length}s:{step}s] @ {at}")
            calls[f"{i}:{customer}"] = (lambda expr=expr, at=at: client.matrix(expr, at))
    known: dict[str, list[Interval]] = {customer: [] for customer in outages}
    for key, answer in parallel(client, calls).items():
        customer = key.split(":", 1)[1]
        known[customer] += [(t - step, t) for series in answer.values() for t, _ in series]
    return {customer: subtract(merge(outages[customer]), merge(known[customer])) for customer in outages}
