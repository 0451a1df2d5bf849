"""HA on real processes, all on 127.0.0.1: two replica exporters (`serve --vantage a --peer …` / `--vantage b`),
two Debian Alertmanagers in one real cluster (gossip on loopback) with the generated config posting each customer
notification to both replicas, and an SMTP relay (aiosmtpd) as the customer's e-mail contact.

The alert is fed to both Alertmanagers as Prometheus would (it sends every alert to every Alertmanager). Whatever
node is lost mid-outage — the Alertmanager that notified, or the exporter that delivered — the contact gets exactly
one message per outage event within the deadline, and a surviving delivery ledger records each delivery once,
with the relay's receipt.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.alertmanager.test_end_to_end import ALERTMANAGER
from tests.notify.sinks import Relay, smtp_relay
from tests.support import VENV_BIN, RunningProcess, free_port, http_get, http_post, running, wait_until
from threenines.alerting.alertmanager_config import Options, render, write
from threenines.config.inventory_load import load_inventory

TOKEN = "ha-delivery-token"
DEADLINE = 60.0
PEER_TIMEOUT = "2s"  # Alertmanager's cluster: the second node waits this long before it would notify
QUIET = 10.0  # after a message, how long no duplicate may follow (> peer timeout + group_interval + a recheck)
CONTACT = "noc@acme.test"


@dataclass
class Cluster:
    tmp: Path
    relay: Relay
    exporters: dict[str, RunningProcess]
    exporter_ports: dict[str, int]
    alertmanagers: list[RunningProcess]
    am_ports: list[int]

    def post_alert(self, determined_at: float, resolved: bool, nodes: list[int]) -> None:
        now = datetime.now(UTC)
        alert = {
            "labels": {"alertname": "ThreeninesServiceUnavailable", "customer": "acme", "service": "connectivity",
                       "target": "uplink", "severity": "critical", "audience": "customer"},
            "annotations": {"determined_at": f"{determined_at:.3f}", "first_failed_at": f"{determined_at - 5:.3f}",
                            "address": "127.0.0.1"},
            "startsAt": datetime.fromtimestamp(determined_at, UTC).isoformat(),
            "endsAt": now.isoformat() if resolved else datetime.fromtimestamp(time.time() + 3600, UTC).isoformat(),
        }
        for node in nodes:
            status, body = http_post(f"http://127.0.0.1:{self.am_ports[node]}/api/v2/alerts",
                                     json.dumps([alert]).encode(), headers={"Content-Type": "application/json"})
            assert status == 200, body

    def webhook_notifications(self, node: int) -> float:
        _, body = http_get(f"http://127.0.0.1:{self.am_ports[node]}/metrics")
        found = re.search(r'^alertmanager_notifications_total\{integration="webhook"\} (\S+)$', body.decode(), re.M)
        return float(found.group(1)) if found else 0.0

    def deliveries(self, vantage: str) -> list[tuple]:
        path = self.tmp / f"state-{vantage}" / "delivery.sqlite"
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return db.execute("SELECT event, contact, determined_at, accepted_at, receipt FROM deliveries "
                              "ORDER BY event").fetchall()

    def accepted_rows(self, vantage: str) -> int:
        path = self.tmp / f"state-{vantage}" / "delivery.sqlite"
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return db.execute("SELECT count(*) FROM attempts WHERE outcome = 'accepted'").fetchone()[0]

    def subjects(self) -> list[str]:
        return [str(message["Subject"]) for _, _, message, _ in self.relay.messages]

    def settle(self, count: int, what: str) -> None:
        """Exactly `count` messages: wait for them, then make sure no duplicate follows."""
        wait_until(lambda: len(self.relay.messages) >= count, DEADLINE, what=what)
        time.sleep(QUIET)
        assert len(self.relay.messages) == count, self.subjects()


@contextmanager
def cluster(tmp: Path) -> Iterator[Cluster]:
    exporter_ports = {"a": free_port(), "b": free_port()}
    am_ports, gossip = [free_port(), free_port()], [free_port(), free_port()]
    (tmp / "token").write_text(TOKEN)
    token = f"{{file: {tmp / 'token'}}}"
    with smtp_relay() as relay, ExitStack() as stack:
        inventory = tmp / "inventory.yml"
        inventory.write_text(f"""
exporter: {{audit_token: {token}}}
notification:
  audit_webhook: {{url: "http://127.0.0.1:{exporter_ports['a']}/alertmanager/webhook", token: {token}}}
  smtp: {{smarthost: "127.0.0.1:{relay.port}", from: noc@provider.test, require_tls: false}}
customers:
  - id: acme
    name: ACME Hosting B.V.
    timezone: Europe/Amsterdam
    notification_deadline: {DEADLINE:g}s
    contacts: {{version: "ha-1", notify: [{{email: {CONTACT}}}]}}
    ports: [{{id: uplink, address: "127.0.0.1"}}]
