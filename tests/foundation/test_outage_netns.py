"""Real outages: a customer port in a namespace the test made, its link cut and restored."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tests.foundation.exporter_process import inventory_text, sample, scrape, serve
from tests.netns import customer_port
from tests.support import wait_until

pytestmark = pytest.mark.netns  # root: a network namespace per customer port

INTERVAL = 2.0


def ledger_rows(state_dir: Path) -> list[tuple]:
    with sqlite3.connect(state_dir / "outages.sqlite") as db:
        return db.execute(
            "SELECT target, first_failed_at, determined_at, ended_at FROM outages ORDER BY first_failed_at"
        ).fetchall()


def _when(http_port: int, name: str, value: float, **labels: str) -> str | None:
    """The exposition once the series has the value, else None (for wait_until)."""
    text = scrape(http_port)
    return text if sample(text, name, **labels) == value else None


def test_a_cut_link_becomes_a_determined_outage_and_recovers(tmp_path: Path) -> None:
    with customer_port() as port:
        config = tmp_path / "inventory.yml"
        config.write_text(inventory_text({"ns": port.address, "lo": "127.0.60.1"}, interval=f"{INTERVAL:g}s"))
        proc, http_port = serve(tmp_path, config)
        with proc:
            wait_until(lambda: sample(scrape(http_port), "threenines_service_known", target="ns") == 1, 15,
                       what="the namespace port to answer")
            cut_at = time.time()
            port.down()

            def determined_text() -> str | None:
                text = scrape(http_port)
                return text if sample(text, "threenines_service_up", target="ns") == 0 else None

            text = wait_until(determined_text, 6 * INTERVAL, what="the outage to be determined")
            determined = sample(text, "threenines_service_determined_timestamp_seconds", target="ns")
            started = sample(text, "threenines_service_outage_start_timestamp_seconds", target="ns")
            assert cut_at <= started < determined
            assert abs((determined - started) - INTERVAL) < 0.5  # the second consecutive failed probe
            assert sample(text, "threenines_service_up", target="lo") == 1  # the other port is untouched
            assert sample(text, "threenines_customer_service_up", service="connectivity") == 0
            assert sample(text, "threenines_probe_failures_total", target="ns") >= 2
            time.sleep(INTERVAL)
            restored_at = time.time()
            port.up()
            wait_until(lambda: sample(scrape(http_port), "threenines_service_up", target="ns") == 1,
                       6 * INTERVAL, what="the outage to end")
            [(target, first_failed, determined_at, ended)] = ledger_rows(tmp_path / "state")
            assert (target, first_failed, determined_at) == ("ns", started, determined)
            assert restored_at <= ended <= restored_at + 2 * INTERVAL
            wait_until(lambda: sample(scrape(http_port), "threenines_service_outage_seconds_total", target="ns")
                       >= ended - first_failed - 0.01, 5, what="the outage counter to cover the outage")
            text = scrape(http_port)
            assert abs(sample(text, "threenines_service_outage_seconds_total", target="ns")
                       - (ended - first_failed)) < 0.01
            # The billed union catches up once the pending window has passed.
            wait_until(lambda: abs(sample(scrape(http_port), "threenines_customer_service_outage_seconds_total",
                                          service="connectivity") - (ended - first_failed)) < 0.01,
                       4 * INTERVAL, what="the customer-level union to count the outage once")


def test_kill_9_mid_outage_then_restart_keeps_one_outage(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    with customer_port() as port:
        config = tmp_path / "inventory.yml"
        config.write_text(inventory_text({"ns": port.address}, interval=f"{INTERVAL:g}s"))
        proc, http_port = serve(tmp_path, config, state_dir)
        with proc as exporter:
            wait_until(lambda: sample(scrape(http_port), "threenines_service_known", target="ns") == 1, 15,
                       what="the namespace port to answer")
            port.down()
            wait_until(lambda: sample(scrape(http_port), "threenines_service_up", target="ns") == 0,
                       6 * INTERVAL, what="the outage to be determined")
            exporter.kill9()
        [(_, first_failed, determined, ended)] = ledger_rows(state_dir)
        assert ended is None
        killed_at = time.time()
        time.sleep(INTERVAL)

        proc, http_port = serve(tmp_path, config, state_dir)
        with proc:
            text = scrape(http_port)
            assert sample(text, "threenines_service_up", target="ns") == 0  # resumed, not a new outage
            assert sample(text, "threenines_service_known", target="ns") == 0  # nothing seen since restart
            assert sample(text, "threenines_service_unknown_seconds_total", target="ns") >= INTERVAL - 0.5
            assert sample(text, "threenines_service_determined_timestamp_seconds", target="ns") == determined
            wait_until(lambda: sample(scrape(http_port), "threenines_service_known", target="ns") == 1,
                       4 * INTERVAL, what="a probe after the restart")
            port.up()
            wait_until(lambda: sample(scrape(http_port), "threenines_service_up", target="ns") == 1,
                       6 * INTERVAL, what="the outage to end")
        rows = ledger_rows(state_dir)
        assert len(rows) == 1
        assert rows[0][1:3] == (first_failed, determined)
        assert rows[0][3] > killed_at
        # The seconds without evidence inside the outage are recorded: from the last heartbeat before the kill to
        # the first probe after the restart (unknown, not outage; the report takes them out).
        with sqlite3.connect(state_dir / "outages.sqlite") as db:
            [(gap_start, gap_end)] = db.execute("SELECT gap_start, gap_end FROM outage_gaps").fetchall()
        assert determined <= gap_start <= killed_at < gap_end < rows[0][3]


def test_an_outage_nobody_notifies_is_a_missed_deadline_when_the_deadline_passes(tmp_path: Path) -> None:
    # No Alertmanager at all: the deadline passes without a dispatch, and that is the miss, dated then.
    with customer_port() as port:
        config = tmp_path / "inventory.yml"
        config.write_text(inventory_text({"ns": port.address}, interval=f"{INTERVAL:g}s", deadline="3s"))
        proc, http_port = serve(tmp_path, config)
        with proc:
            wait_until(lambda: sample(scrape(http_port), "threenines_service_known", target="ns") == 1, 15,
                       what="the namespace port to answer")
            port.down()
            text = wait_until(lambda: _when(http_port, "threenines_service_up", 0, target="ns"), 6 * INTERVAL,
                              what="the outage to be determined")
            determined = sample(text, "threenines_service_determined_timestamp_seconds", target="ns")
            assert sample(text, "threenines_notification_deadline_missed_total", customer="acme") in (None, 0)
            text = wait_until(lambda: _when(http_port, "threenines_notification_deadline_missed_total", 1,
                                            customer="acme"), 10, what="the missed deadline")
            assert sample(text, "threenines_notification_deadline_missed_timestamp_seconds", customer="acme",
                          target="ns") == determined + 3
        with sqlite3.connect(tmp_path / "state" / "audit.sqlite") as db:
            [(deadline_at, recorded_at, reason)] = db.execute(
                "SELECT deadline_at, recorded_at, reason FROM misses").fetchall()
        assert (deadline_at, reason) == (determined + 3, "not_notified")
        assert deadline_at <= recorded_at <= deadline_at + 2  # decided at the first tick after it passed
