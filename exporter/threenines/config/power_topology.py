"""The power topology of an inventory: which devices can change a customer's power, which PDUs a UPS feeds.

Pure functions of the inventory's `input:` links (devices form a forest rooted at mains). They live beside the
inventory because both the poller (which devices to poll together on a trap) and the power rule (which devices
a verdict rests on) need them, and the poller must not import the rule (docs/design.md, "Layout").
"""

from __future__ import annotations

from collections.abc import Mapping

from threenines.config.inventory import Customer, Device


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


def fed_by(ups_id: str, devices: Mapping[str, Device]) -> set[str]:
    """The PDUs fed from this UPS, directly or through other PDUs (not through another UPS: it has a battery)."""
    out: set[str] = set()
    frontier = [ups_id]
    while frontier:
        current = frontier.pop()
        for device in devices.values():
            if device.input == current and device.kind != "ups" and device.id not in out:
                out.add(device.id)
                frontier.append(device.id)
    return out
