"""snmpsim serving the demo's recordings (our own PDU recordings and snmpsim-data's BSD Eaton 93E UPS).

One snmpsim process per device: snmpsim's writecache (what `snmpset` changes) is one table per process keyed
by OID alone, so two PDU recordings served by one process share their outlet states and switching feed A's
outlet would switch feed B's too.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from importlib.util import find_spec
from pathlib import Path

from threenines.demo import free_ports

# snmpsim drops privileges to nobody when started as root, then imports these lazily: import them first.
SNMPSIM_MAIN = "import dbm, dbm.dumb, bz2, sys\nfrom snmpsim.commands.responder import main\nsys.exit(main())\n"
# The auth entries of power.yml read their community from these variables; snmpsim serves a recording under
# the community named after its file.
COMMUNITIES = {"THREENINES_DEMO_PDU_A": "pdu-a", "THREENINES_DEMO_PDU_B": "pdu-b",
               "THREENINES_DEMO_UPS": "eaton-93e-80"}
# Demo device id (power.yml) → the recording its agent serves, which is also its community.
RECORDINGS = {"ups-a": "eaton-93e-80", "pdu-a": "pdu-a", "pdu-b": "pdu-b"}
RPDU2_OUTLET_STATE = "1.3.6.1.4.1.318.1.1.26.9.2.3.1.5"  # rPDU2OutletSwitchedStatusState: off(1) on(2)


@dataclass(frozen=True)
class Agent:
    device: str
    community: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def outlet_command(self, outlet: str, on: bool) -> str:
        """The shell line that switches one outlet of this PDU (the recordings' outlet ids are their indexes)."""
        return f"snmpset -v2c -c {self.community} {self.address} {RPDU2_OUTLET_STATE}.{outlet} i {2 if on else 1}"


def available() -> bool:
    return find_spec("snmpsim") is not None


def pick_ports() -> dict[str, int]:
    """A distinct free UDP port on 127.0.0.1 for each demo device."""
    return dict(zip(RECORDINGS, free_ports(socket.SOCK_DGRAM, len(RECORDINGS)), strict=True))


def start(workdir: Path, device: str, port: int) -> Agent:
    """Start the agent of one demo device, serving only its recording on 127.0.0.1:port; the caller stops it by
    PID (Agent.process)."""
    os.environ.update(COMMUNITIES)
    recording = RECORDINGS[device]
    root = workdir / "snmpsim" / device
    data, cache = root / "data", root / "cache"
    data.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    source = resources.files("threenines.demo").joinpath("snmprec", f"{recording}.snmprec")
    (data / source.name).write_bytes(source.read_bytes())
    argv = [sys.executable, "-c", SNMPSIM_MAIN, f"--data-dir={data}", f"--cache-dir={cache}",
            f"--agent-udpv4-endpoint=127.0.0.1:{port}"]
    if os.geteuid() == 0:
        # snmpsim then runs as nobody, which must reach its data and write its cache.
        for path in (workdir, root.parent):
            path.chmod(0o755)
        for path in (root, data, cache, *data.iterdir()):
            path.chmod(0o777 if path.is_dir() else 0o644)
        argv += ["--process-user=nobody", "--process-group=nogroup"]
    with open(root / "snmpsim.log", "ab") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return Agent(device, recording, port, process)
