"""Issue 22, "the exporter stops accounting", against the real `threenines serve`: an exclusions file that
used to crash every tick is refused at reload and at start, and an exception in any stage of a tick (or in
another loop callback) is logged once, counted in threenines_tick_errors_total, and the loop goes on."""

from __future__ import annotations

import os
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.foundation.exporter_process import inventory_text, sample, scrape, serve
from tests.foundation.faultinject import probing_goes_on, serve_with_faults, tick_errors
from tests.support import VENV_BIN, http_get, http_post, wait_until

STAGES = ("contract", "exclusions", "publish", "loop")


def exclusion(ident: str, start: str, end: str, extra: str = "") -> str:
    return (f"  - {{id: {ident}, customer: acme, services: [connectivity], start: '{start}', end: '{end}', "
            f"reason: maintenance, reference: R-{ident}, approved_by: noc@example.net{extra}}}\n")


def maintenance_now() -> str:
    """An exclusions file whose maintenance window is running (an hour either side of now)."""
    now = datetime.now(UTC).replace(microsecond=0)
    return "exclusions:\n" + exclusion("now", (now - timedelta(hours=1)).isoformat(),
                                       (now + timedelta(hours=1)).isoformat())


def excluded(port: int) -> float | None:
    return sample(scrape(port), "threenines_customer_service_excluded", customer="acme", service="connectivity",
                  reason="maintenance")


def healthz(port: int) -> tuple[int, bytes]:
    return http_get(f"http://127.0.0.1:{port}/healthz")


def test_an_exception_in_a_tick_is_logged_once_counted_and_the_loop_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    faults = serve_with_faults(monkeypatch, tmp_path / "faults")
    config = tmp_path / "inventory.yml"
    config.write_text(inventory_text({"a": "127.0.60.1"}))
    exclusions = tmp_path / "exclusions.yml"
    exclusions.write_text(maintenance_now())
    proc, port = serve(tmp_path, config, extra=["--exclusions", str(exclusions)])
    with proc as exporter:
        wait_until(lambda: sample(scrape(port), "threenines_service_known", target="a") == 1, 20, what="a probe")
        assert [tick_errors(port, stage) for stage in STAGES] == [0, 0, 0, 0]
        assert excluded(port) == 1

        # what a year-1 exclusion raised in every tick: the ticker task died, /healthz turned stalled
        (faults / "exclusions").touch()
        wait_until(lambda: tick_errors(port, "exclusions") >= 5, 30, what="five failing ticks")
        probing_goes_on(port, "a")
        assert healthz(port)[0] == 200  # time still accrues
        assert excluded(port) == 1  # the states last computed stay
        log = exporter.log()
        assert log.count("tick stage exclusions failed") == 1, "logged once, not once per tick"
        assert "ValueError: year -7972 is out of range" in log
        (faults / "exclusions").unlink()
        wait_until(lambda: "tick stage exclusions works again" in exporter.log(), 10, what="recovery logged")
        settled = tick_errors(port, "exclusions")
        probing_goes_on(port, "a")
        assert tick_errors(port, "exclusions") == settled

        # accounting itself fails: the loop goes on and /healthz says stalled instead of ok, until it works
        (faults / "contract").touch()
        wait_until(lambda: healthz(port)[0] == 503, 30, what="/healthz to say stalled")
        assert b"stalled" in healthz(port)[1]
        assert tick_errors(port, "contract") >= 3
        (faults / "contract").unlink()
        wait_until(lambda: healthz(port)[0] == 200, 10, what="/healthz ok again")
        assert exporter.log().count("tick stage contract failed") == 1

        # publishing fails: nothing new reaches /metrics meanwhile, everything does afterwards
        (faults / "publish").touch()
        wait_until(lambda: "tick stage publish failed" in exporter.log(), 10, what="a failing publish")
        (faults / "publish").unlink()
        wait_until(lambda: tick_errors(port, "publish") >= 1, 10, what="the publish errors, published")
        probing_goes_on(port, "a")

        # an exception in another loop callback (here the SIGHUP handler) is counted, not only printed
        (faults / "loop").touch()
        os.kill(exporter.pid, signal.SIGHUP)
        wait_until(lambda: tick_errors(port, "loop") == 1, 10, what="the loop fault counted")
        assert "tick stage loop failed (Exception in callback" in exporter.log()
        (faults / "loop").unlink()
        probing_goes_on(port, "a")
        assert exporter.alive()


START = datetime(2025, 1, 1, 1, tzinfo=UTC)
# Each was accepted by the loader; each then crashed, stalled or silently changed every tick's accounting.
UNEXPANDABLE = [
    (exclusion("Y1", "0001-01-01T00:00:00Z", "2026-01-01T00:00:00Z", ", rrule: FREQ=YEARLY"),
     ":2 exclusions[0].start: '0001-01-01T00:00:00Z' is not within the years 1970 to 2199"),
    (exclusion("MIN", START.isoformat(), (START + timedelta(seconds=30)).isoformat(), ", rrule: FREQ=MINUTELY"),
     ":2 exclusions[0].rrule: 'FREQ=MINUTELY': FREQ=MINUTELY repeats more often than hourly"),
    (exclusion("I0", START.isoformat(), (START + timedelta(hours=1)).isoformat(), ", rrule: FREQ=DAILY;INTERVAL=0"),
     ":2 exclusions[0].rrule: 'FREQ=DAILY;INTERVAL=0': INTERVAL=0 must be a whole number from 1 to 1000"),
    (exclusion("C0", START.isoformat(), (START + timedelta(hours=1)).isoformat(), ", rrule: FREQ=DAILY;COUNT=0"),
     ":2 exclusions[0].rrule: 'FREQ=DAILY;COUNT=0': COUNT=0 must be a whole number from 1 to 10000"),
    (exclusion("DT", START.isoformat(), (START + timedelta(hours=1)).isoformat(),
               ', rrule: "DTSTART:20200101T000000Z\\nRRULE:FREQ=DAILY"'),
     ":2 exclusions[0].rrule: 'DTSTART:20200101T000000Z\\nRRULE:FREQ=DAILY': DTSTART would override start"),
]


def test_exclusions_that_stopped_the_ticks_are_refused_at_reload_and_at_start(tmp_path: Path) -> None:
    config = tmp_path / "inventory.yml"
    config.write_text(inventory_text({"a": "127.0.60.2"}))
    exclusions = tmp_path / "exclusions.yml"
    exclusions.write_text(maintenance_now())
    proc, port = serve(tmp_path, config, extra=["--exclusions", str(exclusions)])
    with proc as exporter:
        for entry, error in UNEXPANDABLE:
            exclusions.write_text("exclusions:\n" + entry)
            status, body = http_post(f"http://127.0.0.1:{port}/-/reload")
            assert status == 500 and f"{exclusions}{error}" in body.decode(), body
            assert sample(scrape(port), "threenines_config_last_reload_successful") == 0
            assert excluded(port) == 1  # the previous exclusions still apply
        probing_goes_on(port, "a")
        assert healthz(port)[0] == 200
        assert tick_errors(port, "exclusions") == 0
        assert "Traceback" not in exporter.log()
    # and the next start (which crash-looped) refuses the file, naming the line, instead of a traceback
    result = subprocess.run([str(VENV_BIN / "threenines"), "serve", "--config", str(config), "--listen",
                             "127.0.0.1:0", "--state-dir", str(tmp_path / "state"), "--exclusions", str(exclusions)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"{exclusions}{UNEXPANDABLE[-1][1]}" in result.stderr and "Traceback" not in result.stderr
