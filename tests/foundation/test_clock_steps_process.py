"""Issue 22, "wall-clock steps", against the real `threenines serve`: libfaketime steps the process's wall clock
(CLOCK_REALTIME only: FAKETIME_DONT_FAKE_MONOTONIC=1) while it runs, by rewriting FAKETIME_TIMESTAMP_FILE.

A port is cut in a network namespace the test creates; nothing else is pinged but 127.0.0.0/8. The pure tests
of the same rules, with injected clocks: test_clock_steps.py."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.foundation.exporter_process import inventory_text, sample, scrape
from tests.netns import CustomerPort, customer_port
from tests.support import VENV_BIN, RunningProcess, free_port, http_post, running, wait_until

pytestmark = pytest.mark.netns  # root: a network namespace per customer port

INTERVAL = 2.0
HOUR = 3600.0


def libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        pytest.fail("libfaketime is not installed (apt-get install faketime; the Makefile's APT_PACKAGES has it)")
    return found[0]


@contextlib.contextmanager
def serve_stepped(tmp_path: Path, ports: dict[str, str], deadline: str | None = None
                  ) -> Iterator[tuple[RunningProcess, int, Path]]:
    """`threenines serve` whose wall clock is the real one plus what the test writes to the yielded file."""
    config = tmp_path / "inventory.yml"
    config.write_text(inventory_text(ports, interval=f"{INTERVAL:g}s", deadline=deadline))
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    port = free_port()
    argv = [str(VENV_BIN / "threenines"), "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}",
            "--state-dir", str(tmp_path / "state"), "--tick", "1"]
    ready = f"http://127.0.0.1:{port}/healthz"
    with running(argv, tmp_path / "exporter.log", ready_url=ready, env=faked(offset)) as proc:
        yield proc, port, offset


def faked(offset: Path) -> dict[str, str]:
    """The environment that gives a process the real wall clock plus what `offset` says (re-read at every call)."""
    return {"LD_PRELOAD": libfaketime(), "FAKETIME_TIMESTAMP_FILE": str(offset), "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


def value(port: int, name: str, **labels: str) -> float:
    found = sample(scrape(port), name, **labels)
    return found if found is not None else 0.0


def steps(port: int, direction: str) -> float:
    return value(port, "threenines_clock_steps_total", direction=direction)


def probes(port: int, target: str) -> float:
    return value(port, "threenines_probe_total", target=target)


def answering(port: int, target: str) -> None:
    wait_until(lambda: sample(scrape(port), "threenines_service_known", target=target) == 1, 15,
               what=f"{target} to answer")


def determined(port: int, target: str) -> tuple[float, float]:
    """Wait for the outage's determination: (its first failed probe, its determination), as exported."""
    def done() -> tuple[float, float] | None:
        text = scrape(port)
        if sample(text, "threenines_service_up", target=target) != 0:
            return None
        return (sample(text, "threenines_service_outage_start_timestamp_seconds", target=target),  # type: ignore
                sample(text, "threenines_service_determined_timestamp_seconds", target=target))
    return wait_until(done, 6 * INTERVAL, what="the outage to be determined")


def recover(port: int, link: CustomerPort, target: str) -> float:
    """Restore the link and wait for the outage to end; returns when the link came back (the test's clock)."""
    restored_at = time.time()
    link.up()
    wait_until(lambda: sample(scrape(port), "threenines_service_up", target=target) == 1, 6 * INTERVAL,
               what="the outage to end")
    return restored_at


def ledger(state_dir: Path) -> tuple[tuple[float, float, float], list[tuple[float, float]]]:
    """The one outage (first failed, determined, ended) and its gaps."""
    with sqlite3.connect(state_dir / "outages.sqlite") as db:
        [row] = db.execute("SELECT first_failed_at, determined_at, ended_at FROM outages").fetchall()
        gaps = db.execute("SELECT gap_start, gap_end FROM outage_gaps ORDER BY gap_start").fetchall()
    return row, gaps


def test_after_a_backward_step_probing_goes_on_and_a_cut_port_is_determined(tmp_path: Path) -> None:
    with customer_port() as link, serve_stepped(tmp_path, {"ns": link.address, "lo": "127.0.60.1"}) as (
            _, port, offset):
        answering(port, "ns")
        offset.write_text("-3600\n")  # a VM restore, or an NTP step after a bad RTC
        wait_until(lambda: steps(port, "backward") == 1, 10, what="the step to be counted")
        before = probes(port, "lo")
        # old code: due times were wall-clock times, an hour ahead now: no probe for an hour, up and known all along
        wait_until(lambda: probes(port, "lo") >= before + 3, 5 * INTERVAL, what="probing to go on")
        assert value(port, "threenines_probe_failures_total", target="lo") == 0
        cut_at = time.time()
        link.down()
        started, determined_at = determined(port, "ns")
        # stamped on the corrected clock (nothing pending, so the stamps moved): an hour behind the test's
        assert cut_at - HOUR <= started < determined_at <= time.time() - HOUR
        assert abs((determined_at - started) - INTERVAL) < 0.5  # the second consecutive failed probe
        restored_at = recover(port, link, "ns")
        (first_failed, _, ended), gaps = ledger(tmp_path / "state")
        assert first_failed == started and gaps == []
        assert restored_at - HOUR <= ended <= restored_at - HOUR + INTERVAL + 1
        wait_until(lambda: abs(value(port, "threenines_service_outage_seconds_total", target="ns")
                               - (ended - first_failed)) < 0.01, 5, what="the counter to match the ledger")
        assert steps(port, "forward") == 0


def test_a_forward_step_during_an_outage_adds_no_outage_seconds(tmp_path: Path) -> None:
    # A 3 s notification deadline passes (unnotified: no Alertmanager here) before the step, so nothing is
    # pending and the stamps move onto the stepped clock while the outage is open.
    with customer_port() as link, serve_stepped(tmp_path, {"ns": link.address}, deadline="3s") as (
            _, port, offset):
        answering(port, "ns")
        link.down()
        started, _ = determined(port, "ns")
        wait_until(lambda: value(port, "threenines_notification_deadline_missed_total", customer="acme") == 1, 10,
                   what="the deadline to pass")
        offset.write_text("+3600\n")
        wait_until(lambda: steps(port, "forward") == 1, 10, what="the step to be counted")
        failures = value(port, "threenines_probe_failures_total", target="ns")
        wait_until(lambda: value(port, "threenines_probe_failures_total", target="ns") >= failures + 2,
                   5 * INTERVAL, what="the outage to go on after the step")
        restored_at = recover(port, link, "ns")
        (first_failed, _, ended), gaps = ledger(tmp_path / "state")
        assert first_failed == started  # the outage keeps its start (its ledger key)
        assert restored_at + HOUR <= ended <= restored_at + HOUR + INTERVAL + 1  # ended on the corrected clock
        [(gap_start, gap_end)] = gaps  # the stretch the stamps skipped: no time passed there, so no outage
        assert abs(gap_end - gap_start - HOUR) < 1
        billed = ended - first_failed - (gap_end - gap_start)
        real = restored_at - started  # to within the probe that found the link back
        assert real <= billed <= real + INTERVAL + 1  # old code: real + 3600
        wait_until(lambda: abs(value(port, "threenines_service_outage_seconds_total", target="ns") - billed) < 0.01,
                   5, what="the counter to match the ledger")
        # watched all along: no unknown time but the wait for the first probe (old code: the hour, stale evidence)
        assert value(port, "threenines_service_unknown_seconds_total", target="ns") < INTERVAL + 1


