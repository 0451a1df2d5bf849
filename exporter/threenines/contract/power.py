"""Feed readings → customer power state (docs/power.md, the power model).

A power interruption is mains AND UPS both absent.

Three-valued (Kleene) logic throughout: True = powered, False = not powered, None = cannot be told.
- A UPS supplies power unless its output source is `none`; `other` or no reading is unknown.
- A PDU has input power when it answers with a live inlet/phase voltage (or answers at all when it reports
  no voltage: its management card runs off the same inlet). When it does not answer, only a known-dead
  upstream device (a UPS with output none, or a dead PDU) tells us anything: then its input is down.
- A feed is powered when its PDU has input power and any of the feed's outlets is on (an unswitched PDU's
  outlets are on whenever the PDU is).
- The customer has power when any feed is powered; no power only when every feed is known to be down;
  otherwise unknown.

The blackout rule (docs/power.md, "Evidence through the blackout"): when mains is lost and the battery runs
out, the UPS's card and the cards of the PDUs it feeds go silent together, so "silent" alone can never mean
"down". A UPS whose last reading said its output was about to stop (on battery with low battery, a shutdown
pending or imminent, or runtime at its low threshold; or output off), followed by the silence of that UPS and
of every device it feeds, is *exhausted*: it supplies nothing, from the moment `exhausted()` computes. The
inference is a typed `Exhaustion` (the evidence word, the moment, the times it rests on), never a default.
Silence without that history stays unknown. Everything here is pure and takes time as data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from threenines.config.inventory import Customer, Device, Feed
from threenines.config.power_topology import devices_of, fed_by
from threenines.probes.snmp.readings import DeviceReading, UpsReading

# Below this an inlet is dead; real mains is 100-240 V (or 48 V DC), sensor noise on a dead inlet a few volts.
LIVE_VOLTS = 40.0
# The runtime at or below which a UPS on battery counts as about to stop, when it does not report its own
# low-battery threshold (RFC 1628 upsConfigLowBattTime, NUT battery.runtime.low): 2 minutes, APC's default.
DEFAULT_LOW_RUNTIME_SECONDS = 120.0
# The silence must follow the last reading within this many poll intervals of the UPS (the next poll, or the
# one after it), or that reading is not "the last readings before the silence".
SILENCE_FOLLOWS_WITHIN_INTERVALS = 2.0
# Evidence words, strongest first: the `evidence` label of threenines_power_inferred_down.
EVIDENCE = ("output_off", "shutdown_pending", "low_battery", "runtime_low")

Tri = bool | None


@dataclass(frozen=True)
class DeviceHistory:
    """What the poller remembers of one device, for the blackout rule.

    silent_since is set only while the device's latest poll failed and is fresh: it is the first failed poll
    after `last_success`. A device that answers, whose latest poll is stale, or that was never polled, is not
    silent.
    """

    last_reading: DeviceReading | None = None  # the reading of the last poll that answered
    last_success: float | None = None          # when that poll completed
    silent_since: float | None = None          # the first unanswered poll after it, while the silence lasts


@dataclass(frozen=True)
class Exhaustion:
    """A UPS inferred to supply nothing: its last reading, then the silence of it and of all it feeds."""

    ups: str
    evidence: str           # one of EVIDENCE
    since: float            # the moment it stopped supplying, by the rule in exhausted()
    last_reading_at: float  # the UPS's last answered poll
    silent_since: float     # the UPS's first unanswered poll after it
    runtime_seconds: float | None  # the runtime that last reading announced


@dataclass(frozen=True)
class PowerVerdict:
    """A customer's power state and, when it is down only by the blackout rule, the inferences it rests on."""

    state: Tri
    inferred: tuple[Exhaustion, ...] = ()


_NO_EXHAUSTION: Mapping[str, Exhaustion] = {}


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
                    _depth: int = 0, exhausted: Mapping[str, Exhaustion] = _NO_EXHAUSTION) -> Tri:
    """Does this device deliver power downstream? (A UPS's output; a PDU's input.)"""
    device = devices.get(device_id)
    if device is None or _depth > len(devices):
        return None
    reading = readings.get(device_id)
    if device.kind == "ups":
        if reading is None or reading.ups is None:
            if device_id in exhausted:
                return False
            return _upstream_only(device, devices, readings, _depth, exhausted)
        source = reading.ups.output_source
        if source == "none":
            return False
        return True if source in ("normal", "battery", "bypass") else None
    if reading is None:
        return _upstream_only(device, devices, readings, _depth, exhausted)
    return pdu_inlet_live(reading)


def pdu_inlet_live(reading: DeviceReading) -> bool:
    volts = [p.voltage_volts for p in reading.phases if p.voltage_volts is not None]
    if volts:
        return max(volts) >= LIVE_VOLTS
    return True  # it answered, so its inlet is live


def _upstream_only(device: Device, devices: Mapping[str, Device], readings: Mapping[str, DeviceReading | None],
                   depth: int, exhausted: Mapping[str, Exhaustion]) -> Tri:
    # A silent device is unknown, unless what feeds it is known to be dead: then it is dead too.
    if device.input == "mains":
        return None
    upstream = device_supplies(device.input, devices, readings, depth + 1, exhausted)
    return False if upstream is False else None


