"""`threenines check` asks the relay whether it offers STARTTLS when `smtp.require_tls` is true (the default): the
issue's relay without STARTTLS made every e-mail fail at run time while `check` passed. Real relays (aiosmtpd)
on 127.0.0.1, with and without STARTTLS; the real command."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.notify.sinks import make_ca, smtp_relay
from tests.support import VENV_BIN, free_port


def check(tmp: Path, smtp: str) -> subprocess.CompletedProcess[str]:
    inventory = tmp / "inventory.yml"
    inventory.write_text(f"""
notification:
  smtp: {smtp}
customers:
  - id: acme
    name: ACME
    timezone: UTC
    contacts: {{version: "1", notify: [{{email: noc@acme.test}}]}}
    ports: [{{id: p1, address: 192.0.2.1}}]
""")
    return subprocess.run([str(VENV_BIN / "threenines"), "check", "--config", str(inventory)],
                          capture_output=True, text=True, timeout=60)


def test_require_tls_with_a_relay_without_starttls_is_a_warning(tmp_path: Path) -> None:
    with smtp_relay() as plain:
        done = check(tmp_path, f"{{smarthost: '{plain.smarthost}', from: noc@provider.test}}")
    assert done.returncode == 0, done.stderr  # a warning: the relay may be fixed before the exporter runs
    assert f"the relay {plain.smarthost} does not offer STARTTLS and smtp.require_tls is true" in done.stderr
    assert "require_tls: false" in done.stderr
    assert plain.messages == []  # asked, nothing sent


def test_a_relay_offering_starttls_or_require_tls_off_gives_no_warning(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    with smtp_relay(ca) as tls:
        done = check(tmp_path, f"{{smarthost: '{tls.smarthost}', from: noc@provider.test, ca_file: '{ca.ca_file}'}}")
    assert done.returncode == 0 and "STARTTLS" not in done.stderr, done.stderr
    with smtp_relay() as plain:
        done = check(tmp_path, f"{{smarthost: '{plain.smarthost}', from: noc@provider.test, require_tls: false}}")
    assert done.returncode == 0 and "STARTTLS" not in done.stderr, done.stderr


@pytest.mark.parametrize("listening", [False, True])
def test_a_relay_that_cannot_be_asked_is_said_so_within_the_timeout(tmp_path: Path, listening: bool) -> None:
    port = free_port()
    with socket.socket() as silent:
        if listening:  # accepts the connection and never greets
            silent.bind(("127.0.0.1", port))
            silent.listen()
        started = time.monotonic()
        done = check(tmp_path, f"{{smarthost: '127.0.0.1:{port}', from: noc@provider.test}}")
        elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    expected = "did not answer within 5 s" if listening else "could not ask the relay 127.0.0.1"
    assert expected in done.stderr
    assert elapsed < 30  # bounded: the probe's 5 s plus the command's start
