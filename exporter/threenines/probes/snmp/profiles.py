"""Device profiles as data: YAML files under profiles/ become frozen Profile objects.

A profile says which OIDs hold which normalised reading, how to scale them, which enum values mean what,
and which raw values are placeholders. Adding a vendor is adding a YAML file (and a recording to test it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from threenines.config.configfile import ConfigError, Node, load
from threenines.probes.snmp.readings import ALARMS

Oid = tuple[int, ...]

PROFILE_DIR = Path(__file__).with_name("profiles")
OID_RE = re.compile(r"\.?[0-9]+(\.[0-9]+)+")
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")

UPS_FIELDS = ("output_source", "battery_status", "battery_charge_ratio", "battery_runtime_seconds",
              "battery_low_runtime_seconds", "input_voltage_volts", "output_load_ratio")
# Per input/output line of a UPS (the `lines:` table). A UPS scalar of the same name is line "1" of a UPS
# whose profile reads no table, or whose table has no value for it.
LINE_FIELDS = ("input_voltage_volts", "output_load_ratio", "output_voltage_volts")
OUTLET_FIELDS = ("name", "on", "current_amperes", "power_watts", "energy_joules")
PHASE_FIELDS = ("name", "current_amperes", "voltage_volts")
# Enumerated fields and the normalised words their enum may map to; "unknown" decodes to None.
VOCABULARIES = {
    "on": ("on", "off", "unknown"),
    "output_source": ("normal", "battery", "bypass", "none", "other", "unknown"),
    "battery_status": ("normal", "low", "depleted", "fault", "unknown"),
}
STRING_FIELDS = ("name",)
# Enum keys in these MIBs are small integers; listing them lets the line-aware reader check the keys.
_ENUM_KEYS = tuple(str(i) for i in range(-1, 1001))
_FIELD_KEYS = ("oid", "scale", "digits", "suffix", "enum", "range", "unknown", "required")


def parse_oid(text: str) -> Oid:
    return tuple(int(part) for part in text.strip().strip(".").split("."))


def format_oid(oid: Oid) -> str:
    return ".".join(map(str, oid))


@dataclass(frozen=True)
class Field:
    """Where one reading comes from and how its raw value becomes a normalised one."""

    oid: Oid                                  # scalar: the full instance OID; table: the column OID
    scale: float = 1.0                        # value = raw × scale / 10**digits
    digits: Oid | None = None                 # a column holding decimal digits per row (Raritan)
    suffix: Oid = ()                          # table rows whose index ends with this (Raritan sensor type)
    enum: tuple[tuple[int, str], ...] = ()    # raw → normalised word
    valid: tuple[float, float] | None = None  # raw values outside are garbage (reason bad_value)
    unknown: frozenset[int] = frozenset()     # raw placeholders meaning "not known" (65535, -1, ...)
    required: bool = False                    # missing on the agent → reason no_such_object
    is_string: bool = False


@dataclass(frozen=True)
class Table:
    id: str  # "index": the row index as dotted string; "last": its last component (outlet number)
    columns: dict[str, tuple[Field, ...]] = field(default_factory=dict)  # name → alternatives, first wins

    def roots(self) -> list[Oid]:
        out: list[Oid] = []
        for alternatives in self.columns.values():
            for f in alternatives:
                out.append(f.oid)
                if f.digits is not None:
                    out.append(f.digits)
        return out


@dataclass(frozen=True)
class Alarms:
    """A table column whose values are alarm OIDs (RFC 1628 upsAlarmDescr): one row per alarm present."""

    oid: Oid
    words: dict[Oid, str] = field(default_factory=dict)  # alarm OID → a word of readings.ALARMS


@dataclass(frozen=True)
class Profile:
    name: str
    kind: str  # ups | pdu
    description: str
    sys_object_ids: tuple[Oid, ...]
    probe: Oid | None  # something must exist under this OID for auto-detect to pick the profile
    priority: int
    max_repetitions: int
    scalars: dict[str, tuple[Field, ...]]
    outlets: Table | None
    phases: Table | None
    source: str
    lines: Table | None = None    # UPS input/output lines (phases)
    alarms: Alarms | None = None  # UPS alarms present


    @property
    def switched(self) -> bool:
        return self.outlets is not None and "on" in self.outlets.columns

    def scalar_oids(self) -> list[Oid]:
        return [f.oid for alternatives in self.scalars.values() for f in alternatives]

    def walk_roots(self) -> list[Oid]:
        roots: list[Oid] = []
        for table in (self.outlets, self.phases, self.lines):
            if table is not None:
                roots.extend(r for r in table.roots() if r not in roots)
        if self.alarms is not None and self.alarms.oid not in roots:
            roots.append(self.alarms.oid)
        return roots


def _oid(node: Node) -> Oid:
    return parse_oid(node.string(OID_RE, "a numeric OID such as 1.3.6.1.2.1.33.1.4.1.0"))


def _field(node: Node, name: str) -> Field:
    f = node.mapping(_FIELD_KEYS, required=("oid",))
    enum: list[tuple[int, str]] = []
    if "enum" in f:
        vocabulary = VOCABULARIES.get(name)
        if vocabulary is None:
            f["enum"].fail(f"{name} is a number, not an enumeration; remove enum:")
        for key, value in f["enum"].mapping(_ENUM_KEYS).items():
            # The raw text, not YAML's reading: YAML 1.1 would turn on/off into booleans.
            enum.append((int(key), value.choice(vocabulary)))
    elif name in VOCABULARIES:
        node.fail(f"{name} needs enum: mapping raw values to {', '.join(VOCABULARIES[name])}")
    valid = None
    if "range" in f:
        bounds = f["range"].sequence()
        if len(bounds) != 2:
            f["range"].fail("write range: [MIN, MAX] (raw values, before scaling)")
        valid = (bounds[0].number(), bounds[1].number())
    unknown = frozenset(int(n.number()) for n in f["unknown"].sequence()) if "unknown" in f else frozenset()
    return Field(
        oid=_oid(f["oid"]),
        scale=f["scale"].number() if "scale" in f else 1.0,
        digits=_oid(f["digits"]) if "digits" in f else None,
        suffix=parse_oid(f["suffix"].raw) if "suffix" in f else (),
        enum=tuple(enum),
        valid=valid,
        unknown=unknown,
        required=f["required"].boolean() if "required" in f else False,
        is_string=name in STRING_FIELDS,
    )


def _alternatives(node: Node, name: str) -> tuple[Field, ...]:
    """One field spec, or a list of them: the first the agent answers with a usable value wins."""
    if node.is_mapping:
        return (_field(node, name),)
    items = node.sequence()
    if not items:
        node.fail("give a field spec {oid: ...} or a list of them")
    return tuple(_field(n, name) for n in items)


def _table(node: Node, allowed: tuple[str, ...]) -> Table:
    f = node.mapping(("id", "columns"), required=("columns",))
    columns = {name: _alternatives(n, name) for name, n in f["columns"].mapping(allowed).items()}
    return Table(id=f["id"].choice(("index", "last")) if "id" in f else "index", columns=columns)


def _alarms(node: Node) -> Alarms:
    f = node.mapping(("oid", "map"), required=("oid", "map"))
    words: dict[Oid, str] = {}
    for key, value in f["map"].mapping_items():
        if not OID_RE.fullmatch(key):
            value.fail(f"{key!r} is not a numeric alarm OID such as 1.3.6.1.2.1.33.1.6.3.3")
        words[parse_oid(key)] = value.choice(ALARMS)
    return Alarms(oid=_oid(f["oid"]), words=words)


def parse_profile(root: Node) -> Profile:
    f = root.mapping(
        ("name", "kind", "description", "match", "max_repetitions", "ups", "lines", "alarms", "outlets", "phases"),
        required=("name", "kind", "match"),
    )
    kind = f["kind"].choice(("ups", "pdu"))
    m = f["match"].mapping(("sys_object_id", "probe", "priority"))
    if "sys_object_id" not in m and "probe" not in m:
        f["match"].fail("give sys_object_id: [prefixes] and/or probe: OID so auto-detect can pick this profile")
    if kind == "ups" and "ups" not in f:
        root.fail("a ups profile needs ups: (at least output_source)")
    if kind == "pdu" and "outlets" not in f and "phases" not in f:
        root.fail("a pdu profile needs outlets: and/or phases:")
    for key in ("lines", "alarms"):
        if kind != "ups" and key in f:
            f[key].fail(f"{key}: is for ups profiles")
    scalars = {name: _alternatives(n, name) for name, n in f["ups"].mapping(UPS_FIELDS).items()} \
        if "ups" in f else {}
    return Profile(
        name=f["name"].string(NAME_RE, "lower-case letters, digits, _ . -"),
        kind=kind,
        description=f["description"].string() if "description" in f else "",
        sys_object_ids=tuple(_oid(n) for n in m["sys_object_id"].sequence()) if "sys_object_id" in m else (),
        probe=_oid(m["probe"]) if "probe" in m else None,
        priority=m["priority"].integer(0, 1000) if "priority" in m else 0,
        # Some agents (old APC NMCs, Raritan under load) break on large GETBULKs; profiles lower this.
        max_repetitions=f["max_repetitions"].integer(1, 100) if "max_repetitions" in f else 10,
        scalars=scalars,
        outlets=_table(f["outlets"], OUTLET_FIELDS) if "outlets" in f else None,
        phases=_table(f["phases"], PHASE_FIELDS) if "phases" in f else None,
        source=root.source,
        lines=_table(f["lines"], LINE_FIELDS) if "lines" in f else None,
        alarms=_alarms(f["alarms"]) if "alarms" in f else None,
    )


def load_profile(path: str | Path) -> Profile:
    return parse_profile(load(path))


@cache
def builtin_profiles() -> dict[str, Profile]:
    profiles: dict[str, Profile] = {}
    for path in sorted(PROFILE_DIR.glob("*.yaml")):
        profile = load_profile(path)
        if profile.name in profiles:
            raise ConfigError(str(path), 1, "name", f"profile {profile.name!r} is also defined in "
                              f"{profiles[profile.name].source}")
        profiles[profile.name] = profile
    return profiles


def get_profile(name: str) -> Profile:
    profiles = builtin_profiles()
    if name not in profiles:
        raise KeyError(f"unknown profile {name!r}; known: {', '.join(sorted(profiles))}")
    return profiles[name]
