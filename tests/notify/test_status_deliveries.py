"""`threenines status` shows each outage's delivery per designated contact, end to end on real processes: a real
`threenines serve` probing a port in a network namespace whose link the test cuts, an SMTP relay (aiosmtpd) as the
customer's e-mail contact, and Alertmanager's post to /alertmanager/deliver made by the test with the outage's
real determination (as tests/notify/test_serve_delivery.py does).

* relay up: the open outage's firing e-mail is delivered; status names the relay's queue id (the relay said
  `queued as QID0001`: the first message it took), the acceptance between the post and the relay's receipt of
  the message, and the delay from the determination;
* relay gone (a closed port): the e-mail fails with `connect`, is retried, and once the deadline passed the
  outage is a miss `undelivered` and the contact's row says the deadline passed.
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.audit.test_webhook import alert, payload
from tests.foundation.exporter_process import sample, scrape, serve
from tests.netns import customer_port
from tests.notify.sinks import smtp_relay
from tests.support import VENV_BIN, free_port, http_post, wait_until

pytestmark = pytest.mark.netns  # root: a network namespace per customer port
TOKEN = "status-deliveries-token"
CONTACT = "email:noc@acme.test"


def _inventory(tmp_path: Path, address: str, smarthost: str, deadline: str) -> Path:
    (tmp_path / "token").write_text(TOKEN)
    config = tmp_path / "inventory.yml"
    config.write_text(f"""
exporter: {{audit_token: {{file: {tmp_path / 'token'}}}}}
notification:
  smtp: {{smarthost: "{smarthost}", from: noc@provider.test, require_tls: false}}
customers:
  - id: acme
    name: ACME Hosting B.V.
    timezone: Europe/Amsterdam
    notification_deadline: {deadline}
    contacts: {{version: "st-1", notify: [{{email: noc@acme.test}}]}}
    ping: {{interval: 1s, threshold: 2, packets: 1, timeout: 400ms}}
    ports: [{{id: ns, address: "{address}"}}]
""")
    return config


def _status(config: Path, http_port: int, state: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "threenines"), "status", "--config", str(config), "--exporter",
                           f"http://127.0.0.1:{http_port}", "--state-dir", str(state), *extra],
                          capture_output=True, text=True, timeout=30, check=False)


def _open_outage(config: Path, http_port: int, state: Path) -> dict:
    done = _status(config, http_port, state, "--format", "json")
    assert done.returncode == 0, done.stderr
    [acme] = json.loads(done.stdout)
    [connectivity] = [s for s in acme["services"] if s["service"] == "connectivity"]
    [outage] = connectivity["open_outages"]
    return outage


def _determine(http_port: int, port) -> float:
    wait_until(lambda: sample(scrape(http_port), "threenines_service_known", target="ns") == 1, 20,
               what="the namespace port to answer")
    port.down()
    return wait_until(lambda: sample(scrape(http_port), "threenines_service_determined_timestamp_seconds",
                                     target="ns"), 20, what="the outage to be determined")


def _post(http_port: int, determined: float) -> None:
    status, reply = http_post(f"http://127.0.0.1:{http_port}/alertmanager/deliver",
                              payload("customer-acme", alert("acme", "ns", determined)),
                              headers={"Authorization": f"Bearer {TOKEN}"})
    assert (status, json.loads(reply)) == (200, {"recorded": 1, "queued": 1})


def test_status_shows_the_relays_queue_id_for_a_delivered_notification(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with smtp_relay() as relay, customer_port() as port:
        config = _inventory(tmp_path, port.address, relay.smarthost, "600s")
        proc, http_port = serve(tmp_path, config, state)
        with proc:
            determined = _determine(http_port, port)
            posted = time.time()
            _post(http_port, determined)
            wait_until(lambda: relay.messages, 20, what="the relay to take the e-mail")
            taken = time.time()
            outage = wait_until(lambda: (o := _open_outage(config, http_port, state))["deliveries"] and o, 10,
                                what="the delivery in status")
            text = _status(config, http_port, state).stdout
    [(_, recipients, _, _)] = relay.messages
    assert recipients == ["noc@acme.test"]
    [row] = outage["deliveries"]
    assert (row["event"], row["channel"], row["contact"], row["contact_version"], row["state"]) == (
        "firing", "email", CONTACT, "st-1", "delivered")
    assert "queued as QID0001" in row["receipt"] and "queue_id=QID0001" in row["receipt"]
    assert row["attempts"] == 1 and row["last_failure"] is None and row["deadline_passed"] is False
    accepted = datetime.fromisoformat(row["accepted_at"]).timestamp()  # printed to the second
    assert int(posted) - 1 <= accepted <= taken + 1
    # the delay from the alert's determination (its annotation, to the millisecond) to the relay's 250
    assert posted - determined - 1 <= row["delay_seconds"] <= taken - round(determined, 3) + 1
    assert outage["notification"].startswith("delivered to every contact at ")
    assert (f"    firing {CONTACT} (contacts st-1): delivered at {row['accepted_at']}, "
            f"{row['delay_seconds']:.0f} s after determination") in text
    assert "queue_id=QID0001" in text


def test_status_shows_a_failing_relay_with_its_reason_and_the_passed_deadline(tmp_path: Path) -> None:
    state = tmp_path / "state"
    closed = free_port()  # nothing listens there: every attempt is refused
    with customer_port() as port:
        config = _inventory(tmp_path, port.address, f"127.0.0.1:{closed}", "5s")
        proc, http_port = serve(tmp_path, config, state)
        with proc:
            determined = _determine(http_port, port)
            _post(http_port, determined)
            # Nobody fixes the relay: at the deadline the outage is a miss, decided from the delivery ledger.
            outage = wait_until(lambda: (o := _open_outage(config, http_port, state))["notification"].startswith(
                "MISSED") and o, 30, what="the deadline to pass undelivered")
            text = _status(config, http_port, state).stdout
    assert "(undelivered)" in outage["notification"]
    [row] = outage["deliveries"]
    assert (row["contact"], row["state"], row["accepted_at"], row["receipt"]) == (CONTACT, "failing", None, "")
    assert row["last_failure"].startswith(f"connect: cannot connect to 127.0.0.1:{closed}")
    assert row["attempts"] >= 1 and row["deadline_passed"] is True
    assert f"    firing {CONTACT} (contacts st-1): FAILING: connect: cannot connect to 127.0.0.1:{closed}" in text
    assert "deadline passed" in text
