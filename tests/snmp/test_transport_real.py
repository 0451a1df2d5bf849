"""The v1/v2c transport against net-snmp snmpd on IPv6 loopback: address matching and request-id routing."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import RunningProcess, free_port, wait_until
from threenines.config.inventory import SnmpAuth
from threenines.config.secrets import SecretRef
from threenines.probes.snmp.client import SnmpClient, Target
from threenines.probes.snmp.profiles import parse_oid

COMMUNITY = "transport-test"
SYSTEM = ["1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.2.0", "1.3.6.1.2.1.1.4.0", "1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.1.6.0"]


def free_udp6_port() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.bind(("::1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def snmpd6(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    root = Path(tempfile.mkdtemp(prefix="threenines-snmpd6-"))
    port = free_udp6_port()
    conf = root / "snmpd.conf"
    conf.write_text(f"agentAddress udp6:[::1]:{port}\nrocommunity6 {COMMUNITY} ::1\n"
                    "sysContact noc@example.com\nsysLocation rack 7\nsysName pdu-v6\n")
    process = RunningProcess(["/usr/sbin/snmpd", "-f", "-Lo", "-C", "-c", str(conf), "-p", str(root / "pid"),
                              f"--persistentDir={root}", "-I", "-smux,mteTrigger,mteTriggerConf"],
                             tmp_path_factory.mktemp("snmpd6") / "snmpd.log")
    try:
        wait_until(lambda: oracle(port, SYSTEM[1]), 30, interval=0.2, what="snmpd on [::1]")
        yield port
    finally:
        process.stop()


def oracle(port: int, oid: str) -> str:
    """net-snmp's snmpget, value only."""
    out = subprocess.run(["snmpget", "-v2c", "-c", COMMUNITY, "-t", "1", "-r", "0", "-Oqvn", f"udp6:[::1]:{port}", oid],
                         capture_output=True, text=True, timeout=10, check=False)
    return out.stdout.strip() if out.returncode == 0 else ""


def auth() -> SnmpAuth:
    os.environ["TEST_TRANSPORT_COMMUNITY"] = COMMUNITY
    return SnmpAuth(id="t", version="2c", community=SecretRef(env="TEST_TRANSPORT_COMMUNITY"))


@pytest.mark.parametrize("host", ["::1", "0:0:0:0:0:0:0:1"])
def test_ipv6_agent_answers_whatever_way_the_address_is_written(snmpd6: int, host: str) -> None:
    async def go() -> object:
        client = SnmpClient()
        try:
            return await client.get(Target(host, snmpd6, auth(), 1.0, 1), [parse_oid(SYSTEM[1])])
        finally:
            client.close()

    assert asyncio.run(go()) == {parse_oid(SYSTEM[1]): oracle(snmpd6, SYSTEM[1]).lstrip(".")}


def test_many_concurrent_requests_on_one_socket_each_get_their_own_answer(snmpd6: int) -> None:
    expected = {oid: oracle(snmpd6, oid).strip('"') for oid in SYSTEM}
    assert expected[SYSTEM[3]] == "pdu-v6"

    async def go() -> list[tuple[str, object]]:
        client = SnmpClient()
        target = Target("::1", snmpd6, auth(), 2.0, 2)
        try:
            async def one(oid: str) -> tuple[str, object]:
                answer = await client.get(target, [parse_oid(oid)])
                return oid, answer[parse_oid(oid)]
            return await asyncio.gather(*(one(SYSTEM[i % len(SYSTEM)]) for i in range(100)))
        finally:
            client.close()

    for oid, value in asyncio.run(go()):
        text = value.decode() if isinstance(value, bytes) else "." + str(value)
        assert text == expected[oid], oid


def test_v4_port_with_nothing_listening_is_a_timeout_not_a_hang() -> None:
    from threenines.probes.snmp.client import SnmpFailure

    async def go() -> None:
        client = SnmpClient()
        try:
            await client.walk(Target("127.0.0.1", free_port(socket.SOCK_DGRAM), auth(), 0.2, 1), [parse_oid("1.3.6.1")])
        finally:
            client.close()

    with pytest.raises(SnmpFailure) as failure:
        asyncio.run(go())
    assert failure.value.reason == "timeout" and COMMUNITY not in str(failure.value)
