"""The blackout rule (power.py): a UPS that announced its end and then went silent with everything it feeds is
not powered from the moment the evidence says; silence without that history stays unknown. Truth table over
last readings × who is silent, the moment's bounds, and hypothesis properties over arbitrary histories."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from threenines.config.inventory import Contact, Contacts, Customer, CustomerPower, Device, Feed
from threenines.config.policies import PowerPolicy
from threenines.config.power_topology import fed_by
from threenines.contract.power import (
    DEFAULT_LOW_RUNTIME_SECONDS,
    EVIDENCE,
    DeviceHistory,
    customer_powered,
    customer_verdict,
    exhausted,
    exhaustions,
)
from threenines.probes.snmp.readings import DeviceReading, OutletReading, PhaseReading, UpsReading

T0 = 1_800_000_000.0  # the UPS's last answered poll
INTERVAL = 60.0


def device(ident: str, kind: str = "pdu", upstream: str = "mains") -> Device:
    return Device(id=ident, kind=kind, site="s", host="127.0.0.1", port=161, auth="a", profile="auto",
                  input=upstream, interval=INTERVAL, timeout=1, retries=0)


def customer(*feeds: Feed, ident: str = "c") -> Customer:
    return Customer(id=ident, name=ident, site="s", timezone="UTC", objective=0.999, notification_deadline=900,
                    contacts=Contacts("1", (Contact("email", "noc@example.com"),)), ports=(),
                    power=CustomerPower(feeds=feeds, policy=PowerPolicy()))


def ups(source: str | None = "battery", battery: str | None = "normal", runtime: float | None = 600.0,
        alarms: tuple[str, ...] = (), low: float | None = None) -> DeviceReading:
    return DeviceReading(profile="t", kind="ups", switched=False, ups=UpsReading(
        output_source=source, battery_status=battery, battery_runtime_seconds=runtime, alarms=alarms,
        battery_low_runtime_seconds=low))


def pdu() -> DeviceReading:
    return DeviceReading(profile="t", kind="pdu", switched=True, outlets=(OutletReading(id="1", on=True),),
                         phases=(PhaseReading(id="1", voltage_volts=230.0),))


def silent(reading: DeviceReading | None, last: float | None = T0, since: float = T0 + INTERVAL) -> DeviceHistory:
    return DeviceHistory(last_reading=reading, last_success=last if reading is not None else None,
                         silent_since=since)


def answering(reading: DeviceReading, at: float = T0 + INTERVAL) -> DeviceHistory:
    return DeviceHistory(last_reading=reading, last_success=at, silent_since=None)


# One UPS feeding two PDUs (A and B feeds of one customer), the common colocation wiring.
DEVICES = {"u": device("u", "ups"), "pa": device("pa", upstream="u"), "pb": device("pb", upstream="u")}
ACME = customer(Feed("A", "pa", ("1",)), Feed("B", "pb", ("1",)))

LAST_READINGS = {
    "on mains": (ups("normal", runtime=1800.0), None),
    "on battery, runtime ample": (ups(runtime=900.0), None),
    "on battery, low battery": (ups(battery="low", runtime=None), "low_battery"),
    "on battery, battery depleted": (ups(battery="depleted", runtime=300.0), "low_battery"),
    "on battery, runtime at the default threshold": (ups(runtime=DEFAULT_LOW_RUNTIME_SECONDS), "runtime_low"),
    "on battery, runtime under its own threshold": (ups(runtime=240.0, low=300.0), "runtime_low"),
    "on battery, runtime run out by the silence": (ups(runtime=50.0, low=10.0), "runtime_low"),
    "on battery, shutdown pending": (ups(runtime=900.0, alarms=("shutdown_pending",)), "shutdown_pending"),
    "on battery, shutdown imminent": (ups(runtime=900.0, alarms=("shutdown_imminent",)), "shutdown_pending"),
    "output off": (ups("none", runtime=None), "output_off"),
    "other, alarm on battery + low battery": (ups("other", alarms=("low_battery", "on_battery")), "low_battery"),
    "bypass, low battery": (ups("bypass", battery="low"), None),
    "no reading ever": (None, None),
}


@pytest.mark.parametrize("last", sorted(LAST_READINGS))
@pytest.mark.parametrize(("ups_silent", "pa_silent", "pb_silent"), list(itertools.product((True, False), repeat=3)))
def test_truth_table_down_only_after_last_words_and_silence_of_the_ups_and_all_it_feeds(
        last: str, ups_silent: bool, pa_silent: bool, pb_silent: bool) -> None:
    reading, evidence = LAST_READINGS[last]
    history = {
        "u": silent(reading) if ups_silent else answering(reading or ups("normal")),
        "pa": silent(pdu()) if pa_silent else answering(pdu()),
        "pb": silent(pdu()) if pb_silent else answering(pdu()),
    }
    readings = {d: (None if h.silent_since is not None else h.last_reading) for d, h in history.items()}
    found = exhaustions(DEVICES, history)
    verdict = customer_verdict(ACME, DEVICES, readings, found)
    everything_silent = ups_silent and pa_silent and pb_silent
    if everything_silent and evidence is not None:
        assert verdict.state is False
        assert [(e.ups, e.evidence) for e in verdict.inferred] == [("u", evidence)]
    elif not pa_silent or not pb_silent:
        assert verdict.state is True and verdict.inferred == ()  # a PDU that answers proves its feed
    else:
        # Both PDUs silent: down only if the UPS answers "output none"; otherwise unknown, never down.
        expected = False if (not ups_silent and reading is not None and reading.ups is not None
                             and reading.ups.output_source == "none") else None
        assert verdict.state is expected and verdict.inferred == ()
        assert found == {}


def test_silence_without_that_history_stays_unknown() -> None:
    history = {"u": silent(ups("normal")), "pa": silent(pdu()), "pb": silent(pdu())}
    readings = dict.fromkeys(history)
    assert exhaustions(DEVICES, history) == {}
    assert customer_verdict(ACME, DEVICES, readings, {}).state is None


def test_the_moment_is_the_announced_end_of_the_battery_not_the_last_poll_nor_the_silent_one() -> None:
    history = {"u": silent(ups(battery="low", runtime=45.0), since=T0 + 90), "pa": silent(pdu(), T0 - 10),
               "pb": silent(pdu(), T0 + 5, since=T0 + 70)}
    e = exhausted("u", DEVICES, history)
    assert e is not None and e.evidence == "low_battery"
    assert e.since == T0 + 45  # last reading + runtime: inside [last answer of anything, first silent poll]
    assert (e.last_reading_at, e.silent_since, e.runtime_seconds) == (T0, T0 + 90, 45.0)


def test_the_moment_is_bounded_by_the_silence_and_by_the_last_answer_of_what_it_feeds() -> None:
    late = {"u": silent(ups(battery="low", runtime=600.0), since=T0 + 60), "pa": silent(pdu()),
            "pb": silent(pdu())}
    assert exhausted("u", DEVICES, late).since == T0 + 60  # type: ignore[union-attr]  # the silence bounds it
    pdu_later = {"u": silent(ups(battery="low", runtime=10.0), since=T0 + 60), "pa": silent(pdu(), T0 + 30),
                 "pb": silent(pdu())}
    assert exhausted("u", DEVICES, pdu_later).since == T0 + 30  # type: ignore[union-attr]  # pa still had power
    no_runtime = {"u": silent(ups(battery="low", runtime=None), since=T0 + 60), "pa": silent(pdu()),
                  "pb": silent(pdu())}
    assert exhausted("u", DEVICES, no_runtime).since == T0 + 60  # type: ignore[union-attr]  # first silent poll
    off = {"u": silent(ups("none", runtime=None), since=T0 + 60), "pa": silent(pdu(), T0 - 30), "pb": silent(pdu())}
    assert exhausted("u", DEVICES, off).since == T0  # type: ignore[union-attr]  # it said its output was off


def test_a_silence_long_after_the_last_words_is_no_evidence() -> None:
    stale = {"u": silent(ups(battery="low"), since=T0 + 2 * INTERVAL + 1), "pa": silent(pdu()), "pb": silent(pdu())}
    assert exhausted("u", DEVICES, stale) is None
    assert exhausted("u", DEVICES, {**stale, "u": silent(ups(battery="low"), since=T0 + 2 * INTERVAL)}) is not None


def test_a_pdu_never_polled_is_not_silent_and_a_downstream_ups_has_its_own_battery() -> None:
    history = {"u": silent(ups(battery="low")), "pa": silent(pdu())}  # pb: no history at all
    assert exhausted("u", DEVICES, history) is None
    devices = {**DEVICES, "u2": device("u2", "ups", upstream="u"), "pc": device("pc", upstream="u2")}
    assert fed_by("u", devices) == {"pa", "pb"}
    history = {"u": silent(ups(battery="low")), "pa": silent(pdu()), "pb": silent(pdu()),
               "u2": answering(ups("battery")), "pc": answering(pdu())}
    assert exhausted("u", devices, history) is not None  # u2 answering on its own battery refutes nothing


def test_a_customer_on_two_upses_is_down_only_when_both_are_exhausted() -> None:
    devices = {"ua": device("ua", "ups"), "ub": device("ub", "ups"), "pa": device("pa", upstream="ua"),
               "pb": device("pb", upstream="ub")}
    c = customer(Feed("A", "pa", ("1",)), Feed("B", "pb", ("1",)))
    dead_a = {"ua": silent(ups(battery="low")), "pa": silent(pdu())}
    history = {**dead_a, "ub": silent(ups("normal")), "pb": silent(pdu())}
    found = exhaustions(devices, history)
    assert set(found) == {"ua"}
    assert customer_verdict(c, devices, dict.fromkeys(history), found).state is None
    history["ub"] = silent(ups(runtime=60.0))
    found = exhaustions(devices, history)
    verdict = customer_verdict(c, devices, dict.fromkeys(history), found)
    assert verdict.state is False
    assert [(e.ups, e.evidence) for e in verdict.inferred] == [("ua", "low_battery"), ("ub", "runtime_low")]


# -- properties ---------------------------------------------------------------------------------------------

sources = st.sampled_from(["normal", "battery", "bypass", "none", "other", None])
batteries = st.sampled_from(["normal", "low", "depleted", "fault", None])
alarm_sets = st.lists(st.sampled_from(["on_battery", "low_battery", "depleted_battery", "output_off",
                                       "shutdown_pending", "shutdown_imminent"]), unique=True, max_size=3)
ups_readings = st.builds(lambda s, b, r, a, low: ups(s, b, r, tuple(sorted(a)), low), sources, batteries,
                         st.one_of(st.none(), st.floats(0, 7200)), alarm_sets,
                         st.one_of(st.none(), st.floats(0, 600)))
times = st.floats(0, 10 * INTERVAL)


@st.composite
def histories(draw: st.DrawFn, reading: st.SearchStrategy[DeviceReading]) -> DeviceHistory | None:
    kind = draw(st.sampled_from(["none", "answering", "silent", "never"]))
    if kind == "none":
        return None
    last = draw(times)
    if kind == "answering":
        return DeviceHistory(draw(reading), T0 + last, None)
    if kind == "never":
        return DeviceHistory(None, None, T0 + draw(times))
    return DeviceHistory(draw(reading), T0 + last, T0 + last + draw(st.floats(0.001, 3 * INTERVAL)))


def readings_of(history: dict[str, DeviceHistory | None]) -> dict[str, DeviceReading | None]:
    return {d: (h.last_reading if h is not None and h.silent_since is None else None) for d, h in history.items()}


@settings(max_examples=400, deadline=None)
@given(histories(ups_readings), histories(st.just(pdu())), histories(st.just(pdu())))
def test_the_rule_only_ever_turns_unknown_into_down_and_its_moment_lies_within_its_bounds(u, pa, pb) -> None:
    history = {"u": u, "pa": pa, "pb": pb}
    known = {d: h for d, h in history.items() if h is not None}
    found = exhaustions(DEVICES, known)
    readings = readings_of(history)
    without = customer_powered(ACME, DEVICES, readings)
    verdict = customer_verdict(ACME, DEVICES, readings, found)
    assert verdict.state is without or (without is None and verdict.state is False)
    assert bool(verdict.inferred) == (verdict.state is False and without is None)
    for e in found.values():
        assert e.evidence in EVIDENCE
        assert all(h.silent_since is not None for h in known.values())  # everything silent
        answered = [h.last_success for h in known.values() if h.last_success is not None]
        assert e.since <= max(e.silent_since, *answered)
        pdu_answers = [h.last_success for d, h in known.items() if d != "u" and h.last_success is not None]
        assert e.since >= max(pdu_answers, default=e.since)
        if e.evidence != "output_off":
            assert e.since >= e.last_reading_at


@settings(max_examples=200, deadline=None)
@given(histories(ups_readings), histories(st.just(pdu())), histories(st.just(pdu())))
def test_without_last_words_of_exhaustion_silence_is_never_down(u, pa, pb) -> None:
    history = {"u": u, "pa": pa, "pb": pb}
    if u is not None and u.last_reading is not None and u.last_reading.ups is not None:
        r = u.last_reading.ups
        if r.output_source in ("battery", "none", "other") or r.alarms:
            return  # covered by the truth table
    known = {d: h for d, h in history.items() if h is not None}
    verdict = customer_verdict(ACME, DEVICES, readings_of(history), exhaustions(DEVICES, known))
    assert verdict.state is not False
