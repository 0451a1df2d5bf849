"""Poll-on-trap with real components: snmptrap sends RFC 1628's upsTrapOnBattery to Debian's snmptrapd on
127.0.0.1, whose traphandle runs `threenines trap`, which posts to the exporter's trap route (the project's HTTP
server with the route registered as `serve` registers it), which polls that UPS and the PDU it feeds at once —
and not the PDU on another UPS. Devices poll every hour, so any poll seen here is the trap's."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.snmp.agents import FIXTURES, Agent, snmpsim
from tests.support import VENV_BIN, RunningProcess, free_port
from threenines.commands.trap import parse_traphandle
from threenines.config.inventory_load import parse_inventory_text
from threenines.contract.power_state import power_pair
from threenines.probes.power_trap import TRAP_PATH, parse_trap_body, trap_route
from threenines.serve.httpserver import ExporterHTTPServer

SNMPTRAPD = shutil.which("snmptrapd") or "/usr/sbin/snmptrapd"
UPS_TRAP_ON_BATTERY = "1.3.6.1.2.1.33.2.1"

pytestmark = pytest.mark.skipif(not Path(SNMPTRAPD).exists(), reason="needs Debian's snmptrapd (make system-deps)")


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    recordings = [FIXTURES / "ups-mib-on-battery.snmprec", FIXTURES / "pdu-a.snmprec", FIXTURES / "pdu-b.snmprec"]
    with snmpsim(recordings, tmp_path_factory.mktemp("trap-agents")) as running:
        yield running


def inventory(agent: Agent):
    os.environ.update(TRAP_UPS="ups-mib-on-battery", TRAP_PDU_A="pdu-a", TRAP_PDU_B="pdu-b")
    return parse_inventory_text(f"""
auth:
  - {{id: u, version: 2c, community: {{env: TRAP_UPS}}}}
  - {{id: a, version: 2c, community: {{env: TRAP_PDU_A}}}}
  - {{id: b, version: 2c, community: {{env: TRAP_PDU_B}}}}
devices:
  - {{id: ups1, type: ups, address: "{agent.address}", auth: u, profile: ups-mib, interval: 1h, timeout: 1s}}
  - {{id: pdu-a, type: pdu, address: "{agent.address}", auth: a, profile: apc-rpdu2, input: ups1, interval: 1h,
      timeout: 1s}}
  - {{id: ups2, type: ups, address: "127.0.0.2:{agent.port}", auth: u, profile: ups-mib, interval: 1h,
      timeout: 1s}}
  - {{id: pdu-b, type: pdu, address: "{agent.address}", auth: b, profile: apc-rpdu2, input: ups2, interval: 1h,
      timeout: 1s}}
customers:
  - id: acme
    timezone: UTC
    contacts: {{version: "1", notify: [{{email: noc@example.com}}]}}
    power: {{interval: 1h, feeds: [{{id: A, pdu: pdu-a, outlets: ["1"]}}]}}
