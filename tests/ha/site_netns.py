"""A site behind a router, in network namespaces the test creates: the vantage's uplink and the customer's link
can be cut apart.

    this host (the exporter) --uplink veth-- router namespace --customer veth-- customer namespace
                                              canary: the router's              port: the customer's
                                              uplink address                    address

Cutting the uplink (inside the router namespace, so this host's route stays and packets vanish as past a
failed upstream link) fails the canary and the customer together; cutting the customer's link fails only the
customer. Blackhole routes with a high metric sit under the test's routes, so nothing sent to these addresses
ever leaves this machine. Everything is removed in the context manager's finally block.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.netns import _ip, netns_available

_counter = itertools.count()


@dataclass
class Site:
    router_ns: str
    customer_ns: str
    canary: str  # the router's address on the uplink
    customer: str  # the customer's port address, routed through the router

    def uplink(self, up: bool) -> None:
        _ip("-n", self.router_ns, "link", "set", "up1", "up" if up else "down")

    customer_gateway: str  # the router's address on the customer's link

    def customer_link(self, up: bool) -> None:
        _ip("-n", self.customer_ns, "link", "set", "cu1", "up" if up else "down")
        if up:  # the link's down took the customer's default route with it
            _ip("-n", self.customer_ns, "route", "replace", "default", "via", self.customer_gateway)


@contextlib.contextmanager
def site() -> Iterator[Site]:
    reason = netns_available()
    if reason:
        pytest.fail(reason)
    index = (os.getpid() * 4 + next(_counter)) % 4000
    tag = f"{os.getpid() % 100000}s{index}"
    router, customer = f"tnr{tag}", f"tnc{tag}"
    host_if = f"tnu{index}"
    third, fourth = divmod(index * 8, 256)
    base = f"10.{246 + third // 256}.{third % 256}"
    uplink_net, uplink_host, uplink_router = f"{base}.{fourth}/30", f"{base}.{fourth + 1}", f"{base}.{fourth + 2}"
    cust_net, cust_router, cust_addr = f"{base}.{fourth + 4}/30", f"{base}.{fourth + 5}", f"{base}.{fourth + 6}"
    done: list[str] = []
    try:
        for net in (uplink_net, cust_net):
            _ip("route", "add", "blackhole", net, "metric", "4000")
            done.append(f"blackhole {net}")
        _ip("netns", "add", router)
        done.append("router")
        _ip("netns", "add", customer)
        done.append("customer")
        _ip("link", "add", host_if, "type", "veth", "peer", "name", "up1", "netns", router)
        done.append("link")
        _ip("addr", "add", f"{uplink_host}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", router, "addr", "add", f"{uplink_router}/30", "dev", "up1")
        _ip("-n", router, "link", "set", "up1", "up")
        _ip("-n", router, "link", "set", "lo", "up")
        _ip("-n", router, "link", "add", "cu0", "type", "veth", "peer", "name", "cu1", "netns", customer)
        _ip("-n", router, "addr", "add", f"{cust_router}/30", "dev", "cu0")
        _ip("-n", router, "link", "set", "cu0", "up")
        _ip("-n", customer, "addr", "add", f"{cust_addr}/30", "dev", "cu1")
        _ip("-n", customer, "link", "set", "cu1", "up")
        _ip("-n", customer, "link", "set", "lo", "up")
        _ip("-n", customer, "route", "add", "default", "via", cust_router)
        # The router namespace forwards (its own setting; this host's is not touched).
        subprocess.run(["ip", "netns", "exec", router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], check=True,
                       capture_output=True, timeout=15)
        _ip("route", "add", cust_net, "via", uplink_router)
        done.append(f"route {cust_net}")
        yield Site(router, customer, uplink_router, cust_addr, cust_router)
    finally:
        if f"route {cust_net}" in done:
            _ip("route", "del", cust_net, "via", uplink_router, check=False)
        if "link" in done:
            _ip("link", "del", host_if, check=False)
        for ns in ("customer", "router"):
            if ns in done:
                _ip("netns", "del", customer if ns == "customer" else router, check=False)
        for net in (uplink_net, cust_net):
            if f"blackhole {net}" in done:
                _ip("route", "del", "blackhole", net, "metric", "4000", check=False)
