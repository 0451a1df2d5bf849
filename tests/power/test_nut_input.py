"""NUT as an input, against Debian's nut-server: upsd and the dummy-ups driver run in the foreground from a config
directory in tmp_path, upsd on 127.0.0.1 and a free port, both stopped by PID. States change by editing the
driver's .dev file; stopping the driver makes upsd answer DRIVER-NOT-CONNECTED."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from tests.support import RunningProcess, free_port, wait_until
from threenines.config.configfile import ConfigError
from threenines.config.inventory import NutSource
from threenines.config.inventory_load import parse_inventory_text
from threenines.config.secrets import SecretRef
from threenines.contract.power_state import power_pair
from threenines.exposition.power import PowerCollector
from threenines.probes.nut import decode_vars, list_vars, read_nut
from threenines.probes.snmp.client import SnmpFailure

DRIVER = Path("/lib/nut/dummy-ups")
UPSD = Path("/lib/nut/upsd")
USER, PASSWORD = "monitor", "nut-secret-7c1e"

pytestmark = pytest.mark.skipif(not (DRIVER.exists() and UPSD.exists()),
                                reason="needs Debian's nut-server (make system-deps)")

ONLINE = """ups.status: OL
battery.charge: 100
battery.runtime: 1800
battery.runtime.low: 120
ups.load: 23
input.voltage: 230.4
output.voltage: 229.8
"""


@dataclass
class NutServer:
    root: Path
    port: int
    driver: RunningProcess
    upsd: RunningProcess

    def set_state(self, text: str) -> None:
        tmp = self.root / "dummy.dev.new"
        tmp.write_text(text)
        tmp.replace(self.root / "dummy.dev")  # one rename: the driver never reads half a file

    def source(self, password: str | None = PASSWORD) -> NutSource:
        os.environ["TEST_NUT_PASSWORD"] = password or ""
        return NutSource("dummy", USER, SecretRef(env="TEST_NUT_PASSWORD")) if password else NutSource("dummy")

    def status(self) -> str:
        return asyncio.run(list_vars("127.0.0.1", self.port, self.source(), 2.0)).get("ups.status", "")


def _env(root: Path) -> dict[str, str]:
    return {"NUT_CONFPATH": str(root), "NUT_STATEPATH": str(root / "state")}


@contextlib.contextmanager
def nut_server(tmp_path: Path) -> Iterator[NutServer]:
    root = tmp_path / "nut"
    (root / "state").mkdir(parents=True)
    port = free_port(socket.SOCK_STREAM)
    (root / "nut.conf").write_text("MODE=standalone\n")
    (root / "ups.conf").write_text(f'[dummy]\n  driver = dummy-ups\n  port = {root / "dummy.dev"}\n'
                                   '  pollinterval = 1\n  desc = "threenines test"\n')
    (root / "upsd.conf").write_text(f"LISTEN 127.0.0.1 {port}\n")
    users = root / "upsd.users"
    users.write_text(f"[{USER}]\n  password = {PASSWORD}\n  upsmon secondary\n")
    users.chmod(0o600)
    (root / "dummy.dev").write_text(ONLINE)
    # As root, both drop privileges to the `nut` user unless told otherwise: -u root keeps the tmp_path files
    # (0700) readable. -F: foreground, so the PID we hold is the process.
    as_root = ["-u", "root"] if os.geteuid() == 0 else []
    driver = RunningProcess([str(DRIVER), "-a", "dummy", "-F", *as_root], tmp_path / "dummy-ups.log", env=_env(root))
    upsd: RunningProcess | None = None
    try:
        wait_until(lambda: any((root / "state").iterdir()) or not driver.alive(), 20, what="dummy-ups socket")
        assert driver.alive(), driver.log()
        upsd = RunningProcess([str(UPSD), "-F", *as_root], tmp_path / "upsd.log", env=_env(root))
        server = NutServer(root, port, driver, upsd)

        def answers() -> bool:
            assert upsd is not None and upsd.alive(), upsd.log() if upsd else ""
            try:
                return server.status() == "OL"
            except SnmpFailure:
                return False

        wait_until(answers, 20, interval=0.2, what="upsd to serve the dummy UPS")
        yield server
    finally:
        if upsd is not None:
            upsd.stop()
        driver.stop()


@pytest.fixture
def nut(tmp_path: Path) -> Iterator[NutServer]:
    with nut_server(tmp_path) as server:
        yield server


def inventory(server: NutServer, dead_pdu_port: int, with_credentials: bool = True, interval: str = "60s"):
    os.environ["TEST_NUT_PASSWORD"] = PASSWORD
    os.environ["TEST_NUT_PDU"] = "nobody"
    credentials = f", username: {USER}, password: {{env: TEST_NUT_PASSWORD}}" if with_credentials else ""
    return parse_inventory_text(f"""
auth: [{{id: p, version: 2c, community: {{env: TEST_NUT_PDU}}}}]
devices:
  - id: ups-nut
    type: ups
    profile: nut
    address: 127.0.0.1:{server.port}
    nut: {{ups: dummy{credentials}}}
    interval: {interval}
    timeout: 2s
  - {{id: pdu-x, type: pdu, address: "127.0.0.1:{dead_pdu_port}", auth: p, input: ups-nut, interval: {interval},
      timeout: 200ms, retries: 0}}