""")


def test_a_trap_through_snmptrapd_polls_that_ups_and_its_pdus_at_once(agent: Agent, tmp_path: Path) -> None:
    inv = inventory(agent)
    observed: list[tuple[str, bool | None]] = []
    poller, _ = power_pair(inv, lambda key, at, ok: observed.append((key.customer, ok)))
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    runner = threading.Thread(target=loop.run_until_complete, args=(poller.run(stop),), daemon=True)
    runner.start()
    http = ExporterHTTPServer("127.0.0.1", 0, lambda: b"", lambda: (True, "ok"))
    http.add_post(TRAP_PATH, trap_route(lambda: poller, lambda: loop))
    http.start()
    trapd: RunningProcess | None = None
    # snmptrapd runs the handler as whoever it runs as: its files go where that user can read them.
    root = Path(tempfile.mkdtemp(prefix="threenines-snmptrapd-"))
    try:
        port = free_port(socket.SOCK_DGRAM)
        url = f"http://127.0.0.1:{http.address[1]}{TRAP_PATH}"
        conf = root / "snmptrapd.conf"
        conf.write_text(f"snmpTrapdAddr udp:127.0.0.1:{port}\noutputOption n\nauthCommunity log,execute public\n"
                        f"traphandle {'.' + UPS_TRAP_ON_BATTERY} {VENV_BIN / 'threenines'} trap --url {url}\n")
        trapd = RunningProcess([SNMPTRAPD, "-f", "-Lo", "-C", "-c", str(conf), "-p", str(root / "snmptrapd.pid"),
                                f"--persistentDir={root}"], tmp_path / "snmptrapd.log")
        sent = 0
        for _ in range(100):  # bounded: snmptrapd may not listen yet when the first trap goes out
            if trapd.proc.poll() is not None:
                pytest.fail(f"snmptrapd exited:\n{trapd.log()}")
            if sent < 20 and "NET-SNMP version" in trapd.log():
                subprocess.run(["snmptrap", "-v", "2c", "-c", "public", f"127.0.0.1:{port}", "",
                                UPS_TRAP_ON_BATTERY, "1.3.6.1.2.1.33.1.2.3.0", "i", "4"],
                               check=True, timeout=10, capture_output=True)
                sent += 1
            if any(u == "ups1" for u, _, _ in poller.snapshot().triggered):
                break
            threading.Event().wait(0.3)
        triggered = poller.snapshot().triggered
        assert [(u, t) for u, t, _ in triggered] == [("ups1", "trap")], trapd.log()
        polled = {s.device.id: s.polled_at > 0 for s in poller.snapshot().devices}
        assert polled == {"ups1": True, "pdu-a": True, "ups2": False, "pdu-b": False}
        assert ("acme", True) in observed  # its customer evaluated right after the polls
        assert "threenines trap:" not in trapd.log()  # the handler reached the exporter
    finally:
        if trapd is not None:
            trapd.stop()
        http.stop()
        loop.call_soon_threadsafe(stop.set)
        runner.join(timeout=15)
        shutil.rmtree(root, ignore_errors=True)


def test_the_handler_reads_snmptrapds_input_in_both_oid_styles() -> None:
    numeric = ("localhost\nUDP: [127.0.0.1]:40123->[127.0.0.1]:162\n.1.3.6.1.2.1.1.3.0 0:0:00:01.00\n"
               ".1.3.6.1.6.3.1.1.4.1.0 .1.3.6.1.2.1.33.2.1\n.1.3.6.1.2.1.33.1.2.3.0 4\n")
    assert parse_traphandle(numeric) == ("127.0.0.1", "1.3.6.1.2.1.33.2.1")
    named = ("ups.example\nUDP: [192.0.2.10]:161->[192.0.2.1]:162\nSNMPv2-MIB::sysUpTime.0 0:0:00:01.00\n"
             "SNMPv2-MIB::snmpTrapOID.0 iso.3.6.1.2.1.33.2.1\n"
             "SNMP-COMMUNITY-MIB::snmpTrapAddress.0 192.0.2.77\n")
    assert parse_traphandle(named) == ("192.0.2.77", "1.3.6.1.2.1.33.2.1")  # forwarded: the agent's own address
    with pytest.raises(ValueError):
        parse_traphandle("only a host name\n")


def test_the_route_refuses_what_is_not_a_trap() -> None:
    assert parse_trap_body(b'{"address": "127.0.0.1", "trap": "1.3.6.1.2.1.33.2.1"}') == (
        "127.0.0.1", "1.3.6.1.2.1.33.2.1")
    for body in (b"nope", b"[]", b'{"address": "not-an-ip"}', b'{"address": "::1", "trap": "x; rm"}'):
        with pytest.raises(ValueError):
            parse_trap_body(body)
    handler = trap_route(lambda: None, lambda: None)
    assert handler(b'{"address": "127.0.0.1"}', {})[0] == 503
    assert handler(b"nope", {})[0] == 400
