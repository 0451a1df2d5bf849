"""Fuzz the inventory loader (issue 22): the commented example inventory, mutated (values replaced, keys deleted,
lines duplicated, junk lines and bytes inserted), either loads or is refused with a ConfigError whose message names
the file. Any other exception, a traceback at `threenines check`, is a bug."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from threenines.config.configfile import ConfigError
from threenines.config.inventory import Inventory
from threenines.config.inventory_load import load_inventory

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = (REPO / "examples" / "inventory.yml").read_text(encoding="utf-8")
LINES = EXAMPLE.splitlines()
KEY_VALUE = re.compile(r"^(?P<head>\s*(?:- )?[A-Za-z_]+:) (?P<value>\S.*)$")
VALUE_LINES = [i for i, line in enumerate(LINES) if KEY_VALUE.match(line)]

# Values that broke or fooled the loader, or might: wrong types, bounds, label sizes, YAML 1.1 surprises, tags,
# aliases, secrets that are not references, addresses that are not one host's.
NASTY = [
    "", "''", "~", "null", "0", "-1", "02", "08", "0x10", "1_0", "1e400", ".nan", ".inf", "-.inf", "yes", "no",
    "1ms", "0s", "9999999999999y", "99999999999999999999999999s", "1d", "2d", "5", "99.9%", "100%", "0%", "1.5",
    "0.0.0.0", "'::'", "224.0.0.1", "255.255.255.255", "'ff02::1'", "'[::1]'", "'[::1]:9839'", "localhost",
    "'::1'", "127.0.0.1:99999", "'[x]:1'", "{}", "[]", "[[]]", "[{}]", "{env: ''}", "{file: ''}", "{env: X, file: y}",
    "{file: \"a\\0b\"}", "{file: /dev/zero}", "{env: \"9\"}", "*nothing", "&a [*a]", "!!binary aGk=",
    "!!python/object/apply:os.system [true]", "\"\\x00\"", "\"line\\nbreak\"", "\"\\u2028\"", "'" + "x" * 300 + "'",
    "'" + "y" * 70_000 + "'", "Mars/Olympus", "Europe", "../../etc/passwd", "a@b", "+1", "{a: 1}", "- x", "|\n  x",
]
value = st.sampled_from(NASTY) | st.text(max_size=40)
junk_line = st.sampled_from(["  - id: x", "x: 1", "customers:", "- ", ":", "? [a]\n: b", "%YAML 1.1", "---", "...",
                             "\t", "  ports: [", "}", "&a b: *a"]) | st.text(max_size=60)


@st.composite
def mutated_example(draw: st.DrawFn) -> bytes:
    lines = list(LINES)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["value", "value", "value", "delete", "insert", "duplicate"]))
        if op == "value":
            at = draw(st.sampled_from(VALUE_LINES))
            match = KEY_VALUE.match(lines[at]) if at < len(lines) else None
            if match:
                lines[at] = f"{match['head']} {draw(value)}"
        elif op == "delete" and lines:
            del lines[draw(st.integers(0, len(lines) - 1))]
        elif op == "insert":
            lines.insert(draw(st.integers(0, len(lines))), draw(junk_line))
        elif lines:
            at = draw(st.integers(0, len(lines) - 1))
            lines.insert(at, lines[at])
    data = ("\n".join(lines) + "\n").encode("utf-8")
    if draw(st.integers(0, 9)) == 0:  # now and then bytes that are not UTF-8, or not text at all
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    return data


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("inventory-fuzz")


def test_the_unmutated_example_loads() -> None:
    assert isinstance(load_inventory(REPO / "examples" / "inventory.yml"), Inventory)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=mutated_example())
@example(data=EXAMPLE.replace("      - id: uplink-a\n", "      - id: uplink-a\n        threshold: 02\n").encode())
@example(data=EXAMPLE.replace("    site: ams1\n", "", 1).encode())  # the KeyError 'site'
@example(data=EXAMPLE.replace("acme.example", "acm\xe9.example").encode("latin-1", errors="replace"))
@example(data=EXAMPLE.replace("  listen: 127.0.0.1:9839", "  listen: localhost").encode())
@example(data=EXAMPLE.replace("          outlets: [\"3\", \"4\"]", "          outlets: [\"\"]", 1).encode())
@example(data=EXAMPLE.replace("interval: 5m", "interval: 9999999999999y").encode())
@example(data=EXAMPLE.replace("{env: THREENINES_AUDIT_TOKEN}}", "{file: \"a\\0b\"}}").encode())
# found by this test in CI: a refused 70,000-character auth id was still listed whole in "unknown auth …; defined:"
@example(data=EXAMPLE.replace("  - id: ups-v2c", "  - id: '" + "y" * 70_000 + "'").encode())
def test_a_mutated_inventory_loads_or_is_refused_naming_the_file(workdir: Path, data: bytes) -> None:
    path = workdir / "inventory.yml"
    path.write_bytes(data)
    try:
        inventory = load_inventory(path)
    except ConfigError as err:
        assert str(path) in str(err).splitlines()[0]
        assert len(str(err)) < 20_000  # a message never quotes a huge value whole
    else:
        assert isinstance(inventory, Inventory) and inventory.customers
