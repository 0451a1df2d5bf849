"""`threenines status` over replica exporters, on real processes: two `threenines serve --vantage a|b --peer …`
replicas probe one customer port in a network namespace the test cuts, an SMTP relay (aiosmtpd) is the customer's
e-mail contact, and the test posts the page to both replicas' /alertmanager/deliver as Alertmanager does with
`--replica-exporter` (determined_at: the earliest of the replicas' determinations, as the rule's `min` carries it).

The test kills and restarts the replicas, so it knows what each vantage could say, and computes the merged figures
from the contract's words (docs/design.md, "Replica exporters"): a second is outage when every vantage with
evidence says outage (`merge: all`) or any does (`merge: any`); a replica that is dead has no evidence. Each
vantage's outage is its own ledger's run, first failed probe to first answered one, read here with sqlite3.

1. b dead through a whole cut of the port: the merged outage is a's run under `all` (b's silence is no evidence),
   while b is dead (its exporter unreachable, its ledger read) and after it came back;
2. both see the next cut, one message reaches the contact and both ledgers hold its acceptance; under `all` the
   outage starts where the later replica failed, under `any` where the earlier did; b is killed inside it, so its
   ledger's run stays open: its evidence ends at its last heartbeat, and once a sees the port again the outage is
   over under both policies, ending where a's run ends (and b, restarted, records that gap itself: the same
   figures). Status's one stated limit shows here too: b's first death, outside its outages, is in no ledger, so
   once b is dead again it counts as b's evidence under `all`;
3. b's exporter answers but its state directory cannot be read: its state now counts, the month is a's alone.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

import bcrypt
import pytest

from tests.audit.test_webhook import alert, payload
from tests.foundation.exporter_process import inventory_text
from tests.ha.replicas import CONTACT, TOKEN, replicas
from tests.support import VENV_BIN, RunningProcess, free_port, http_get, http_post, wait_until

pytestmark = pytest.mark.netns  # root: a network namespace per customer port

def at(iso: str | None) -> int | None:
    """A printed time (to the second, in the contract's zone) as Unix seconds."""
    return None if iso is None else int(datetime.fromisoformat(iso).timestamp())


def share(outage: dict, vantage: str) -> dict:
    [found] = [s for s in outage["vantages"] if s["vantage"] == vantage]
    return found


def any_policy(tmp: Path) -> list[str]:
    exclusions = tmp / "exclusions.yml"
    exclusions.write_text("exclusions: []\npolicy:\n  merge: any\n")
    return ["--exclusions", str(exclusions)]


@pytest.mark.timeout(240)
def test_status_merges_replicas_and_shows_a_dead_one(tmp_path: Path) -> None:
    with replicas(tmp_path) as r:
        for vantage in ("a", "b"):
            wait_until(lambda v=vantage: r.metric(v, "threenines_service_known") == 1, 20,
                       what=f"replica {vantage} to see the port")
        _, healthy = r.connectivity()
        assert healthy["state"] == "up"
        assert [(v["vantage"], v["state"], v["evidence"]) for v in healthy["vantages"]] == [
            ("a", "up", True), ("b", "up", True)]
        assert healthy["month_outage_seconds"] == 0 and not healthy["open_outages"]

        # 1. b dies, then the port is cut and restored while only a probes it.
        r.replicas["b"].kill9()
        r.port.down()
        [(fa, _)] = wait_until(lambda: r.runs("a") or None, 15, what="a to determine the cut")
        wait_until(lambda: r.metric("a", "threenines_service_up") == 0, 5, what="a to publish it")
        before = time.time()
        report, dead = r.connectivity()
        after = time.time()
        [b] = [x for x in report["replicas"] if x["vantage"] == "b"]
        assert "Connection refused" in b["exporter_error"] and b["ledger_error"] is None
        assert dead["state"] == "down"
        assert [(v["vantage"], v["state"], v["evidence"]) for v in dead["vantages"]] == [
            ("a", "down", True), ("b", "unreachable", False)]
        [opened] = dead["open_outages"]
        assert (at(opened["start"]), opened["end"], at(opened["first_failed_at"])) == (int(fa), None, int(fa))
        assert share(opened, "b")["outage_seconds"] == 0 and share(opened, "b")["runs"] == []
        assert share(opened, "b")["no_evidence_seconds"] == pytest.approx(opened["seconds"], abs=2e-3)
        assert before - fa - 1e-3 <= dead["month_outage_seconds"] <= after - fa + 1e-3
        text = r.status().stdout
        assert f"replica b: exporter {r.url('b')} UNREACHABLE: ConnectionError (Connection refused); ledgers " in text
        assert next(line.split() for line in text.splitlines() if line.startswith("acme "))[:5] == [
            "acme", "connectivity", "DOWN", "DOWN", "UNREACHABLE"]
        r.port.up()
        [(_, ea)] = wait_until(lambda: (runs := r.runs("a")) and runs[0][1] and runs, 15, what="a to see the port")
        r.replicas["b"].start()
        r.wait_probed("b")
        _, back = r.connectivity()
        assert back["state"] == "up" and not back["open_outages"]
        [ended] = back["ended_outages"]
        assert (at(ended["start"]), at(ended["end"])) == (int(fa), int(ea))
        assert ended["seconds"] == pytest.approx(ea - fa, abs=2e-3)
        assert back["month_outage_seconds"] == pytest.approx(ea - fa, abs=2e-3)

        # 2. Both see the next cut; the page reaches both replicas, one delivers.
        r.port.down()
        for vantage in ("a", "b"):
            wait_until(lambda v=vantage: r.metric(v, "threenines_service_up") == 0, 15,
                       what=f"replica {vantage} to determine the cut")
        determined = min(r.metric(v, "threenines_service_determined_timestamp_seconds") or 0.0 for v in "ab")
        for vantage in ("a", "b"):
            status, reply = http_post(f"{r.url(vantage)}/alertmanager/deliver",
                                      payload("customer-acme", alert("acme", "ns", determined)),
                                      headers={"Authorization": f"Bearer {TOKEN}"})
            assert status == 200, reply
        wait_until(lambda: r.relay.messages, 20, what="the relay to take the e-mail")

        def delivered_in_both() -> dict | None:
            _, now = r.connectivity()
            notices = [n for o in now["open_outages"] for n in o["notifications"]]
            return now if notices and notices[0]["deliveries"] and notices[0]["deliveries"][0]["ledgers"] == [
                "a", "b"] else None

        both = wait_until(delivered_in_both, 20, interval=0.5, what="both ledgers to hold the acceptance")
        fa2, fb2 = r.runs("a")[1][0], r.runs("b")[0][0]
        [opened] = both["open_outages"]
        assert (at(opened["start"]), at(opened["first_failed_at"])) == (int(max(fa2, fb2)), int(min(fa2, fb2)))
        [notice] = opened["notifications"]
        assert notice["notification"].startswith("delivered to every contact at ")
        [row] = notice["deliveries"]
        assert (row["event"], row["contact"], row["state"]) == ("firing", CONTACT, "delivered")
        assert "queued as QID0001" in row["receipt"]
        _, anyone = r.connectivity(*any_policy(tmp_path))
        assert at(anyone["open_outages"][0]["start"]) == int(min(fa2, fb2))

        # b dies inside the outage: its ledger's run stays open, its evidence ends at its last heartbeat.
        r.replicas["b"].kill9()
        r.port.up()
        ea2 = wait_until(lambda: r.runs("a")[1][1], 15, what="a to see the port again")
        wait_until(lambda: r.metric("a", "threenines_service_up") == 1, 5, what="a to publish it")
        _, gone = r.connectivity()
        assert gone["state"] == "up" and not gone["open_outages"]
        last = gone["ended_outages"][-1]
        assert (at(last["start"]), at(last["end"])) == (int(max(fa2, fb2)), int(ea2))
        assert last["seconds"] == pytest.approx(ea2 - max(fa2, fb2), abs=2e-3)
        assert [run["ended_at"] for run in share(last, "b")["runs"]] == [None]  # open in b's ledger
        assert last["notifications"][0]["notification"].startswith("delivered to every contact at ")
        # The limit status states: b's first death, outside its outages, is in no ledger, and now that b is dead
        # again (no restart of its to read from /metrics) that time counts as b's evidence: under `all` the first
        # outage drops out of the month here. The statement takes b's downtime from Prometheus.
        assert gone["month_outage_seconds"] == pytest.approx(ea2 - max(fa2, fb2), abs=3e-3)
        _, anyone = r.connectivity(*any_policy(tmp_path))
        last_any = anyone["ended_outages"][-1]
        assert (at(last_any["start"]), at(last_any["end"])) == (int(min(fa2, fb2)), int(ea2))
        month_any = (ea - fa) + (ea2 - min(fa2, fb2))
        assert anyone["month_outage_seconds"] == pytest.approx(month_any, abs=3e-3)

        # b comes back and records the gap itself: the same outage as its last heartbeat gave.
        r.replicas["b"].start()
        r.wait_probed("b")
        _, anyone = r.connectivity(*any_policy(tmp_path))
        assert [(at(o["start"]), at(o["end"])) for o in anyone["ended_outages"]][-1] == (int(min(fa2, fb2)),
                                                                                          int(ea2))
        assert anyone["month_outage_seconds"] == pytest.approx(month_any, abs=3e-3)

        # 3. b answers, its ledgers cannot be read: its state counts now, the month is a's alone.
        nowhere = tmp_path / "nowhere"
        report, half = r.connectivity(b_state=nowhere)
        [b] = [x for x in report["replicas"] if x["vantage"] == "b"]
        assert b["exporter_error"] is None and b["ledger_error"] == f"{nowhere}: no such directory"
        assert [(v["vantage"], v["state"], v["evidence"]) for v in half["vantages"]] == [
            ("a", "up", True), ("b", "up", True)]
        assert [v["vantage"] for v in half["month_vantages"]] == ["a"]
        assert half["month_outage_seconds"] == pytest.approx((ea - fa) + (ea2 - fa2), abs=3e-3)


def test_a_replica_without_credentials_is_one_line_and_no_password_is_printed(tmp_path: Path) -> None:
    """Both replicas want basic auth (their --web.config.file); b is dead. With the credentials a answers and b is
    unreachable; without them a's line says what to pass; the password is never printed. The port is loopback
    (always up): this is about asking the replicas, not about outages."""
    password = "s3cret-scrape-pass"
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  noc: '{hashed}'\n")
    (tmp_path / "password").write_text(password + "\n")
    config = tmp_path / "inventory.yml"
    config.write_text(inventory_text({"lo": "127.0.0.1"}, interval="1s"))
    listen = {"a": free_port(), "b": free_port()}
    started: dict[str, RunningProcess] = {}
    with ExitStack() as stack:
        for vantage in ("a", "b"):
            started[vantage] = RunningProcess([
                str(VENV_BIN / "threenines"), "serve", "--config", str(config), "--listen",
                f"127.0.0.1:{listen[vantage]}", "--state-dir", str(tmp_path / vantage), "--tick", "1",
                "--vantage", vantage, "--web.config.file", str(web)], tmp_path / f"exporter-{vantage}.log")
            stack.callback(started[vantage].stop)  # by PID
        for vantage in ("a", "b"):  # even /healthz wants the credentials: it answers 401 once it serves
            wait_until(lambda v=vantage: http_get(f"http://127.0.0.1:{listen[v]}/metrics", timeout=2)[0] == 401, 30,
                       what=f"replica {vantage} to serve")
            wait_until(lambda v=vantage: (tmp_path / v / "outages.sqlite").is_file(), 10, what="its ledger")
        # a has published the port as known (seen in CI: a status asked before a's first tick after its first
        # probe read the service as unknown)
        login = {"Authorization": "Basic " + base64.b64encode(f"noc:{password}".encode()).decode()}
        wait_until(lambda: re.search(rb'threenines_customer_service_known\{[^}]*service="connectivity"\} 1\n',
                                     http_get(f"http://127.0.0.1:{listen['a']}/metrics", 2, login)[1]) is not None,
                   30, what="replica a to publish the port known")
        started["b"].kill9()
        argv = [str(VENV_BIN / "threenines"), "status", "--config", str(config), "--timeout", "3",
                "--exporter", f"a=http://127.0.0.1:{listen['a']}", "--state-dir", f"a={tmp_path / 'a'}",
                "--exporter", f"b=http://noc:{password}@127.0.0.1:{listen['b']}", "--state-dir", f"b={tmp_path / 'b'}"]
        auth = ["--basic-auth-user", "noc", "--basic-auth-password-file", str(tmp_path / "password")]
        outputs = []
        for extra in (auth, [], [*auth, "--format", "json"]):
            done = subprocess.run([*argv, *extra], capture_output=True, text=True, timeout=60, check=False)
            assert done.returncode == 0, done.stderr
            outputs.append(done.stdout + done.stderr)
    with_auth, without, as_json = outputs
    assert f"replica a: exporter http://127.0.0.1:{listen['a']} answered; " in with_auth
    assert f"replica b: exporter http://127.0.0.1:{listen['b']} UNREACHABLE: ConnectionError (Connection refused)" \
        in with_auth
    assert (f"replica a: exporter http://127.0.0.1:{listen['a']} UNREACHABLE: /metrics answered HTTP 401: pass "
            "--basic-auth-user/--basic-auth-password-file; ledgers ") in without
    assert json.loads(as_json.split("\nwarning:")[0])["customers"][0]["services"][0]["state"] == "up"
    for output in outputs:
        assert password not in output
    # Nothing of any replica can be read: the same lines, and exit 1. b's port takes connections and never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        nothing = subprocess.run([
            str(VENV_BIN / "threenines"), "status", "--config", str(config), "--timeout", "1",
            "--exporter", f"a=http://127.0.0.1:{listen['a']}", "--state-dir", f"a={tmp_path / 'nowhere'}",
            "--exporter", f"b=http://127.0.0.1:{silent.getsockname()[1]}",
            "--state-dir", f"b={tmp_path / 'nowhere'}-b"],
            capture_output=True, text=True, timeout=60, check=False)
    assert nothing.returncode == 1
    assert f"replica a: exporter http://127.0.0.1:{listen['a']} UNREACHABLE: ConnectionError (Connection refused); " \
        f"ledgers {tmp_path / 'nowhere'} UNREADABLE: {tmp_path / 'nowhere'}: no such directory" in nothing.stdout
    assert "UNREACHABLE: no answer within 1 s (ReadTimeout)" in nothing.stdout
    assert "error: no replica's exporter answered and no replica's ledgers could be read" in nothing.stderr
