"""Every inventory error names the file, the line, the field path and what would be valid."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from threenines.cli import main
from threenines.config.configfile import ConfigError, format_duration, parse_duration
from threenines.config.inventory_load import load_inventory

REPO = Path(__file__).resolve().parents[2]

BASE = """\
customers:
  - id: acme
    timezone: Europe/Amsterdam
    contacts:
      version: "1"
      notify:
        - email: noc@acme.example
    ports:
      - id: uplink
        address: 127.0.0.1
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inventory.yml"
    path.write_text(textwrap.dedent(text))
    return path


def error_of(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_inventory(write(tmp_path, text))
    return info.value


def test_the_commented_example_inventory_is_valid() -> None:
    inventory = load_inventory(REPO / "examples" / "inventory.yml")
    assert [c.id for c in inventory.customers] == ["acme", "globex"]
    globex = inventory.customer("globex")
    assert globex.ports[0].policy.interval == 60 and globex.ports[0].policy.threshold == 3
    acme = inventory.customer("acme")
    assert acme.ports[0].policy.interval == 300 and acme.ports[0].policy.threshold == 2
    assert acme.ports[1].policy.timeout == 1.0
    assert acme.power is not None and [f.id for f in acme.power.feeds] == ["A", "B"]
    assert acme.objective == pytest.approx(0.999)
    assert acme.notification_deadline == 900


def test_a_bad_ip_address_names_file_line_and_field(tmp_path: Path) -> None:
    err = error_of(tmp_path, BASE.replace("127.0.0.1", "10.0.0.300"))
    assert err.source.endswith("inventory.yml")
    assert err.line == 10
    assert err.path == "customers[0].ports[0].address"
    assert str(err).endswith("inventory.yml:10 customers[0].ports[0].address: '10.0.0.300' is not an IP address")


def test_duplicate_customer_ids_are_an_error_naming_the_first(tmp_path: Path) -> None:
    doubled = BASE + BASE.split("\n", 1)[1]
    err = error_of(tmp_path, doubled)
    assert err.path == "customers[1]"
    assert err.line == 11
    assert "duplicate customer id 'acme' (first defined on line 2)" in str(err)


def test_duplicate_port_ids_are_an_error(tmp_path: Path) -> None:
    text = BASE + "      - id: uplink\n        address: 127.0.0.2\n"
    err = error_of(tmp_path, text)
    assert err.path == "customers[0].ports[1]" and "duplicate port id 'uplink'" in str(err)


def test_duplicate_yaml_keys_are_an_error(tmp_path: Path) -> None:
    err = error_of(tmp_path, BASE.replace("    timezone: Europe/Amsterdam\n",
                                          "    timezone: Europe/Amsterdam\n    timezone: UTC\n"))
    assert err.line == 4 and err.path == "customers[0].timezone" and "duplicate key" in str(err)


def test_unknown_keys_list_the_valid_ones(tmp_path: Path) -> None:
    err = error_of(tmp_path, BASE.replace("        address: 127.0.0.1", "        adress: 127.0.0.1"))
    assert err.line == 10 and err.path == "customers[0].ports[0].adress"
    assert "unknown key 'adress'" in str(err) and "address" in err.message


@pytest.mark.parametrize(("value", "expected"), [
    ("5", "'5' has no unit: write a duration such as 5s or 5m"),
    ("5 minutes", "is not a duration"),
    ("0s", "'0s' must be between 1s and 1d"),
])
def test_bad_durations_are_errors(tmp_path: Path, value: str, expected: str) -> None:
    err = error_of(tmp_path, BASE + f"        interval: {value}\n")
    assert err.line == 11 and err.path == "customers[0].ports[0].interval"
    assert expected in str(err)


def test_a_probe_longer_than_its_interval_is_refused(tmp_path: Path) -> None:
    err = error_of(tmp_path, BASE + "        interval: 2s\n        timeout: 2s\n")
    assert err.path == "customers[0].ports[0]" and "shorter than the interval" in str(err)


def test_unknown_time_zone_suggests_one(tmp_path: Path) -> None:
    err = error_of(tmp_path, BASE.replace("Europe/Amsterdam", "Amsterdam"))
    assert err.line == 3 and err.path == "customers[0].timezone"
    assert "Europe/Amsterdam" in str(err)


def test_inline_secrets_are_refused(tmp_path: Path) -> None:
    text = BASE + textwrap.dedent("""\
        auth:
          - id: v2
            version: 2c
            community: public
        """)
    err = error_of(tmp_path, text)
    assert err.path == "auth[0].community" and err.line == 14
    assert "{env: VARIABLE}" in str(err) and "public" not in str(err).split(":", 2)[-1].replace("'public'", "")


def test_a_feed_on_an_undefined_pdu_is_an_error(tmp_path: Path) -> None:
    text = BASE + '    power:\n      feeds:\n        - {id: A, pdu: pdu-x, outlets: ["1"]}\n'
    err = error_of(tmp_path, text)
    assert err.path == "customers[0].power.feeds[0].pdu" and "unknown device 'pdu-x'" in str(err)


def test_power_inputs_must_not_loop(tmp_path: Path) -> None:
    text = BASE + textwrap.dedent("""\
        auth:
          - {id: v2, version: 2c, community: {env: COMMUNITY}}
        devices:
          - {id: ups-a, type: ups, address: 127.0.0.1, auth: v2, input: pdu-a}
          - {id: pdu-a, type: pdu, address: 127.0.0.1, auth: v2, input: ups-a}
        """)
    err = error_of(tmp_path, text)
    assert err.path == "devices[0].input" and "loop: ups-a -> pdu-a -> ups-a" in str(err)


def test_v3_auth_needs_its_keys(tmp_path: Path) -> None:
    text = BASE + textwrap.dedent("""\
        auth:
          - {id: v3, version: "3", username: mon, security_level: authPriv, auth_key: {env: K}}
        """)
    err = error_of(tmp_path, text)
    assert err.path == "auth[0]" and "authPriv needs priv_key" in str(err)


def test_yaml_syntax_errors_name_the_line(tmp_path: Path) -> None:
    err = error_of(tmp_path, BASE.replace("    ports:\n", "    ports: [\n"))
    assert err.line >= 8 and "YAML syntax error" in str(err)


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read: No such file"):
        load_inventory(tmp_path / "nope.yml")


def test_check_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, BASE)
    assert main(["check", "--config", str(good)]) == 0
    assert "OK — 1 customers, 1 ports" in capsys.readouterr().out
    good.write_text(BASE.replace("127.0.0.1", "not-an-ip"))
    assert main(["check", "--config", str(good)]) == 1
    assert "inventory.yml:10 customers[0].ports[0].address" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25),
                                                ("1d", 86400)])
def test_durations_round_trip(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds
