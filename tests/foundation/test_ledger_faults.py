"""Issue 22, faults that must not need a human: the ledgers on a full disk, corrupt, or where they cannot be
written. Real SQLite files on a small tmpfs each test mounts itself, a real `threenines serve`, a real Prometheus
evaluating the shipped alert rules.

A full disk: the exporter starts and probes, keeps the writes in memory, says so (metrics, alerts) and lands them
exactly once when there is room again. A corrupt ledger, or one it cannot write: it refuses to start with one
line that names the file and the fix, and leaves the file as it was. docs/design.md, "Faults".

Every mount is undone, every nftables table deleted and every process stopped by its PID in finally blocks.
Probes go to 127.0.0.0/8 only; one of those addresses is made silent by the test's own nftables rule.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.foundation.exporter_process import inventory_text, sample, scrape, serve
from tests.foundation.faultinject import probing_goes_on
from tests.support import REPO, VENV_BIN, free_port, http_get, http_post, running, wait_until
from threenines.config.inventory import TargetKey
from threenines.contract.engine import ContractEngine, TargetSpec
from threenines.contract.machine import Checkpoint, OutageEvent
from threenines.ledgers.audit import AuditLedger, Dispatch
from threenines.ledgers.outages import OutageLedger
from threenines.ledgers.sqlite import LedgerError

pytestmark = pytest.mark.netns  # root: nftables

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
ALERT_RULES = REPO / "prometheus" / "rules" / "threenines.alerts.yml"
A = TargetKey("acme", "connectivity", "a")
B = TargetKey("acme", "connectivity", "b")
HORIZON = 450.0


def _run(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, f"{' '.join(argv)}: {result.stderr}"


def _unmount(where: Path) -> None:
    """Unmount; if a file is still open there (a connection an exception left behind), collect it and retry, and
    detach the mount at last (it goes away with the last open file)."""
    for _ in range(2):
        if subprocess.run(["umount", str(where)], capture_output=True, timeout=30, check=False).returncode == 0:
            return
        gc.collect()
    _run("umount", "--lazy", str(where))


@contextlib.contextmanager
def small_fs(where: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where` (made here), unmounted when the block ends."""
    where.mkdir(parents=True)
    _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where))
    try:
        yield where
    finally:
        _unmount(where)


