"""A "customer port" host in a network namespace the test creates itself, with a veth link we can cut.

Only the namespace's own address is ever pinged. A blackhole route with a high metric sits under the
connected route, so if the veth vanishes mid-test no packet to that address can leave this machine.
Everything is removed in the context manager's finally block.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

_counter = itertools.count()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=15)


def netns_available() -> str | None:
    """None when namespaces can be made here, else the reason (used to fail loudly, not skip silently)."""
    if os.geteuid() != 0:
        return "network namespace tests need root (ip netns add)"
    if shutil.which("ip") is None:
        return "iproute2 is not installed (apt-get install iproute2)"
    return None


@dataclass
class CustomerPort:
    namespace: str
    address: str
    host_if: str
    ns_if: str
    subnet: str

    def down(self) -> None:
        """Cut the customer's link: probes get no answer."""
        _ip("-n", self.namespace, "link", "set", self.ns_if, "down")

    def up(self) -> None:
        _ip("-n", self.namespace, "link", "set", self.ns_if, "up")


@contextlib.contextmanager
def customer_port() -> Iterator[CustomerPort]:
    reason = netns_available()
    if reason:
        pytest.fail(reason)
    index = (os.getpid() * 8 + next(_counter)) % 16000
    name = f"tn{os.getpid() % 100000}x{index}"
    host_if, ns_if = f"tnh{index}", f"tnc{index}"
    third, fourth = divmod(index * 4, 256)
    base = f"10.{250 + third // 256}.{third % 256}"
    subnet, host_addr, ns_addr = f"{base}.{fourth}/30", f"{base}.{fourth + 1}", f"{base}.{fourth + 2}"
    created: list[str] = []
    try:
        _ip("route", "add", "blackhole", subnet, "metric", "4000")
        created.append("route")
        _ip("netns", "add", name)
        created.append("netns")
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", name)
        created.append("link")
        _ip("addr", "add", f"{host_addr}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", name, "addr", "add", f"{ns_addr}/30", "dev", ns_if)
        _ip("-n", name, "link", "set", ns_if, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        yield CustomerPort(name, ns_addr, host_if, ns_if, subnet)
    finally:
        if "link" in created:
            _ip("link", "del", host_if, check=False)
        if "netns" in created:
            _ip("netns", "del", name, check=False)
        if "route" in created:
            _ip("route", "del", "blackhole", subnet, "metric", "4000", check=False)
