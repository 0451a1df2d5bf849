"""Feed readings → customer power state (DESIGN.md §1: power interruption = mains AND UPS both absent).

Three-valued (Kleene) logic throughout: True = powered, False = not powered, None = cannot be told.
- A UPS supplies power unless its output source is `none`; `other` or no reading is unknown.
- A PDU has input power when it answers with a live inlet/phase voltage (or answers at all when it reports
  no voltage: its management card runs off the same inlet). When it does not answer, only a known-dead
  upstream device (a UPS with output none, or a dead PDU) tells us anything: then its input is down.
- A feed is powered when its PDU has input power and any of the feed's outlets is on (an unswitched PDU's
  outlets are on whenever the PDU is).
- The customer has power when any feed is powered; no power only when every feed is known to be down;
  otherwise unknown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from threenines.inventory import Customer, Device, Feed
from threenines.snmp.readings import DeviceReading

# Below this an inlet is dead; real mains is 100-240 V (or 48 V DC), sensor noise on a dead inlet a few volts.
LIVE_VOLTS = 40.0

Tri = bool | None


def any3(values: Iterable[Tri]) -> Tri:
    """Kleene OR: True if any is True, False only if all are False (and there is at least one)."""
    seen_unknown = False
    seen = False
    for value in values:
        seen = True
        if value is True:
            return True
        if value is None:
            seen_unknown = True
    return None if seen_unknown or not seen else False


def all3(values: Iterable[Tri]) -> Tri:
    """Kleene AND: False if any is False, True only if all are True."""
    seen_unknown = False
    for value in values:
        if value is False:
            return False
        if value is None:
            seen_unknown = True
    return None if seen_unknown else True


def device_supplies(device_id: str, devices: Mapping[str, Device], readings: Mapping[str, DeviceReading | None],
                    _depth: int = 0) -> Tri:
    """Does this device deliver power downstream? (A UPS's output; a PDU's input.)"""
    device = devices.get(device_id)
    if device is None or _depth > len(devices):
        return None
    reading = readings.get(device_id)
    if device.kind == "ups":
        if reading is None or reading.ups is None:
            return _upstream_only(device, devices, readings, _depth)
        source = reading.ups.output_source
        if source == "none":
            return False
        return True if source in ("normal", "battery", "bypass") else None
    if reading is None:
        return _upstream_only(device, devices, readings, _depth)
    volts = [p.voltage_volts for p in reading.phases if p.voltage_volts is not None]
    if volts:
        return max(volts) >= LIVE_VOLTS
    return True  # it answered, so its inlet is live


def _upstream_only(device: Device, devices: Mapping[str, Device], readings: Mapping[str, DeviceReading | None],
                   depth: int) -> Tri:
    # A silent device is unknown, unless what feeds it is known to be dead: then it is dead too.
    if device.input == "mains":
        return None
    upstream = device_supplies(device.input, devices, readings, depth + 1)
    return False if upstream is False else None


def outlet_on(reading: DeviceReading | None, outlet: str) -> Tri:
    if reading is None:
        return None
    if not reading.switched:
        return True
    found = reading.outlet(outlet)
    return None if found is None else found.on


def feed_powered(feed: Feed, devices: Mapping[str, Device], readings: Mapping[str, DeviceReading | None]) -> Tri:
    pdu_input = device_supplies(feed.pdu, devices, readings)
    outlets = any3(outlet_on(readings.get(feed.pdu), o) for o in feed.outlets)
    return all3((pdu_input, outlets))


def customer_powered(customer: Customer, devices: Mapping[str, Device],
                     readings: Mapping[str, DeviceReading | None]) -> Tri:
    """ok for ContractEngine.observe: True powered, False every feed down, None cannot be told."""
    if customer.power is None:
        return None
    return any3(feed_powered(f, devices, readings) for f in customer.power.feeds)


def devices_of(customer: Customer, devices: Mapping[str, Device]) -> set[str]:
    """Every device whose reading can change this customer's power state (feed PDUs and their upstream)."""
    out: set[str] = set()
    if customer.power is None:
        return out
    for feed in customer.power.feeds:
        current = devices.get(feed.pdu)
        while current is not None and current.id not in out:
            out.add(current.id)
            current = devices.get(current.input)
    return out
