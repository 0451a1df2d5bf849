"""The adversarial run's webhook posts against the real HTTP server of `threenines serve`, and a ledger that
already holds a +Inf determination, restarted."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from tests.audit.test_webhook import alert, payload
from tests.foundation.exporter_process import inventory_text, sample, scrape, serve
from tests.support import http_post

TOKEN = "zq-audit-token-5c1e"
LAST = "threenines_notification_last_dispatch_determined_timestamp_seconds"


def config(tmp_path: Path, token_line: str = "exporter: {audit_token: {env: TN_WEBHOOK_TOKEN}}") -> Path:
    path = tmp_path / "inventory.yml"
    path.write_text(token_line + "\n" + inventory_text({"uplink-a": "127.0.91.1"}))
    return path


@pytest.fixture
def token_env():
    os.environ["TN_WEBHOOK_TOKEN"] = TOKEN
    yield
    os.environ.pop("TN_WEBHOOK_TOKEN", None)


def post(port: int, body: bytes) -> tuple[int, bytes]:
    return http_post(f"http://127.0.0.1:{port}/alertmanager/webhook", body,
                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})


def with_determined_at(raw: str, target: str = "uplink-a") -> bytes:
    body = alert("acme", target, None)
    body["annotations"]["determined_at"] = raw
    return payload("customer-acme", body)


def test_the_adversarial_posts_get_400_and_the_evidence_stays_true(tmp_path: Path, token_env: None) -> None:
    proc, port = serve(tmp_path, config(tmp_path))
    with proc as exporter:
        now = time.time()
        for raw in ("inf", "1e308", f"{now + 366 * 86400:.3f}", "nan"):
            status, reply = post(port, with_determined_at(raw))
            assert status == 400, (raw, reply)
            assert b"determined_at" in reply
        assert post(port, b"[" * 200_000 + b"]" * 200_000)[0] == 400
        assert post(port, b'{"receiver": "customer-acme", "alerts": [], "n": ' + b"7" * 5000 + b"}")[0] == 400
        poisoned = payload("customer-acme", {**alert("acme", "uplink-a", now - 60),
                                             "labels": {"customer": "acme", "x": "SURROGATE"}})
        assert post(port, poisoned.replace(b"SURROGATE", b"\\ud800"))[0] == 400
        # the next valid delivery is recorded (the poisoned one left no transaction open)
        status, reply = post(port, payload("customer-acme", alert("acme", "uplink-a", now - 60)))
        assert (status, json.loads(reply)) == (200, {"recorded": 1})
        invented = [alert("acme", f"invented-{i}", now - 60, fingerprint=f"i{i}") for i in range(2400)]
        status, reply = post(port, payload("customer-acme", *invented))
        assert (status, json.loads(reply)) == (200, {"recorded": 0, "rejected": 2400})

        text = scrape(port)
        assert sample(text, LAST, customer="acme", service="connectivity", target="uplink-a") == pytest.approx(
            now - 60, abs=0.01)
        assert "invented-" not in text and "+Inf" not in "\n".join(
            line for line in text.splitlines() if line.startswith(LAST))
        assert sample(text, "threenines_notification_rejected_alerts_total", reason="unknown_target") == 2400
        assert "Traceback" not in exporter.log()


def test_a_ledger_with_an_inf_row_no_longer_disables_the_overdue_alert(tmp_path: Path, token_env: None) -> None:
    state = tmp_path / "state"
    proc, port = serve(tmp_path, config(tmp_path), state_dir=state)
    with proc:
        now = time.time()
        assert post(port, payload("customer-acme", alert("acme", "uplink-a", now - 60)))[0] == 200
    # What an exporter before the fix wrote for `determined_at: "inf"`: the ledger is append-only, so the row stays.
    with sqlite3.connect(state / "audit.sqlite") as db:
        db.execute("INSERT INTO dispatches (dispatched_at, receiver, fingerprint, alertname, customer, service, "
                   "target, determined_at, starts_at, ends_at, resolved, contact_version, deadline, delay, first, "
                   "late, group_key) VALUES (?, 'customer-acme', 'inf', 'ThreeninesServiceUnavailable', 'acme', "
                   "'connectivity', 'uplink-a', ?, '', '', 0, '1', 900, ?, 1, 0, '')",
                   (now, float("inf"), float("-inf")))
    proc, port = serve(tmp_path, config(tmp_path), state_dir=state)
    with proc:
        text = scrape(port)
        assert sample(text, LAST, customer="acme", service="connectivity", target="uplink-a") == pytest.approx(
            now - 60, abs=0.01)
        assert sample(text, "threenines_notification_delay_seconds_count", customer="acme") == 1