def outlet_on(reading: DeviceReading | None, outlet: str) -> Tri:
    if reading is None:
        return None
    if not reading.switched:
        return True
    found = reading.outlet(outlet)
    return None if found is None else found.on


def feed_powered(feed: Feed, devices: Mapping[str, Device], readings: Mapping[str, DeviceReading | None],
                 exhausted: Mapping[str, Exhaustion] = _NO_EXHAUSTION) -> Tri:
    pdu_input = device_supplies(feed.pdu, devices, readings, exhausted=exhausted)
    outlets = any3(outlet_on(readings.get(feed.pdu), o) for o in feed.outlets)
    return all3((pdu_input, outlets))


def customer_powered(customer: Customer, devices: Mapping[str, Device],
                     readings: Mapping[str, DeviceReading | None],
                     exhausted: Mapping[str, Exhaustion] = _NO_EXHAUSTION) -> Tri:
    """ok for ContractEngine.observe: True powered, False every feed down, None cannot be told."""
    if customer.power is None:
        return None
    return any3(feed_powered(f, devices, readings, exhausted) for f in customer.power.feeds)


def customer_verdict(customer: Customer, devices: Mapping[str, Device],
                     readings: Mapping[str, DeviceReading | None],
                     exhausted: Mapping[str, Exhaustion] = _NO_EXHAUSTION) -> PowerVerdict:
    """The customer's state, with the inferences it rests on when only the blackout rule makes it down."""
    state = customer_powered(customer, devices, readings, exhausted)
    if state is not False or not exhausted or customer_powered(customer, devices, readings) is False:
        return PowerVerdict(state)
    used = sorted(devices_of(customer, devices) & exhausted.keys())
    return PowerVerdict(state, tuple(exhausted[ups] for ups in used))


# -- the blackout rule ------------------------------------------------------------------------------------------


def last_words(ups: UpsReading, last_success: float, silent_since: float) -> str | None:
    """The evidence word that a UPS's last reading gives to the silence that followed it, or None."""
    alarms = set(ups.alarms)
    if ups.output_source == "none" or "output_off" in alarms:
        return "output_off"
    on_battery = ups.output_source == "battery" or (ups.output_source in (None, "other") and "on_battery" in alarms)
    if not on_battery:
        return None
    if {"shutdown_pending", "shutdown_imminent"} & alarms:
        return "shutdown_pending"
    if ups.battery_status in ("low", "depleted") or {"low_battery", "depleted_battery"} & alarms:
        return "low_battery"
    runtime = ups.battery_runtime_seconds
    if runtime is not None:
        low = ups.battery_low_runtime_seconds
        threshold = low if low is not None else DEFAULT_LOW_RUNTIME_SECONDS
        # At or below its low threshold, or the runtime it announced had run out when the silence came.
        if runtime <= threshold or last_success + runtime <= silent_since:
            return "runtime_low"
    return None


def exhausted(ups_id: str, devices: Mapping[str, Device], history: Mapping[str, DeviceHistory]) -> Exhaustion | None:
    """The blackout rule for one UPS: its exhaustion, or None (its silence, if any, then means nothing).

    Conditions: the UPS is silent now; its last reading, followed by that silence within
    SILENCE_FOLLOWS_WITHIN_INTERVALS of its poll interval, gives an evidence word (last_words); every PDU it
    feeds (fed_by) is silent now too. The moment:
      alive = the last time anything proved power on its output: its last reading (unless that said output
              off) and the last answer of each PDU it feeds;
      upper = max(its first unanswered poll, alive);
      since = the end of the battery that reading announced (last reading + runtime), kept within
              [alive, upper]; with no runtime, upper (the first poll that found it silent); for output_off,
              the last reading (it said the output was off), kept within [alive, upper] too.
    """
    device = devices.get(ups_id)
    own = history.get(ups_id)
    if device is None or device.kind != "ups" or own is None:
        return None
    if own.silent_since is None or own.last_success is None or own.last_reading is None:
        return None
    ups = own.last_reading.ups
    if ups is None or own.silent_since - own.last_success > SILENCE_FOLLOWS_WITHIN_INTERVALS * device.interval:
        return None
    evidence = last_words(ups, own.last_success, own.silent_since)
    if evidence is None:
        return None
    downstream = [history.get(d) for d in sorted(fed_by(ups_id, devices))]
    if any(h is None or h.silent_since is None for h in downstream):
        return None
    answered = [h.last_success for h in downstream if h is not None and h.last_success is not None]
    if evidence != "output_off":
        answered.append(own.last_success)
    alive = max(answered, default=own.last_success)
    upper = max(own.silent_since, alive)
    runtime = ups.battery_runtime_seconds
    if evidence == "output_off":
        guess = own.last_success
    elif runtime is not None:
        guess = own.last_success + runtime
    else:
        guess = upper
    since = min(max(guess, alive), upper)
    return Exhaustion(ups_id, evidence, since, own.last_success, own.silent_since, runtime)


def exhaustions(devices: Mapping[str, Device], history: Mapping[str, DeviceHistory]) -> dict[str, Exhaustion]:
    """Every UPS the blackout rule finds exhausted now."""
    found = (exhausted(d.id, devices, history) for d in devices.values() if d.kind == "ups")
    return {e.ups: e for e in found if e is not None}
