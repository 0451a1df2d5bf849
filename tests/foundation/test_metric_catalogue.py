"""The producer against the contract: every family a real exporter serves is in docs/metrics.md, and every family
docs/metrics.md lists is served (issue 17: until now only the consumers — dashboards, Zabbix — were checked).

`threenines demo` is the richest real exporter the tests can start alone: loopback ports, snmpsim UPS and PDUs,
the audit webhook. Families are read from its `# TYPE` lines, which the exporter writes even for a family with no
series yet (a histogram before its first observation).
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.foundation.exporter_process import sample, scrape
from tests.grafana.test_metric_contract import CONTRACT
from tests.support import VENV_BIN, free_port, running, wait_until

# Documented families the demo cannot serve, each with the reason; nothing else may be missing.
# The demo's inventory has no application checks (they would need a server of the customer's to check).
NOT_IN_THE_DEMO: dict[str, str] = {
    name: "the demo inventory has no application checks; tests/applications/test_serve_applications.py serves them"
    for name in ("threenines_application_info", "threenines_application_checks_total",
                 "threenines_application_check_failures_total", "threenines_application_check_duration_seconds",
                 "threenines_application_check_last_timestamp_seconds",
                 "threenines_application_certificate_expiry_timestamp_seconds")
}


def _families(text: str) -> set[str]:
    return set(re.findall(r"^# TYPE (threenines_\w+) ", text, re.M))


def test_the_exporters_families_are_the_documented_ones(tmp_path: Path) -> None:
    port = free_port()
    argv = [str(VENV_BIN / "threenines"), "demo", "--listen", f"127.0.0.1:{port}"]
    with running(argv, tmp_path / "demo.log", ready_url=f"http://127.0.0.1:{port}/healthz"):
        # Power families appear once the devices have been polled.
        wait_until(lambda: sample(scrape(port), "threenines_device_up", device="pdu-a") == 1, 60, 0.5,
                   "the demo's PDUs to be polled")
        served = _families(scrape(port))
    undocumented = served - CONTRACT
    assert undocumented == set(), f"served but not in docs/metrics.md: {sorted(undocumented)}"
    missing = CONTRACT - served - set(NOT_IN_THE_DEMO)
    assert missing == set(), f"in docs/metrics.md but not served by a real exporter: {sorted(missing)}"
