"""Real SNMP agents for tests: snmpsim serving recordings, net-snmp snmpd with a v3 user. Stopped by PID."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support import REPO, VENV_BIN, RunningProcess, free_port, wait_until
from threenines.demo.simulator import SNMPSIM_MAIN

FIXTURES = REPO / "tests" / "fixtures" / "snmprec"
SHARED = REPO.parent / "shared" / "fixtures" / "snmprec"



@dataclass
class Agent:
    host: str
    port: int
    process: RunningProcess

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def snmpget(address: str, community: str, oid: str, timeout: float = 1.0) -> str:
    """net-snmp's snmpget: the independent oracle for what the agent serves (-Oqv: value only)."""
    out = subprocess.run(
        ["snmpget", "-v2c", "-c", community, "-t", str(timeout), "-r", "0", "-Oqv", address, oid],
        capture_output=True, text=True, timeout=10, check=False,
    )
    if out.returncode != 0:
        raise AssertionError(f"snmpget {oid} failed: {out.stderr.strip()}")
    return out.stdout.strip()


def snmpset(address: str, community: str, oid: str, kind: str, value: str) -> None:
    out = subprocess.run(
        ["snmpset", "-v2c", "-c", community, "-t", "2", "-r", "1", address, oid, kind, value],
        capture_output=True, text=True, timeout=10, check=False,
    )
    if out.returncode != 0:
        raise AssertionError(f"snmpset {oid} failed: {out.stderr.strip()}")


@contextlib.contextmanager
def snmpsim(recordings: Iterable[Path], log_dir: Path) -> Iterator[Agent]:
    """Serve recordings (community = file stem) on a free UDP port of 127.0.0.1."""
    recordings = list(recordings)
    # snmpsim runs as nobody when we are root: its data and cache dirs must be world readable/writable,
    # which pytest's 0700 tmp_path is not.
    root = Path(tempfile.mkdtemp(prefix="threenines-snmpsim-"))
    try:
        data, cache = root / "data", root / "cache"
        data.mkdir()
        cache.mkdir()
        for path in recordings:
            shutil.copyfile(path, data / path.name)
        for path in (root, data, cache, *data.iterdir()):
            path.chmod(0o777 if path.is_dir() else 0o644)
        port = free_port(socket.SOCK_DGRAM)
        argv = [str(VENV_BIN / "python"), "-c", SNMPSIM_MAIN, f"--data-dir={data}", f"--cache-dir={cache}",
                f"--agent-udpv4-endpoint=127.0.0.1:{port}"]
        if os.geteuid() == 0:
            argv += ["--process-user=nobody", "--process-group=nogroup"]
        process = RunningProcess(argv, log_dir / f"snmpsim-{port}.log")
        try:
            community = recordings[0].name.split(".")[0]
            address = f"127.0.0.1:{port}"

            def ready() -> bool:
                if not process.alive():
                    raise AssertionError(f"snmpsim exited:\n{process.log()[-3000:]}")
                return bool(snmpget(address, community, "1.3.6.1.2.1.1.2.0"))

            wait_until(ready, 30, interval=0.2, what="snmpsim to answer")
            yield Agent("127.0.0.1", port, process)
        finally:
            process.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


V3_USER = "threenines"
V3_AUTH_KEY = "auth-secret-7f3a9c"
V3_PRIV_KEY = "priv-secret-2b8e41"


@contextlib.contextmanager
def snmpd_v3(log_dir: Path, auth: str = "SHA-256", priv: str = "AES") -> Iterator[Agent]:
    """net-snmp snmpd with one authPriv v3 user, serving its own MIB-II on a free UDP port of 127.0.0.1."""
    root = Path(tempfile.mkdtemp(prefix="threenines-snmpd-"))
    try:
        port = free_port(socket.SOCK_DGRAM)
        conf = root / "snmpd.conf"
        conf.write_text(
            f"agentAddress udp:127.0.0.1:{port}\n"
            f"createUser {V3_USER} {auth} {V3_AUTH_KEY} {priv} {V3_PRIV_KEY}\n"
            f"rouser {V3_USER} priv\n"
            "sysObjectID 1.3.6.1.4.1.8072.3.2.10\n"
        )
        argv = ["/usr/sbin/snmpd", "-f", "-Lo", "-C", "-c", str(conf), "-p", str(root / "snmpd.pid"),
                f"--persistentDir={root}", "-I", "-smux,mteTrigger,mteTriggerConf"]
        process = RunningProcess(argv, log_dir / f"snmpd-{port}.log")
        try:
            def ready() -> bool:
                if not process.alive():
                    raise AssertionError(f"snmpd exited:\n{process.log()[-3000:]}")
                out = subprocess.run(
                    ["snmpget", "-v3", "-l", "authPriv", "-u", V3_USER, "-a", auth, "-A", V3_AUTH_KEY,
                     "-x", priv, "-X", V3_PRIV_KEY, "-t", "1", "-r", "0", "-Oqv", f"127.0.0.1:{port}",
                     "1.3.6.1.2.1.1.2.0"],
                    capture_output=True, text=True, timeout=10, check=False,
                )
                return out.returncode == 0
            wait_until(ready, 30, interval=0.2, what="snmpd to answer")
            yield Agent("127.0.0.1", port, process)
        finally:
            process.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
