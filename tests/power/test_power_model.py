"""The power model's truth table: every feed combination × known/unknown, A/B feeds, UPS upstream."""

from __future__ import annotations

import itertools

import pytest

from threenines.config.inventory import Contact, Contacts, Customer, CustomerPower, Device, Feed
from threenines.config.policies import PowerPolicy
from threenines.config.power_topology import devices_of
from threenines.contract.power import all3, any3, customer_powered, device_supplies, feed_powered
from threenines.probes.snmp.readings import DeviceReading, OutletReading, PhaseReading, UpsReading

TRI = (True, False, None)


def device(ident: str, kind: str = "pdu", upstream: str = "mains") -> Device:
    return Device(id=ident, kind=kind, site="s", host="127.0.0.1", port=161, auth="a", profile="auto",
                  input=upstream, interval=60, timeout=1, retries=0)


def customer(*feeds: Feed) -> Customer:
    return Customer(id="c", name="c", site="s", timezone="UTC", objective=0.999, notification_deadline=900,
                    contacts=Contacts("1", (Contact("email", "noc@example.com"),)), ports=(),
                    power=CustomerPower(feeds=feeds, policy=PowerPolicy()))


def pdu(outlets: dict[str, bool | None], volts: float | None = 230.0, switched: bool = True) -> DeviceReading:
    return DeviceReading(profile="t", kind="pdu", switched=switched,
                         outlets=tuple(OutletReading(id=k, on=v) for k, v in outlets.items()),
                         phases=(PhaseReading(id="1", voltage_volts=volts),))


def ups(source: str | None) -> DeviceReading:
    return DeviceReading(profile="t", kind="ups", switched=False, ups=UpsReading(output_source=source))


def test_kleene_or_and_and_follow_the_truth_table() -> None:
    for a, b in itertools.product(TRI, TRI):
        expected_or = True if True in (a, b) else (False if (a, b) == (False, False) else None)
        expected_and = False if False in (a, b) else (True if (a, b) == (True, True) else None)
        assert any3((a, b)) is expected_or
        assert all3((a, b)) is expected_and


def feed_reading(state: bool | None) -> DeviceReading | None:
    """A PDU reading that makes its feed powered (True), down (outlet off: False) or unknown (no reading)."""
    return None if state is None else pdu({"1": state})


@pytest.mark.parametrize(("a", "b"), list(itertools.product(TRI, TRI)))
def test_ab_feeds_customer_is_down_only_when_every_feed_is_down(a: bool | None, b: bool | None) -> None:
    devices = {"pa": device("pa"), "pb": device("pb")}
    c = customer(Feed("A", "pa", ("1",)), Feed("B", "pb", ("1",)))
    readings = {"pa": feed_reading(a), "pb": feed_reading(b)}
    state = customer_powered(c, devices, readings)
    if a is True or b is True:
        assert state is True
    elif a is False and b is False:
        assert state is False
    else:
        assert state is None


@pytest.mark.parametrize(("outlet", "inlet"), list(itertools.product(TRI, TRI)))
def test_a_feed_needs_its_outlet_on_and_its_pdu_powered(outlet: bool | None, inlet: bool | None) -> None:
    devices = {"p": device("p")}
    volts = {True: 230.0, False: 0.0, None: None}[inlet]
    reading = pdu({"1": outlet}, volts=volts)
    state = feed_powered(Feed("A", "p", ("1",)), devices, {"p": reading})
    # A PDU that answers but reports no voltage is live (its card runs off the inlet).
    pdu_live = True if inlet is None else inlet
    assert state is all3((outlet, pdu_live))


@pytest.mark.parametrize(("source", "expected"), [
    ("normal", None), ("battery", None), ("bypass", None), ("other", None), (None, None), ("none", False),
])
def test_a_silent_pdu_behind_a_ups_is_down_only_when_the_ups_output_is_none(source, expected) -> None:
    devices = {"u": device("u", "ups"), "p": device("p", upstream="u")}
    readings = {"u": ups(source), "p": None}
    assert feed_powered(Feed("A", "p", ("1",)), devices, readings) is expected


def test_ups_on_battery_keeps_the_customer_powered() -> None:
    devices = {"u": device("u", "ups"), "p": device("p", upstream="u")}
    readings = {"u": ups("battery"), "p": pdu({"1": True})}
    assert customer_powered(customer(Feed("A", "p", ("1",))), devices, readings) is True
    assert device_supplies("u", devices, readings) is True


def test_mains_and_ups_both_absent_is_an_interruption() -> None:
    devices = {"u": device("u", "ups"), "p": device("p", upstream="u")}
    readings = {"u": ups("none"), "p": None}
    assert customer_powered(customer(Feed("A", "p", ("1",))), devices, readings) is False


def test_a_feed_with_two_outlets_is_powered_while_any_is_on() -> None:
    devices = {"p": device("p")}
    feed = Feed("A", "p", ("1", "2"))
    assert feed_powered(feed, devices, {"p": pdu({"1": False, "2": True})}) is True
    assert feed_powered(feed, devices, {"p": pdu({"1": False, "2": None})}) is None
    assert feed_powered(feed, devices, {"p": pdu({"1": False, "2": False})}) is False


def test_an_outlet_the_pdu_does_not_report_is_unknown_and_unswitched_outlets_follow_the_pdu() -> None:
    devices = {"p": device("p")}
    assert feed_powered(Feed("A", "p", ("9",)), devices, {"p": pdu({"1": True})}) is None
    unswitched = pdu({}, switched=False)
    assert feed_powered(Feed("A", "p", ("9",)), devices, {"p": unswitched}) is True


def test_outlets_match_by_id_or_by_name() -> None:
    reading = DeviceReading(profile="t", kind="pdu", switched=True,
                            outlets=(OutletReading(id="1.1.1", name="AA1", on=False),))
    assert feed_powered(Feed("A", "p", ("AA1",)), {"p": device("p")}, {"p": reading}) is False


def test_devices_of_a_customer_include_upstream_ups() -> None:
    devices = {"u": device("u", "ups"), "p": device("p", upstream="u"), "q": device("q")}
    assert devices_of(customer(Feed("A", "p", ("1",))), devices) == {"p", "u"}
