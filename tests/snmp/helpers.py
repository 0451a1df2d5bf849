"""Small builders shared by the SNMP tests."""

from __future__ import annotations

import asyncio
import os

from threenines.config.inventory import SnmpAuth
from threenines.config.secrets import SecretRef
from threenines.probes.snmp.client import SnmpClient, Target
from threenines.probes.snmp.profiles import Profile, get_profile
from threenines.probes.snmp.reader import detect_profile, read_device
from threenines.probes.snmp.readings import DeviceReading


def community_auth(community: str, version: str = "2c") -> SnmpAuth:
    var = "TEST_COMMUNITY_" + community.upper().replace("-", "_").replace(".", "_")
    os.environ[var] = community
    return SnmpAuth(id=community, version=version, community=SecretRef(env=var))


def read(host: str, port: int, community: str, profile: str = "auto", version: str = "2c",
         timeout: float = 1.0, retries: int = 0) -> tuple[Profile, DeviceReading]:
    async def go() -> tuple[Profile, DeviceReading]:
        client = SnmpClient()
        try:
            target = Target(host, port, community_auth(community, version), timeout, retries)
            chosen = await detect_profile(client, target) if profile == "auto" else get_profile(profile)
            return chosen, await read_device(client, target, chosen)
        finally:
            client.close()

    return asyncio.run(go())
