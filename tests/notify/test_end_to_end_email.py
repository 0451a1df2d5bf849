"""The issue's first case on real processes, all on 127.0.0.1: exporter + Prometheus + Alertmanager (Debian's, with
the generated config) + an SMTP relay (aiosmtpd) as the customer's e-mail contact; a port silenced with nftables.

The relay offers no STARTTLS while `smtp.require_tls` is true (the default): nothing is sent, the delivery ledger
records each refusal, ThreeninesNotificationOverdue fires before the deadline and the deadline becomes a miss —
although Alertmanager's dispatch reached the exporter. Then the relay is fixed: the next retry delivers, the
ledger records the relay's receipt at the real delivery time (after the deadline: the miss stays, counted once)
and the overdue alert clears.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from tests.alertmanager.test_end_to_end import PROMETHEUS, start_alertmanager
from tests.foundation.exporter_process import sample, scrape
from tests.foundation.test_ledger_faults import silent
from tests.notify.sinks import make_ca, smtp_relay
from tests.support import REPO, VENV_BIN, free_port, http_get, running, wait_until
from threenines.alerting.alertmanager_config import Options, render, write
from threenines.config.inventory_load import load_inventory

pytestmark = pytest.mark.netns  # root: nftables
TOKEN = "e2e-delivery-token"
# The notifier retries 10, 30, 70 s after the first refusal (notify.worker.BACKOFF): with the deadline at 25 s the
# relay is fixed before the 30 s retry, which delivers (at 40 s it waited for the 70 s one).
DEADLINE = 25.0


def firing(prometheus: int, name: str) -> list[dict]:
    status, body = http_get(f"http://127.0.0.1:{prometheus}/api/v1/alerts")
    assert status == 200
    return [a for a in json.loads(body)["data"]["alerts"] if a["labels"]["alertname"] == name
            and a["state"] == "firing"]


def ledger(state: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(f"file:{state / 'delivery.sqlite'}?mode=ro", uri=True) as db:
        return db.execute(sql).fetchall()


def misses(state: Path) -> list[tuple]:
    with sqlite3.connect(f"file:{state / 'audit.sqlite'}?mode=ro", uri=True) as db:
        return db.execute("SELECT determined_at, deadline_at, reason FROM misses").fetchall()


def month_line(message: EmailMessage, determined: float, first_failed: float) -> None:
    """The firing e-mail states the month's availability so far as of the determination, in the contract's month
    (Amsterdam): the state dir is new, so this outage — first failed probe to determination — is all the month
    holds. (elapsed − outage) / elapsed, rounded down to 0.001 %."""
    zone = ZoneInfo("Europe/Amsterdam")
    as_of = round(determined, 3)  # the alert's determined_at annotation ("%.3f")
    local = datetime.fromtimestamp(as_of, zone)
    start = datetime(local.year, local.month, 1, tzinfo=zone)
    elapsed = as_of - start.timestamp()
    expected = math.floor(100_000 * (elapsed - (as_of - first_failed)) / elapsed) / 1000
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    body = text.get_content()
    assert f"  Availability:       {expected:.3f} % this month so far (provisional)" in body, body
    assert f"from {start:%Y-%m-%d %H:%M:%S %Z} to {local:%Y-%m-%d %H:%M:%S %Z} (the determination)" in body
    assert "It is provisional: your monthly statement decides" in body
    assert f"<td>{expected:.3f} % this month so far (provisional)</td>" in html.get_content()


def test_an_email_the_relay_never_accepts_pages_the_noc_and_is_a_miss_then_a_late_delivery(tmp_path: Path) -> None:
    address = f"127.0.{90 + os.getpid() % 50}.{10 + os.getpid() % 200}"
    exporter_port, prom_port, am_port = free_port(), free_port(), free_port()
    ca = make_ca(tmp_path)
    state = tmp_path / "state"
    (tmp_path / "token").write_text(TOKEN)
    with smtp_relay() as plain:  # no STARTTLS
        inventory = tmp_path / "inventory.yml"
        inventory.write_text(f"""
exporter: {{audit_token: {{file: {tmp_path / 'token'}}}}}
notification:
  audit_webhook: {{url: "http://127.0.0.1:{exporter_port}/alertmanager/webhook", token: {{file: {tmp_path / 'token'}}}}}
  smtp: {{smarthost: "127.0.0.1:{plain.port}", from: noc@provider.test, ca_file: "{ca.ca_file}"}}
customers:
  - id: acme
    name: ACME Hosting B.V.
    timezone: Europe/Amsterdam
    notification_deadline: {DEADLINE:g}s
    contacts: {{version: "e2e-1", notify: [{{email: noc@acme.test}}]}}
    ping: {{interval: 1s, threshold: 2, packets: 1, timeout: 400ms}}
    ports: [{{id: uplink, address: "{address}"}}]
