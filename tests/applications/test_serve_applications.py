"""A real `threenines serve` with application checks: a refused application becomes a determined outage in
/metrics as service="application", while the customer's billed connectivity stays up."""

from __future__ import annotations

from pathlib import Path

from tests.foundation.exporter_process import inventory_text, sample, scrape, serve
from tests.support import free_port, wait_until


def test_serve_shows_an_application_outage_as_its_own_service(tmp_path: Path) -> None:
    closed = free_port()
    config = tmp_path / "inventory.yml"
    config.write_text(inventory_text({"port-a": "127.0.0.1"}, interval="2s") + (
        "    applications:\n"
        f"      - {{id: www, http: {{url: 'http://127.0.0.1:{closed}/'}}, interval: 2s, threshold: 2, timeout: 1s}}\n"
    ))
    server, port = serve(tmp_path, config)
    with server:
        labels = {"customer": "acme", "service": "application", "target": "www"}
        wait_until(lambda: sample(scrape(port), "threenines_service_up", **labels) == 0, 30, 0.5,
                   "the application outage to be determined")
        text = scrape(port)
        assert sample(text, "threenines_service_determined_timestamp_seconds", **labels) > 0
        assert sample(text, "threenines_application_check_failures_total", customer="acme", target="www",
                      reason="connect_refused") >= 2
        assert sample(text, "threenines_application_info", customer="acme", target="www", kind="http") == 1
        assert sample(text, "threenines_service_up", customer="acme", service="connectivity", target="port-a") == 1
        # Not billed by default: no objective for the application service, so no error budget is computed.
        assert sample(text, "threenines_customer_objective_ratio", customer="acme", service="application") is None
