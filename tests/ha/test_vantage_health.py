"""Vantage health (docs/ha.md): while every canary of a site fails, this vantage's customer failures at the site are
no evidence; a cut of the vantage's own path never determines an outage, a cut of the customer's port still does.

The cut tests replay probes at the packet level against the real contract machine: a probe sends `packets` echo
requests `packet_interval` apart, a request sent during a cut is lost, the probe fails when every request is lost
and finishes when its last request is answered or timed out (threenines.probes.wire). Hypothesis chooses the
cut, its length and every phase; the contract's own figures are fixed: 5-minute interval, threshold 2, a 2 s
timeout and 3 packets, canaries 5 per interval (the inventory's default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from threenines.config.configfile import ConfigError
from threenines.config.inventory import TargetKey
from threenines.config.inventory_load import parse_inventory_text
from threenines.contract.machine import OutageEvent, TargetMachine
from threenines.contract.vantage_health import VantageHealth, canary_key, canary_ports
from threenines.exposition.vantage_health import VantageHealthCollector

INTERVAL, THRESHOLD, HORIZON = 300.0, 2, 450.0  # the contract's defaults (horizon: 1.5 × interval)
PACKETS, PACKET_INTERVAL, TIMEOUT, RTT = 3, 0.2, 2.0, 0.001
CANARY_INTERVAL = INTERVAL / 5
PORT = TargetKey("acme", "connectivity", "p1")


def inventory(canaries: str = "[{id: router, address: 10.9.0.1}, {id: ref, address: 10.9.0.2}]",
              ping: str = "", site: str = "ams1") -> str:
    return f"""
sites:
  - id: ams1
    canaries: {canaries}
  - id: fra1
customers:
  - id: acme
    site: {site}
    timezone: UTC
    contacts: {{version: '1', notify: [{{email: noc@acme.example}}]}}
    {ping}
    ports: [{{id: p1, address: 10.9.1.1}}]
  - id: globex
    site: fra1
    timezone: UTC
    contacts: {{version: '1', notify: [{{email: noc@globex.example}}]}}
    ports: [{{id: p1, address: 10.9.1.2}}]