def fill(fs: Path) -> Path:
    """Fill the file system to its last page; delete the returned file to give the room back."""
    filler = fs / "filler"
    chunk = b"\0" * 4096
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(shutil.disk_usage(fs).total // len(chunk) + 16):
            try:
                os.write(fd, chunk)
            except OSError as err:
                assert err.errno == errno.ENOSPC, err
                return filler
    finally:
        os.close(fd)
    raise AssertionError(f"{fs} never filled up")


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """`directory` as a read-only bind mount of itself (what an fstab `ro`, or errors=remount-ro, gives)."""
    _run("mount", "--bind", str(directory), str(directory))
    try:
        _run("mount", "-o", "remount,bind,ro", str(directory))
        yield
    finally:
        _unmount(directory)


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    _run("chattr", "+i", str(path))
    try:
        yield
    finally:
        _run("chattr", "-i", str(path))


@contextlib.contextmanager
def silent(address: str) -> Iterator[None]:
    """Echo requests to `address` (127.0.0.0/8) are dropped as they arrive: its probes get no answer. (Dropped on
    the way out, sendto() would fail with EPERM: a probe not sent, unknown rather than failed.)"""
    table = f"tn_ledger_faults_{os.getpid()}"
    _run("nft", f"add table inet {table}; add chain inet {table} in {{ type filter hook input priority 0; }}; "
                f"add rule inet {table} in ip daddr {address} icmp type echo-request drop")
    try:
        yield
    finally:
        _run("nft", "delete", "table", "inet", table)


def rows(path: Path, sql: str) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return db.execute(sql).fetchall()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def serve_argv(config: Path, state: Path) -> list[str]:
    return [str(VENV_BIN / "threenines"), "serve", "--config", str(config), "--listen", f"127.0.0.1:{free_port()}",
            "--state-dir", str(state), "--tick", "1"]


def refused_start(config: Path, state: Path) -> subprocess.CompletedProcess[str]:
    """`threenines serve` that must exit by itself; stopped by its PID after 60 s if it does not."""
    process = subprocess.Popen(serve_argv(config, state), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def determined(key: TargetKey, first_failed: float, at: float) -> OutageEvent:
    return OutageEvent("determined", key, at, first_failed, at)


def pending(ledger: OutageLedger) -> int:
    return sum(ledger.pending().values())


# -- a full disk ----------------------------------------------------------------------------------------------


def test_a_new_ledger_on_a_full_disk_opens_later_and_its_queued_writes_land_once(tmp_path: Path) -> None:
    with small_fs(tmp_path / "fs") as fs:
        filler = fill(fs)
        path = fs / "state" / "outages.sqlite"
        ledger = OutageLedger(path)  # raised "database or disk is full" at PRAGMA journal_mode=WAL
        try:
            ledger.add_targets([A, B], 100.0)
            ledger.record(determined(A, 300.0, 600.0))
            ledger.save_checkpoint(B, Checkpoint(None, 500.0, 1, 500.0, ((500.0, 600.0),)))
            ledger.heartbeat(610.0)
            for _ in range(3):
                ledger.flush()
            assert ledger.pending() == {"record": 1, "target": 2, "checkpoint": 1, "heartbeat": 1}
            assert ledger.writes_failed >= 3 and ledger.writes_ok == 0
            # what is queued reads as written: a reload or the deadline watch sees it
            assert ledger.known_targets() == {A, B}
            assert ledger.open_outages() == {A: (300.0, 600.0)}
            assert ledger.last_alive() == 610.0
            assert ledger.checkpoints()[B].fail_start == 500.0

            filler.unlink()
            ledger.flush()
            ledger.flush()
            assert pending(ledger) == 0
            assert ledger.writes_ok == 1 and ledger.recovery_writes["target"][0] == 2
        finally:
            ledger.close()
        assert rows(path, "SELECT kind, target, first_failed_at, determined_at FROM outage_events") == [
            ("determined", "a", 300.0, 600.0)]
        assert rows(path, "SELECT target, added_at FROM targets ORDER BY target") == [("a", 100.0), ("b", 100.0)]
        assert rows(path, "SELECT target, fail_start FROM checkpoints") == [("b", 500.0)]
        assert rows(path, "SELECT alive_at FROM heartbeat") == [(610.0,)]


def test_a_restart_on_a_full_disk_resumes_from_the_ledger_and_adds_a_new_port_later(tmp_path: Path) -> None:
    with small_fs(tmp_path / "fs") as fs:
        path = fs / "state" / "outages.sqlite"
        ledger = OutageLedger(path)
        engine = ContractEngine(ledger)
        engine.configure([TargetSpec(A, 2, HORIZON)], 0)
        for at, ok in ((0, True), (300, False), (600, False)):
            engine.observe(A, at, ok)
            engine.tick(at)
        ledger.close()  # a clean stop: the WAL is checkpointed and removed, so a restart needs room for -shm
        filler = fill(fs)

        ledger = OutageLedger(path)  # raised "disk I/O error" (SQLITE_IOERR_SHMSIZE) here
        try:
            assert ledger.open_outages() == {A: (300.0, 600.0)}
            assert ledger.last_alive() == 600.0
            engine = ContractEngine(ledger)
            engine.configure([TargetSpec(A, 2, HORIZON), TargetSpec(B, 2, HORIZON)], 700)  # B: a new port
            assert engine.machine(A).view().up is False  # the open outage resumed: same row, same determination
            engine.observe(A, 900, True)
            engine.observe(B, 900, True)
            engine.tick(900)
            assert ledger.pending() == {"record": 2, "target": 1, "checkpoint": 0, "heartbeat": 1}  # gap, end; B
            assert [o.ended_at for o in ledger.outages()] == [900.0]
            filler.unlink()
            engine.tick(915)
            assert pending(ledger) == 0
        finally:
            ledger.close()
        assert rows(path, "SELECT kind, determined_at, at FROM outage_events ORDER BY id") == [
            ("determined", 600.0, 600.0), ("ended", 600.0, 900.0)]
        assert rows(path, "SELECT target FROM targets ORDER BY target") == [("a",), ("b",)]
        assert rows(path, "SELECT determined_at, gap_start, gap_end FROM outage_gaps") == [(600.0, 600.0, 900.0)]


def test_checkpoint_and_heartbeat_writes_the_disk_refuses_are_counted_and_retried(tmp_path: Path) -> None:
    with small_fs(tmp_path / "fs") as fs:
        path = fs / "state" / "outages.sqlite"
        ledger = OutageLedger(path)
        try:
            ledger.heartbeat(10.0)
            filler = fill(fs)
            run = Checkpoint(None, 300.0, 1, 300.0, ((300.0, 310.0),))
            ledger.save_checkpoint(A, run)  # was a WARNING, and the run was gone after a restart
            ledger.heartbeat(20.0)
            ledger.flush()
            assert ledger.recovery_writes["checkpoint"][1] >= 1
            assert ledger.pending() == {"record": 0, "target": 0, "checkpoint": 1, "heartbeat": 1}
            assert ledger.checkpoints()[A] == run
            # the heartbeat waits for the checkpoint: it claims that everything before it is on disk
            assert rows(path, "SELECT alive_at FROM heartbeat") == [(10.0,)]
            filler.unlink()
            ledger.flush()
            assert pending(ledger) == 0
        finally:
            ledger.close()
        assert rows(path, "SELECT target, fail_start, fail_count FROM checkpoints") == [("a", 300.0, 1)]
        assert rows(path, "SELECT alive_at FROM heartbeat") == [(20.0,)]


def test_writes_still_refused_at_stop_are_each_logged_with_what_they_say(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with small_fs(tmp_path / "fs") as fs:
        fill(fs)
        ledger = OutageLedger(fs / "state" / "outages.sqlite")
        ledger.record(determined(A, 300.0, 600.0))
        ledger.heartbeat(610.0)
        ledger.close()
    lost = [r.getMessage() for r in caplog.records if "lost with this process" in r.getMessage()]
    assert lost == ["outage ledger: not written, lost with this process: kind=determined customer=acme "
                    "service=connectivity target=a at=600.000 first_failed_at=300.000 determined_at=600.000 "
                    "end_reason= gap_start=0.000"]
    assert any("closed with writes the disk refused" in r.getMessage() and "record=1, heartbeat=1" in r.getMessage()
               for r in caplog.records)


def test_the_audit_ledger_on_a_full_disk_refuses_writes_until_there_is_room(tmp_path: Path) -> None:
    with small_fs(tmp_path / "fs") as fs:
        filler = fill(fs)
        path = fs / "state" / "audit.sqlite"
        ledger = AuditLedger(path)  # raised "database or disk is full"
        try:
            assert list(ledger.dispatches()) == [] and list(ledger.misses()) == []
            row = Dispatch(1000.0, "customer-acme", "f", "A", "acme", "connectivity", "a", 940.0, "", "", False,
                           "1", 900.0, 60.0, True, False, "")
            with pytest.raises(sqlite3.Error):
                ledger.append([row])  # the webhook answers 500: Alertmanager retries the delivery
            assert ledger.writes_failed == 1
            filler.unlink()
            ledger.append([row])
            assert list(ledger.dispatches()) == [row] and ledger.writes_ok == 1
        finally:
            ledger.close()


# -- corrupt ledgers ----------------------------------------------------------------------------------------


def corrupt(path: Path, how: str) -> None:
    """Overwrite bytes of the file the way a torn write or a bad block does."""
    data = bytearray(path.read_bytes())
    if how == "header":
        data[0:16] = b"\xff" * 16
    else:  # how is a table or index: scribble over its root page's b-tree header
        [(root,)] = rows(path, f"SELECT rootpage FROM sqlite_master WHERE name = '{how}'")
        page_size = int.from_bytes(data[16:18], "big")
        start = (root - 1) * page_size
        data[start:start + 12] = b"\xff" * 12
    path.write_bytes(bytes(data))


def a_written_outage_ledger(path: Path) -> None:
    ledger = OutageLedger(path)
    ledger.add_targets([A, B], 0.0)
    ledger.record(determined(A, 300.0, 600.0))
    ledger.record(OutageEvent("gap", A, 900.0, 300.0, 600.0, gap_start=700.0))
    ledger.heartbeat(900.0)
    ledger.close()


@pytest.mark.parametrize("how", ["header", "outage_events", "outage_gaps", "outage_events_once", "checkpoints"])
def test_a_corrupt_outage_ledger_is_refused_and_kept_as_it_is(tmp_path: Path, how: str) -> None:
    path = tmp_path / "outages.sqlite"
    a_written_outage_ledger(path)
    corrupt(path, how)
    before = digest(path)
    with pytest.raises(LedgerError) as refused:
        OutageLedger(path)  # outage_gaps, the index and checkpoints opened silently, the others raised a traceback
    assert str(path) in str(refused.value) and "is corrupt" in str(refused.value)
    assert "docs/alerting.md#a-ledger-refused-at-start" in str(refused.value)
    assert digest(path) == before  # not repaired, not replaced, not deleted


@pytest.mark.parametrize("how", ["header", "dispatches", "misses"])
def test_a_corrupt_audit_ledger_is_refused_and_kept_as_it_is(tmp_path: Path, how: str) -> None:
    path = tmp_path / "audit.sqlite"
    AuditLedger(path).close()
    corrupt(path, how)
    before = digest(path)
    with pytest.raises(LedgerError) as refused:
        AuditLedger(path)
    assert str(path) in str(refused.value) and "is corrupt" in str(refused.value)
    assert digest(path) == before


# -- where the ledgers cannot be written ----------------------------------------------------------------


@pytest.mark.parametrize("where", ["read-only mount", "immutable directory", "immutable file"])
def test_a_ledger_that_cannot_be_written_is_refused_with_the_fix(tmp_path: Path, where: str) -> None:
    state = tmp_path / "state"
    path = state / "outages.sqlite"
    a_written_outage_ledger(path)
    fault = (read_only(state) if where == "read-only mount" else
             immutable(state) if where == "immutable directory" else immutable(path))
    with fault, pytest.raises(LedgerError) as refused:
        OutageLedger(path)  # a traceback (unable to open database file), or a silent start that wrote nothing
    message = str(refused.value)
    assert str(path) in message and "cannot be written" in message
    assert ("Read-only file system" if where == "read-only mount" else "Operation not permitted") in message
    assert rows(path, "SELECT count(*) FROM outage_events") == [(1,)]


# -- a real `threenines serve` --------------------------------------------------------------------------


def alerts(prometheus: int, name: str) -> list[dict]:
    status, body = http_get(f"http://127.0.0.1:{prometheus}/api/v1/alerts")
    assert status == 200
    return [a for a in json.loads(body)["data"]["alerts"] if a["labels"]["alertname"] == name]


def pending_writes(port: int, kind: str) -> float:
    value = sample(scrape(port), "threenines_ledger_pending_writes", ledger="outage", kind=kind)
    assert value is not None, "threenines_ledger_pending_writes is exported for every kind"
    return value


def test_serve_restarted_with_a_new_port_on_a_full_disk_probes_alerts_and_lands_the_queue_once(
        tmp_path: Path) -> None:
    config = tmp_path / "inventory.yml"
    config.write_text(inventory_text({"a": "127.0.91.1"}, interval="1s"))
    with small_fs(tmp_path / "fs") as fs:
        state = fs / "state"
        proc, port = serve(tmp_path, config, state)
        with proc:
            wait_until(lambda: sample(scrape(port), "threenines_service_known", target="a") == 1, 20,
                       what="the first probe")
        [(first_added,)] = rows(state / "outages.sqlite", "SELECT added_at FROM targets WHERE target = 'a'")
        filler = fill(fs)

        # The restart the adversarial run made: a new port, and one that goes down while the disk is full.
        config.write_text(inventory_text({"a": "127.0.91.1", "b": "127.0.91.2", "down": "127.0.91.3"},
                                         interval="1s"))
        prom_port = free_port()
        proc, port = serve(tmp_path, config, state)  # exited: "database or disk is full" in add_targets
        prom_config = tmp_path / "prometheus.yml"
        prom_config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERT_RULES)],
            "scrape_configs": [{"job_name": "threenines",
                                "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}],
        }))
        prom_argv = [PROMETHEUS, f"--config.file={prom_config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                     f"--web.listen-address=127.0.0.1:{prom_port}"]
        with silent("127.0.91.3"), proc as exporter, \
                running(prom_argv, tmp_path / "prometheus.log", f"http://127.0.0.1:{prom_port}/-/ready"):
            probing_goes_on(port, "b")
            wait_until(lambda: sample(scrape(port), "threenines_service_up", target="down") == 0, 20,
                       what="the silent port's outage to be determined")
            text = scrape(port)
            assert sample(text, "threenines_ledger_pending_writes", ledger="outage", kind="target") == 2
            assert sample(text, "threenines_ledger_pending_writes", ledger="outage", kind="record") == 1
            assert sample(text, "threenines_ledger_writes_total", ledger="outage", result="error") >= 1
            assert sample(text, "threenines_ledger_recovery_writes_total", ledger="outage", kind="target",
                          result="error") >= 1
            wait_until(lambda: alerts(prom_port, "ThreeninesLedgerWritesPending"), 30,
                       what="ThreeninesLedgerWritesPending to be pending or firing")
            wait_until(lambda: [a for a in alerts(prom_port, "ThreeninesLedgerWriteErrors")
                                if a["state"] == "firing" and a["labels"]["ledger"] == "outage"], 30,
                       what="ThreeninesLedgerWriteErrors to fire")
            assert "outage ledger" in exporter.log() and "Kept in memory" in exporter.log()

            filler.unlink()
            wait_until(lambda: pending_writes(port, "record") + pending_writes(port, "target") == 0, 20,
                       what="the queued writes to land")
            wait_until(lambda: not alerts(prom_port, "ThreeninesLedgerWritesPending"), 30,
                       what="ThreeninesLedgerWritesPending to end")
            assert "outage ledger writes work again" in exporter.log()
            probing_goes_on(port, "b")
        ledger = state / "outages.sqlite"
        assert rows(ledger, "SELECT target, count(*) FROM targets GROUP BY target ORDER BY target") == [
            ("a", 1), ("b", 1), ("down", 1)]
        assert rows(ledger, "SELECT added_at FROM targets WHERE target = 'a'") == [(first_added,)]
        events = rows(ledger, "SELECT kind, target, determined_at FROM outage_events ORDER BY id")
        assert [(kind, target) for kind, target, _ in events][:1] == [("determined", "down")]
        assert len(events) == len(set(events))  # each event once
        [(_, _, when)] = [e for e in events if e[0] == "determined"]
        assert sample(text, "threenines_service_determined_timestamp_seconds", target="down") == pytest.approx(
            when, abs=1e-3)


def test_serve_on_an_empty_state_dir_on_a_full_disk_starts_and_the_audit_webhook_retries(tmp_path: Path) -> None:
    config = tmp_path / "inventory.yml"
    config.write_text(inventory_text({"a": "127.0.92.1"}, interval="1s"))
    with small_fs(tmp_path / "fs") as fs:
        filler = fill(fs)
        state = fs / "state"
        proc, port = serve(tmp_path, config, state)  # exited: "database or disk is full" at journal_mode=WAL
        with proc as exporter:
            probing_goes_on(port, "a")
            assert pending_writes(port, "heartbeat") == 1 and pending_writes(port, "target") == 1
            alert = {"status": "firing", "startsAt": "2026-11-23T06:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                     "fingerprint": "f1", "annotations": {"determined_at": f"{time.time() - 60:.3f}"},
                     "labels": {"alertname": "ThreeninesServiceUnavailable", "customer": "acme",
                                "service": "connectivity", "target": "a"}}
            body = json.dumps({"receiver": "customer-acme", "groupKey": "g", "alerts": [alert]}).encode()
            url = f"http://127.0.0.1:{port}/alertmanager/webhook"
            assert http_post(url, body)[0] == 500  # not on disk: Alertmanager keeps it and retries
            wait_until(lambda: sample(scrape(port), "threenines_ledger_writes_total", ledger="audit",
                                      result="error") == 1, 10, what="the refused audit write to be counted")
            filler.unlink()
            assert http_post(url, body)[0] == 200
            wait_until(lambda: pending_writes(port, "heartbeat") + pending_writes(port, "target") == 0, 20,
                       what="the outage ledger to open")
            assert "cannot be opened for writing" in exporter.log()
        assert rows(state / "audit.sqlite", "SELECT count(*) FROM dispatches") == [(1,)]
        assert rows(state / "outages.sqlite", "SELECT target FROM targets") == [("a",)]


@pytest.mark.parametrize(("ledger", "how"), [("outages.sqlite", "outage_gaps"), ("outages.sqlite", "targets"),
                                             ("audit.sqlite", "misses")])
def test_serve_refuses_a_corrupt_ledger_naming_the_file(tmp_path: Path, ledger: str, how: str) -> None:
    config = tmp_path / "inventory.yml"
    config.write_text(inventory_text({"a": "127.0.93.1"}, interval="1s"))
    state = tmp_path / "state"
    proc, port = serve(tmp_path, config, state)
    with proc:
        wait_until(lambda: sample(scrape(port), "threenines_service_known", target="a") == 1, 20,
                   what="the first probe")
    path = state / ledger
    corrupt(path, how)
    before = digest(path)
    result = refused_start(config, state)  # started silently (outage_gaps, misses) or died with a traceback
    assert result.returncode == 1, result.stderr
    assert f"error: cannot start: {path}: the " in result.stderr and "is corrupt" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert digest(path) == before


@pytest.mark.parametrize("where", ["read-only mount", "immutable directory"])
def test_serve_refuses_a_state_dir_it_cannot_write_naming_it(tmp_path: Path, where: str) -> None:
    config = tmp_path / "inventory.yml"
    config.write_text(inventory_text({"a": "127.0.94.1"}, interval="1s"))
    state = tmp_path / "state"
    proc, port = serve(tmp_path, config, state)
    with proc:
        wait_until(lambda: sample(scrape(port), "threenines_service_known", target="a") == 1, 20,
                   what="the first probe")
    with read_only(state) if where == "read-only mount" else immutable(state):
        result = refused_start(config, state)  # a traceback: sqlite3.OperationalError: unable to open database file
    assert result.returncode == 1, result.stderr
    assert f"error: cannot start: {state / 'outages.sqlite'}: the outage ledger cannot be written" in result.stderr
    assert "remount it read-write" in result.stderr and "chattr -i" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
