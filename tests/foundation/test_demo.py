"""`threenines demo`: loopback ports and simulated power appear, the lines it prints cut and restore each feed
and its one cuttable port with the outcome it promises, and on exit nothing it started is left behind."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.foundation.exporter_process import sample, scrape
from tests.support import VENV_BIN, free_port, http_get, running, wait_until

pytestmark = pytest.mark.netns  # root: the demo's nftables table

# The demo's promises are the exporter's worst case; /metrics shows a determination after the next tick
# (service.MIN_TICK_SPACING, 1 s) and this test reads /metrics every 0.5 s.
SLACK = 2.0
SCRAPE_SECONDS = 5  # threenines.demo.prometheus.SCRAPE_SECONDS: Prometheus scrapes, then evaluates, this often


@dataclass(frozen=True)
class Guide:
    """What the demo printed: the shell lines, and the promised seconds to down and back up."""

    commands: dict[str, str]  # "cut feed A", "restore port", ... → the exact line to run
    power_down: int
    power_up: int
    port_customer: str
    port_target: str
    port_down: int
    port_up: int
    workdir: str
    prometheus: str


def _guide(log: str) -> Guide:
    commands = {f"{verb} {what}": line for verb, what, line in
                re.findall(r"^ {4}(cut|restore) (feed \w+|port): +(.+)$", log, re.M)}
    power = re.search(r'service="power"\} stays 1 while any feed is on,\n +is 0 within (\d+) s of every feed cut '
                      r"\(then Prometheus fires ThreeninesServiceUnavailable\), 1 within (\d+) s of a restore", log)
    port = re.search(r"port: +(\w+)/(\S+) on .*\n(?:.*\n){2}.*target=\"\2\"\} is 0 within (\d+) s of the cut, "
                     r"1 within (\d+) s of a restore", log)
    assert power and port, log
    return Guide(commands, int(power[1]), int(power[2]), port[1], port[2], int(port[3]), int(port[4]),
                 re.search(r"inventory: (\S+)/inventory.yml", log)[1],
                 re.search(r"prometheus: (http://127.0.0.1:\d+)", log)[1])


def _sh(line: str) -> None:
    """Run a printed line exactly as a user pasting it into a shell would."""
    done = subprocess.run(line, shell=True, capture_output=True, text=True, timeout=15, check=False)
    assert done.returncode == 0, f"{line}: {done.stdout}{done.stderr}"


def _unavailable_alerts(prometheus: str, customer: str, service: str) -> list[dict]:
    alerts = json.loads(http_get(f"{prometheus}/api/v1/alerts")[1])["data"]["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == "ThreeninesServiceUnavailable"
            and a["labels"].get("customer") == customer and a["labels"].get("service") == service]


def test_demo_printed_lines_cut_each_feed_and_the_port_as_promised_then_it_cleans_up(tmp_path: Path) -> None:
    port = free_port()
    argv = [str(VENV_BIN / "threenines"), "demo", "--listen", f"127.0.0.1:{port}"]
    with running(argv, tmp_path / "demo.log", ready_url=f"http://127.0.0.1:{port}/healthz") as demo:
        wait_until(lambda: "Ctrl-C stops the demo" in demo.log(), 10, what="the demo's guide")
        guide = _guide(demo.log())
        assert sorted(guide.commands) == ["cut feed A", "cut feed B", "cut port",
                                          "restore feed A", "restore feed B", "restore port"], guide.commands
        assert f"metrics:   http://127.0.0.1:{port}/metrics" in demo.log()

        def outlet(device: str) -> float | None:
            return sample(scrape(port), "threenines_pdu_outlet_on", customer="hooli", device=device, outlet="1")

        def power() -> float | None:
            text = scrape(port)
            # Unknown power also reads 1: only a known state says the feeds were judged.
            assert sample(text, "threenines_service_known", customer="hooli", service="power") == 1
            return sample(text, "threenines_service_up", customer="hooli", service="power")

        def everything_known() -> bool:
            text = scrape(port)
            return all(sample(text, "threenines_customer_service_known", customer=c, service=s) == 1
                       for c, s in (("acme", "connectivity"), ("initech", "connectivity"), ("hooli", "power"),
                                    (guide.port_customer, "connectivity")))

        wait_until(everything_known, 30, interval=0.5, what="every demo service to be known")
        text = scrape(port)
        assert sample(text, "threenines_service_up", customer="initech", target="rack-12-v6") == 1
        assert sample(text, "threenines_customer_service_up", customer="hooli", service="power") == 1
        assert (outlet("pdu-a"), outlet("pdu-b")) == (1, 1)
        assert sample(text, "threenines_ups_output_source", device="ups-a", source="normal") == 1

        def scraped_with_rules() -> bool:
            up = json.loads(http_get(f"{guide.prometheus}/api/v1/query?query=up%7Bjob%3D%22threenines%22%7D")[1])
            rules = json.loads(http_get(f"{guide.prometheus}/api/v1/rules")[1])["data"]["groups"]
            # "unknown" is a rule not evaluated yet (the 30-day group runs every 5 minutes); "err" fails.
            health = [(r["name"], r["health"], r.get("lastError")) for g in rules for r in g["rules"]]
            assert up["data"]["result"] and up["data"]["result"][0]["value"][1] == "1", up
            assert not [h for h in health if h[1] == "err"], health
            return any(h[1] == "ok" for h in health)

        wait_until(scraped_with_rules, 30, interval=1, what="the demo Prometheus to scrape and evaluate rules")
        queries = Path(guide.workdir, "queries.txt").read_text()
        assert queries.count(f"{guide.prometheus}/graph?") > 20

        # Feed A cut: only pdu-a's outlet goes off (each PDU has its own agent), and for a whole determination
        # window the customer keeps power because feed B still supplies it.
        _sh(guide.commands["cut feed A"])
        cut_at = time.monotonic()
        wait_until(lambda: outlet("pdu-a") == 0, guide.power_down, 0.5, "the exporter to read feed A's outlet off")
        while time.monotonic() - cut_at < guide.power_down + SLACK:
            assert outlet("pdu-b") == 1, "cutting feed A switched feed B's outlet too"
            assert power() == 1, "power went down with feed B still on"
            time.sleep(0.5)
        assert _unavailable_alerts(guide.prometheus, "hooli", "power") == []

        # Feed B cut too: every feed is down, so the outage is determined within the promised time.
        _sh(guide.commands["cut feed B"])
        wait_until(lambda: power() == 0, guide.power_down + SLACK, 0.5, "power down after feed B's cut")
        wait_until(lambda: [a for a in _unavailable_alerts(guide.prometheus, "hooli", "power")
                         if a["state"] == "firing"], 2 * SCRAPE_SECONDS + SLACK, 0.5, "ThreeninesServiceUnavailable")
        _sh(guide.commands["restore feed A"])
        _sh(guide.commands["restore feed B"])
        wait_until(lambda: power() == 1, guide.power_up + SLACK, 0.5, "power up after the restores")
        # Power is up as soon as one feed's restore is read; feed B's may be read a poll later.
        wait_until(lambda: (outlet("pdu-a"), outlet("pdu-b")) == (1, 1), guide.power_up + SLACK, 0.5,
                   "both outlets on after the restores")

        # The port cut: a connectivity outage of that port (and so of its single-port customer), nobody else's.
        def port_up() -> float | None:
            return sample(scrape(port), "threenines_service_up", customer=guide.port_customer,
                          service="connectivity", target=guide.port_target)

        _sh(guide.commands["cut port"])
        wait_until(lambda: port_up() == 0, guide.port_down + SLACK, 0.5, "the cut port's outage to be determined")
        text = scrape(port)
        assert sample(text, "threenines_customer_service_up", customer=guide.port_customer,
                      service="connectivity") == 0
        assert sample(text, "threenines_service_up", customer="acme", target="uplink-a") == 1
        _sh(guide.commands["restore port"])
        wait_until(lambda: port_up() == 1, guide.port_up + SLACK, 0.5, "the port up after its restore")

        demo.proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert demo.proc.wait(timeout=30) == 0, demo.log()[-3000:]
    assert not Path(guide.workdir).exists()
    leftovers = subprocess.run(["pgrep", "-f", guide.workdir], capture_output=True, text=True, timeout=10)
    assert leftovers.stdout == "", f"processes left behind: {leftovers.stdout}"
    table = guide.commands["cut port"].split()[4]
    listed = subprocess.run(["nft", "list", "table", "inet", table], capture_output=True, timeout=10)
    assert listed.returncode != 0, f"nftables table {table} left behind"
