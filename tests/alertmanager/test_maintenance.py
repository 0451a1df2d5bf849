"""Maintenance windows become silences in a real Alertmanager through API v2, idempotently, and silence only the
customer's pages."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from tests.support import free_port, running
from threenines.alerting.silences import SilenceClient, desired_silences, sync
from threenines.cli import main
from threenines.config.exclusions import load_exclusions
from threenines.config.inventory_load import parse_inventory_text

ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
INVENTORY = """
customers:
  - id: acme
    timezone: Europe/Amsterdam
    contacts: {version: "1", notify: [{email: noc@acme.example}]}
    ports: [{id: uplink-a, address: 192.0.2.10}]
  - id: globex
    timezone: America/New_York
    contacts: {version: "1", notify: [{email: oncall@globex.example}]}
    ports: [{id: cc-7, address: 198.51.100.7}]
"""


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def exclusions(now: float, with_globex: bool = True) -> str:
    entries = [
        ("RUNNING", "acme", now - 60, now + 3600, "maintenance", ""),
        ("WEEKLY", "acme", now + 3600, now + 7200, "maintenance", "rrule: FREQ=WEEKLY;COUNT=4"),
        ("FAULT", "acme", now - 60, now + 3600, "customer_fault", ""),
        ("PAST", "globex", now - 7200, now - 3600, "maintenance", ""),
    ]
    if with_globex:
        entries.append(("GLOBEX-NEXT", "globex", now + 1800, now + 5400, "maintenance", ""))
    lines = ["exclusions:"]
    for ident, customer, start, end, reason, extra in entries:
        lines += [f"  - id: {ident}", f"    customer: {customer}", "    services: [connectivity]",
                  f"    start: {iso(start)}", f"    end: {iso(end)}", f"    reason: {reason}",
                  f"    reference: CHG-{ident}", "    approved_by: noc@provider.example"]
        if extra:
            lines.append(f"    {extra}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def alertmanager(tmp_path: Path):
    port = free_port()
    config = tmp_path / "am.yml"
    config.write_text("route: {receiver: noc}\nreceivers: [{name: noc}]\n")
    argv = [ALERTMANAGER, f"--config.file={config}", f"--storage.path={tmp_path / 'am'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]
    with running(argv, tmp_path / "am.log", ready_url=f"http://127.0.0.1:{port}/-/ready"):
        yield f"http://127.0.0.1:{port}"


def active_silences(url: str) -> list[dict]:
    return [s for s in requests.get(f"{url}/api/v2/silences", timeout=5).json() if s["status"]["state"] != "expired"]


def test_sync_creates_expires_and_is_idempotent(tmp_path: Path, alertmanager: str) -> None:
    now = datetime.now(UTC).timestamp()
    inventory = parse_inventory_text(INVENTORY)
    path = tmp_path / "exclusions.yml"
    path.write_text(exclusions(now))
    zones = {c.id: c.zone for c in inventory.customers}
    client = SilenceClient(alertmanager)
    # someone's own silence, which the sync must leave alone
    requests.post(f"{alertmanager}/api/v2/silences", timeout=5, json={
        "matchers": [{"name": "alertname", "value": "X", "isRegex": False, "isEqual": True}],
        "startsAt": iso(now), "endsAt": iso(now + 600), "createdBy": "ops", "comment": "manual"}).raise_for_status()

    first = sync(client, desired_silences(inventory, load_exclusions(path, zones), now, 7 * 86400))
    # RUNNING, one WEEKLY occurrence within 7 days, GLOBEX-NEXT; never the customer fault or the past window
    assert sorted(k.split("/")[0] for k in first.created) == ["GLOBEX-NEXT", "RUNNING", "WEEKLY"]
    silences = active_silences(alertmanager)
    assert len(silences) == 4
    ours = [s for s in silences if s["createdBy"] == "threenines"]
    running_one = next(s for s in ours if "RUNNING" in s["comment"])
    assert {(m["name"], m["value"]) for m in running_one["matchers"]} == {
        ("audience", "customer"), ("customer", "acme"), ("service", "connectivity")}
    assert running_one["status"]["state"] == "active"

    again = sync(client, desired_silences(inventory, load_exclusions(path, zones), now, 7 * 86400))
    assert (again.created, again.expired, len(again.kept)) == ((), (), 3)

    path.write_text(exclusions(now, with_globex=False))  # the change request was cancelled
    cancelled = sync(client, desired_silences(inventory, load_exclusions(path, zones), now, 7 * 86400))
    assert [k.split("/")[0] for k in cancelled.expired] == ["GLOBEX-NEXT"] and cancelled.created == ()
    assert len(active_silences(alertmanager)) == 3  # the manual one is still there


def test_a_maintenance_silence_mutes_the_customer_page_not_the_noc(tmp_path: Path, alertmanager: str,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime.now(UTC).timestamp()
    (tmp_path / "inventory.yml").write_text(INVENTORY)
    (tmp_path / "exclusions.yml").write_text(exclusions(now))
    assert main(["maintenance", "sync", "--config", str(tmp_path / "inventory.yml"), "--exclusions",
                 str(tmp_path / "exclusions.yml"), "--alertmanager", alertmanager]) == 0
    assert "3 created, 0 expired, 0 unchanged" in capsys.readouterr().out
    labels = {"alertname": "ThreeninesServiceUnavailable", "customer": "acme", "service": "connectivity",
              "target": "uplink-a", "severity": "critical"}
    alerts = [{"labels": {**labels, "audience": "customer"}, "startsAt": iso(now)},
              {"labels": {**labels, "alertname": "ThreeninesNotificationOverdue", "audience": "provider"},
               "startsAt": iso(now)}]
    requests.post(f"{alertmanager}/api/v2/alerts", data=json.dumps(alerts), timeout=5,
                  headers={"Content-Type": "application/json"}).raise_for_status()
    states = {a["labels"]["audience"]: a["status"]["state"]
              for a in requests.get(f"{alertmanager}/api/v2/alerts", timeout=5).json()}
    assert states == {"customer": "suppressed", "provider": "active"}


def test_an_unreachable_alertmanager_is_an_error_not_a_crash(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "inventory.yml").write_text(INVENTORY)
    (tmp_path / "exclusions.yml").write_text(exclusions(datetime.now(UTC).timestamp()))
    assert main(["maintenance", "sync", "--config", str(tmp_path / "inventory.yml"), "--exclusions",
                 str(tmp_path / "exclusions.yml"), "--alertmanager", f"http://127.0.0.1:{free_port()}"]) == 1
    assert "ConnectionError" in capsys.readouterr().err
