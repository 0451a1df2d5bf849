"""`--shard i/N`: one exporter instance watches the customers whose id hashes to i (README, `serve --shard`).

Sharding is by customer, not by port: a customer's billed union needs all of its targets in one process.
A shard keeps the devices its customers' feeds need (with their upstream UPSes) and the auth they use; a
PDU shared by customers of two shards is polled by both.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

from threenines.config.inventory import Inventory

SHARD_RE = re.compile(r"(\d+)/(\d+)")


def parse_shard(text: str) -> tuple[int, int]:
    match = SHARD_RE.fullmatch(text.strip())
    if not match or not 0 <= int(match[1]) < int(match[2]):
        raise ValueError(f"{text!r} is not a shard: write INDEX/COUNT with 0 <= INDEX < COUNT, e.g. 0/4")
    return int(match[1]), int(match[2])


def shard_of(customer_id: str, count: int) -> int:
    # A stable hash (not Python's salted hash()): every instance and every restart agrees.
    return int.from_bytes(hashlib.blake2b(customer_id.encode(), digest_size=8).digest(), "big") % count


def shard_inventory(inventory: Inventory, index: int, count: int) -> Inventory:
    if count == 1:
        return inventory
    customers = tuple(c for c in inventory.customers if shard_of(c.id, count) == index)
    devices = {d.id: d for d in inventory.devices}
    needed: set[str] = set()
    for customer in customers:
        for feed in customer.power.feeds if customer.power else ():
            device_id = feed.pdu
            while device_id != "mains" and device_id not in needed:
                needed.add(device_id)
                device_id = devices[device_id].input
    kept_devices = tuple(d for d in inventory.devices if d.id in needed)
    auths = {d.auth for d in kept_devices}
    return dataclasses.replace(inventory, customers=customers, devices=kept_devices,
                               auths=tuple(a for a in inventory.auths if a.id in auths))
