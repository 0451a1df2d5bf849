"""`threenines status` against a real exporter with a real outage (a namespace port whose link is cut)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.foundation.exporter_process import inventory_text, sample, scrape, serve
from tests.netns import customer_port
from tests.support import VENV_BIN, wait_until

pytestmark = pytest.mark.netns  # root: a network namespace per customer port

INTERVAL = 2.0


def status(config: Path, http_port: int, state_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "threenines"), "status", "--config", str(config), "--exporter",
                           f"http://127.0.0.1:{http_port}", "--state-dir", str(state_dir), *extra],
                          capture_output=True, text=True, timeout=30, check=False)


def _missed(text: str) -> str | None:
    return text if "MISSED" in text else None


def test_status_shows_the_open_outage_its_notification_and_the_month_so_far(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    with customer_port() as port:
        config = tmp_path / "inventory.yml"
        config.write_text(inventory_text({"ns": port.address, "lo": "127.0.61.1"}, interval=f"{INTERVAL:g}s",
                                         deadline="4s"))
        proc, http_port = serve(tmp_path, config, state_dir)
        with proc:
            wait_until(lambda: sample(scrape(http_port), "threenines_service_known", target="ns") == 1, 15,
                       what="the namespace port to answer")
            healthy = status(config, http_port, state_dir)
            assert healthy.returncode == 0, healthy.stderr
            assert re.search(r"^acme +connectivity +up +0 +100\.0000 +2678\.4$", healthy.stdout, re.M), healthy.stdout
            assert "open outages" not in healthy.stdout
            port.down()
            wait_until(lambda: sample(scrape(http_port), "threenines_service_up", target="ns") == 0, 6 * INTERVAL,
                       what="the outage to be determined")
            text = scrape(http_port)
            first_failed = sample(text, "threenines_service_outage_start_timestamp_seconds", target="ns")
            pending = status(config, http_port, state_dir, "--format", "json")
            assert pending.returncode == 0, pending.stderr
            [acme] = json.loads(pending.stdout)
            [connectivity] = [s for s in acme["services"] if s["service"] == "connectivity"]
            assert connectivity["state"] == "down"
            [outage] = connectivity["open_outages"]
            assert outage["target"] == "ns" and outage["notification"].startswith("pending until")
            # the contract zone's local time, to the second
            assert datetime.fromisoformat(outage["first_failed_at"]).timestamp() == int(first_failed)
            assert outage["first_failed_at"].endswith("+01:00")  # Europe/Amsterdam in December
            # The month so far counts the outage from its first failed probe until now; the budget shrinks by it.
            assert 0 < connectivity["month_outage_seconds"] <= time.time() - first_failed + 1
            assert connectivity["month_budget_left_seconds"] < 31 * 86400 * 0.001
            missed = wait_until(lambda: _missed(status(config, http_port, state_dir).stdout), 15,
                                what="the deadline to pass")
            assert "acme connectivity ns: first failed probe" in missed and "(not_notified)" in missed
    refused = status(config, http_port, state_dir)
    assert refused.returncode == 1 and f"cannot reach the exporter at http://127.0.0.1:{http_port}" in refused.stderr