""")
        am_config = tmp / "alertmanager" / "alertmanager.yml"
        am_config.parent.mkdir()
        options = Options(secrets_dir=str(tmp), group_wait=1, group_interval=2, repeat_interval=3600,
                          replica_urls=(f"http://127.0.0.1:{exporter_ports['b']}",))
        write(am_config, render(load_inventory(inventory), options), options)
        exporters = {}
        for vantage, peer in (("a", "b"), ("b", "a")):
            argv = [str(VENV_BIN / "threenines"), "serve", "--config", str(inventory), "--listen",
                    f"127.0.0.1:{exporter_ports[vantage]}", "--state-dir", str(tmp / f"state-{vantage}"),
                    "--tick", "1", "--vantage", vantage, "--peer", f"http://127.0.0.1:{exporter_ports[peer]}"]
            exporters[vantage] = stack.enter_context(running(
                argv, tmp / f"exporter-{vantage}.log", f"http://127.0.0.1:{exporter_ports[vantage]}/healthz"))
        alertmanagers = []
        for node in (0, 1):
            process = RunningProcess(
                [ALERTMANAGER, f"--config.file={am_config}", f"--storage.path={tmp / f'am-data-{node}'}",
                 f"--web.listen-address=127.0.0.1:{am_ports[node]}",
                 f"--cluster.listen-address=127.0.0.1:{gossip[node]}",
                 f"--cluster.peer=127.0.0.1:{gossip[1 - node]}", f"--cluster.peer-timeout={PEER_TIMEOUT}",
                 "--cluster.settle-timeout=3s", "--cluster.pushpull-interval=2s", "--log.level=debug"],
                tmp / f"alertmanager-{node}.log")
            stack.callback(process.stop)
            alertmanagers.append(process)
        for node in (0, 1):
            alertmanagers[node].wait_http(f"http://127.0.0.1:{am_ports[node]}/-/ready", 30)

        def joined() -> bool:
            _, body = http_get(f"http://127.0.0.1:{am_ports[0]}/api/v2/status")
            peers = json.loads(body)["cluster"].get("peers") or []
            return len(peers) == 2

        wait_until(joined, 30, what="the two Alertmanagers to form one cluster")
        yield Cluster(tmp, relay, exporters, exporter_ports, alertmanagers, am_ports)


def queue_ids(rows: list[tuple]) -> list[str]:
    return sorted(re.search(r"queued as (\S+)", receipt).group(1) for *_, receipt in rows)


@pytest.mark.timeout(300)
def test_losing_the_alertmanager_that_notified_still_gives_one_message_per_event(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        determined_at = time.time() - 2
        c.post_alert(determined_at, resolved=False, nodes=[0, 1])
        c.settle(1, "the firing message")
        assert "unavailable" in c.subjects()[0]
        # The node that notified (the other one saw it in the gossiped notification log and stayed silent) dies.
        [sender] = [n for n in (0, 1) if c.webhook_notifications(n) > 0]
        c.alertmanagers[sender].kill9()
        survivor = 1 - sender
        c.post_alert(determined_at, resolved=True, nodes=[survivor])
        c.settle(2, "the resolved message through the surviving Alertmanager")
        assert "restored" in c.subjects()[1]
        assert all(recipients == [CONTACT] for _, recipients, _, _ in c.relay.messages)
        # Both ledgers hold both deliveries, once each, with the relay's receipts (one replica's marked as the
        # peer's), within the deadline.
        for vantage in ("a", "b"):
            rows = wait_until(lambda v=vantage: (r := c.deliveries(v)) and all(x[3] for x in r) and r, 20,
                              what=f"replica {vantage}'s ledger to hold the deliveries")
            assert [(event, contact) for event, contact, *_ in rows] == [("firing", f"email:{CONTACT}"),
                                                                         ("resolved", f"email:{CONTACT}")]
            assert queue_ids(rows) == ["QID0001", "QID0002"]
            assert rows[0][3] - rows[0][2] < DEADLINE
            assert c.accepted_rows(vantage) == 2
        receipts = [r[4] for v in ("a", "b") for r in c.deliveries(v)]
        assert sum("(delivered by " in r for r in receipts) == 2  # each message sent by one replica, recorded by both


@pytest.mark.timeout(300)
def test_losing_the_exporter_that_delivered_keeps_the_proof_and_the_other_delivers(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        determined_at = time.time() - 2
        c.post_alert(determined_at, resolved=False, nodes=[0, 1])
        c.settle(1, "the firing message")
        # Which replica sent it: its ledger's receipt is its own; the other's says "delivered by".
        wait_until(lambda: all(r and r[0][3] for r in (c.deliveries("a"), c.deliveries("b"))), 20,
                   what="both ledgers to hold the firing delivery")
        [sender] = [v for v in ("a", "b") if "(delivered by" not in c.deliveries(v)[0][4]]
        other = "b" if sender == "a" else "a"
        c.exporters[sender].kill9()
        c.post_alert(determined_at, resolved=True, nodes=[0, 1])
        c.settle(2, "the resolved message from the surviving replica")
        assert ["unavailable" in s for s in c.subjects()] == [True, False]
        rows = c.deliveries(other)
        assert [event for event, *_ in rows] == ["firing", "resolved"]
        assert all(accepted for _, _, _, accepted, _ in rows)
        assert queue_ids(rows) == ["QID0001", "QID0002"]
        assert f"(delivered by {sender})" in rows[0][4] and "(delivered by" not in rows[1][4]
        assert c.accepted_rows(other) == 2
