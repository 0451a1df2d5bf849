"""Prometheus → the blackout rule's inferences behind customers' power outages (docs/power.md, "Evidence through
the blackout"), for the statement to list beside the outages they decided.

The exporter exposes `threenines_power_inferred_down{customer,device,evidence}` (1) and
`threenines_power_inferred_down_since_timestamp_seconds` (the rule's moment) while a customer's power is down only
by that rule; both are absent otherwise. One episode is one (customer, UPS, evidence, moment): the moment is fixed
for as long as the inference holds (it is the UPS's last reading plus its announced runtime, within bounds), and a
new blackout has a new one, so the since value tells episodes apart even across scrape gaps and restarts.

Cost: one month-long query per shard says which customers had any (`count_over_time(...) > 0`: one number per
series, and there is no series for a customer never inferred down), then the raw samples of just those series.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from threenines.exposition import catalogue
from threenines.report.collect import LOOKBACK, OUTAGE_MARGIN, SHARD_SAMPLES, LabelKey, _raw_samples, shards
from threenines.report.promclient import PrometheusClient, parallel

M_INFERRED_SINCE = catalogue.POWER_INFERRED_DOWN_SINCE_TIMESTAMP_SECONDS.name


@dataclass(frozen=True)
class Inference:
    """One episode of the blackout rule holding a customer's power down because of one UPS."""

    customer: str
    device: str
    evidence: str
    since: float  # the rule's moment
    first_seen: float  # first and last scrape showing it
    last_seen: float


def power_inferences(client: PrometheusClient, customers: list[str], start: int, end: int, scrape_interval: float,
                     only_zone: bool, budget: int = SHARD_SAMPLES) -> dict[str, list[Inference]]:
    """Per customer, the inference episodes seen in [start, end + 6 h) (an outage open at the month's end is
    listed with what decided it), oldest first."""
    if not customers:
        return {}
    hi = end + OUTAGE_MARGIN
    length = hi - start
    window = f"[{length * 1000 - 1}ms] @ {hi}"
    calls = {str(i): (lambda sel=sel: client.vector(f"count_over_time({M_INFERRED_SINCE}{sel}{window}) > 0", hi))
             for i, sel in enumerate(shards([(c, ("power",)) for c in customers], only_zone,
                                            length / scrape_interval, budget))}
    wanted = set(customers)
    candidates: set[LabelKey] = {labels for answer in parallel(client, calls).values() for labels in answer
                                 if dict(labels).get("customer") in wanted}
    if not candidates:
        return {}
    raw = _raw_samples(client, M_INFERRED_SINCE, candidates, length + LOOKBACK, hi, scrape_interval)
    # Replica exporters and HA replicas show the same episode: one line per (customer, UPS, evidence, moment).
    seen: dict[tuple[str, str, str, float], list[float]] = defaultdict(list)
    for labels, samples in raw.items():
        lab = dict(labels)
        for t, since in samples:
            if start <= t <= hi:
                seen[(lab["customer"], lab.get("device", ""), lab.get("evidence", ""), since)].append(t)
    out: dict[str, list[Inference]] = defaultdict(list)
    for (customer, device, evidence, since), times in sorted(seen.items(), key=lambda item: (item[0][3], item[0])):
        out[customer].append(Inference(customer, device, evidence, since, min(times), max(times)))
    return dict(out)
