"""The blackout rule's memory across an exporter restart (probes/power_history.py, docs/power.md).

The previous process's file is written with the module's own encoder from a timeline (what that process had
seen); a new poller reads it back, polls its devices (real UDP to ports nobody answers: every card is silent)
and the evaluator gives the verdict the rule gives for that timeline. Time is injected."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from pathlib import Path

import pytest

from tests.support import free_port
from threenines.config.inventory import Inventory
from threenines.config.inventory_load import parse_inventory_text
from threenines.contract.power_state import power_pair
from threenines.probes.power_history import FILE_NAME, HistoryFile, Remembered, decode, encode
from threenines.probes.snmp.readings import DeviceReading, UpsLine, UpsReading

T0 = 1_800_000_000.0
INTERVAL = 60.0
# The timeline the previous process saw: on battery, low battery, 1 minute left at T0+180; the UPS and its PDU
# silent from T0+270; the file written at T0+300, the last flush before it stopped.
LAST_WORDS = UpsReading(output_source="battery", battery_status="low", battery_charge_ratio=0.08,
                        battery_runtime_seconds=60.0, battery_low_runtime_seconds=120.0,
                        lines=(UpsLine("1", 0.0, 0.41, 229.0),), alarms=("low_battery", "on_battery"))


def inventory() -> Inventory:
    os.environ["POWER_HISTORY_COMMUNITY"] = "public"
    # Nobody answers on these ports: every poll of the new process finds silence.
    ups, pdu = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM)
    return parse_inventory_text(f"""
auth: [{{id: c, version: 2c, community: {{env: POWER_HISTORY_COMMUNITY}}}}]
devices:
  - {{id: ups-a, type: ups, address: "127.0.0.1:{ups}", auth: c, profile: ups-mib, interval: 60s, timeout: 200ms,
      retries: 0}}
  - {{id: pdu-a, type: pdu, address: "127.0.0.1:{pdu}", auth: c, profile: apc-rpdu2, input: ups-a, interval: 60s,
      timeout: 200ms, retries: 0}}
customers:
  - id: acme
    timezone: UTC
    contacts: {{version: "1", notify: [{{email: noc@example.com}}]}}
    power: {{interval: 60s, feeds: [{{id: A, pdu: pdu-a, outlets: ["1"]}}]}}
""")


def previous_process(path: Path, saved_at: float) -> None:
    path.write_bytes(encode([
        Remembered("ups-a", DeviceReading("ups-mib", "ups", False, LAST_WORDS), T0 + 180, T0 + 270),
        Remembered("pdu-a", DeviceReading("apc-rpdu2", "pdu", True), T0 + 180, T0 + 270),
    ], saved_at))


def restarted(path: Path, now: float) -> tuple[bool | None, list[tuple[str, str, float]], int]:
    """A new poller and evaluator at `now`: restore, poll every device once, evaluate acme."""
    inv = inventory()
    poller, power = power_pair(inv, lambda key, at, ok, failed_since=None: None, clock=lambda: now, history=path)

    async def go() -> bool | None:
        await asyncio.gather(*(poller.poll_once(d) for d in inv.devices))
        return power.observe_customer(inv.customer("acme"))

    restored = poller.restore()
    state = asyncio.run(go())
    return state, [(e.ups, e.evidence, e.since) for e in power.verdict(inv.customer("acme")).inferred], restored


def test_a_restart_during_the_blackout_keeps_the_inferred_interruption(tmp_path: Path) -> None:
    history = tmp_path / FILE_NAME
    previous_process(history, saved_at=T0 + 300)
    state, inferred, restored = restarted(history, now=T0 + 330)
    assert restored == 2
    # The rule on that timeline: the end of the announced battery (T0+180 + 60 s), before the first silent poll.
    assert (state, inferred) == (False, [("ups-a", "low_battery", T0 + 240)])


def test_without_the_file_the_same_silence_is_unknown(tmp_path: Path) -> None:
    state, inferred, restored = restarted(tmp_path / FILE_NAME, now=T0 + 330)
    assert (state, inferred, restored) == (None, [], 0)


def test_history_written_longer_ago_than_two_poll_intervals_is_not_joined_to_a_new_silence(tmp_path: Path) -> None:
    history = tmp_path / FILE_NAME
    previous_process(history, saved_at=T0 + 300)
    # The exporter was away for more than 2 × 60 s: what the devices did meanwhile is not known.
    state, inferred, restored = restarted(history, now=T0 + 300 + 2 * INTERVAL + 1)
    assert (state, inferred, restored) == (None, [], 0)


def test_an_unreadable_file_is_named_and_set_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    history = tmp_path / FILE_NAME
    history.write_bytes(b'{"version": 1, "saved_at": "yesterday"')
    with caplog.at_level(logging.WARNING, logger="threenines.probes.power_history"):
        state, inferred, restored = restarted(history, now=T0 + 330)
    assert (state, inferred, restored) == (None, [], 0)
    assert any(str(history) in r.getMessage() and "not a power history" in r.getMessage() for r in caplog.records)


def test_the_file_gives_back_what_the_rule_reads_and_only_for_the_same_kind_of_device(tmp_path: Path) -> None:
    inv = inventory()
    devices = {d.id: d for d in inv.devices}
    text = encode([Remembered("ups-a", DeviceReading("ups-mib", "ups", False, LAST_WORDS), T0 + 180, None),
                   Remembered("pdu-a", DeviceReading("x", "ups", False, LAST_WORDS), T0 + 180, None),
                   Remembered("gone", None, T0, T0 + 60)], T0 + 200)
    found, skipped = decode(text, devices, T0 + 210)
    assert found == {"ups-a": Remembered("ups-a", DeviceReading("ups-mib", "ups", False, LAST_WORDS), T0 + 180, None)}
    assert [s.split(" ")[0] for s in skipped] == ["pdu-a"]  # a UPS reading for what is now a PDU: not used


def test_a_stopped_poller_writes_what_it_saw(tmp_path: Path) -> None:
    inv = inventory()
    history = tmp_path / FILE_NAME
    now = [T0]
    poller, _ = power_pair(inv, lambda key, at, ok: None, clock=lambda: now[0], history=history)

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(poller.run(stop))
        await asyncio.gather(*(poller.poll_once(d) for d in inv.devices))  # both silent, never answered
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(go())
    found = HistoryFile(history).load({d.id: d for d in inv.devices}, T0)
    assert found == {d.id: Remembered(d.id, None, 0.0, T0) for d in inv.devices}