customers:
  - id: nutty
    timezone: UTC
    contacts: {{version: "1", notify: [{{email: noc@example.com}}]}}
    power: {{interval: {interval}, feeds: [{{id: A, pdu: pdu-x, outlets: ["1"]}}]}}
""")


def test_a_nut_ups_reads_like_any_ups_and_its_blackout_counts_as_down(nut: NutServer, caplog) -> None:
    inv = inventory(nut, free_port(socket.SOCK_DGRAM))
    ups = inv.device("ups-nut")
    assert ups.port == nut.port and ups.nut is not None and ups.nut.ups == "dummy" and ups.auth == ""
    now = [1_800_000_000.0]
    poller, power = power_pair(inv, lambda key, at, ok: None, clock=lambda: now[0])

    async def step(at: float) -> tuple[object, bool | None]:
        now[0] = at
        statuses = await asyncio.gather(*(poller.poll_once(d) for d in inv.devices))
        return statuses[0], power.observe_customer(inv.customer("nutty"))

    status, state = asyncio.run(step(now[0]))
    assert status.up and status.reading.profile == "nut"  # type: ignore[attr-defined]
    reading = status.reading.ups  # type: ignore[attr-defined]
    assert (reading.output_source, reading.battery_status, reading.status) == ("normal", "normal", "OL")
    assert (reading.battery_charge_ratio, reading.battery_runtime_seconds, reading.battery_low_runtime_seconds) == (
        1.0, 1800.0, 120.0)
    assert reading.line_values("output_load_ratio") == (("1", 0.23),)
    assert reading.line_values("input_voltage_volts") == (("1", 230.4),)
    assert reading.line_values("output_voltage_volts") == (("1", 229.8),)
    assert state is None  # the UPS is fine, but the customer's PDU never answered: unknown

    nut.set_state(ONLINE.replace("ups.status: OL", "ups.status: OB LB").replace("1800", "90")
                  .replace("230.4", "0"))
    wait_until(lambda: nut.status() == "OB LB", 20, interval=0.2, what="the driver to read the edited .dev")
    status, state = asyncio.run(step(now[0] + 60))
    reading = status.reading.ups  # type: ignore[attr-defined]
    assert (reading.output_source, reading.battery_status, reading.alarms) == ("battery", "low",
                                                                              ("low_battery", "on_battery"))
    assert state is None  # on battery, still answering: not down

    nut.driver.stop()  # the UPS's link dies with it: upsd has no driver for it any more
    with pytest.raises(SnmpFailure) as failure:
        asyncio.run(list_vars("127.0.0.1", nut.port, nut.source(), 2.0))
    assert failure.value.reason == "stale" and "DRIVER-NOT-CONNECTED" in str(failure.value)
    status, state = asyncio.run(step(now[0] + 60))
    assert not status.up and status.errors == (("stale", 1),)  # type: ignore[attr-defined]
    assert state is False  # low battery, then silence of the UPS and of the PDU it feeds: the blackout rule
    verdict = power.verdict(inv.customer("nutty"))
    assert [(e.ups, e.evidence) for e in verdict.inferred] == [("ups-nut", "low_battery")]
    registry = CollectorRegistry()
    registry.register(PowerCollector(poller.snapshot, power.snapshot))
    text = generate_latest(registry).decode()
    assert 'threenines_device_poll_errors_total{device="ups-nut",reason="stale"} 1.0' in text
    assert 'threenines_power_inferred_down{customer="nutty",device="ups-nut",evidence="low_battery"} 1.0' in text
    assert PASSWORD not in text and PASSWORD not in caplog.text


def test_a_driver_gone_after_readings_on_mains_stays_unknown(nut: NutServer) -> None:
    inv = inventory(nut, free_port(socket.SOCK_DGRAM), with_credentials=False)
    poller, power = power_pair(inv, lambda key, at, ok: None)

    async def everything() -> bool | None:
        await asyncio.gather(*(poller.poll_once(d) for d in inv.devices))
        return power.observe_customer(inv.customer("nutty"))

    assert asyncio.run(everything()) is None
    nut.driver.stop()
    assert asyncio.run(everything()) is None  # silence without last words of exhaustion: unknown


def test_credentials_are_sent_by_reference_and_an_unknown_ups_is_a_config_error(nut: NutServer) -> None:
    # upsd checks a password only for LOGIN, SET and INSTCMD, none of which a reader sends: reading works with
    # any credentials (docs/power.md says so); what matters here is that the secret is resolved from its
    # reference and never shown.
    assert asyncio.run(read_nut("127.0.0.1", nut.port, nut.source("wrong-password-9"), 2.0)).ups is not None
    os.environ["TEST_NUT_PASSWORD"] = ""
    with pytest.raises(SnmpFailure) as empty:
        asyncio.run(read_nut("127.0.0.1", nut.port, NutSource("dummy", USER, SecretRef(env="TEST_NUT_PASSWORD")),
                             2.0))
    assert empty.value.reason == "config" and "TEST_NUT_PASSWORD" in str(empty.value)
    with pytest.raises(SnmpFailure) as unknown:
        asyncio.run(read_nut("127.0.0.1", nut.port, NutSource("nosuch"), 2.0))
    assert unknown.value.reason == "config"


def test_nut_status_words_and_stale_answers_map_to_the_normalised_states() -> None:
    for status, source, battery in (("OL", "normal", "normal"), ("OB", "battery", "normal"),
                                    ("OB LB", "battery", "low"), ("OL BYPASS", "bypass", "normal"),
                                    ("OFF", "none", "normal"), ("OL CHRG", "normal", "normal"), ("", None, None)):
        ups = decode_vars({"ups.status": status}).ups
        assert ups is not None and (ups.output_source, ups.battery_status) == (source, battery), status
    assert decode_vars({"ups.status": "OB LB FSD"}).ups.alarms == (  # type: ignore[union-attr]
        "low_battery", "on_battery", "shutdown_imminent")
    bad = decode_vars({"ups.status": "OL", "battery.charge": "inf", "ups.load": "-3"})
    assert {(p.reason, p.field) for p in bad.problems} == {("bad_value", "battery_charge_ratio"),
                                                          ("bad_value", "lines[1].output_load_ratio")}
    three = decode_vars({"ups.status": "OL", "input.L1-N.voltage": "231", "input.L2-N.voltage": "229",
                         "input.L3-N.voltage": "233", "output.L3.power.percent": "29", "ups.load": "7"})
    assert three.ups.line_values("input_voltage_volts") == (("1", 231.0), ("2", 229.0), ("3", 233.0))  # type: ignore[union-attr]
    assert three.ups.line_values("output_load_ratio") == (("3", 0.29),)  # type: ignore[union-attr]


def test_the_inventory_takes_nut_devices_without_auth_and_refuses_what_does_not_fit() -> None:
    base = """
