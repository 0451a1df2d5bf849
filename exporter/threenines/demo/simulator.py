"""snmpsim serving the demo's recordings (our own PDU recordings and snmpsim-data's BSD Eaton 93E UPS)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from importlib import resources
from importlib.util import find_spec
from pathlib import Path

# snmpsim drops privileges to nobody when started as root, then imports these lazily: import them first.
SNMPSIM_MAIN = "import dbm, dbm.dumb, bz2, sys\nfrom snmpsim.commands.responder import main\nsys.exit(main())\n"
COMMUNITIES = {"THREENINES_DEMO_PDU_A": "pdu-a", "THREENINES_DEMO_PDU_B": "pdu-b",
               "THREENINES_DEMO_UPS": "eaton-93e-80"}


def available() -> bool:
    return find_spec("snmpsim") is not None


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    """Start snmpsim on 127.0.0.1:port; the caller stops it by PID."""
    root = workdir / "snmpsim"
    data, cache = root / "data", root / "cache"
    data.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    for entry in resources.files("threenines.demo").joinpath("snmprec").iterdir():
        if entry.name.endswith(".snmprec"):
            (data / entry.name).write_bytes(entry.read_bytes())
    argv = [sys.executable, "-c", SNMPSIM_MAIN, f"--data-dir={data}", f"--cache-dir={cache}",
            f"--agent-udpv4-endpoint=127.0.0.1:{port}"]
    if os.geteuid() == 0:
        # The dropped-privilege process must read the data and write its cache.
        workdir.chmod(0o755)
        for path in (root, data, cache, *data.iterdir()):
            path.chmod(0o777 if path.is_dir() else 0o644)
        argv += ["--process-user=nobody", "--process-group=nogroup"]
    log = open(root / "snmpsim.log", "ab")  # noqa: SIM115 - handed to the child, closed with it
    os.environ.update(COMMUNITIES)
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
