"""End to end with real processes on 127.0.0.1: exporter + Prometheus + Alertmanager, intervals scaled down.

A customer port in a namespace the test made is cut; the notification must reach the customer's contact and the
audit ledger within the bound `threenines check` computes for exactly these configs. Alertmanager is then
killed and restarted mid-outage (nothing is double-counted), and kept down through a second outage
(ThreeninesNotificationOverdue fires, and resolves once the late dispatch is audited).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import yaml

from tests.foundation.exporter_process import sample, scrape
from tests.netns import customer_port
from tests.support import REPO, VENV_BIN, RunningProcess, free_port, http_get, running, serving, wait_until
from threenines.alerting.alertmanager_config import Options, render, write
from threenines.alerting.notification_bound import check_deployment
from threenines.config.inventory_load import load_inventory

pytestmark = pytest.mark.netns

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
TOKEN = "e2e-audit-token"
# Seconds; overdue fires at two thirds of it. Above the deployment's computed bound (19 s for this test's
# intervals), as the contract requires, and no longer: step 3 waits two thirds of it.
DEADLINE = 25.0


@contextmanager
def contact_sink() -> Iterator[tuple[str, list[tuple[float, dict]]]]:
    """The customer's designated webhook contact: a real HTTP server recording what arrives, and when."""
    received: list[tuple[float, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.append((time.time(), json.loads(body)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serving(Handler) as server:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received


def write_configs(tmp: Path, address: str, exporter: int, alertmanager: int, sink: str) -> tuple[Path, Path, Path]:
    (tmp / "token").write_text(TOKEN)
    inventory = tmp / "inventory.yml"
    inventory.write_text(f"""
exporter: {{audit_token: {{file: {tmp / 'token'}}}}}
notification:
  audit_webhook: {{url: "http://127.0.0.1:{exporter}/alertmanager/webhook", token: {{file: {tmp / 'token'}}}}}
customers:
  - id: acme
    timezone: Europe/Amsterdam
    notification_deadline: {DEADLINE:g}s
    contacts: {{version: "e2e-7", notify: [{{webhook: {{url: "{sink}"}}}}]}}
    ping: {{interval: 1s, threshold: 2, packets: 1, timeout: 400ms}}
    ports: [{{id: uplink, address: "{address}"}}]
""")
    am_dir = tmp / "alertmanager"
    am_dir.mkdir()
    am_config = am_dir / "alertmanager.yml"
    options = Options(secrets_dir=str(tmp), group_wait=1, group_interval=2, repeat_interval=3600)
    write(am_config, render(load_inventory(inventory), options), options)  # and its templates beside it
    prom_config = tmp / "prometheus.yml"
    prom_config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in sorted((REPO / "prometheus" / "rules").glob("*.yml"))],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager}"]}],
                                        "timeout": "2s"}]},
        "scrape_configs": [{"job_name": "threenines", "static_configs": [{"targets": [f"127.0.0.1:{exporter}"]}]}],
    }))
    return inventory, prom_config, am_config


def start_alertmanager(tmp: Path, config: Path, port: int) -> RunningProcess:
    process = RunningProcess(
        [ALERTMANAGER, f"--config.file={config}", f"--storage.path={tmp / 'am-data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=debug"],
        tmp / "alertmanager.log")
    process.wait_http(f"http://127.0.0.1:{port}/-/ready", 30)
    return process


def audit_rows(state: Path) -> list[tuple]:
    with sqlite3.connect(state / "audit.sqlite") as db:
        return db.execute("SELECT determined_at, dispatched_at, resolved, first, late, contact_version, delay "
                          "FROM dispatches WHERE alertname = 'ThreeninesServiceUnavailable' ORDER BY id").fetchall()


def firing_alerts(prometheus: int, name: str) -> list[dict]:
    status, body = http_get(f"http://127.0.0.1:{prometheus}/api/v1/alerts")
    assert status == 200
    return [a for a in json.loads(body)["data"]["alerts"] if a["labels"]["alertname"] == name
            and a["state"] == "firing"]


