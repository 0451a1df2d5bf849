"""Two real replica exporters for tests: `threenines serve --vantage a|b --peer …` probing one customer port in a
network namespace the test cuts (tests/netns.py), each with its own state directory, and an SMTP relay (aiosmtpd)
as the customer's e-mail contact. Shared by tests/ha/test_status_replicas.py and test_replica_deadlines.py.

The page reaches both replicas as Alertmanager posts it with `--replica-exporter` (`post_page`): to each
replica's /alertmanager/deliver, with the determination the rule's `min by` carries.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.audit.test_webhook import alert, payload
from tests.foundation.exporter_process import sample, scrape
from tests.ha.stack import Restartable
from tests.netns import CustomerPort, customer_port
from tests.notify.sinks import Relay, smtp_relay
from tests.support import VENV_BIN, free_port, http_post, wait_until

TOKEN = "status-replicas-token"
CONTACT = "email:noc@acme.test"
INTERVAL = 1.0


@dataclass
class Replicas:
    tmp: Path
    port: CustomerPort
    relay: Relay
    inventory: Path
    listen: dict[str, int]
    replicas: dict[str, Restartable]

    def state(self, vantage: str) -> Path:
        return self.tmp / vantage / "state"

    def url(self, vantage: str) -> str:
        return f"http://127.0.0.1:{self.listen[vantage]}"

    def metric(self, vantage: str, name: str) -> float | None:
        return sample(scrape(self.listen[vantage]), name, target="ns")

    def wait_probed(self, vantage: str) -> None:
        before = self.metric(vantage, "threenines_probe_total") or 0.0
        wait_until(lambda: (self.metric(vantage, "threenines_probe_total") or 0.0) >= before + 2, 15, interval=0.2,
                   what=f"replica {vantage} to probe the port")

    def runs(self, vantage: str) -> list[tuple[float, float | None]]:
        """The replica's outage runs as its ledger holds them (first failed probe, first answered probe)."""
        with sqlite3.connect(f"file:{self.state(vantage) / 'outages.sqlite'}?mode=ro", uri=True) as db:
            return db.execute("SELECT first_failed_at, ended_at FROM outages ORDER BY first_failed_at").fetchall()

    def misses(self, vantage: str) -> list[tuple[str, str, str, float, float, str]]:
        """The replica's missed deadlines as its audit ledger holds them."""
        with sqlite3.connect(f"file:{self.state(vantage) / 'audit.sqlite'}?mode=ro", uri=True) as db:
            return db.execute("SELECT customer, service, target, determined_at, deadline_at, reason FROM misses "
                              "ORDER BY id").fetchall()

    def post_page(self, determined_at: float) -> None:
        """The page, as the Alertmanager cluster posts it to both replicas."""
        for vantage in ("a", "b"):
            status, reply = http_post(f"{self.url(vantage)}/alertmanager/deliver",
                                      payload("customer-acme", alert("acme", "ns", determined_at)),
                                      headers={"Authorization": f"Bearer {TOKEN}"})
            assert status == 200, reply

    def status(self, *extra: str, b_state: Path | None = None) -> subprocess.CompletedProcess[str]:
        argv = [str(VENV_BIN / "threenines"), "status", "--config", str(self.inventory), "--timeout", "3"]
        for vantage in ("a", "b"):
            state = b_state if vantage == "b" and b_state is not None else self.state(vantage)
            argv += ["--exporter", f"{vantage}={self.url(vantage)}", "--state-dir", f"{vantage}={state}"]
        return subprocess.run([*argv, *extra], capture_output=True, text=True, timeout=60, check=False)

    def connectivity(self, *extra: str, b_state: Path | None = None) -> tuple[dict, dict]:
        done = self.status("--format", "json", *extra, b_state=b_state)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        [acme] = report["customers"]
        [service] = acme["services"]
        assert service["service"] == "connectivity"
        return report, service


@contextmanager
def replicas(tmp: Path, deadline: str = "600s") -> Iterator[Replicas]:
    listen = {"a": free_port(), "b": free_port()}
    (tmp / "token").write_text(TOKEN)
    with smtp_relay() as relay, customer_port() as port, ExitStack() as stack:
        inventory = tmp / "inventory.yml"
        inventory.write_text(f"""
exporter: {{audit_token: {{file: {tmp / 'token'}}}}}
notification:
  smtp: {{smarthost: "{relay.smarthost}", from: noc@provider.test, require_tls: false}}
customers:
  - id: acme
    name: ACME Hosting B.V.
    timezone: Europe/Amsterdam
    notification_deadline: {deadline}
    contacts: {{version: "st-ha", notify: [{{email: noc@acme.test}}]}}
    ping: {{interval: {INTERVAL:g}s, threshold: 2, packets: 1, timeout: 400ms}}
    ports: [{{id: ns, address: "{port.address}"}}]
""")
        running = {}
        for vantage, peer in (("a", "b"), ("b", "a")):
            (tmp / vantage).mkdir()
            running[vantage] = Restartable(
                f"replica {vantage}",
                [str(VENV_BIN / "threenines"), "serve", "--config", str(inventory), "--listen",
                 f"127.0.0.1:{listen[vantage]}", "--state-dir", str(tmp / vantage / "state"), "--tick", "1",
                 "--vantage", vantage, "--peer", f"http://127.0.0.1:{listen[peer]}"],
                tmp / vantage / "exporter", f"http://127.0.0.1:{listen[vantage]}/healthz")
            stack.callback(running[vantage].stop)  # by PID
            running[vantage].start()
        yield Replicas(tmp, port, relay, inventory, listen, running)

