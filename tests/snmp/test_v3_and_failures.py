"""SNMPv3 against net-snmp snmpd (authPriv), wrong keys, dead agents and the `threenines poll` exit codes."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.snmp.agents import V3_AUTH_KEY, V3_PRIV_KEY, V3_USER, Agent, snmpd_v3
from tests.support import VENV_BIN, free_port
from threenines.config.inventory import SnmpAuth
from threenines.config.secrets import SecretRef
from threenines.probes.snmp.client import SnmpClient, SnmpFailure, Target

SYS_OBJECT_ID = (1, 3, 6, 1, 2, 1, 1, 2, 0)


@pytest.fixture(scope="module")
def v3_agent(tmp_path_factory: pytest.TempPathFactory):
    with snmpd_v3(tmp_path_factory.mktemp("snmpd")) as agent:
        yield agent


def v3_auth(auth_key: str = V3_AUTH_KEY, priv_key: str = V3_PRIV_KEY) -> SnmpAuth:
    os.environ["TEST_V3_AUTH"], os.environ["TEST_V3_PRIV"] = auth_key, priv_key
    return SnmpAuth(id="v3", version="3", username=V3_USER, security_level="authPriv", auth_protocol="SHA256",
                    auth_key=SecretRef(env="TEST_V3_AUTH"), priv_protocol="AES", priv_key=SecretRef(env="TEST_V3_PRIV"))


def get(target: Target, oids=(SYS_OBJECT_ID,)):
    async def go():
        client = SnmpClient()
        try:
            return await client.get(target, list(oids))
        finally:
            client.close()
    return asyncio.run(go())


def test_v3_authpriv_sha256_aes_reads_snmpd(v3_agent: Agent) -> None:
    answer = get(Target(v3_agent.host, v3_agent.port, v3_auth(), 1.0, 0))
    assert answer[SYS_OBJECT_ID] == "1.3.6.1.4.1.8072.3.2.10"


def test_v3_walk_reads_a_table_from_snmpd(v3_agent: Agent) -> None:
    async def go():
        client = SnmpClient()
        try:
            return await client.walk(Target(v3_agent.host, v3_agent.port, v3_auth(), 1.0, 0),
                                     [(1, 3, 6, 1, 2, 1, 2, 2, 1, 2)], 5)  # ifDescr
        finally:
            client.close()
    columns = asyncio.run(go())
    assert b"lo" in columns[(1, 3, 6, 1, 2, 1, 2, 2, 1, 2)].values()


def test_wrong_v3_key_is_an_auth_failure_that_never_shows_the_key(v3_agent: Agent) -> None:
    wrong = "not-the-right-key-123"
    with pytest.raises(SnmpFailure) as failure:
        get(Target(v3_agent.host, v3_agent.port, v3_auth(auth_key=wrong), 1.0, 0))
    assert failure.value.reason == "auth"
    assert wrong not in str(failure.value) and V3_PRIV_KEY not in str(failure.value)


def test_an_agent_that_never_answers_is_a_timeout_within_timeout_times_tries() -> None:
    port = free_port(socket.SOCK_DGRAM)
    os.environ["TEST_SILENT"] = "public"
    started = time.monotonic()
    with pytest.raises(SnmpFailure) as failure:
        get(Target("127.0.0.1", port, SnmpAuth(id="s", version="2c", community=SecretRef(env="TEST_SILENT")), 0.3, 1))
    assert failure.value.reason == "timeout"
    assert time.monotonic() - started < 5


def test_a_missing_secret_is_a_config_failure_naming_the_variable() -> None:
    os.environ.pop("TEST_UNSET_COMMUNITY", None)
    with pytest.raises(SnmpFailure) as failure:
        get(Target("127.0.0.1", 1, SnmpAuth(id="x", version="2c", community=SecretRef(env="TEST_UNSET_COMMUNITY"))))
    assert failure.value.reason == "config" and "TEST_UNSET_COMMUNITY" in str(failure.value)


def threenines(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "threenines"), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})}, check=False)


def test_poll_command_prints_profile_and_readings(own_agent: Agent) -> None:
    out = threenines("poll", "--address", own_agent.address, "--community", "ups-mib-on-battery")
    assert out.returncode == 0, out.stderr
    assert "profile: ups-mib" in out.stdout and "status=OB LB" in out.stdout
    js = threenines("poll", "--address", own_agent.address, "--community", "pdu-a", "--json")
    assert js.returncode == 0 and '"profile": "apc-rpdu2"' in js.stdout


def test_poll_command_v3_and_its_failures(v3_agent: Agent, own_agent: Agent) -> None:
    keys = {"THREENINES_V3_AUTH_KEY": V3_AUTH_KEY, "THREENINES_V3_PRIV_KEY": "wrong-priv-key-999"}
    bad = threenines("poll", "--address", v3_agent.address, "--v3-user", V3_USER, "--v3-auth-protocol", "SHA256",
                     "--timeout", "1", "--retries", "0", env=keys)
    assert bad.returncode in (2, 3), bad.stderr  # a wrong privacy key: the agent cannot decrypt, so it may stay silent
    assert "wrong-priv-key-999" not in bad.stderr + bad.stdout
    keys["THREENINES_V3_PRIV_KEY"] = V3_PRIV_KEY
    noprofile = threenines("poll", "--address", v3_agent.address, "--v3-user", V3_USER, "--v3-auth-protocol",
                           "SHA256", "--timeout", "1", env=keys)
    assert noprofile.returncode == 4 and "no_profile" in noprofile.stderr
    silent = threenines("poll", "--address", f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}", "--community", "x",
                        "--timeout", "0.3", "--retries", "0")
    assert silent.returncode == 2 and "timeout" in silent.stderr


def test_secrets_never_reach_the_log(tmp_path: Path) -> None:
    assert V3_AUTH_KEY not in " ".join(str(p) for p in tmp_path.iterdir())