"""


# --- the inventory ------------------------------------------------------------------------------------------


def test_canaries_are_declared_per_site_and_probe_five_times_per_port_interval() -> None:
    inv = parse_inventory_text(inventory())
    (ams1, router), (_, ref) = inv.canaries()
    assert ams1.id == "ams1" and (router.id, router.address, ref.id) == ("router", "10.9.0.1", "ref")
    assert router.policy.interval == 60.0  # defaults.ping.interval (5m) / 5
    assert (router.policy.packets, router.policy.timeout) == (3, 2.0)  # the ports' own
    assert set(canary_ports(inv)) == {canary_key("ams1", "router"), canary_key("ams1", "ref")}


def test_canaries_that_could_not_notice_a_cut_before_a_ports_second_probe_are_refused() -> None:
    with pytest.raises(ConfigError) as err:
        parse_inventory_text(inventory("[{id: router, address: 10.9.0.1, interval: 5m}]"), "inv.yml")
    text = str(err.value)
    assert "inv.yml:3 sites[0]" in text  # file, line and field, like every inventory error
    assert "canary router probes every 5m" in text and "port p1 of customer acme" in text
    assert "interval + probe time < 297.6s" in text  # the fix: 300 s minus the port's 2.4 s probe


@pytest.mark.parametrize("canary, message", [
    ("[{id: router, address: 10.9.0.1, threshold: 2}]", "unknown key 'threshold'"),
    ("[{id: router, address: 224.0.0.1}]", "multicast"),
    ("[{id: router}]", "address"),
    ("[{id: a, address: 10.9.0.1}, {id: a, address: 10.9.0.2}]", "duplicate canary id 'a'"),
])
def test_a_bad_canary_is_located(canary: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_inventory_text(inventory(canary), "inv.yml")
    assert "sites[0].canaries" in str(err.value) or "duplicate" in str(err.value)
    assert message in str(err.value)


# --- the filter -----------------------------------------------------------------------------------------------

events = st.lists(st.tuples(st.sampled_from(["router", "ref", "acme", "globex"]), st.sampled_from([True, False, None])),
                  max_size=40)


@given(events)
@settings(max_examples=300, deadline=None)
def test_failures_pass_as_no_evidence_exactly_while_every_canary_failed(seq: list[tuple[str, bool | None]]) -> None:
    """The rule's words as a model: blind while each canary has a result and none answered its latest probe,
    and for one probe's length (2.4 s here) after; only failures of customers at that site are changed."""
    inv = parse_inventory_text(inventory())
    seen: list[tuple[TargetKey, float, bool | None]] = []
    health = VantageHealth(lambda key, at, ok: seen.append((key, at, ok)))
    health.configure(inv)
    latest: dict[str, bool] = {}
    seeing_since = -math.inf
    expected = []
    for step, (who, ok) in enumerate(seq):
        at = step * 1.0
        if who in ("router", "ref"):
            was_blind = len(latest) == 2 and not any(latest.values())
            latest[who] = ok is True
            if was_blind and any(latest.values()):
                seeing_since = at
            health.observe(canary_key("ams1", who), at, ok)
            continue
        key = TargetKey(who, "connectivity", "p1")
        blind = len(latest) == 2 and not any(latest.values())
        withheld = who == "acme" and ok is False and (blind or at <= seeing_since + 2.4)
        expected.append((key, at, None if withheld else ok))
        health.observe(key, at, ok)
        assert health.blind("ams1") == blind
    assert seen == expected
    (site,) = health.snapshot()
    assert site.withheld_failures == sum(1 for (k, _, ok), (w, o) in zip(expected, [(w, o) for w, o in seq
                                         if w in ("acme", "globex")], strict=True) if ok is None and o is False)


def test_answers_in_one_batch_pass_on_as_one_and_a_canary_among_them_is_taken_in_order() -> None:
    """The scheduler hands on the answers of one read of the socket at once (observe_answers): an answer is
    evidence even from a blind site, and a canary's answer in the batch ends the blindness at the batch's stamp."""
    inv = parse_inventory_text(inventory())
    seen: list[tuple[TargetKey, float, bool | None]] = []
    batches: list[tuple[float, list[TargetKey]]] = []
    health = VantageHealth(lambda key, at, ok: seen.append((key, at, ok)),
                           lambda at, keys: batches.append((at, list(keys))))
    health.configure(inv)
    acme, globex = TargetKey("acme", "connectivity", "p1"), TargetKey("globex", "connectivity", "p1")
    router, ref = canary_key("ams1", "router"), canary_key("ams1", "ref")
    health.observe(router, 1.0, False)
    health.observe(ref, 1.0, False)
    assert health.blind("ams1")
    health.observe_answers(2.0, [acme, globex])
    assert batches == [(2.0, [acme, globex])] and seen == []
    health.observe_answers(3.0, [acme, router, globex])
    assert not health.blind("ams1")
    assert seen == [(acme, 3.0, True), (globex, 3.0, True)] and len(batches) == 1
    health.observe(acme, 5.0, False)  # within one probe's length (2.4 s) of the site seeing again
    assert seen[-1] == (acme, 5.0, None)