customers:
  - id: c
    timezone: UTC
    contacts: {version: "1", notify: [{email: noc@example.com}]}
    ports: [{id: p, address: 192.0.2.1}]
devices:
  - {id: u, type: ups, address: 10.0.0.9, %s}
"""
    inv = parse_inventory_text(base % "profile: nut, nut: {ups: myups}")
    assert (inv.devices[0].host, inv.devices[0].port, inv.devices[0].nut) == ("10.0.0.9", 3493, NutSource("myups"))
    for fields, message in (("profile: nut", "needs nut:"), ("profile: auto, nut: {ups: x}", "only with profile: nut"),
                            ("profile: nut, nut: {ups: x, username: u}", "both username"),
                            ("profile: nut, nut: {ups: x, username: u, password: p}", "never written inline")):
        with pytest.raises(ConfigError, match=message):
            parse_inventory_text(base % fields)


def test_a_ups_announcing_a_runtime_shorter_than_its_interval_is_polled_again_when_it_runs_out(nut: NutServer) -> None:
    # NUT's runtime is in seconds, so the battery's announced end comes within the test: 6 s (+1 s margin).
    nut.set_state(ONLINE.replace("ups.status: OL", "ups.status: OB").replace("1800", "6"))
    wait_until(lambda: nut.status() == "OB", 20, interval=0.2, what="the driver to read the edited .dev")
    inv = inventory(nut, free_port(socket.SOCK_DGRAM), interval="1h")
    poller, _ = power_pair(inv, lambda key, at, ok: None)

    async def scenario() -> tuple[tuple[str, str, int], ...]:
        stop = asyncio.Event()
        task = asyncio.create_task(poller.run(stop))  # every device polls once an hour: any extra poll is ours
        await asyncio.sleep(0)
        await poller.poll_once(inv.device("ups-nut"))
        for _ in range(100):  # bounded wait for the exhaustion poll, at most 30 s
            if poller.snapshot().triggered:
                break
            await asyncio.sleep(0.3)
        stop.set()
        await asyncio.wait_for(task, 15)
        return poller.snapshot().triggered

    assert asyncio.run(scenario()) == (("ups-nut", "exhaustion", 1),)
    polled = {s.device.id: s.polled_at > 0 for s in poller.snapshot().devices}
    assert polled == {"ups-nut": True, "pdu-x": True}  # the UPS and the PDU it feeds, together


def test_the_exhaustion_poll_comes_only_for_a_battery_ending_before_the_next_poll() -> None:
    from threenines.probes.power_poller import exhaustion_poll_delay

    def reading(source: str, runtime: float | None):
        return decode_vars({"ups.status": {"battery": "OB", "normal": "OL"}[source],
                            **({"battery.runtime": str(runtime)} if runtime is not None else {})})

    assert exhaustion_poll_delay(reading("battery", 30), 60) == 31
    assert exhaustion_poll_delay(reading("battery", 0), 60) == 5  # never a poll loop on a UPS saying 0 s
    assert exhaustion_poll_delay(reading("battery", 59.5), 60) is None  # the next poll comes first
    assert exhaustion_poll_delay(reading("normal", 30), 60) is None
    assert exhaustion_poll_delay(reading("battery", None), 60) is None
