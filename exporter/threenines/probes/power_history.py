"""What the power poller remembers of each device, kept across an exporter restart: `<state_dir>/power-history.json`.

The blackout rule (contract/power.py, docs/power.md "Evidence through the blackout") rests on a UPS's last
readings before a silence and on when that silence began. Both live only in the poller's memory; an exporter
restarted during a blackout (an upgrade, a crash, the host's own UPS) would find every card silent and no history:
the inferred interruption would turn into unknown. So the poller writes, per device, the time of its last answer,
the first unanswered poll after it, and for a UPS the UPS part of its last reading (all the rule reads of it),
and reads them back when it starts.

What comes back is used only when the previous process wrote it at most RESTORE_WITHIN_INTERVALS poll intervals
of that device before this one starts: what a device did during a longer absence is not known, and a silence
found after it must not be joined to last words said before it.

The file is a cache of evidence the ledger does not hold yet, not the evidence itself: written whole to a
temporary file and renamed (never half a file), and a file that cannot be read is logged (naming it) and set
aside; the exporter starts without the history, as it did before this file existed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from threenines.config.inventory import Device
from threenines.probes.snmp.readings import DeviceReading, UpsLine, UpsReading

log = logging.getLogger(__name__)

FILE_NAME = "power-history.json"
VERSION = 1
# The same bound as the rule's "the silence follows the last reading within 2 poll intervals".
RESTORE_WITHIN_INTERVALS = 2.0


@dataclass(frozen=True)
class Remembered:
    """One device's history: a UPS's last reading holds only its UPS part when it comes from the file."""

    device: str
    last_reading: DeviceReading | None
    last_success: float            # 0.0: never answered
    silent_since: float | None     # the first unanswered poll after the last answer, while the silence lasts


def _number(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"not a number: {value!r}")
    return float(value)


def _word(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"not a string: {value!r}")


def _ups_to_json(ups: UpsReading) -> dict[str, Any]:
    out: dict[str, Any] = {f.name: getattr(ups, f.name) for f in fields(UpsReading) if f.name not in ("lines",
                                                                                                      "alarms")}
    out["lines"] = [{f.name: getattr(line, f.name) for f in fields(UpsLine)} for line in ups.lines]
    out["alarms"] = list(ups.alarms)
    return out


def _ups_from_json(data: object) -> UpsReading:
    if not isinstance(data, dict):
        raise ValueError("ups is not an object")
    lines = data.get("lines", [])
    alarms = data.get("alarms", [])
    if not isinstance(lines, list) or not isinstance(alarms, list) or not all(isinstance(a, str) for a in alarms):
        raise ValueError("ups lines/alarms are not lists")
    parsed: list[UpsLine] = []
    for line in lines:
        if not isinstance(line, dict) or not isinstance(line.get("id"), str):
            raise ValueError("a ups line is not an object with an id")
        parsed.append(UpsLine(line["id"], _number(line.get("input_voltage_volts")),
                              _number(line.get("output_load_ratio")), _number(line.get("output_voltage_volts"))))
    return UpsReading(
        output_source=_word(data.get("output_source")), battery_status=_word(data.get("battery_status")),
        battery_charge_ratio=_number(data.get("battery_charge_ratio")),
        battery_runtime_seconds=_number(data.get("battery_runtime_seconds")),
        battery_low_runtime_seconds=_number(data.get("battery_low_runtime_seconds")),
        lines=tuple(parsed), alarms=tuple(alarms),
    )


def encode(entries: Iterable[Remembered], saved_at: float) -> bytes:
    devices: dict[str, Any] = {}
    for e in entries:
        reading = e.last_reading
        devices[e.device] = {
            "last_success": e.last_success,
            "silent_since": e.silent_since,
            "reading": None if reading is None else {
                "profile": reading.profile, "kind": reading.kind, "switched": reading.switched,
                "ups": None if reading.ups is None else _ups_to_json(reading.ups),
            },
        }
    return json.dumps({"version": VERSION, "saved_at": saved_at, "devices": devices}, sort_keys=True).encode()


def decode(text: bytes, devices: Mapping[str, Device], now: float) -> tuple[dict[str, Remembered], list[str]]:
    """The history of the inventory's devices that may be used at `now`, and what was set aside (for the log).
    ValueError when the file as a whole is not a history file."""
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("devices"), dict):
        raise ValueError(f"not a version {VERSION} power history")
    saved_at = _number(data.get("saved_at"))
    if saved_at is None:
        raise ValueError("saved_at is missing")
    out: dict[str, Remembered] = {}
    skipped: list[str] = []
    for device_id, entry in data["devices"].items():
        device = devices.get(device_id)
        if device is None:
            continue  # no longer in the inventory
        if now - saved_at > RESTORE_WITHIN_INTERVALS * device.interval:
            skipped.append(f"{device_id} (written {now - saved_at:.0f}s ago, more than "
                           f"{RESTORE_WITHIN_INTERVALS:g} poll intervals)")
            continue
        try:
            if not isinstance(entry, dict):
                raise ValueError("not an object")
            reading: DeviceReading | None = None
            raw = entry.get("reading")
            if raw is not None:
                if not isinstance(raw, dict) or raw.get("kind") != device.kind:
                    raise ValueError("the reading is of another kind of device")
                ups = None if raw.get("ups") is None else _ups_from_json(raw["ups"])
                reading = DeviceReading(str(raw.get("profile", "")), device.kind, bool(raw.get("switched")), ups)
            last_success = _number(entry.get("last_success")) or 0.0
            out[device_id] = Remembered(device_id, reading, last_success, _number(entry.get("silent_since")))
        except ValueError as err:
            skipped.append(f"{device_id} ({err})")
    return out, skipped


class HistoryFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()  # the periodic write runs in a worker thread, the last one on stop
        self._failing = False  # log a refused write once, not at every flush

    def load(self, devices: Mapping[str, Device], now: float) -> dict[str, Remembered]:
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as err:
            log.warning("%s: cannot read the power history (%s): the blackout rule starts without it",
                        self.path, err.strerror or err)
            return {}
        try:
            found, skipped = decode(text, devices, now)
        except (ValueError, RecursionError) as err:
            log.warning("%s: not a power history (%s): set aside, the blackout rule starts without it; "
                        "the exporter rewrites it", self.path, err)
            return {}
        if skipped:
            log.info("%s: power history not used for %s", self.path, "; ".join(sorted(skipped)))
        if found:
            log.info("%s: power history of %d device(s) restored", self.path, len(found))
        return found

    def save(self, data: bytes) -> None:
        """Write the whole file (encode()) atomically: a temporary file beside it, fsync, rename."""
        temporary = self.path.with_name(self.path.name + ".tmp")
        with self._lock:
            try:
                with open(temporary, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temporary, self.path)
            except OSError as err:
                # A full disk or a read-only state directory costs the history across a restart, nothing else.
                if not self._failing:
                    log.warning("%s: cannot write the power history (%s): a restart now would forget it",
                                self.path, err.strerror or err)
                self._failing = True
                return
            if self._failing:
                log.info("%s: power history written again", self.path)
            self._failing = False