def test_answers_as_the_sinks_tokens_go_on_in_runs_around_a_canary() -> None:
    """With the sink's tokens (the engine's machines), a customer's answer resolves to the sink's token and a
    canary's to its key: a batch goes on as the runs of tokens between its canaries, in order."""
    inv = parse_inventory_text(inventory())
    tokens: list[tuple[float, list[object]]] = []
    health = VantageHealth(lambda key, at, ok: None, None, lambda key: ("token", key.customer),
                           lambda at, batch: tokens.append((at, list(batch))))
    health.configure(inv)
    acme, globex = TargetKey("acme", "connectivity", "p1"), TargetKey("globex", "connectivity", "p1")
    router, ref = canary_key("ams1", "router"), canary_key("ams1", "ref")
    assert health.resolve(acme) == ("token", "acme") and health.resolve(router) == router
    health.observe(router, 1.0, False)
    health.observe(ref, 1.0, False)
    health.observe_tokens(2.0, [health.resolve(acme), health.resolve(globex)])
    assert tokens == [(2.0, [("token", "acme"), ("token", "globex")])] and health.blind("ams1")
    health.observe_tokens(3.0, [health.resolve(acme), router, health.resolve(globex)])
    assert tokens[1:] == [(3.0, [("token", "acme")]), (3.0, [("token", "globex")])]
    assert not health.blind("ams1")
    keys_only = VantageHealth(lambda key, at, ok: None, lambda at, batch: tokens.append((at, list(batch))))
    assert keys_only.resolve(acme) == acme  # a sink without tokens takes the keys
    keys_only.observe_tokens(4.0, [acme])
    assert tokens[-1] == (4.0, [acme])


def test_a_reload_keeps_the_canaries_results_and_forgets_removed_ones() -> None:
    health = VantageHealth(lambda key, at, ok: None)
    health.configure(parse_inventory_text(inventory()))
    health.observe(canary_key("ams1", "router"), 1.0, False)
    health.observe(canary_key("ams1", "ref"), 2.0, None)  # could not send: did not reach the canary either
    assert health.blind("ams1")
    health.configure(parse_inventory_text(inventory()))
    assert health.blind("ams1")
    health.configure(parse_inventory_text(inventory("[{id: router, address: 10.9.0.1}, {id: new, address: 10.9.0.3}]")))
    assert not health.blind("ams1")  # the new canary has not been probed: not judged blind
    health.configure(parse_inventory_text(inventory("[]")))
    assert health.snapshot() == ()


def test_the_collector_exports_blindness_canaries_and_withheld_failures() -> None:
    health = VantageHealth(lambda key, at, ok: None)
    health.configure(parse_inventory_text(inventory()))
    health.observe(canary_key("ams1", "router"), 1.0, False)
    health.observe(canary_key("ams1", "ref"), 2.0, False)
    health.observe(PORT, 3.0, False)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for m in VantageHealthCollector(health.snapshot, "a").collect() for s in m.samples}
    assert samples == {
        ("threenines_vantage_blind", (("site", "ams1"), ("vantage", "a"))): 1.0,
        ("threenines_canary_up", (("canary", "router"), ("site", "ams1"), ("vantage", "a"))): 0.0,
        ("threenines_canary_up", (("canary", "ref"), ("site", "ams1"), ("vantage", "a"))): 0.0,
        ("threenines_vantage_blind_failures_total", (("site", "ams1"), ("vantage", "a"))): 1.0,
    }


# --- cuts, at the packet level, against the real contract machine ------------------------------------------


@dataclass(frozen=True)
class Cut:
    start: float
    end: float

    def loses(self, sent: float) -> bool:
        return self.start <= sent < self.end


def probe(start: float, *cuts: Cut | None) -> tuple[float, bool]:
    """(when the probe finishes, answered) for a probe started at `start` through a path with these cuts."""
    sends = [start + k * PACKET_INTERVAL for k in range(PACKETS)]
    lost = [any(c is not None and c.loses(sent) for c in cuts) for sent in sends]
    finish = max(sent + (TIMEOUT if gone else RTT) for sent, gone in zip(sends, lost, strict=True))
    return finish, not all(lost)


