"""Inventory inputs that crashed `check` or `serve`, passed silently, or were explained wrongly (issue 22): each is
now refused with its file, line, field and what to write instead, and `check` reports every error at once."""

from __future__ import annotations

import socket
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.foundation.exporter_process import inventory_text
from tests.foundation.test_inventory import BASE, error_of, write
from tests.support import VENV_BIN, http_get, running
from threenines.cli import main
from threenines.config.configfile import ConfigError, ConfigErrors
from threenines.config.inventory_load import load_inventory
from threenines.serve.httpserver import ExporterHTTPServer
from threenines.serve.process import split_listen

SITES = "sites:\n  - id: ams1\n"
AUTH_AND_PDU = textwrap.dedent("""\
    auth:
      - {id: v2, version: 2c, community: {env: COMMUNITY}}
    devices:
      - {id: pdu-a, type: pdu, address: 127.0.0.1, auth: v2}
    """)


def check(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["check", "--config", str(write(tmp_path, text))])
    return code, capsys.readouterr().err


# -- sites ---------------------------------------------------------------------------------------------------


def test_a_customer_without_a_site_when_sites_are_defined_is_located(tmp_path: Path) -> None:
    err = error_of(tmp_path, SITES + BASE)  # was: KeyError 'site'
    assert err.line == 4 and err.path == "customers[0]"
    assert "missing site: the inventory defines sites (ams1)" in err.message and "add site: ams1" in err.message


def test_a_device_without_a_site_when_sites_are_defined_is_located(tmp_path: Path) -> None:
    text = SITES + BASE.replace("    timezone:", "    site: ams1\n    timezone:") + AUTH_AND_PDU
    err = error_of(tmp_path, text)  # was: KeyError 'site'
    assert err.path == "devices[0]" and "missing site" in err.message


def test_check_says_which_site_is_missing_without_a_traceback(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, err = check(tmp_path, SITES + BASE, capsys)
    assert code == 1 and "inventory.yml:4 customers[0]: missing site" in err


# -- encoding ------------------------------------------------------------------------------------------------


def test_a_file_that_is_not_utf8_names_the_line_and_the_fix(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "inventory.yml"
    path.write_bytes(BASE.replace("noc@acme.example", "noc@acm\xe9.example").encode("latin-1"))
    with pytest.raises(ConfigError) as info:  # was: UnicodeDecodeError
        load_inventory(path)
    assert info.value.line == 7
    assert "byte 0xe9 in column 25 is not UTF-8: save the file as UTF-8" in str(info.value)
    assert main(["check", "--config", str(path)]) == 1
    assert "inventory.yml:7: byte 0xe9" in capsys.readouterr().err


@pytest.mark.parametrize("character", ["\x00", "\x07", "\ufffe"])
def test_a_character_yaml_refuses_is_a_located_error(tmp_path: Path, character: str) -> None:
    err = error_of(tmp_path, BASE.replace("Europe/Amsterdam", f"Europe/Amsterdam{character}"))
    assert err.line == 3 and f"U+{ord(character):04X}" in err.message


# -- exporter.listen -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("listen", "bind"), [
    ("localhost", ("localhost", 9839)),  # passed check, then serve crashed: ValueError in split_listen
    ("'[::1]'", ("::1", 9839)),  # passed check, then serve crashed
    ("'[::1]:9840'", ("::1", 9840)),  # passed check, then serve could not bind IPv6 at all
    ("localhost:9841", ("localhost", 9841)),
    ("127.0.0.1:9839", ("127.0.0.1", 9839)),
])
def test_every_listen_address_check_accepts_is_one_serve_can_bind(tmp_path: Path, listen: str,
                                                                  bind: tuple[str, int]) -> None:
    inventory = load_inventory(write(tmp_path, f"exporter:\n  listen: {listen}\n" + BASE))
    assert split_listen(inventory.exporter.listen) == bind


@pytest.mark.parametrize(("listen", "message"), [
    ("'::1'", "'::1' is not HOST or HOST:PORT: write an IPv6 address in brackets, e.g. [::1]:9839"),
    ("'[localhost]:9839'", "'localhost' in brackets is not an IPv6 address"),
    ("127.0.0.1:99999", "port 99999 is out of range 1-65535"),
    ("'exporter host:9839'", "is not HOST or HOST:PORT"),
    ("'bad_host!:9839'", "'bad_host!' is neither an IP address nor a host name"),
])
def test_a_listen_address_serve_cannot_bind_is_refused_with_the_fix(tmp_path: Path, listen: str,
                                                                   message: str) -> None:
    err = error_of(tmp_path, f"exporter:\n  listen: {listen}\n" + BASE)
    assert err.line == 2 and err.path == "exporter.listen" and message in err.message


