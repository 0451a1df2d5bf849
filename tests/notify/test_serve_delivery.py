"""`threenines serve` takes Alertmanager's posts at /alertmanager/deliver: a refused post is counted (and logged),
an accepted one is delivered to the contact by the running exporter and recorded in its delivery ledger."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from tests.audit.test_webhook import alert, payload
from tests.foundation.exporter_process import sample, scrape, serve
from tests.notify.sinks import http_sink
from tests.support import http_post, wait_until

TOKEN = "serve-delivery-token"


def test_the_running_exporter_counts_refused_posts_and_delivers_accepted_ones(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN)
    state = tmp_path / "state"
    with http_sink() as hook:
        config = tmp_path / "inventory.yml"
        config.write_text(f"""
exporter: {{audit_token: {{file: {tmp_path / 'token'}}}}}
customers:
  - id: acme
    name: ACME Hosting B.V.
    timezone: Europe/Amsterdam
    contacts: {{version: "7", language: zh-CN, notify: [{{webhook: {{url: "{hook.url}"}}}}]}}
    ping: {{interval: 2s, threshold: 2, packets: 1, timeout: 500ms}}
    ports: [{{id: uplink-a, address: 127.0.91.1}}]
""")
        proc, port = serve(tmp_path, config, state_dir=state)
        with proc as exporter:
            url = f"http://127.0.0.1:{port}/alertmanager/deliver"
            body = payload("customer-acme", alert("acme", "uplink-a", time.time() - 60))
            assert http_post(url, body, headers={"Authorization": "Bearer wrong"})[0] == 401
            assert http_post(url, body, headers={"Authorization": "Bearer wrong"})[0] == 401
            text = scrape(port)
            assert sample(text, "threenines_notification_webhook_requests_total", endpoint="deliver", code="401") == 2
            assert sample(text, "threenines_notification_webhook_requests_total", endpoint="audit", code="401") == 0
            assert exporter.log().count("deliver webhook refused a post: 401") == 1  # once a minute, all counted

            status, reply = http_post(url, body, headers={"Authorization": f"Bearer {TOKEN}"})
            assert (status, json.loads(reply)) == (200, {"recorded": 1, "queued": 1})
            [(_, document)] = wait_until(lambda: hook.received, 20, what="the exporter to deliver")
            assert document["customer"]["name"] == "ACME Hosting B.V." and document["language"] == "zh-CN"
            # An outage this exporter's engine never determined (the post is made up): its history lacks the very
            # outage being reported, so the message has no month figure rather than a wrong one.
            assert document["month_so_far"] is None and "可用率" not in document["text"]
            wait_until(lambda: sample(scrape(port), "threenines_notification_deliveries_total", customer="acme",
                                      channel="webhook") == 1, 10, what="the delivery in the metrics")
    with sqlite3.connect(state / "delivery.sqlite") as db:
        [(contact, version, receipt)] = db.execute(
            "SELECT contact, contact_version, receipt FROM deliveries WHERE accepted_at IS NOT NULL").fetchall()
    assert (contact, version) == (f"webhook:{hook.url}", "7") and receipt.startswith("HTTP 200")
