"""Vantage health with real processes: two replicas of `threenines serve` probe one site in namespaces the test
made (tests/ha/site_netns.py). Replica a declares the site router's address as a canary, replica b does not.

* The vantage's uplink cut (canary and customer behind it): a turns blind and determines nothing, its failures
  passed on as no evidence; b, without canaries, determines the customer down: what the canaries prevent.
* Only the customer's link cut: the canary answers, a determines the outage as before, from its first failed probe.

The contract: threshold 2 at a 3 s port interval; the canary every second (a cut is noticed within 1.3 s, before
any port's second probe, as the inventory demands).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tests.foundation.exporter_process import sample, scrape, serve
from tests.ha.site_netns import Site, site
from tests.support import wait_until

pytestmark = pytest.mark.netns  # root: network namespaces for the site

INTERVAL = 3.0


def inventory(lab: Site, canaries: bool) -> str:
    canary = (f"    canaries: [{{id: router, address: '{lab.canary}', interval: 1s, packets: 1, timeout: 300ms}}]\n"
              if canaries else "")
    return f"""sites:
  - id: lab
{canary}customers:
  - id: acme
    site: lab
    timezone: UTC
    contacts: {{version: '1', notify: [{{email: noc@acme.example}}]}}
    ping: {{interval: {INTERVAL:g}s, threshold: 2, packets: 1, timeout: 500ms}}
    ports: [{{id: p1, address: '{lab.customer}'}}]
"""


def outages(state_dir: Path) -> list[tuple[str, float, float]]:
    with sqlite3.connect(state_dir / "outages.sqlite") as db:
        return db.execute("SELECT target, first_failed_at, determined_at FROM outages").fetchall()


def replicas(tmp_path: Path, lab: Site):  # type: ignore[no-untyped-def]
    for name, canaries in (("a", True), ("b", False)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "inventory.yml").write_text(inventory(lab, canaries))
    a, port_a = serve(tmp_path / "a", tmp_path / "a" / "inventory.yml", extra=["--vantage", "a"])
    b, port_b = serve(tmp_path / "b", tmp_path / "b" / "inventory.yml", extra=["--vantage", "b"])
    return a, port_a, b, port_b


def test_a_cut_of_the_vantages_own_uplink_is_no_outage_with_canaries(tmp_path: Path) -> None:
    with site() as lab:
        a, port_a, b, port_b = replicas(tmp_path, lab)
        with a, b:
            for port in (port_a, port_b):
                wait_until(lambda p=port: sample(scrape(p), "threenines_probe_total", target="p1") >= 2, 20,
                           what="both replicas to probe the customer")
            wait_until(lambda: sample(scrape(port_a), "threenines_canary_up", canary="router") == 1, 10,
                       what="the canary to answer")
            assert sample(scrape(port_a), "threenines_vantage_blind", site="lab") == 0
            lab.uplink(False)
            # b, without canaries, takes the vantage's cut for the customer's outage: two failed probes.
            wait_until(lambda: sample(scrape(port_b), "threenines_service_up", target="p1") == 0, 4 * INTERVAL,
                       what="replica b (no canaries) to determine the cut as an outage")
            # a stays undetermined through several more probes of the cut.
            deadline = time.monotonic() + 3 * INTERVAL
            while time.monotonic() < deadline:
                text = scrape(port_a)
                assert sample(text, "threenines_service_up", target="p1") == 1
                time.sleep(0.3)
            text = scrape(port_a)
            assert sample(text, "threenines_vantage_blind", site="lab", vantage="a") == 1
            assert sample(text, "threenines_canary_up", canary="router") == 0
            assert sample(text, "threenines_vantage_blind_failures_total", site="lab") >= 2
            assert sample(text, "threenines_service_determined_timestamp_seconds", target="p1") == 0
            failures = sample(text, "threenines_probe_failures_total", target="p1")
            assert failures is not None and failures >= 3  # the probes did fail; they were not evidence
            lab.uplink(True)
            wait_until(lambda: sample(scrape(port_a), "threenines_vantage_blind", site="lab") == 0, 3 * INTERVAL,
                       what="the canary to answer again")
            wait_until(lambda: sample(scrape(port_b), "threenines_service_up", target="p1") == 1, 4 * INTERVAL,
                       what="b's outage to end")
            text = scrape(port_a)
            assert sample(text, "threenines_service_up", target="p1") == 1
            assert sample(text, "threenines_customer_service_outage_seconds_total", service="connectivity") == 0
        assert outages(tmp_path / "a" / "state") == []
        assert [row[0] for row in outages(tmp_path / "b" / "state")] == ["p1"]


def test_a_cut_of_the_customers_link_alone_is_determined_as_before(tmp_path: Path) -> None:
    with site() as lab:
        (tmp_path / "inventory.yml").write_text(inventory(lab, canaries=True))
        exporter, port = serve(tmp_path, tmp_path / "inventory.yml")
        with exporter:
            wait_until(lambda: sample(scrape(port), "threenines_service_known", target="p1") == 1
                       and sample(scrape(port), "threenines_canary_up", canary="router") == 1, 20,
                       what="the customer and the canary to answer")
            cut_at = time.time()
            lab.customer_link(False)
            def determined_text() -> str | None:
                text = scrape(port)
                return text if sample(text, "threenines_service_up", target="p1") == 0 else None

            text = wait_until(determined_text, 4 * INTERVAL, what="the customer's outage to be determined")
            started = sample(text, "threenines_service_outage_start_timestamp_seconds", target="p1")
            determined = sample(text, "threenines_service_determined_timestamp_seconds", target="p1")
            assert started is not None and determined is not None
            assert cut_at <= started < determined
            assert abs((determined - started) - INTERVAL) < 0.5  # the second consecutive failed probe
            assert sample(text, "threenines_vantage_blind", site="lab") == 0
            assert sample(text, "threenines_canary_up", canary="router") == 1
            assert sample(text, "threenines_vantage_blind_failures_total", site="lab") == 0
            lab.customer_link(True)
            wait_until(lambda: sample(scrape(port), "threenines_service_up", target="p1") == 1, 4 * INTERVAL,
                       what="the outage to end")
        [(target, first_failed, determined_at)] = outages(tmp_path / "state")
        assert (target, first_failed, determined_at) == ("p1", started, determined)
