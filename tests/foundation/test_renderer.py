"""The incremental renderer: after any sequence of published changes it writes what a fresh render would."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from threenines.config.inventory import TargetKey
from threenines.contract.engine import ContractChanges
from threenines.contract.machine import CustomerServiceView, TargetView
from threenines.exposition.contract import ExporterChanges, HealthView, SnapshotRenderer
from threenines.probes.ping_scheduler import LAG_BUCKETS, ScheduledPortView

KEYS = tuple(TargetKey(f"c{i % 3}", "connectivity", f"p{i}") for i in range(5))
GROUPS = tuple(sorted({(k.customer, k.service) for k in KEYS}))
HEALTH = HealthView(True, 0.0, (0,) * (len(LAG_BUCKETS) + 1), 0.0, 0, (), 0.0)

target_views = st.builds(
    lambda key, up, known, outage, unknown: TargetView(key, up, known, float(outage), float(unknown),
                                                       None if up else 100.0, None if up else 50.0),
    st.sampled_from(KEYS), st.booleans(), st.booleans(), st.integers(0, 10**6), st.integers(0, 10**6))
probe_views = st.builds(
    lambda key, total, failures, rtt: ScheduledPortView(key, total, min(failures, total), 0,
                                                      float(total), rtt, None if rtt is None else 0.0),
    st.sampled_from(KEYS), st.integers(0, 1000), st.integers(0, 1000), st.one_of(st.none(), st.floats(0, 1)))
service_views = st.builds(
    lambda group, up, outage: CustomerServiceView(*group, up, True, float(outage), 0.0, 0.0, 0.0),
    st.sampled_from(GROUPS), st.booleans(), st.integers(0, 10**6))
batches = st.lists(st.tuples(st.lists(target_views, max_size=6), st.lists(probe_views, max_size=6),
                             st.lists(service_views, max_size=3)), min_size=1, max_size=6)


def changes(targets, probes, services, first: bool) -> ExporterChanges:
    return ExporterChanges(
        ContractChanges(0.0, KEYS if first else None, GROUPS if first else None,
                        {v.key: v for v in targets}, {(s.customer, s.service): s for s in services}),
        {p.key: p.encode() for p in probes}, KEYS if first else None, (), HEALTH)


def initial() -> tuple[list, list, list]:
    return ([TargetView(k, True, False, 0.0, 0.0, None, None) for k in KEYS],
            [ScheduledPortView(k, 0, 0, 0, 0.0, None, None) for k in KEYS],
            [CustomerServiceView(*g, True, False, 0.0, 0.0, 0.0, 0.0) for g in GROUPS])


@settings(max_examples=200, deadline=None)
@given(batches, st.integers(min_value=1, max_value=3))
def test_rendering_changes_in_batches_equals_rendering_the_final_state(history, scrape_every) -> None:
    incremental = SnapshotRenderer()
    pending = changes(*initial(), first=True)
    final = {"t": {v.key: v for v in initial()[0]}, "p": {v.key: v for v in initial()[1]},
             "s": {(v.customer, v.service): v for v in initial()[2]}}
    body = b""
    for index, (targets, probes, services) in enumerate(history):
        published = changes(targets, probes, services, first=False)
        pending = published if pending is None else pending.merge(published)
        final["t"].update(published.contract.targets)
        final["p"].update({key: ScheduledPortView.decode(key, record) for key, record in published.probes.items()})
        final["s"].update(published.contract.services)
        if index % scrape_every == 0:  # some ticks are never scraped: their changes wait, merged
            body = b"".join(incremental.render(pending))
            pending = None
    if pending is not None:
        body = b"".join(incremental.render(pending))
    fresh = b"".join(SnapshotRenderer().render(
        changes(list(final["t"].values()), list(final["p"].values()), list(final["s"].values()), first=True)))
    assert body == fresh


def test_a_reload_drops_the_lines_of_removed_targets_and_keeps_the_others() -> None:
    renderer = SnapshotRenderer()
    targets, probes, services = initial()
    renderer.render(changes(targets, probes, services, first=True))
    kept = KEYS[:2]
    text = b"".join(renderer.render(ExporterChanges(
        ContractChanges(0.0, kept, GROUPS, {}, {}), {}, kept, (), HEALTH))).decode()
    assert 'target="p0"' in text and 'target="p1"' in text
    assert 'target="p2"' not in text and 'target="p4"' not in text


def test_a_replica_exporter_labels_every_contract_series_with_its_vantage() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    plain = b"".join(SnapshotRenderer().render(changes(*initial(), first=True))).decode()
    named = b"".join(SnapshotRenderer("fra-1").render(changes(*initial(), first=True))).decode()
    contract = ("threenines_service_", "threenines_customer_", "threenines_probe_total", "threenines_probe_failures",
                "threenines_probe_errors", "threenines_probe_rtt", "threenines_probe_loss", "threenines_probe_last",
                "threenines_port_info", "threenines_exporter_accounting_start")
    labelled = 0
    for unlabelled, named_family in zip(text_string_to_metric_families(plain), text_string_to_metric_families(named),
                                        strict=True):
        for a, b in zip(unlabelled.samples, named_family.samples, strict=True):
            mine = a.name.startswith(contract)  # the exporter's own health is not a vantage's evidence
            assert (b.name, b.labels, b.value) == (a.name, {**a.labels, "vantage": "fra-1"} if mine else a.labels,
                                                   a.value)
            labelled += mine
    assert labelled >= len(KEYS) * 6 + len(GROUPS) * 4 + 1