def webhook(port: int, determined_at: float) -> tuple[int, bytes]:
    """What Alertmanager posts for the outage's ThreeninesServiceUnavailable (its determined_at annotation)."""
    alert = {"status": "firing", "labels": {"alertname": "ThreeninesServiceUnavailable", "customer": "acme",
                                            "service": "connectivity", "target": "ns", "severity": "critical",
                                            "audience": "customer"},
             "annotations": {"determined_at": f"{determined_at:.3f}"}, "startsAt": "2027-01-15T08:00:00Z",
             "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": "f1"}
    body = {"version": "4", "groupKey": "{}:{}", "status": "firing", "receiver": "customer-acme",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "", "alerts": [alert]}
    return http_post(f"http://127.0.0.1:{port}/alertmanager/webhook", json.dumps(body).encode(),
                     headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("step", [HOUR, -HOUR])
def test_a_step_between_determination_and_dispatch_is_no_false_late_notification(tmp_path: Path, step: float
                                                                                 ) -> None:
    with customer_port() as link, serve_stepped(tmp_path, {"ns": link.address}) as (_, port, offset):
        answering(port, "ns")
        link.down()
        started, determined_at = determined(port, "ns")
        determined_seen = time.time()
        offset.write_text(f"{step:+.0f}\n")
        wait_until(lambda: steps(port, "forward" if step > 0 else "backward") == 1, 10,
                   what="the step to be counted")
        status, answer = webhook(port, determined_at)
        dispatched = time.time()
        assert status == 200, answer  # old code, -1 h: refused, "determined in the future"
        with sqlite3.connect(tmp_path / "state" / "audit.sqlite") as db:
            [(delay, late)] = db.execute("SELECT delay, late FROM dispatches").fetchall()
        assert late == 0 and 0 <= delay <= dispatched - determined_seen + 5  # old code, +1 h: an hour late
        restored_at = recover(port, link, "ns")
        (first_failed, _, ended), gaps = ledger(tmp_path / "state")
        # the notification deadline (15 min) was pending all along: the stamps did not move yet
        assert first_failed == started and gaps == []
        assert restored_at - started <= ended - first_failed <= restored_at - started + INTERVAL + 1
        wait_until(lambda: abs(value(port, "threenines_service_outage_seconds_total", target="ns")
                               - (ended - first_failed)) < 0.01, 5, what="the counter to match the ledger")
        assert value(port, "threenines_service_unknown_seconds_total", target="ns") < INTERVAL + 1
        assert value(port, "threenines_notification_deadline_missed_total", customer="acme") == 0


# One probe of 127.0.60.1, in a process whose wall clock is an hour off the kernel's reply stamps (SO_TIMESTAMPNS
# is stamped by the kernel, which libfaketime does not reach): a step between the request and its reply.
PROBE_ONCE = """
import asyncio, sys
from threenines.probes.ping import Pinger, Probe

async def main():
    done = []
    pinger = Pinger(done.extend, wire=sys.argv[1])
    pinger.open((4,))
    probe = Probe("k", "127.0.60.1", 1, 1.0, 0.2)
    pinger.send(probe)
    for _ in range(40):
        await asyncio.sleep(0.05)
        pinger.expire()
        if done:
            break
    pinger.close()
    print(done[0].ok if done else "unfinished", done[0].rtt_mean if done else "")

asyncio.run(main())
"""


@pytest.mark.parametrize("wire", ["native", "python"])
@pytest.mark.parametrize("step", ["-3600", "+3600"])
def test_an_answer_across_a_wall_clock_step_is_not_a_lost_request(tmp_path: Path, wire: str, step: str) -> None:
    offset = tmp_path / "faketime"
    offset.write_text(step + "\n")
    result = subprocess.run([str(VENV_BIN / "python"), "-c", PROBE_ONCE, wire], capture_output=True, text=True,
                            timeout=30, env={**os.environ, **faked(offset)})
    assert result.returncode == 0, result.stderr
    ok, rtt = result.stdout.split()
    assert ok == "True", result.stdout  # old code, -1 h: the reply's wall-clock RTT was an hour: lost
    assert 0 <= float(rtt) < 1.0  # timed on the monotonic clock, as read
