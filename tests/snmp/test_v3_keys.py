"""An SNMPv3 key shorter than 8 characters passed `check`, then every poll raised inside pysnmp and the traceback
wrote the key into the log; `poll` printed it too (issue 22). It is refused at load, named by its reference and
location; where it is only seen at use it is a `config` poll error; any other pysnmp failure is mapped to a reason
with nothing of pysnmp's message, which quotes the values it refuses."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.snmp.agents import V3_USER, Agent, snmpd_v3
from tests.support import VENV_BIN
from threenines.config.configfile import ConfigError
from threenines.config.inventory import SnmpAuth
from threenines.config.inventory_load import parse_inventory_text
from threenines.config.secrets import SecretRef
from threenines.probes.power_poller import PowerPoller
from threenines.probes.snmp import client as client_module
from threenines.probes.snmp.client import SnmpClient, SnmpFailure, Target

SHORT_AUTH, SHORT_PRIV = "Zq#5k7", "Xw!9p"  # distinctive, so a grep for them means a leak
SYS_OBJECT_ID = (1, 3, 6, 1, 2, 1, 1, 2, 0)


@pytest.fixture(scope="module")
def v3_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    with snmpd_v3(tmp_path_factory.mktemp("snmpd-keys")) as agent:
        yield agent


@pytest.fixture
def keys() -> Iterator[None]:
    """The inventory's key variables, unset again after the test."""
    yield
    for name in ("TN_V3_AUTH_KEY", "TN_V3_PRIV_KEY"):
        os.environ.pop(name, None)


def inventory_text(address: str) -> str:
    return f"""auth:
  - id: v3
    version: "3"
    username: {V3_USER}
    auth_protocol: SHA256
    auth_key: {{env: TN_V3_AUTH_KEY}}
    priv_key: {{env: TN_V3_PRIV_KEY}}
devices:
  - {{id: pdu, type: pdu, address: "{address}", auth: v3, profile: apc-rpdu2, interval: 5s, timeout: 500ms,
      retries: 0}}
customers:
  - {{id: acme, timezone: UTC, contacts: {{version: "1", notify: [{{email: noc@example.com}}]}},
     ports: [{{id: a, address: 192.0.2.1}}]}}
"""


def test_a_short_key_is_refused_at_load_with_its_reference_and_line(keys: None) -> None:
    os.environ.update(TN_V3_AUTH_KEY=SHORT_AUTH, TN_V3_PRIV_KEY="long-enough-priv-key")
    with pytest.raises(ConfigError) as refused:
        parse_inventory_text(inventory_text("127.0.0.1:161"), "inv.yml")
    assert str(refused.value) == (
        "inv.yml:6 auth[0].auth_key: env:TN_V3_AUTH_KEY holds fewer than 8 characters: SNMPv3 keys need at least "
        "8 characters (RFC 3414); put a longer one in TN_V3_AUTH_KEY")
    os.environ.update(TN_V3_AUTH_KEY="long-enough-auth-key", TN_V3_PRIV_KEY=SHORT_PRIV)
    with pytest.raises(ConfigError, match=r"^inv.yml:7 auth\[0\].priv_key: env:TN_V3_PRIV_KEY holds fewer"):
        parse_inventory_text(inventory_text("127.0.0.1:161"), "inv.yml")


def test_check_refuses_a_short_key_and_never_prints_it(tmp_path: Path) -> None:
    config = tmp_path / "inventory.yml"
    config.write_text(inventory_text("127.0.0.1:161"))
    result = subprocess.run([str(VENV_BIN / "threenines"), "check", "--config", str(config)], capture_output=True,
                            text=True, timeout=60, check=False,
                            env={**os.environ, "TN_V3_AUTH_KEY": SHORT_AUTH, "TN_V3_PRIV_KEY": SHORT_PRIV})
    assert result.returncode == 1
    assert "inventory.yml:6 auth[0].auth_key: env:TN_V3_AUTH_KEY holds fewer than 8 characters" in result.stderr
    assert SHORT_AUTH not in result.stdout + result.stderr and SHORT_PRIV not in result.stdout + result.stderr


def test_a_short_key_seen_only_at_use_is_a_config_error_without_the_key_or_a_traceback(
        v3_agent: Agent, keys: None, caplog: pytest.LogCaptureFixture) -> None:
    # At load the variables are not set yet (a check on a build host): the poll is where they are resolved.
    inventory = parse_inventory_text(inventory_text(v3_agent.address), "inv.yml")
    os.environ.update(TN_V3_AUTH_KEY=SHORT_AUTH, TN_V3_PRIV_KEY=SHORT_PRIV)
    caplog.set_level(logging.DEBUG)
    status = asyncio.run(PowerPoller(inventory).poll_once(inventory.devices[0]))
    assert not status.up and status.errors == (("config", 1),)
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "inv.yml:6 auth[0].auth_key: env:TN_V3_AUTH_KEY holds fewer than 8 characters" in logged
    assert SHORT_AUTH not in logged and SHORT_PRIV not in logged
    assert not [r for r in caplog.records if r.exc_info]  # no traceback: pysnmp's would quote the key


def test_poll_refuses_a_short_key_and_never_prints_it(v3_agent: Agent) -> None:
    result = subprocess.run(
        [str(VENV_BIN / "threenines"), "poll", "--address", v3_agent.address, "--v3-user", V3_USER,
         "--v3-auth-protocol", "SHA256", "--timeout", "1", "--retries", "0"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "THREENINES_V3_AUTH_KEY": SHORT_AUTH, "THREENINES_V3_PRIV_KEY": SHORT_PRIV})
    assert result.returncode == 1, result.stderr
    assert "error: config:" in result.stderr and "fewer than 8 characters" in result.stderr
    assert "Traceback" not in result.stderr
    assert SHORT_AUTH not in result.stdout + result.stderr and SHORT_PRIV not in result.stdout + result.stderr


def test_any_other_pysnmp_failure_is_a_reason_and_only_the_exception_type(
        v3_agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "long-and-distinctive-key-41"

    async def broken(*args: object, **kwargs: object) -> object:
        raise ValueError(f"ValueConstraintError: {secret!r} failed")  # what pyasn1 does with a refused value

    monkeypatch.setattr(client_module, "get_cmd", broken)
    os.environ.update(TN_OTHER_AUTH=secret, TN_OTHER_PRIV=secret)
    auth = SnmpAuth(id="v3", version="3", username=V3_USER, security_level="authPriv", auth_protocol="SHA256",
                    auth_key=SecretRef(env="TN_OTHER_AUTH"), priv_protocol="AES",
                    priv_key=SecretRef(env="TN_OTHER_PRIV"))

    async def go() -> None:
        client = SnmpClient()
        try:
            await client.get(Target(v3_agent.host, v3_agent.port, auth, 1.0, 0), [SYS_OBJECT_ID])
        finally:
            client.close()

    with pytest.raises(SnmpFailure) as failure:
        asyncio.run(go())
    assert failure.value.reason == "protocol"
    assert str(failure.value).endswith("GET failed inside pysnmp (ValueError)")
    assert failure.value.__suppress_context__  # a logged traceback would not show pysnmp's message either
