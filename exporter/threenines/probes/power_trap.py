"""Poll-on-trap: the exporter's POST route that snmptrapd's handler (`threenines trap`) reaches.

A trap is a hint, never evidence: the route only asks the power poller to poll the UPS at the trap's source
address and the PDUs it feeds at once (PowerPoller.trap); their readings decide, as on any poll. The body is
JSON: {"address": "<the agent's IP>", "trap": "<snmpTrapOID, dotted>"}; the reply says which UPSes are polled.
The route sits behind the exporter's basic auth (the web config file), as /-/reload does.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the poller imports the SNMP stack: only for exporters that have devices
    from threenines.probes.power_poller import PowerPoller

log = logging.getLogger(__name__)

TRAP_PATH = "/-/power/trap"
OID_CHARS = frozenset("0123456789.")


def parse_trap_body(body: bytes) -> tuple[str, str]:
    """(address, trap OID) from the request body; ValueError saying what is wrong."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise ValueError("the body is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("address"), str):
        raise ValueError('give {"address": "IP", "trap": "OID"}')
    address = str(ipaddress.ip_address(data["address"].strip("[]")))
    trap = data.get("trap", "")
    if not isinstance(trap, str) or len(trap) > 256 or not set(trap) <= OID_CHARS:
        raise ValueError("trap must be a dotted numeric OID")
    return address, trap


def trap_route(poller: Callable[[], PowerPoller | None], loop: Callable[[], asyncio.AbstractEventLoop | None]
               ) -> Callable[[bytes, Mapping[str, str]], tuple[int, bytes]]:
    """The POST handler (HTTP thread): hands the trap to the poller on its event loop."""

    def handle(body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        try:
            address, trap = parse_trap_body(body)
        except ValueError as err:
            return 400, f"{err}\n".encode()
        current, running = poller(), loop()
        if current is None or running is None:
            return 503, b"no UPS or PDU is polled by this exporter\n"

        async def on_loop() -> list[str]:
            return current.trap(address)

        polled = asyncio.run_coroutine_threadsafe(on_loop(), running).result(timeout=10)
        log.info("trap %s from %s: polling %s", trap or "?", address, ", ".join(polled) or "nothing (no UPS "
                 "there, or polled within the last seconds)")
        return 202, (json.dumps({"polled": polled}) + "\n").encode()

    return handle