def test_determination_to_audited_dispatch_within_the_computed_bound(tmp_path: Path) -> None:
    exporter_port, prom_port, am_port = free_port(), free_port(), free_port()
    state = tmp_path / "state"
    with customer_port() as port, contact_sink() as (sink_url, contact_received):
        inventory_path, prom_config, am_config = write_configs(tmp_path, port.address, exporter_port, am_port,
                                                               sink_url)
        [bound] = [r for r in check_deployment(load_inventory(inventory_path), prom_config, None, am_config)
                   if r.service == "connectivity"]
        assert bound.ok and bound.bound < DEADLINE, bound

        exporter_argv = [str(VENV_BIN / "threenines"), "serve", "--config", str(inventory_path), "--listen",
                         f"127.0.0.1:{exporter_port}", "--state-dir", str(state), "--tick", "1"]
        prom_argv = [PROMETHEUS, f"--config.file={prom_config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                     f"--web.listen-address=127.0.0.1:{prom_port}", "--rules.alert.resend-delay=1s"]
        alertmanager = start_alertmanager(tmp_path, am_config, am_port)
        try:
            with running(exporter_argv, tmp_path / "exporter.log", f"http://127.0.0.1:{exporter_port}/healthz"), \
                    running(prom_argv, tmp_path / "prometheus.log", f"http://127.0.0.1:{prom_port}/-/ready"):
                wait_until(lambda: sample(scrape(exporter_port), "threenines_service_known", target="uplink") == 1,
                           20, what="the namespace port to answer")

                # 1. Cut the link: determination → audited dispatch within the bound.
                port.down()
                rows = wait_until(lambda: audit_rows(state), bound.bound + 10, what="the audited dispatch")
                [(determined_at, dispatched_at, resolved, first, late, version, delay)] = rows
                assert (resolved, first, late, version) == (0, 1, 0, "e2e-7")
                assert dispatched_at - determined_at == delay <= bound.bound
                text = scrape(exporter_port)
                # the annotation keeps milliseconds of the exporter's determination time
                assert abs(determined_at - sample(text, "threenines_service_determined_timestamp_seconds",
                                                  target="uplink")) < 0.001
                print(f"determination → audited dispatch {delay:.3f}s, bound {bound.bound:.0f}s")
                wait_until(lambda: contact_received, 5, what="the customer's own contact to receive it")
                # the exporter delivered its own document, not Alertmanager's payload
                assert contact_received[0][1]["customer"]["id"] == "acme"
                assert contact_received[0][1]["status"] == "firing"
                wait_until(lambda: sample(scrape(exporter_port), "threenines_notification_delivery_delay_seconds_count",
                                          customer="acme") == 1, 5, what="the delivery delay histogram")
                wait_until(lambda: sample(scrape(exporter_port), "threenines_notification_delay_seconds_count",
                                          customer="acme") == 1, 5, what="the delay histogram")
                text = scrape(exporter_port)
                assert sample(text, "threenines_notification_delay_seconds_sum", customer="acme") == delay
                assert sample(text, "threenines_notification_deadline_missed_total", customer="acme") == 0

                # 2. Kill Alertmanager mid-outage and restart it: it forgot it had notified (no graceful
                # snapshot of its notification log) and sends again; the ledger keeps both, counts stay at one.
                alertmanager.kill9()
                alertmanager.stop()
                alertmanager = start_alertmanager(tmp_path, am_config, am_port)
                wait_until(lambda: len(audit_rows(state)) >= 2, 20, what="the re-sent notification")
                assert [r[3] for r in audit_rows(state)] == [1, 0]  # first, then a repeat that does not count
                time.sleep(2)  # the exporter re-renders ~1 s after a record
                text = scrape(exporter_port)
                assert sample(text, "threenines_notification_delay_seconds_count", customer="acme") == 1
                assert sample(text, "threenines_notification_deadline_missed_total", customer="acme") == 0
                assert firing_alerts(prom_port, "ThreeninesNotificationOverdue") == []

                # 3. A second outage while Alertmanager is down: nobody is notified, so the overdue alert fires
                # at two thirds of the deadline; once Alertmanager is back the dispatch is audited and it clears.
                alertmanager.kill9()
                alertmanager.stop()
                port.up()
                wait_until(lambda: sample(scrape(exporter_port), "threenines_service_up", target="uplink") == 1,
                           10, what="the first outage to end")
                port.down()
                wait_until(lambda: sample(scrape(exporter_port), "threenines_service_up", target="uplink") == 0,
                           10, what="the second outage to be determined")
                second = sample(scrape(exporter_port), "threenines_service_determined_timestamp_seconds",
                                target="uplink")
                [overdue] = wait_until(lambda: firing_alerts(prom_port, "ThreeninesNotificationOverdue"),
                                       DEADLINE, what="ThreeninesNotificationOverdue to fire")
                assert overdue["labels"]["customer"] == "acme" and overdue["labels"]["target"] == "uplink"
                assert time.time() - second >= DEADLINE * 2 / 3
                alertmanager = start_alertmanager(tmp_path, am_config, am_port)
                wait_until(lambda: any(abs(r[0] - second) < 0.001 and r[3] == 1 for r in audit_rows(state)), 20,
                           what="the late dispatch of the second outage")
                wait_until(lambda: firing_alerts(prom_port, "ThreeninesNotificationOverdue") == [], 15,
                           what="the overdue alert to clear")
                text = scrape(exporter_port)
                assert sample(text, "threenines_notification_delay_seconds_count", customer="acme") == 2
                late = [r[4] for r in audit_rows(state) if abs(r[0] - second) < 0.001 and r[3] == 1]
                assert sample(text, "threenines_notification_deadline_missed_total", customer="acme") == sum(late)
        finally:
            alertmanager.stop()
