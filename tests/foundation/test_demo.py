"""`threenines demo`: loopback ports and simulated power appear within a minute, and everything stops."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.foundation.exporter_process import sample, scrape
from tests.support import VENV_BIN, free_port, running, wait_until


def test_demo_shows_ports_and_simulated_power_then_stops_its_agent(tmp_path: Path) -> None:
    port = free_port()
    argv = [str(VENV_BIN / "threenines"), "demo", "--listen", f"127.0.0.1:{port}"]
    with running(argv, tmp_path / "demo.log", ready_url=f"http://127.0.0.1:{port}/healthz") as demo:
        def everything_known() -> bool:
            text = scrape(port)
            return all(sample(text, "threenines_customer_service_known", customer=c, service=s) == 1
                       for c, s in (("acme", "connectivity"), ("initech", "connectivity"), ("hooli", "power")))

        wait_until(everything_known, 60, interval=1, what="every demo service to be known")
        text = scrape(port)
        assert sample(text, "threenines_service_up", customer="initech", target="rack-12-v6") == 1
        assert sample(text, "threenines_customer_service_up", customer="hooli", service="power") == 1
        assert sample(text, "threenines_pdu_outlet_on", customer="hooli", device="pdu-a", outlet="1") == 1
        assert sample(text, "threenines_ups_output_source", device="ups-a", source="normal") == 1
        assert f"metrics:   http://127.0.0.1:{port}/metrics" in demo.log()
        workdir = re.search(r"inventory: (\S+)/inventory.yml", demo.log())[1]
    leftovers = subprocess.run(["pgrep", "-f", workdir], capture_output=True, text=True)
    assert leftovers.stdout == "", f"processes left behind: {leftovers.stdout}"