def test_split_listen_names_the_flag_for_a_bad_value() -> None:
    with pytest.raises(ConfigError, match=r"^--listen: port 99999 is out of range 0-65535$"):
        split_listen("127.0.0.1:99999")  # was: OverflowError from bind(), a traceback
    assert split_listen(":9839") == ("127.0.0.1", 9839)
    assert split_listen("127.0.0.1:0") == ("127.0.0.1", 0)


def test_serve_with_an_unbindable_listen_flag_exits_with_a_message(tmp_path: Path) -> None:
    config = tmp_path / "inventory.yml"
    config.write_text(inventory_text({"lo": "127.0.64.2"}))
    result = subprocess.run([str(VENV_BIN / "threenines"), "serve", "--config", str(config), "--listen",
                             "127.0.0.1:99999", "--state-dir", str(tmp_path / "state")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "--listen: port 99999 is out of range 0-65535" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_http_server_binds_a_host_name_and_an_ipv6_literal() -> None:
    for host in ("localhost", "::1"):
        server = ExporterHTTPServer(host, 0, lambda: b"", lambda: (True, "ok"))
        try:
            server.start()
            bound, port = server.address
            url = f"http://[{bound}]:{port}/healthz" if ":" in bound else f"http://{bound}:{port}/healthz"
            assert http_get(url) == (200, b"ok\n")
        finally:
            server.stop()


def test_serve_answers_on_a_bracketed_ipv6_listen_address(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "inventory.yml"
    config.write_text(f"exporter:\n  listen: '[::1]:{port}'\n" + inventory_text({"lo": "127.0.64.3"}))
    argv = [str(VENV_BIN / "threenines"), "serve", "--config", str(config), "--state-dir", str(tmp_path / "state"),
            "--tick", "1"]
    with running(argv, tmp_path / "exporter.log", ready_url=f"http://[::1]:{port}/healthz"):
        status, body = http_get(f"http://[::1]:{port}/metrics")
        assert status == 200 and b"threenines_customer_info" in body


# -- port and device addresses -------------------------------------------------------------------------------


@pytest.mark.parametrize(("address", "reason"), [
    ("0.0.0.0", "0.0.0.0 is the unspecified address: what is sent to it reaches this host itself"),
    ("'::'", ":: is the unspecified address"),
    ("'::ffff:0.0.0.0'", "is the unspecified address"),
    ("224.0.0.1", "224.0.0.1 is a multicast address: any member of the group (or none) would answer"),
    ("'ff02::1'", "ff02::1 is a multicast address"),
    ("255.255.255.255", "255.255.255.255 is the broadcast address: any host on the link (or none) would answer"),
])
def test_a_port_address_that_is_not_one_hosts_is_refused_with_the_reason(tmp_path: Path, address: str,
                                                                         reason: str) -> None:
    err = error_of(tmp_path, BASE.replace("127.0.0.1", address))  # was: accepted (0.0.0.0 pings localhost)
    assert err.line == 10 and err.path == "customers[0].ports[0].address" and reason in err.message


def test_a_device_address_that_is_not_one_hosts_is_refused(tmp_path: Path) -> None:
    err = error_of(tmp_path, BASE + AUTH_AND_PDU.replace("address: 127.0.0.1", "address: '0.0.0.0:161'"))
    assert err.path == "devices[0].address" and "unspecified address" in err.message


# -- durations -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "path", "message"), [
    (BASE + "        interval: 1ms\n", "customers[0].ports[0].interval", "'1ms' must be between 1s and 1d"),
    (BASE + "        interval: 9999999999999y\n", "customers[0].ports[0].interval",
     "'9999999999999y' must be between 1s and 1d"),
    (BASE + "        interval: 2d\n", "customers[0].ports[0].interval", "'2d' must be between 1s and 1d"),
    (BASE + "        timeout: 1ms\n", "customers[0].ports[0].timeout", "'1ms' must be between 10ms and 1m"),
    (BASE + "        packet_interval: 1ms\n", "customers[0].ports[0].packet_interval",
     "'1ms' must be between 10ms and 10s"),
    (BASE + "    ping: {interval: 1ms}\n", "customers[0].ping.interval", "'1ms' must be between 1s and 1d"),
    ("defaults:\n  ping: {interval: 9999999999999y}\n" + BASE, "defaults.ping.interval", "between 1s and 1d"),
    ("defaults:\n  power: {interval: 1ms}\n" + BASE, "defaults.power.interval", "between 1s and 1d"),
    (BASE + "    notification_deadline: 1ms\n", "customers[0].notification_deadline",
     "'1ms' must be between 1s and 1d"),
    (BASE + "    power: {interval: 9999999999999y, feeds: [{id: A, pdu: pdu-a, outlets: ['1']}]}\n" + AUTH_AND_PDU,
     "customers[0].power.interval", "between 1s and 1d"),
    (BASE + AUTH_AND_PDU.replace("auth: v2}", "auth: v2, interval: 1ms}"), "devices[0].interval",
     "'1ms' must be between 1s and 1d"),
    (BASE + AUTH_AND_PDU.replace("auth: v2}", "auth: v2, timeout: 1ms}"), "devices[0].timeout",
     "'1ms' must be between 10ms and 1m"),
    (BASE + AUTH_AND_PDU.replace("auth: v2}", "auth: v2, interval: 5s, timeout: 5s}"), "devices[0].timeout",
     "the SNMP timeout (5s) must be shorter than the poll interval (5s)"),
])
def test_a_duration_outside_its_bounds_is_refused(tmp_path: Path, text: str, path: str, message: str) -> None:
    err = error_of(tmp_path, text)  # was: accepted, however short or long
    assert err.path == path and message in err.message


def test_the_bounds_themselves_are_accepted(tmp_path: Path) -> None:
    text = BASE + "        interval: 1s\n        timeout: 10ms\n        packets: 2\n        packet_interval: 10ms\n" \
        + "    notification_deadline: 1d\n" \
        + "    power: {interval: 1d, feeds: [{id: A, pdu: pdu-a, outlets: ['1']}]}\n" \
        + AUTH_AND_PDU.replace("auth: v2}", "auth: v2, interval: 1s, timeout: 999ms}")
    inventory = load_inventory(write(tmp_path, text))
    policy = inventory.customers[0].ports[0].policy
    assert (policy.interval, policy.timeout, policy.packet_interval) == (1, 0.01, 0.01)
    assert inventory.devices[0].timeout == 0.999


# -- label values --------------------------------------------------------------------------------------------


def test_an_empty_outlet_is_refused(tmp_path: Path) -> None:
    text = BASE + "    power: {feeds: [{id: A, pdu: pdu-a, outlets: ['1', '']}]}\n" + AUTH_AND_PDU
    err = error_of(tmp_path, text)  # was: accepted, an outlet that matches nothing
    assert err.path == "customers[0].power.feeds[0].outlets[1]" and err.message == "must not be empty"


@pytest.mark.parametrize(("old", "new", "path"), [
    ("  - id: acme\n", "  - id: acme\n    name: " + "x" * 10_000_000 + "\n", "customers[0].name"),
    ("  - id: acme\n", "  - id: " + "a" * 10_000_000 + "\n", "customers[0].id"),
    ("version: \"1\"", "version: " + "v" * 10_000_000, "customers[0].contacts.version"),
])
def test_a_10_mb_label_value_is_refused_in_a_short_message(tmp_path: Path, old: str, new: str, path: str) -> None:
    err = error_of(tmp_path, BASE.replace(old, new))  # was: a 10 MB name accepted, a 10 MB id quoted whole
    assert err.path == path
    assert "(10000000 characters)" in err.message and len(str(err)) < 400


@pytest.mark.parametrize(("old", "new", "path", "message"), [
    ("  - id: acme\n", "  - id: acme\n    name: " + "n" * 257 + "\n", "customers[0].name", "longer than 256"),
    ("  - id: acme\n", "  - id: acme\n    name: \"ACME\\nEvil\"\n", "customers[0].name", "U+000A"),
    ("version: \"1\"", "version: " + "v" * 129, "customers[0].contacts.version", "longer than 128"),
    ("  - id: acme\n", "  - id: " + "a" * 64 + "\n", "customers[0].id", "at most 63 characters"),
])
def test_label_values_are_bounded(tmp_path: Path, old: str, new: str, path: str, message: str) -> None:
    err = error_of(tmp_path, BASE.replace(old, new))
    assert err.path == path and message in err.message


def test_label_values_at_their_bounds_are_accepted(tmp_path: Path) -> None:
    text = BASE.replace("  - id: acme\n", "  - id: " + "a" * 63 + "\n    name: " + "n" * 256 + "\n")
    customer = load_inventory(write(tmp_path, text.replace('version: "1"', "version: " + "v" * 128))).customers[0]
    assert (len(customer.id), len(customer.name), len(customer.contacts.version)) == (63, 256, 128)


# -- whole numbers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "message"), [
    # PyYAML (YAML 1.1) resolves 02 and 010 as octal ints and 08 as a string; YAML 1.2 reads all three as
    # decimal. Refused either way, and said so: "not a whole number" was wrong.
    ("02", "'02' has a leading zero, which YAML 1.1 reads as octal (010 is 8) and YAML 1.2 as decimal: "
           "write 2 without it"),
    ("010", "write 10 without it"),
    ("08", "'08' has a leading zero"),  # was: accepted as 8
    ("0x2", "'0x2' is not a whole number: write decimal digits, e.g. 2"),  # was: accepted as 2
    ("1_0", "'1_0' is not a whole number"),  # was: accepted as 10
    ("2.0", "'2.0' is not a whole number"),
])
def test_a_threshold_that_is_not_plain_decimal_is_explained(tmp_path: Path, value: str, message: str) -> None:
    err = error_of(tmp_path, BASE + f"        threshold: {value}\n")
    assert err.line == 11 and err.path == "customers[0].ports[0].threshold" and message in err.message


