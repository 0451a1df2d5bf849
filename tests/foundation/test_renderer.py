"""The incremental renderer: after any sequence of published changes it writes what a fresh render would, as
plain text and as gzip (one member made of its pieces' deflate segments)."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis import given, settings
from hypothesis import strategies as st

from threenines.config.inventory import TargetKey
from threenines.contract.engine import ContractChanges
from threenines.contract.machine import CustomerServiceView, TargetView
from threenines.exposition import contract, encoding
from threenines.exposition.contract import ExporterChanges, HealthView, SnapshotRenderer
from threenines.exposition.encoding import Piece, Run, gzip_parts
from threenines.probes.ping_scheduler import LAG_BUCKETS, ScheduledPortView

KEYS = tuple(TargetKey(f"c{i % 3}", "connectivity", f"p{i}") for i in range(5))
GROUPS = tuple(sorted({(k.customer, k.service) for k in KEYS}))
HEALTH = HealthView(True, 0.0, (0,) * (len(LAG_BUCKETS) + 1), 0.0, 0, (), 0.0)

target_views = st.builds(
    lambda key, up, known, outage, unknown: TargetView(key, up, known, float(outage), float(unknown),
                                                       None if up else 100.0, None if up else 50.0),
    st.sampled_from(KEYS), st.booleans(), st.booleans(), st.integers(0, 10**6), st.integers(0, 10**6))
probe_views = st.builds(
    lambda key, total, failures, errors, rtt, loss, last: ScheduledPortView(
        key, total, min(failures, total), errors, float(total if last is None else last), rtt,
        None if rtt is None else loss),
    st.sampled_from(KEYS), st.integers(0, 1000), st.integers(0, 1000), st.integers(0, 2),
    st.one_of(st.none(), st.floats(0, 1)), st.sampled_from([0.0, 0.5, 1.0]), st.one_of(st.none(), st.floats(0, 9)))
service_views = st.builds(
    lambda group, up, outage: CustomerServiceView(*group, up, True, float(outage), 0.0, 0.0, 0.0),
    st.sampled_from(GROUPS), st.booleans(), st.integers(0, 10**6))
batches = st.lists(st.tuples(st.lists(target_views, max_size=6), st.lists(probe_views, max_size=6),
                             st.lists(service_views, max_size=3)), min_size=1, max_size=6)


def changes(targets, probes, services, first: bool) -> ExporterChanges:
    return ExporterChanges(
        ContractChanges(0.0, KEYS if first else None, GROUPS if first else None,
                        {v.key: v for v in targets}, {(s.customer, s.service): s for s in services}),
        {KEYS.index(p.key): p.encode() for p in probes}, KEYS if first else None, (), HEALTH)


def pieces_of(runs: list[Run]) -> list[Piece]:
    return [piece for run in runs for piece in run.pieces]


def text(runs: list[Run]) -> bytes:
    """The exposition the pieces make; their gzip must be one member of the same text, with its CRC-32 combined
    by zlib or computed over the text (a Python without a loadable libz)."""
    raw = b"".join(piece.raw for piece in pieces_of(runs))
    body = b"".join(gzip_parts(runs))
    assert gzip.decompress(body) == raw and zlib.decompressobj(31).decompress(body) == raw  # one member
    combine, encoding.crc32_combine = encoding.crc32_combine, None
    try:
        assert b"".join(gzip_parts(runs)) == body
    finally:
        encoding.crc32_combine = combine
    return raw


@contextmanager
def piece_slots(slots: int) -> Iterator[None]:
    """Pieces of `slots` lines: with the 5 test ports, 1 and 2 put piece boundaries inside every family."""
    saved, contract.PIECE_SLOTS = contract.PIECE_SLOTS, slots
    try:
        yield
    finally:
        contract.PIECE_SLOTS = saved


def initial() -> tuple[list, list, list]:
    return ([TargetView(k, True, False, 0.0, 0.0, None, None) for k in KEYS],
            [ScheduledPortView(k, 0, 0, 0, 0.0, None, None) for k in KEYS],
            [CustomerServiceView(*g, True, False, 0.0, 0.0, 0.0, 0.0) for g in GROUPS])


@settings(max_examples=200, deadline=None)
@given(batches, st.integers(min_value=1, max_value=3), st.sampled_from([1, 2, 512]))
def test_rendering_changes_in_batches_equals_rendering_the_final_state(history, scrape_every, slots) -> None:
    with piece_slots(slots):
        rendered_in_batches_equals_fresh(history, scrape_every)


def rendered_in_batches_equals_fresh(history, scrape_every) -> None:
    incremental = SnapshotRenderer()
    pending = changes(*initial(), first=True)
    final = {"t": {v.key: v for v in initial()[0]}, "p": {v.key: v for v in initial()[1]},
             "s": {(v.customer, v.service): v for v in initial()[2]}}
    body = b""
    for index, (targets, probes, services) in enumerate(history):
        published = changes(targets, probes, services, first=False)
        pending = published if pending is None else pending.merge(published)
        final["t"].update(published.contract.targets)
        final["p"].update({KEYS[slot]: ScheduledPortView.decode(KEYS[slot], record)
                           for slot, record in published.probes.items()})
        final["s"].update(published.contract.services)
        if index % scrape_every == 0:  # some ticks are never scraped: their changes wait, merged
            body = text(incremental.render(pending))
            pending = None
    if pending is not None:
        body = text(incremental.render(pending))
    fresh = text(SnapshotRenderer().render(
        changes(list(final["t"].values()), list(final["p"].values()), list(final["s"].values()), first=True)))
    assert body == fresh


def test_a_reload_drops_the_lines_of_removed_targets_and_keeps_the_others() -> None:
    renderer = SnapshotRenderer()
    targets, probes, services = initial()
    renderer.render(changes(targets, probes, services, first=True))
    kept = KEYS[:2]
    body = text(renderer.render(ExporterChanges(
        ContractChanges(0.0, kept, GROUPS, {}, {}), {}, kept, (), HEALTH))).decode()
    assert 'target="p0"' in body and 'target="p1"' in body
    assert 'target="p2"' not in body and 'target="p4"' not in body


def test_records_pending_across_a_new_layout_are_taken_by_the_new_slots_only() -> None:
    """Records are published by slot. A reload that removes and reorders ports publishes every record under the
    new slots; records of the old layout still waiting for a scrape must not land on the new layout's lines."""
    renderer = SnapshotRenderer()
    targets, probes, services = initial()
    renderer.render(changes(targets, probes, services, first=True))
    waiting = changes([], [ScheduledPortView(KEYS[4], 7, 7, 0, 9.0, None, 1.0),  # slots 4 and 1: p4, p1
                           ScheduledPortView(KEYS[1], 7, 7, 0, 9.0, None, 1.0)], [], first=False)
    relaid = tuple(reversed(KEYS[1:]))  # p0 removed; p4 is slot 0 now, p1 slot 3, and there is no slot 4
    final = {k: ScheduledPortView(k, 8, 0, 0, 10.0 + i, 0.001 * (i + 1), 0.0) for i, k in enumerate(relaid)}
    reloaded = ExporterChanges(ContractChanges(0.0, None, None, {}, {}),
                               {relaid.index(k): v.encode() for k, v in final.items()}, relaid, (), HEALTH)
    body = text(renderer.render(waiting.merge(reloaded))).decode()
    assert [line for line in body.splitlines() if line.startswith("threenines_probe_total{")] == [
        f'threenines_probe_total{{customer="{k.customer}",target="{k.target}"}} 8.0' for k in relaid]
    assert "threenines_probe_failures_total" in body and " 7.0" not in body


