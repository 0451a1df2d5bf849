"""`exporter.probe_metrics: false` leaves the six per-port probe families without series, and only them; a reload
switches them back on. Real `threenines serve`, real probes of loopback addresses."""

from __future__ import annotations

import pytest

from tests.foundation.exporter_process import inventory_text, sample, scrape, serve
from tests.support import http_post, wait_until
from threenines.config.configfile import ConfigError
from threenines.config.inventory_load import load_inventory

PROBE_FAMILIES = ("threenines_probe_total", "threenines_probe_failures_total", "threenines_probe_errors_total",
                  "threenines_probe_rtt_seconds", "threenines_probe_loss_ratio",
                  "threenines_probe_last_timestamp_seconds")
PORTS = {"up1": "127.0.70.1", "up2": "127.0.70.2"}


def with_switch(text: str, on: bool) -> str:
    return f"exporter: {{probe_metrics: {'true' if on else 'false'}}}\n" + text


def series_of(text: str, family: str) -> int:
    return sum(1 for line in text.splitlines() if line.startswith(family + "{"))


def test_off_leaves_out_the_probe_families_only_and_a_reload_brings_them_back(tmp_path) -> None:
    config = tmp_path / "inventory.yml"
    config.write_text(with_switch(inventory_text(PORTS, interval="1s"), on=False))
    proc, port = serve(tmp_path, config)
    with proc:
        # The contract state is there (both ports probed and up) while no probe family has a series.
        wait_until(lambda: all(sample(scrape(port), "threenines_service_known", target=t) == 1 for t in PORTS), 20,
                   what="both ports known")
        text = scrape(port)
        assert all(sample(text, "threenines_service_up", target=t) == 1 for t in PORTS)
        assert all(f"# TYPE {family} " in text and series_of(text, family) == 0 for family in PROBE_FAMILIES)
        config.write_text(with_switch(inventory_text(PORTS, interval="1s"), on=True))
        status, body = http_post(f"http://127.0.0.1:{port}/-/reload", timeout=60)
        assert status == 200, body
        wait_until(lambda: series_of(scrape(port), "threenines_probe_total") == len(PORTS), 20,
                   what="the probe families back after the reload")
        text = scrape(port)
        assert all(sample(text, "threenines_probe_total", target=t) >= 1 for t in PORTS)
        assert series_of(text, "threenines_probe_rtt_seconds") == len(PORTS)


def test_the_switch_is_a_boolean(tmp_path) -> None:
    path = tmp_path / "inventory.yml"
    path.write_text(with_switch(inventory_text(PORTS), on=True).replace("probe_metrics: true", "probe_metrics: no way"))
    with pytest.raises(ConfigError) as raised:
        load_inventory(path)
    message = str(raised.value)
    assert str(path) in message and "probe_metrics" in message and "use true or false" in message
