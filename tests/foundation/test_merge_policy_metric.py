"""The merge policy a real `threenines serve` exports, `threenines_merge_policy_info{merge}` 1 (docs/metrics.md,
docs/ha.md "Paging with vantages"): the `policy.merge` of its exclusions file, `all` without one (the contract's
default, docs/design.md "Replica exporters"). A reload that changes the file changes the series at the next
scrape; a refused reload keeps the running policy. A replica labels it with its vantage, as its contract families."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

from tests.foundation.exporter_process import inventory_text, sample, scrape, serve
from tests.support import http_post, wait_until

FAMILY = "threenines_merge_policy_info"


def policies(text: str) -> dict[frozenset[tuple[str, str]], float]:
    """Every series of the family: its labels -> its value."""
    out = {}
    for line in text.splitlines():
        if line.startswith(FAMILY + "{") or line.startswith(FAMILY + " "):
            series, _, value = line.rpartition(" ")
            out[frozenset(re.findall(r'(\w+)="([^"]*)"', series))] = float(value)
    return out


def test_without_an_exclusions_file_the_exporter_says_all(tmp_path: Path) -> None:
    config = tmp_path / "inventory.yml"
    config.write_text(inventory_text({"a": "127.0.56.1"}))
    proc, port = serve(tmp_path, config)
    with proc:
        text = scrape(port)
    assert policies(text) == {frozenset({("merge", "all")}): 1.0}
    assert f"# TYPE {FAMILY} gauge" in text  # an info family is a gauge in the text format


def test_the_exclusions_policy_is_exported_and_follows_each_reload(tmp_path: Path) -> None:
    config = tmp_path / "inventory.yml"
    config.write_text(inventory_text({"a": "127.0.56.2"}))
    exclusions = tmp_path / "exclusions.yml"
    exclusions.write_text("policy:\n  merge: any\n")
    proc, port = serve(tmp_path, config, extra=["--exclusions", str(exclusions), "--vantage", "vp-1"])
    with proc as exporter:
        assert policies(scrape(port)) == {frozenset({("vantage", "vp-1"), ("merge", "any")}): 1.0}

        exclusions.write_text("policy:\n  merge: all\n")
        assert http_post(f"http://127.0.0.1:{port}/-/reload")[0] == 200
        assert policies(scrape(port)) == {frozenset({("vantage", "vp-1"), ("merge", "all")}): 1.0}

        # A policy the contract does not know is refused with the file's line; the running one stays.
        exclusions.write_text("policy:\n  merge: some\n")
        status, body = http_post(f"http://127.0.0.1:{port}/-/reload")
        assert status == 500 and b"exclusions.yml:2" in body
        text = scrape(port)
        assert sample(text, "threenines_config_last_reload_successful") == 0
        assert policies(text) == {frozenset({("vantage", "vp-1"), ("merge", "all")}): 1.0}

        # SIGHUP reloads too; a file without a policy section means the default.
        exclusions.write_text("policy:\n  merge: any\n")
        os.kill(exporter.pid, signal.SIGHUP)
        wait_until(lambda: sample(scrape(port), FAMILY, merge="any") == 1, 10, what="the SIGHUP reload")
        exclusions.write_text("exclusions: []\n")
        assert http_post(f"http://127.0.0.1:{port}/-/reload")[0] == 200
        assert policies(scrape(port)) == {frozenset({("vantage", "vp-1"), ("merge", "all")}): 1.0}
