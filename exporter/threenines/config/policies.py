"""How a target is watched: the ping and power policies (docs/design.md §1) and the bounds of their durations.

Shared by the inventory (ports, power) and the applications (whose checks default to the customer's ping
policy), so both import it and neither imports the other's parser.
"""

from __future__ import annotations

from dataclasses import dataclass

# Bounds (seconds) for the durations an inventory gives; docs: examples/inventory.yml. Outside them a value is
# a typo or cannot work: a 1 ms interval floods the port, a 1000-year one never probes, and a reply timeout
# under 10 ms fails every probe of a port that answers.
INTERVAL_BOUNDS = (1.0, 86400.0)  # ping, power and device poll intervals: 1s..1d
TIMEOUT_BOUNDS = (0.01, 60.0)  # ping reply and SNMP request timeouts: 10ms..1m, and shorter than the interval
PACKET_INTERVAL_BOUNDS = (0.01, 10.0)  # between the echo requests of one probe: 10ms..10s


@dataclass(frozen=True)
class ProbePolicy:
    """How one port is pinged and when its failures become an outage (docs/design.md §1)."""

    interval: float = 300.0
    threshold: int = 2
    packets: int = 3
    timeout: float = 2.0
    packet_interval: float = 0.2


@dataclass(frozen=True)
class PowerPolicy:
    interval: float = 60.0
    threshold: int = 2
