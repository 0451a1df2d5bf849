"""`threenines poll --device ID --config inventory.yml`: the runbook's command polls a device as the exporter
does — its address, its credentials by reference (never on the command line), its profile — on a real agent."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.snmp.agents import Agent
from tests.support import VENV_BIN

INVENTORY = """\
sites: [{{id: dc1}}]
auth:
  - id: ups-v2c
    version: 2c
    community: {{env: TEST_POLL_COMMUNITY}}
devices:
  - id: ups-a
    type: ups
    site: dc1
    address: {address}
    auth: ups-v2c
    input: mains
customers:
  - id: acme
    site: dc1
    timezone: UTC
    contacts: {{version: '1', notify: [{{email: noc@acme.example}}]}}
    ports: [{{id: p1, address: 127.0.0.1}}]
"""


def poll(*args: str, community: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "threenines"), "poll", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "TEST_POLL_COMMUNITY": community}, check=False)


def test_poll_a_device_of_the_inventory_with_its_own_credentials(own_agent: Agent, tmp_path: Path) -> None:
    config = tmp_path / "inventory.yml"
    config.write_text(INVENTORY.format(address=own_agent.address), encoding="utf-8")
    out = poll("--config", str(config), "--device", "ups-a", community="ups-mib-on-battery")
    assert out.returncode == 0, out.stderr
    assert "profile: ups-mib" in out.stdout and "status=OB LB" in out.stdout
    assert "ups-mib-on-battery" not in out.stdout + out.stderr  # the community is never printed
    unknown = poll("--config", str(config), "--device", "ups-z", community="x")
    assert unknown.returncode == 1 and "no device 'ups-z' (devices: ups-a)" in unknown.stderr
