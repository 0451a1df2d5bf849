"""`threenines demo --ha`: every endpoint it prints answers as docs/ha.md describes the chain (two replicas with
their vantage labels, two Prometheus each scraping both, VictoriaMetrics holding one deduplicated copy, a 2-node
Alertmanager cluster), a port cut reaches the customer's contact once, the printed kill -9 / restart lines do what
they say, the printed report line runs against VictoriaMetrics, and SIGTERM leaves no process, table or file."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.parse
from collections import Counter
from pathlib import Path

import pytest

from tests.foundation.exporter_process import sample
from tests.support import VENV_BIN, http_get, running, wait_until

pytestmark = pytest.mark.netns  # root: the demo's nftables table

# How long after the guide the chain may take to show a thing: a 5 s scrape and evaluation, the remote-write
# batch, the Alertmanager cluster's gossip (--cluster.settle-timeout 5 s) on a loaded 2-CPU machine.
SETTLE = 60.0
# After the first customer message, how long no duplicate may follow: Alertmanager's --cluster.peer-timeout
# (15 s by default: the second node's wait before it would notify) + the demo's group_interval (10 s) + margin.
QUIET = 30.0


def _json(url: str) -> dict:
    status, body = http_get(url)
    assert status == 200, (url, status, body[:300])
    return json.loads(body)


def _query(base: str, expr: str) -> list[dict]:
    return _json(f"{base}/api/v1/query?query={urllib.parse.quote(expr)}")["data"]["result"]


def _sh(line: str) -> str:
    """Run a printed line exactly as a user pasting it into a shell would."""
    done = subprocess.run(line, shell=True, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{line}: {done.stdout}{done.stderr}"
    return done.stdout + done.stderr


def _gone(pid: int) -> bool:
    """No such process, or only a zombie (exited, not yet reaped by init)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (FileNotFoundError, ProcessLookupError):
        return True


def _peers(am: str) -> int:
    return len(_json(f"{am}/api/v2/status")["cluster"].get("peers") or [])


