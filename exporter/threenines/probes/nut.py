"""NUT (Network UPS Tools) as an input: one UPS read from upsd over its network protocol, with asyncio streams.

The protocol is lines of text (NUT's "network protocol", port 3493): optionally USERNAME/PASSWORD, then
`LIST VAR <ups>` answered by `BEGIN LIST VAR <ups>`, `VAR <ups> <name> "<value>"` lines and `END LIST VAR <ups>`,
or `ERR <code>`. Variables become the same normalised UpsReading an SNMP profile gives (profile name `nut`):

- `ups.status` words: OFF → output none, BYPASS → bypass, OB → battery, OL → normal (in that precedence); LB →
  battery low; alarms OB → on_battery, LB → low_battery, FSD → shutdown_imminent (upsmon's forced shutdown),
  OFF → output_off. No known word → output source unknown.
- battery.charge (%), battery.runtime (s), battery.runtime.low (s, the UPS's low-battery threshold),
  ups.load (%), input.voltage, output.voltage; per phase input.L<n>-N.voltage, output.L<n>-N.voltage,
  output.L<n>.power.percent (3-phase UPSes), which win over the single values for line n.
- `ERR DATA-STALE` and `ERR DRIVER-NOT-CONNECTED` (upsd has no current data from the UPS) fail the poll with
  reason `stale`: the UPS is silent, exactly as an SNMP card that does not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import re

from threenines.config.inventory import NutSource
from threenines.config.secrets import SecretError
from threenines.probes.snmp.client import SnmpFailure
from threenines.probes.snmp.readings import DeviceReading, Problem, UpsLine, UpsReading

MAX_LINES = 2000  # a UPS has some hundred variables; a server sending more is broken, not slow
MAX_LINE_BYTES = 4096
_VAR = re.compile(r'VAR (\S+) (\S+) "((?:[^"\\]|\\.)*)"')
_UNESCAPE = re.compile(r"\\(.)")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_PHASE = re.compile(r"(input|output)\.L([1-9])(?:-N)?\.(voltage|power\.percent)")
# upsd's error codes → poll failure reasons (readings.REASONS)
_ERRORS = {
    "DATA-STALE": "stale", "DRIVER-NOT-CONNECTED": "stale",
    "ACCESS-DENIED": "auth", "USERNAME-REQUIRED": "auth", "PASSWORD-REQUIRED": "auth",
    "INVALID-USERNAME": "auth", "INVALID-PASSWORD": "auth", "USERNAME-INVALID": "auth", "PASSWORD-INVALID": "auth",
    "UNKNOWN-UPS": "config",
}
_SOURCES = (("OFF", "none"), ("BYPASS", "bypass"), ("OB", "battery"), ("OL", "normal"))
_ALARMS = {"OB": "on_battery", "LB": "low_battery", "FSD": "shutdown_imminent", "OFF": "output_off"}


class _Session:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, where: str, timeout: float):
        self.reader, self.writer, self.where, self.timeout = reader, writer, where, timeout

    async def line(self) -> str:
        try:
            raw = await asyncio.wait_for(self.reader.readline(), self.timeout)
        except TimeoutError:
            raise SnmpFailure("timeout", f"{self.where}: upsd did not answer within {self.timeout:g}s") from None
        except (ValueError, asyncio.LimitOverrunError):
            raise SnmpFailure("protocol", f"{self.where}: a line longer than {MAX_LINE_BYTES} bytes") from None
        if not raw.endswith(b"\n"):
            raise SnmpFailure("timeout", f"{self.where}: upsd closed the connection")
        try:
            return raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise SnmpFailure("protocol", f"{self.where}: an answer that is not UTF-8 text") from None

    async def command(self, text: str, shown: str | None = None) -> str:
        self.writer.write(text.encode() + b"\n")
        await self.writer.drain()
        answer = await self.line()
        if answer.startswith("ERR "):
            _fail(self.where, answer, shown or text)
        return answer


def _fail(where: str, answer: str, command: str) -> None:
    code = answer[4:].split(" ", 1)[0]
    reason = _ERRORS.get(code, "protocol")
    raise SnmpFailure(reason, f"{where}: upsd answered {code} to {command}")


async def list_vars(host: str, port: int, source: NutSource, timeout: float) -> dict[str, str]:
    """The UPS's variables as upsd lists them. SnmpFailure(reason) when it cannot be read."""
    where = f"nut://{host}:{port}/{source.ups}"
    password = None
    if source.password is not None:
        try:
            password = source.password.resolve()
        except SecretError as err:
            raise SnmpFailure("config", f"{where}: {err}") from None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=MAX_LINE_BYTES), timeout)
    except TimeoutError:
        raise SnmpFailure("timeout", f"{where}: no connection within {timeout:g}s") from None
    except OSError as err:
        raise SnmpFailure("timeout", f"{where}: cannot connect: {err.strerror or type(err).__name__}") from None
    session = _Session(reader, writer, where, timeout)
    try:
        if source.username is not None and password is not None:
            await session.command(f"USERNAME {source.username}")
            await session.command(f"PASSWORD {password}", shown="PASSWORD")
        first = await session.command(f"LIST VAR {source.ups}")
        if first != f"BEGIN LIST VAR {source.ups}":
            raise SnmpFailure("protocol", f"{where}: unexpected answer to LIST VAR")
        values: dict[str, str] = {}
        for _ in range(MAX_LINES):
            line = await session.line()
            if line == f"END LIST VAR {source.ups}":
                break
            if line.startswith("ERR "):
                _fail(where, line, "LIST VAR")
            match = _VAR.fullmatch(line)
            if match is None or match[1] != source.ups:
                raise SnmpFailure("protocol", f"{where}: a LIST VAR line that is not VAR {source.ups} NAME \"VALUE\"")
            values[match[2]] = _UNESCAPE.sub(r"\1", match[3])
        else:
            raise SnmpFailure("protocol", f"{where}: more than {MAX_LINES} variables")
        with contextlib.suppress(OSError):
            writer.write(b"LOGOUT\n")
        return values
    finally:
        writer.close()
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), timeout)


