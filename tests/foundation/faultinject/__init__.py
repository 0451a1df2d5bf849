"""Start `threenines serve` with faults a test can switch on and off (see sitecustomize.py here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.foundation.exporter_process import sample, scrape
from tests.support import wait_until

HERE = Path(__file__).resolve().parent


def serve_with_faults(monkeypatch: pytest.MonkeyPatch, faults: Path) -> Path:
    """Make the next `threenines serve` this test starts load the fault switches in `faults` (a directory)."""
    faults.mkdir(exist_ok=True)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("THREENINES_FAULTS", str(faults))
    return faults


def probes(port: int, target: str) -> float:
    return sample(scrape(port), "threenines_probe_total", target=target) or 0.0


def tick_errors(port: int, stage: str) -> float:
    value = sample(scrape(port), "threenines_tick_errors_total", stage=stage)
    assert value is not None, "threenines_tick_errors_total is exported for every stage"
    return value


def probing_goes_on(port: int, target: str, count: int = 2) -> None:
    """Wait for `count` more probes of target (each interval is 2 s): the loop and the prober still run."""
    start = probes(port, target)
    wait_until(lambda: probes(port, target) >= start + count, 20, what=f"{count} more probes of {target}")
