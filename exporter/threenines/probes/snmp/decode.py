"""Raw SNMP values → normalised readings, driven only by the profile (no vendor code paths)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from threenines.probes.snmp.profiles import LINE_FIELDS, Alarms, Field, Oid, Profile, Table, format_oid, parse_oid
from threenines.probes.snmp.readings import DeviceReading, OutletReading, PhaseReading, Problem, UpsLine, UpsReading
from threenines.probes.snmp.values import Missing, Value

Columns = Mapping[Oid, Mapping[Oid, Value]]  # walked column OID → {row index: value}


# A number sent as a DisplayString: decimal digits only. float() alone would also take "inf", "nan",
# "1_000" and "1e400" (= inf), and an infinite reading then crashed the enum lookup outside the poll's
# error handling: the device stayed up with no error counted.
_BLANK = " \t\r\n\x0b\x0c\x00"  # whitespace and the NUL padding some agents send
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")


def _to_number(raw: Value) -> int | float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, bytes):
        # Some agents (e.g. Delta's RFC 1628 implementation) send numbers as DisplayStrings.
        try:
            text = raw.decode("ascii").strip(_BLANK)
        except UnicodeDecodeError:
            return None
        if len(text) > 64 or not _DECIMAL.fullmatch(text):
            return None
        number = float(text)
        return number if math.isfinite(number) else None
    return None


# 2^32 - 1: -1 sent in an unsigned type (Gauge32, Unsigned32, TimeTicks). Huawei's UPS2000 sends its runtime
# placeholder so; a profile that lists -1 as a placeholder means these 32 bits too, unless its range holds them.
GAUGE32_MAX = 2**32 - 1


def _unsigned_minus_one(f: Field, number: float) -> bool:
    return number == GAUGE32_MAX and -1 in f.unknown and (f.valid is None or number > f.valid[1])


def decode_value(f: Field, raw: Value | None, digits: Value | None = None) -> tuple[object, str | None]:
    """(normalised value or None, problem reason or None) for one raw value."""
    if raw is None or isinstance(raw, Missing):
        return None, ("no_such_object" if f.required else None)
    if f.is_string:
        if isinstance(raw, bytes):
            return raw.decode("utf-8", errors="replace").strip("\x00 ") or None, None
        return str(raw), None
    number = _to_number(raw)
    if number is None:
        return None, "bad_value"
    if number in f.unknown or _unsigned_minus_one(f, number):
        return None, None
    if f.enum:
        word = dict(f.enum).get(int(number)) if number == int(number) else None
        if word is None:
            return None, "bad_value"
        return (None if word == "unknown" else word), None
    if f.valid is not None and not f.valid[0] <= number <= f.valid[1]:
        return None, "bad_value"
    exponent = 0
    if f.digits is not None:
        exponent_raw = _to_number(digits) if digits is not None and not isinstance(digits, Missing) else None
        if exponent_raw is None or not 0 <= exponent_raw <= 9:
            return None, "bad_value"
        exponent = int(exponent_raw)
    # 12 significant digits: enough for any meter, and 0.1 × 14 prints as 1.4, not 1.4000000000000001.
    return float(f"{number * f.scale / 10**exponent:.12g}"), None


def _first_usable(alternatives: tuple[Field, ...], lookup, what: str, problems: list[Problem]) -> object:
    """Try each alternative; the first usable value wins. A problem is kept only if none is usable."""
    first_problem: str | None = None
    for f in alternatives:
        raw, digits = lookup(f)
        value, problem = decode_value(f, raw, digits)
        if value is not None:
            return value
        first_problem = first_problem or problem
    if first_problem is not None:
        problems.append(Problem(first_problem, what))
    return None


def _rows(table: Table, columns: Columns) -> list[Oid]:
    rows: set[Oid] = set()
    for alternatives in table.columns.values():
        for f in alternatives:
            for index in columns.get(f.oid, {}):
                if not f.suffix:
                    rows.add(index)
                elif index[-len(f.suffix):] == f.suffix:
                    rows.add(index[: -len(f.suffix)])
    return sorted(rows)


def _decode_table(table: Table, columns: Columns, kind: str, problems: list[Problem]) -> list[dict[str, object]]:
    out = []
    for row in _rows(table, columns):
        ident = format_oid(row[-1:]) if table.id == "last" else format_oid(row)

        def lookup(f: Field, row: Oid = row) -> tuple[Value | None, Value | None]:
            index = row + f.suffix
            digits = columns.get(f.digits, {}).get(index) if f.digits is not None else None
            return columns.get(f.oid, {}).get(index), digits

        values: dict[str, object] = {"id": ident}
        for name, alternatives in table.columns.items():
            values[name] = _first_usable(alternatives, lookup, f"{kind}[{ident}].{name}", problems)
        out.append(values)
    return out


def _lines(profile: Profile, values: dict[str, object], columns: Columns, problems: list[Problem]
           ) -> tuple[UpsLine, ...]:
    rows = _decode_table(profile.lines, columns, "lines", problems) if profile.lines is not None else []
    for name in LINE_FIELDS:
        scalar = values.pop(name, None)
        if scalar is None or any(row.get(name) is not None for row in rows):
            continue
        # The profile's scalar is the UPS's line 1 (XUPS xupsOutputLoad, APC's single-phase upsHighPrec*).
        line1 = next((row for row in rows if row["id"] == "1"), None)
        if line1 is None:
            rows.append(line1 := {"id": "1"})  # type: ignore[arg-type]  # the rows hold str ids and numbers
        line1[name] = scalar
    lines = [UpsLine(**row) for row in rows]  # type: ignore[arg-type]
    return tuple(sorted((line for line in lines if line != UpsLine(line.id)), key=lambda line: _order(line.id)))


def _order(ident: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else 0 for part in ident.split("."))


def _alarms(alarms: Alarms | None, columns: Columns) -> tuple[str, ...]:
    if alarms is None:
        return ()
    present = {alarms.words.get(parse_oid(value)) for value in columns.get(alarms.oid, {}).values()
               if isinstance(value, str)}
    return tuple(sorted(word for word in present if word is not None))


def decode(profile: Profile, scalars: Mapping[Oid, Value], columns: Columns) -> DeviceReading:
    problems: list[Problem] = []
    ups = None
    if profile.scalars:
        values = {
            name: _first_usable(alts, lambda f: (scalars.get(f.oid), None), name, problems)
            for name, alts in profile.scalars.items()
        }
        lines = _lines(profile, values, columns, problems)
        ups = UpsReading(**values, lines=lines, alarms=_alarms(profile.alarms, columns))  # type: ignore[arg-type]
    outlets: list[OutletReading] = []
    if profile.outlets is not None:
        for row in _decode_table(profile.outlets, columns, "outlets", problems):
            on = row.pop("on", None)
            outlets.append(OutletReading(on=None if on is None else on == "on", **row))  # type: ignore[arg-type]
    phases: list[PhaseReading] = []
    if profile.phases is not None:
        phases = [PhaseReading(**row) for row in _decode_table(profile.phases, columns, "phases", problems)]  # type: ignore[arg-type]
    return DeviceReading(
        profile=profile.name,
        kind=profile.kind,
        switched=profile.switched,
        ups=ups,
        outlets=tuple(outlets),
        phases=tuple(phases),
        problems=tuple(problems),
    )
