"""Distinctive secrets grepped across everything the exporter and its commands write and return (issue 22).

One real `threenines serve` polls a real snmpd with SNMPv3 keys it does not know (authentication failures every
poll), takes webhook posts with wrong, missing and right tokens, good and broken payloads, and a reload whose
new key is too short; `check` and `poll` run with the same keys, and `serve` with a short key is refused. Not one
byte of any secret may appear in a log line, a traceback, an HTTP reply or a command's output.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.audit.test_webhook import alert, payload
from tests.foundation.exporter_process import sample, scrape, serve
from tests.snmp.agents import V3_USER, Agent, snmpd_v3
from tests.support import VENV_BIN, http_get, http_post, wait_until

AUDIT_TOKEN = "zq-AUDIT-7731-leakcheck"
AUTH_KEY = "zq-V3AUTH-5512-leakcheck"  # long enough, but not the agent's: every poll fails authentication
PRIV_KEY = "zq-V3PRIV-8820-leakcheck"
SHORT_KEY = "Zq#5k7"
SECRETS = (AUDIT_TOKEN, AUTH_KEY, PRIV_KEY, SHORT_KEY)
ENV = {"TN_LEAK_TOKEN": AUDIT_TOKEN, "TN_LEAK_AUTH": AUTH_KEY, "TN_LEAK_PRIV": PRIV_KEY}


@pytest.fixture(scope="module")
def v3_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    with snmpd_v3(tmp_path_factory.mktemp("snmpd-leak")) as agent:
        yield agent


def inventory(agent: Agent, auth_key: str = "{env: TN_LEAK_AUTH}") -> str:
    return f"""exporter: {{audit_token: {{env: TN_LEAK_TOKEN}}}}
auth:
  - {{id: v3, version: "3", username: {V3_USER}, auth_protocol: SHA256, auth_key: {auth_key},
     priv_key: {{env: TN_LEAK_PRIV}}}}
devices:
  - {{id: pdu, type: pdu, address: "{agent.address}", auth: v3, interval: 1s, timeout: 300ms, retries: 0}}
customers:
  - id: acme
    timezone: UTC
    contacts: {{version: "1", notify: [{{email: noc@acme.example}}]}}
    ping: {{interval: 2s, threshold: 2, packets: 1, timeout: 500ms}}
    ports: [{{id: uplink-a, address: 127.0.92.1}}]
    power: {{interval: 1s, feeds: [{{id: A, pdu: pdu, outlets: ["1"]}}]}}
"""


def leaks(text: str | bytes) -> list[str]:
    data = text.encode(errors="surrogateescape") if isinstance(text, str) else text
    return [s for s in SECRETS if s.encode() in data or s.encode().hex().encode() in data]


def test_no_secret_in_any_log_reply_or_output(tmp_path: Path, v3_agent: Agent) -> None:
    config = tmp_path / "inventory.yml"
    config.write_text(inventory(v3_agent))
    outputs: list[str | bytes] = []
    os.environ.update(ENV)
    try:
        proc, port = serve(tmp_path, config)
        with proc as exporter:
            base = f"http://127.0.0.1:{port}"
            wait_until(lambda: (sample(scrape(port), "threenines_device_poll_errors_total", device="pdu",
                                       reason="auth") or 0) >= 2, 30, what="two failed v3 polls")
            hook = f"{base}/alertmanager/webhook"
            good = payload("customer-acme", alert("acme", "uplink-a", time.time() - 60))
            for headers, body in (({}, good), ({"Authorization": "Bearer wrong"}, good),
                                  ({"Authorization": f"Basic {AUDIT_TOKEN}"}, good),
                                  ({"Authorization": f"Bearer {AUDIT_TOKEN}"}, b"{not json"),
                                  ({"Authorization": f"Bearer {AUDIT_TOKEN}"}, b"[" * 100_000),
                                  ({"Authorization": f"Bearer {AUDIT_TOKEN}"}, good.replace(b"uplink-a", b"x")),
                                  ({"Authorization": f"Bearer {AUDIT_TOKEN}"}, good)):
                outputs.append(http_post(hook, body, headers=headers)[1])
            # a reload whose new key is too short: refused, located, and the key not quoted
            (tmp_path / "short-key").write_text(SHORT_KEY + "\n")
            config.write_text(inventory(v3_agent, auth_key=f"{{file: {tmp_path / 'short-key'}}}"))
            status, reply = http_post(f"{base}/-/reload")
            assert status == 500 and b"auth[0].auth_key: file:" in reply and b"fewer than 8 characters" in reply
            outputs.append(reply)
            os.kill(exporter.pid, signal.SIGHUP)
            wait_until(lambda: exporter.log().count("reload refused") >= 2, 10,
                       what="the SIGHUP reload to be refused too")
            for path in ("/metrics", "/healthz", "/", "/nothing"):
                outputs.append(http_get(base + path)[1])
            exporter.stop()  # its shutdown lines count too
        log = exporter.log_path.read_bytes()
        assert b"authentication failed" in log  # the polls did fail, and said so
        outputs.append(log)

        config.write_text(inventory(v3_agent))
        threenines = str(VENV_BIN / "threenines")
        runs = [
            [threenines, "check", "--config", str(config)],
            [threenines, "poll", "--address", v3_agent.address, "--v3-user", V3_USER, "--v3-auth-protocol",
             "SHA256", "--timeout", "0.5", "--retries", "0"],
            [threenines, "poll", "--address", v3_agent.address, "--v3-user", V3_USER, "--json", "--timeout", "0.5",
             "--retries", "0"],
        ]
        env = {**os.environ, "THREENINES_V3_AUTH_KEY": AUTH_KEY, "THREENINES_V3_PRIV_KEY": PRIV_KEY}
        for argv in runs:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, check=False)
            outputs += [result.stdout, result.stderr]
        short = {**env, "TN_LEAK_AUTH": SHORT_KEY, "THREENINES_V3_AUTH_KEY": SHORT_KEY}
        for argv in ([threenines, "serve", "--config", str(config), "--listen", "127.0.0.1:0", "--state-dir",
                      str(tmp_path / "state-short")], runs[0], runs[1]):
            result = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=short, check=False)
            assert result.returncode != 0
            assert "fewer than 8 characters" in result.stderr
            outputs += [result.stdout, result.stderr]
    finally:
        for name in ENV:
            os.environ.pop(name, None)
    found = {secret for text in outputs for secret in leaks(text)}
    assert found == set()
    assert not [text for text in outputs if "Traceback" in str(text)]