def test_a_replica_exporter_labels_every_contract_series_with_its_vantage() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    plain = text(SnapshotRenderer().render(changes(*initial(), first=True))).decode()
    named = text(SnapshotRenderer("fra-1").render(changes(*initial(), first=True))).decode()
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


def test_a_render_makes_again_only_the_pieces_whose_lines_changed() -> None:
    with piece_slots(2):
        renderer = SnapshotRenderer()
        targets, probes, services = initial()
        before = renderer.render(changes(targets, probes, services, first=True))
        probed = ScheduledPortView(KEYS[4], 1, 0, 0, 1.0, 0.001, 0.0)  # the last port: the third piece of each
        after = renderer.render(changes([], [probed], [], first=False))
    kept = {id(piece) for piece in pieces_of(before)}
    made = [piece.raw.decode() for piece in pieces_of(after) if id(piece) not in kept]
    # the families no line of which changed are the same runs: their gzip segments and CRC are not made again.
    # A first answer changes the count, RTT, loss and time lines (not failures or errors); the tail always changes.
    remade = {run.pieces[0].raw.decode().split("\n")[0].split()[2] for run in after[:-1]
              if not any(run is old for old in before)}
    assert remade == {"threenines_probe_total", "threenines_probe_rtt_seconds", "threenines_probe_loss_ratio",
                      "threenines_probe_last_timestamp_seconds"}
    assert "threenines_config_last_reload_successful " in made[-1]  # the small families: every render
    probe_pieces = made[:-1]
    assert probe_pieces and all('target="p4"' in piece for piece in probe_pieces)
    assert all("p0" not in piece and "p2" not in piece for piece in probe_pieces)


def test_an_answered_probe_makes_again_the_pieces_of_its_count_rtt_and_time_only() -> None:
    """Its failures, errors and loss lines are what they were: those pieces (and their gzip) are kept."""
    with piece_slots(2):
        renderer = SnapshotRenderer()
        targets, probes, services = initial()
        renderer.render(changes(targets, probes, services, first=True))
        first = ScheduledPortView(KEYS[4], 1, 0, 0, 1.0, 0.001, 0.0)
        before = renderer.render(changes([], [first], [], first=False))
        answered = ScheduledPortView(KEYS[4], 2, 0, 0, 2.0, 0.002, 0.0)
        after = renderer.render(changes([], [answered], [], first=False))
        failed = ScheduledPortView(KEYS[4], 3, 1, 0, 3.0, 0.002, 1.0)
        last = renderer.render(changes([], [failed], [], first=False))
    def made(old: list[Run], new: list[Run]) -> set[str]:
        kept = {id(piece) for piece in pieces_of(old)}
        return {piece.raw.decode().split("{")[0].rsplit("\n", 1)[-1] for piece in pieces_of(new[:-1])
                if id(piece) not in kept}
    assert made(before, after) == {"threenines_probe_total", "threenines_probe_rtt_seconds",
                                   "threenines_probe_last_timestamp_seconds"}
    assert made(after, last) == {"threenines_probe_total", "threenines_probe_failures_total",
                                 "threenines_probe_loss_ratio", "threenines_probe_last_timestamp_seconds"}