def replay(port_phase: float, canary_phases: list[float], uplink: Cut | None, customer: Cut | None,
           until: float) -> list[OutageEvent]:
    """Every probe of one port and the site's canaries until `until`, in the order their results arrive, through
    VantageHealth into the contract machine; the machine's events."""
    events: list[OutageEvent] = []
    machine = TargetMachine(PORT, THRESHOLD, HORIZON, 0.0, on_event=events.append)
    canaries = "[" + ", ".join(f"{{id: c{i}, address: 10.9.0.{i + 1}}}" for i in range(len(canary_phases))) + "]"
    health = VantageHealth(lambda key, at, ok: machine.observe(at, ok))
    health.configure(parse_inventory_text(inventory(canaries)))
    results: list[tuple[float, int, TargetKey, bool]] = []
    start = port_phase
    while start < until:
        finish, ok = probe(start, uplink, customer)  # the customer's port sits behind both
        results.append((finish, 1, PORT, ok))
        start += INTERVAL
    for i, phase in enumerate(canary_phases):
        start = phase
        while start < until:
            finish, ok = probe(start, uplink)  # a canary sits behind the vantage's uplink, not the customer's port
            results.append((finish, 0, canary_key("ams1", f"c{i}"), ok))
            start += CANARY_INTERVAL
    for at, _, key, ok in sorted(results):
        health.observe(key, at, ok)
    machine.advance(until)
    return events


phases = st.floats(0, INTERVAL, exclude_max=True)
canary_phase_lists = st.lists(st.floats(0, CANARY_INTERVAL, exclude_max=True), min_size=1, max_size=3)


@given(phases, canary_phase_lists, st.floats(INTERVAL, 4 * INTERVAL), st.floats(0, 6 * INTERVAL))
# Both races at once: the port's first probe in the cut (300) fails before the canary notices (302.76), and its
# second (600, every request sent before the cut ends at 600.41) finishes at 602.4, after the canary's probe of
# 600.36 already answered (602.36): without the one-probe grace after blindness this determined an outage.
@example(0.0, [0.36], 300.0, 300.41)
@settings(max_examples=400, deadline=None)
def test_a_cut_of_the_vantages_own_path_never_determines_an_outage(port_phase: float, canary_phases: list[float],
                                                                   cut_at: float, length: float) -> None:
    uplink = Cut(cut_at, cut_at + length)
    events = replay(port_phase, canary_phases, uplink, None, cut_at + length + 3 * INTERVAL)
    assert [e for e in events if e.kind == "determined"] == []


@pytest.mark.parametrize("cut_at", [400.0, 599.0, 700.5])
def test_without_canaries_the_same_cut_is_billed_as_the_customers_outage(cut_at: float) -> None:
    """The control: what the canaries prevent does happen without them (the test above is not vacuous)."""
    events: list[OutageEvent] = []
    machine = TargetMachine(PORT, THRESHOLD, HORIZON, 0.0, on_event=events.append)
    uplink = Cut(cut_at, cut_at + 3 * INTERVAL)
    start = 10.0
    while start < 2000:
        finish, ok = probe(start, uplink)
        machine.observe(finish, ok)
        start += INTERVAL
    assert [e.kind for e in events][:1] == ["determined"]


@given(phases, canary_phase_lists, st.floats(INTERVAL, 4 * INTERVAL), st.floats(2 * INTERVAL + 10, 4 * INTERVAL))
@settings(max_examples=200, deadline=None)
def test_a_cut_of_the_customers_port_alone_is_determined_from_its_first_failed_probe(
        port_phase: float, canary_phases: list[float], cut_at: float, length: float) -> None:
    customer = Cut(cut_at, cut_at + length)
    events = replay(port_phase, canary_phases, None, customer, cut_at + length + 3 * INTERVAL)
    determined = [e for e in events if e.kind == "determined"]
    assert len(determined) == 1
    # The first probe whose every request was lost is the first one started at or after the cut; it is the
    # outage's first failed probe, stamped when it finished.
    first = port_phase + math.ceil((cut_at - port_phase) / INTERVAL) * INTERVAL
    assert determined[0].first_failed_at == pytest.approx(first + (PACKETS - 1) * PACKET_INTERVAL + TIMEOUT)