@pytest.mark.parametrize(("value", "threshold"), [("2", 2), ("'3'", 3), ("+4", 4), ("100", 100)])
def test_a_plain_decimal_threshold_is_read(tmp_path: Path, value: str, threshold: int) -> None:
    inventory = load_inventory(write(tmp_path, BASE + f"        threshold: {value}\n"))
    assert inventory.customers[0].ports[0].policy.threshold == threshold


# -- every error at once -------------------------------------------------------------------------------------


def test_check_reports_every_error_in_the_file_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = BASE.replace("127.0.0.1", "10.0.0.300") + (
        "      - id: backup\n"
        "        address: 127.0.0.2\n"
        "        interval: 1ms\n"
        "  - id: globex\n"
        "    timezone: Mars/Olympus\n"
        "    contact: {}\n"
        "    ports: [{id: p, address: 0.0.0.0}]\n"
    ) + AUTH_AND_PDU.replace("auth: v2}", "auth: v3}")
    code, err = check(tmp_path, text, capsys)
    assert code == 1
    assert err.startswith(f"error: {tmp_path / 'inventory.yml'}: 7 errors\n")  # was: the first one only
    listed = [line.strip().replace(f"{tmp_path}/", "") for line in err.splitlines()[1:]]
    assert [line.split(": ", 1)[0] for line in listed] == [
        "inventory.yml:10 customers[0].ports[0].address",
        "inventory.yml:13 customers[0].ports[1].interval",
        "inventory.yml:16 customers[1].contact",  # unknown key, before the required key it misspells
        "inventory.yml:14 customers[1]",
        "inventory.yml:15 customers[1].timezone",
        "inventory.yml:17 customers[1].ports[0].address",
        "inventory.yml:21 devices[0].auth",
    ]
    assert "'10.0.0.300' is not an IP address" in listed[0] and "missing required key 'contacts'" in listed[3]
    assert "unknown auth 'v3'; defined: v2" in listed[6]
    with pytest.raises(ConfigErrors) as info:
        load_inventory(tmp_path / "inventory.yml")
    assert len(info.value.errors) == 7 and info.value.line == 10  # the first error's location, as before


def test_one_mistake_is_reported_once(tmp_path: Path) -> None:
    # A device with a bad address is not also "unknown" to the feed that names it, nor to its downstream device.
    text = BASE + "    power: {feeds: [{id: A, pdu: pdu-a, outlets: ['1']}]}\n" + AUTH_AND_PDU.replace(
        "address: 127.0.0.1", "address: 224.0.0.9") + "  - {id: pdu-b, type: pdu, address: 127.0.0.1, auth: v2, " \
        "input: pdu-a}\n"
    err = error_of(tmp_path, text)
    assert not isinstance(err, ConfigErrors)
    assert err.path == "devices[0].address" and "multicast" in err.message