def _number(values: dict[str, str], name: str, problems: list[Problem], field: str, low: float, high: float,
            scale: float = 1.0) -> float | None:
    text = values.get(name)
    if text is None:
        return None
    if not _NUMBER.fullmatch(text.strip()) or not low <= float(text) <= high:
        problems.append(Problem("bad_value", field))
        return None
    return float(f"{float(text) * scale:.12g}")


def decode_vars(values: dict[str, str]) -> DeviceReading:
    """NUT variables → the normalised reading (pure)."""
    problems: list[Problem] = []
    status = values.get("ups.status")
    words = set(status.split()) if status is not None else set()
    if status is None:
        problems.append(Problem("no_such_object", "output_source"))
    source = next((name for word, name in _SOURCES if word in words), None)
    battery = "low" if "LB" in words else ("normal" if source is not None else None)
    lines: dict[str, dict[str, float | None]] = {}
    for name in values:
        match = _PHASE.fullmatch(name)
        if match is None:
            continue
        field = {("input", "voltage"): "input_voltage_volts", ("output", "voltage"): "output_voltage_volts",
                 ("output", "power.percent"): "output_load_ratio"}.get((match[1], match[3]))
        if field is None:
            continue
        scale, high = (0.01, 1000.0) if field == "output_load_ratio" else (1.0, 1000.0)
        lines.setdefault(match[2], {})[field] = _number(values, name, problems, f"lines[{match[2]}].{field}", 0,
                                                         high, scale)
    for name, field, scale in (("input.voltage", "input_voltage_volts", 1.0),
                               ("output.voltage", "output_voltage_volts", 1.0),
                               ("ups.load", "output_load_ratio", 0.01)):
        if any(row.get(field) is not None for row in lines.values()):
            continue
        value = _number(values, name, problems, f"lines[1].{field}", 0, 1000, scale)
        if value is not None:
            lines.setdefault("1", {})[field] = value
    ups = UpsReading(
        output_source=source,
        battery_status=battery,
        battery_charge_ratio=_number(values, "battery.charge", problems, "battery_charge_ratio", 0, 100, 0.01),
        battery_runtime_seconds=_number(values, "battery.runtime", problems, "battery_runtime_seconds", 0, 1e7),
        battery_low_runtime_seconds=_number(values, "battery.runtime.low", problems, "battery_low_runtime_seconds",
                                            0, 1e7),
        lines=tuple(UpsLine(ident, **row) for ident, row in sorted(lines.items())
                    if any(v is not None for v in row.values())),
        alarms=tuple(sorted({_ALARMS[w] for w in words if w in _ALARMS})),
    )
    return DeviceReading(profile="nut", kind="ups", switched=False, ups=ups, problems=tuple(problems))


async def read_nut(host: str, port: int, source: NutSource, timeout: float) -> DeviceReading:
    return decode_vars(await list_vars(host, port, source, timeout))