@pytest.mark.timeout(420)
def test_demo_ha_prints_a_working_chain_its_fault_lines_work_and_it_cleans_up(tmp_path: Path) -> None:
    argv = [str(VENV_BIN / "threenines"), "demo", "--ha", "--no-power"]
    with running(argv, tmp_path / "demo.log") as demo:
        wait_until(lambda: "Ctrl-C stops the demo" in demo.log(), 180, interval=0.5, what="the demo's guide")
        log = demo.log()
        replicas = {v: (u, int(p))
                    for v, u, p in re.findall(r"replica (a|b): +(http://\S+)/metrics +\(pid (\d+);", log)}
        proms = {r: (u, int(p)) for r, u, p in re.findall(r"prometheus (a|b): +(http://\S+) +\(pid (\d+);", log)}
        ams = {n: (u, int(p)) for n, u, p in re.findall(r"alertmanager (a|b): +(http://\S+) +\(pid (\d+);", log)}
        [(vm, vm_pid)] = [(u, int(p)) for u, p in re.findall(r"victoriametrics: +(http://\S+) +\(pid (\d+);", log)]
        kills = dict(re.findall(r"^ {4}kill ((?:replica|alertmanager) [ab]): +(kill -9 \d+)$", log, re.M))
        [restart] = re.findall(r"^ {4}restart killed: +(kill -USR1 \d+)$", log, re.M)
        [report] = re.findall(r"^  report: +(\S+ report --month \S+ --prometheus \S+ .+)$", log, re.M)
        [cut] = re.findall(r"^ {4}cut port: +(.+)$", log, re.M)
        [restore] = re.findall(r"^ {4}restore port: +(.+)$", log, re.M)
        workdir = Path(re.search(r"inventory: (\S+)/inventory.yml", log)[1])
        assert sorted(replicas) == sorted(proms) == sorted(ams) == ["a", "b"], log
        assert sorted(kills) == ["alertmanager a", "alertmanager b", "replica a", "replica b"], log
        assert f"--prometheus {vm} " in report, report
        assert restart == f"kill -USR1 {demo.pid}"
        pids = {vm_pid, *(p for _, p in replicas.values()), *(p for _, p in proms.values()),
                *(p for _, p in ams.values())}
        assert len(pids) == 7

        # Each replica's contract families carry its own vantage label.
        for vantage, (url, _) in replicas.items():
            _, body = http_get(f"{url}/metrics")
            text = body.decode()
            assert sample(text, "threenines_service_up", customer="acme", target="uplink-a", vantage=vantage) == 1
            assert f'vantage="{"b" if vantage == "a" else "a"}"' not in text

        # Both Prometheus are ready, scrape both replicas, evaluate the shipped rules and know both Alertmanagers.
        targets = sorted(u.removeprefix("http://") for u, _ in replicas.values())
        for replica, (url, _) in proms.items():
            assert http_get(f"{url}/-/ready")[0] == 200

            def both_up(url: str = url) -> bool:
                up = _query(url, 'up{job="threenines"}')
                return sorted(r["metric"]["instance"] for r in up if r["value"][1] == "1") == targets

            wait_until(both_up, SETTLE, interval=1, what=f"prometheus {replica} to scrape both replicas")
            vantages = {r["metric"]["vantage"] for r in _query(url, 'threenines_service_up{customer="acme"}')}
            assert vantages == {"a", "b"}
            managers = _json(f"{url}/api/v1/alertmanagers")["data"]["activeAlertmanagers"]
            assert sorted(m["url"].split("/")[2] for m in managers) == sorted(
                u.removeprefix("http://") for u, _ in ams.values())
            assert _json(f"{url}/api/v1/status/config")["status"] == "success"

        # VictoriaMetrics holds both vantages' series once: the pair's `replica` label is dropped on remote write.
        def in_store() -> list[dict]:
            match = urllib.parse.quote('threenines_service_up{customer="acme",target="uplink-a"}')
            return _json(f"{vm}/api/v1/series?match[]={match}")["data"]

        series = wait_until(lambda: len(in_store()) == 2 and in_store(), SETTLE, interval=1,
                            what="VictoriaMetrics to hold the series")
        assert sorted(s["vantage"] for s in series) == ["a", "b"]
        assert not [s for s in series if "replica" in s], series

        # The Alertmanagers form one cluster of two.
        for node, (url, _) in ams.items():
            wait_until(lambda url=url: _peers(url) == 2, SETTLE, interval=1, what=f"alertmanager {node}'s peers")

        # The whole chain: a port cut is determined by both replicas, alerted by both Prometheus, notified by the
        # cluster once, delivered by one replica to the customer's contact (the demo's webhook) once.
        notifications = workdir / "notifications.jsonl"

        def received() -> list[dict]:
            lines = notifications.read_text().splitlines() if notifications.exists() else []
            return [json.loads(line) for line in lines]

        _sh(cut)
        firing = wait_until(lambda: [n for n in received() if n["status"] == "firing"], 90, interval=1,
                            what="the customer's firing notification")
        assert {(n["customer"]["id"], n["service"], n["target"]["id"]) for n in firing} == {
            ("globex", "connectivity", "cross-connect-7")}
        assert "notification received: globex (firing)" in demo.log()
        time.sleep(QUIET)
        # One message per outage event, however many replicas and Alertmanager nodes saw it. (Counted per event:
        # another test's demo on this host may cut the same loopback address, which is another outage.)
        events = Counter((n["status"], n["determined_at"]) for n in received())
        assert events and set(events.values()) == {1}, received()
        _sh(restore)

        # kill -9 one replica and one Alertmanager node with the printed lines; the printed restart line starts
        # them again on the same port (new PIDs, printed), and the cluster is two again.
        _sh(kills["replica a"])
        _sh(kills["alertmanager b"])
        wait_until(lambda: "replica a (pid" in demo.log() and "alertmanager b (pid" in demo.log(), 10,
                   what="the demo to notice the kills")
        assert http_get(f"{replicas['b'][0]}/healthz")[0] == 200
        _sh(restart)
        wait_until(lambda: len(re.findall(r"restarted (?:replica a|alertmanager b): pid \d+", demo.log())) == 2,
                   SETTLE, what="the demo to restart both")
        restarted = {int(p) for p in re.findall(r"restarted \S+ \S+: pid (\d+)", demo.log())}
        assert len(restarted) == 2 and not restarted & pids
        pids |= restarted
        assert http_get(f"{replicas['a'][0]}/healthz")[0] == 200
        wait_until(lambda: _peers(ams["b"][0]) == 2, SETTLE, interval=1, what="the restarted node to rejoin")

        # The printed report line runs against VictoriaMetrics and says so.
        out = _sh(report)
        assert "VictoriaMetrics" in out, out[:2000]

        demo.proc.send_signal(signal.SIGTERM)
        assert demo.proc.wait(timeout=90) == 0, demo.log()[-3000:]
    assert not workdir.exists()
    assert [p for p in pids if not _gone(p)] == []
    table = cut.split()[4]
    listed = subprocess.run(["nft", "list", "table", "inet", table], capture_output=True, timeout=10)
    assert listed.returncode != 0, f"nftables table {table} left behind"
