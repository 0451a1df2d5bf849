"""One demo port the user can take down: an nftables table of the demo's own, dropping a set of addresses.

The demo's ports are loopback addresses, which always answer. This table's input chain drops packets to the
addresses in its `cut` set, so adding a port's address to the set (one printed `nft add element` line) makes
its echo requests go unanswered, exactly like a cut cable, and deleting it restores the port. The drop is on
input, not output: a locally sent packet dropped on output fails `sendto` with EPERM, which the exporter
rightly counts as a probe it could not send (unknown time), not as a failed probe.

The table is named after the demo's PID so that two demos (or a demo and a test) never share or delete each
other's table; `remove()` deletes it, with every cut in it, when the demo exits.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

FAMILY = "inet"
SET = "cut"


def unavailable_reason() -> str | None:
    """None when this process can create the table, else why not (printed instead of the cut lines)."""
    if os.geteuid() != 0:
        return "needs root (nft)"
    if shutil.which("nft") is None:
        return "needs nft (apt-get install nftables)"
    return None


@dataclass(frozen=True)
class PortCut:
    table: str

    def cut_command(self, address: str) -> str:
        return f"nft add element {FAMILY} {self.table} {SET} {{ {address} }}"

    def restore_command(self, address: str) -> str:
        return f"nft delete element {FAMILY} {self.table} {SET} {{ {address} }}"

    def remove(self) -> None:
        _nft(["delete", "table", FAMILY, self.table])


def create(name: str) -> PortCut:
    """Create the table (RuntimeError with nft's message when the kernel or nft refuses)."""
    ruleset = (
        f"table {FAMILY} {name} {{\n"
        f"  set {SET} {{ type ipv4_addr; }}\n"
        "  chain input {\n"
        "    type filter hook input priority filter; policy accept;\n"
        f"    ip daddr @{SET} drop\n"
        "  }\n"
        "}\n"
    )
    _nft(["-f", "-"], ruleset)
    return PortCut(name)


def _nft(args: list[str], stdin: str | None = None) -> None:
    done = subprocess.run(["nft", *args], input=stdin, capture_output=True, text=True, timeout=15, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"nft {' '.join(args)}: {done.stderr.strip()}")
