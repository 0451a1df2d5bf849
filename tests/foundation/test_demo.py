"""`threenines demo`: loopback ports and simulated power appear within a minute, and everything stops."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests.foundation.exporter_process import sample, scrape
from tests.support import VENV_BIN, free_port, http_get, running, wait_until


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
        prometheus = re.search(r"prometheus: (http://127.0.0.1:\d+)", demo.log())[1]

        def scraped_with_rules() -> bool:
            up = json.loads(http_get(f"{prometheus}/api/v1/query?query=up%7Bjob%3D%22threenines%22%7D")[1])
            rules = json.loads(http_get(f"{prometheus}/api/v1/rules")[1])["data"]["groups"]
            # "unknown" is a rule not evaluated yet (the 30-day group runs every 5 minutes); "err" fails.
            health = [(r["name"], r["health"], r.get("lastError")) for g in rules for r in g["rules"]]
            assert up["data"]["result"] and up["data"]["result"][0]["value"][1] == "1", up
            assert not [h for h in health if h[1] == "err"], health
            return any(h[1] == "ok" for h in health)

        wait_until(scraped_with_rules, 60, interval=1, what="the demo Prometheus to scrape and evaluate rules")
        queries = Path(workdir, "queries.txt").read_text()
        assert queries.count(f"{prometheus}/graph?") > 20
    leftovers = subprocess.run(["pgrep", "-f", workdir], capture_output=True, text=True)
    assert leftovers.stdout == "", f"processes left behind: {leftovers.stdout}"