""")
        am_config = tmp_path / "alertmanager" / "alertmanager.yml"
        am_config.parent.mkdir()
        options = Options(secrets_dir=str(tmp_path), group_wait=1, group_interval=2, repeat_interval=3600)
        write(am_config, render(load_inventory(inventory), options), options)
        prom_config = tmp_path / "prometheus.yml"
        prom_config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in sorted((REPO / "prometheus" / "rules").glob("*.yml"))],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
            "scrape_configs": [{"job_name": "threenines",
                                "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}],
        }))
        exporter_argv = [str(VENV_BIN / "threenines"), "serve", "--config", str(inventory), "--listen",
                         f"127.0.0.1:{exporter_port}", "--state-dir", str(state), "--tick", "1"]
        prom_argv = [PROMETHEUS, f"--config.file={prom_config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                     f"--web.listen-address=127.0.0.1:{prom_port}", "--rules.alert.resend-delay=1s"]
        alertmanager = start_alertmanager(tmp_path, am_config, am_port)
        try:
            with running(exporter_argv, tmp_path / "exporter.log", f"http://127.0.0.1:{exporter_port}/healthz"), \
                    running(prom_argv, tmp_path / "prometheus.log", f"http://127.0.0.1:{prom_port}/-/ready"):
                wait_until(lambda: sample(scrape(exporter_port), "threenines_service_known", target="uplink") == 1,
                           20, what="the port to answer")
                with silent(address):
                    determined = wait_until(lambda: sample(scrape(exporter_port),
                                                           "threenines_service_determined_timestamp_seconds",
                                                           target="uplink"), 20, what="the determination")
                    first_failed = sample(scrape(exporter_port), "threenines_service_outage_start_timestamp_seconds",
                                          target="uplink")
                    # 1. Alertmanager's post reaches the exporter; the relay refuses, nothing is sent.
                    wait_until(lambda: len(ledger(state, "SELECT 1 FROM attempts WHERE reason = 'tls_required'"))
                               >= 2, 30, what="refused deliveries on record")
                    assert plain.messages == []
                    # 2. The NOC is paged before the deadline, though the audit has the dispatch.
                    [overdue] = wait_until(lambda: firing(prom_port, "ThreeninesNotificationOverdue"), DEADLINE,
                                           what="ThreeninesNotificationOverdue")
                    assert overdue["labels"]["target"] == "uplink"
                    active_at = overdue["activeAt"]
                    assert sample(scrape(exporter_port), "threenines_notification_dispatches_total",
                                  customer="acme", receiver="customer-acme") >= 1
                    # 3. Nobody fixed it: at the deadline it is a miss, decided from the delivery ledger.
                    [(miss_determined, deadline_at, reason)] = wait_until(lambda: misses(state), DEADLINE + 10,
                                                                          what="the miss")
                    assert reason == "undelivered" and deadline_at == pytest.approx(determined + DEADLINE, abs=0.01)
                    assert datetime.fromisoformat(active_at.replace("Z", "+00:00")).timestamp() < deadline_at
                    # 4. The relay is fixed (STARTTLS with a certificate from the CA the inventory names): the next
                    # retry delivers, recorded with the relay's receipt at the real time.
                    plain_port = plain.port
                    plain.stop_for_swap()
                    with smtp_relay(ca, port=plain_port) as fixed:
                        rows = wait_until(lambda: ledger(state, "SELECT accepted_at, receipt FROM deliveries WHERE "
                                                                "event = 'firing' AND accepted_at IS NOT NULL"),
                                          200, interval=1, what="the retry after the fix to deliver")
                        [(accepted_at, receipt)] = rows
                        assert accepted_at > deadline_at and "queued as QID0001" in receipt and receipt.endswith(" tls")
                        [(_, recipients, message, tls)] = fixed.messages
                        assert recipients == ["noc@acme.test"] and tls
                        assert "unavailable" in message["Subject"]
                        month_line(message, determined, first_failed)
                        wait_until(lambda: firing(prom_port, "ThreeninesNotificationOverdue") == [], 20,
                                   what="the overdue alert to clear")
                        text = scrape(exporter_port)
                        assert sample(text, "threenines_notification_deadline_missed_total", customer="acme") == 1
                        assert sample(text, "threenines_notification_last_delivery_determined_timestamp_seconds",
                                      customer="acme", service="connectivity", target="uplink") == pytest.approx(
                                          miss_determined, abs=0.001)
                        assert len(misses(state)) == 1
        finally:
            alertmanager.stop()
