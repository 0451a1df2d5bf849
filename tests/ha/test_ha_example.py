"""prometheus/ha/: the HA example is a valid Prometheus pair and a VictoriaMetrics that dedups it, for real.

promtool checks both configs (with their rules); the pair differs only in its replica label, which neither
alerts nor remote write carry; the VictoriaMetrics flags keep 13 months, dedup at the scrape interval and let the
report's month-long subqueries through. Then the example runs: two real Prometheus (scrape interval shortened to
1 s) scrape one exporter-like target and remote-write to a real victoria-metrics started with the example's own
flags; VictoriaMetrics holds one series, not two, and one sample per interval, and the report accepts the store.
"""

from __future__ import annotations

import contextlib
import http.server
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from tests.ha.victoriametrics import victoriametrics
from tests.support import REPO, free_port, running, serving, wait_until
from threenines.config.configfile import parse_duration
from threenines.report.promclient import ClientConfig, PrometheusClient

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
HA = REPO / "prometheus" / "ha"
PAIR = [HA / "prometheus-a.yml", HA / "prometheus-b.yml"]
REPORT_SPAN = (745 + 10) * 3600  # the report's longest subquery: the longest month (745 h) and its margins


def _vm_flags() -> dict[str, str]:
    text = (HA / "victoria-metrics.default").read_text()
    [args] = re.findall(r'^ARGS="(.*)"$', text, re.M)
    return dict(arg.lstrip("-").split("=", 1) for arg in shlex.split(args))


def test_promtool_accepts_both_configs_and_their_rules() -> None:
    result = subprocess.run([PROMTOOL, "check", "config", *map(str, PAIR)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") >= 4  # two configs, and the rule files of each


def test_the_pair_differs_only_by_replica_and_drops_it_from_alerts_and_remote_write() -> None:
    a, b = (yaml.safe_load(p.read_text()) for p in PAIR)
    assert {a["global"]["external_labels"].pop("replica"), b["global"]["external_labels"].pop("replica")} == {"a", "b"}
    assert a == b
    drop = {"action": "labeldrop", "regex": "replica"}
    assert drop in a["alerting"]["alert_relabel_configs"]
    assert all(drop in rw["write_relabel_configs"] for rw in a["remote_write"])
    [job] = [j for j in a["scrape_configs"] if j["job_name"] == "threenines"]
    assert len(job["static_configs"][0]["targets"]) == 2  # both replica exporters
    assert len(a["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]) == 2  # both cluster members


def test_victoriametrics_flags_keep_13_months_dedup_at_the_scrape_interval_and_fit_the_report() -> None:
    flags = _vm_flags()
    interval = parse_duration(yaml.safe_load(PAIR[0].read_text())["global"]["scrape_interval"])
    assert int(flags["retentionPeriod"]) >= 13  # months (no unit)
    assert parse_duration(flags["dedup.minScrapeInterval"]) == interval
    assert int(flags["search.maxPointsPerTimeseries"]) >= REPORT_SPAN // interval + 1
    assert "search.maxQueryLen" not in flags  # the report stays within the default


class _Exporter(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"# TYPE threenines_ha_example_total counter\nthreenines_ha_example_total 7\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def _exporter() -> Iterator[str]:
    with serving(_Exporter) as server:
        yield f"127.0.0.1:{server.server_address[1]}"


def _loopback_config(path: Path, out: Path, target: str, vm_url: str) -> Path:
    config = yaml.safe_load(path.read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str((path.parent / f).resolve()) for f in config["rule_files"]]
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{free_port()}"]
    config["scrape_configs"] = [{"job_name": "threenines", "static_configs": [{"targets": [target]}]}]
    config["remote_write"][0]["url"] = f"{vm_url}/api/v1/write"
    config["remote_write"][0]["queue_config"]["batch_send_deadline"] = "1s"
    out.write_text(yaml.safe_dump(config), encoding="utf-8")
    return out


@pytest.mark.timeout(180)
def test_the_example_pair_writes_one_deduplicated_series_to_victoriametrics(tmp_path: Path) -> None:
    # Dedup at the test's scrape interval; VictoriaMetrics hides samples younger than 30 s by default and this
    # test reads the store seconds after writing (as tests/ha/stack.py does, docs/ha.md).
    flags = {**_vm_flags(), "dedup.minScrapeInterval": "1s", "search.latencyOffset": "1s"}
    args = [f"-{k}={v}" for k, v in flags.items() if k != "storageDataPath"]
    with _exporter() as target, victoriametrics(tmp_path, *args) as vm, contextlib.ExitStack() as stack:
        for path in PAIR:
            config = _loopback_config(path, tmp_path / path.name, target, vm.url)
            port = free_port()
            stack.enter_context(running(
                [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / path.stem}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                tmp_path / f"{path.stem}.log", ready_url=f"http://127.0.0.1:{port}/-/ready", timeout=60))

        def query(expr: str) -> list[dict]:
            answer = requests.post(f"{vm.url}/api/v1/query", data={"query": expr}, timeout=10).json()
            return answer["data"]["result"]

        # the remote writes arrived
        wait_until(lambda: query("count_over_time(threenines_ha_example_total[20s])") and
                   float(query("count_over_time(threenines_ha_example_total[20s])")[0]["value"][1]) >= 10,
                   timeout=90, interval=1, what="samples of both Prometheus in VictoriaMetrics")
        series = query("threenines_ha_example_total")
        assert len(series) == 1 and "replica" not in series[0]["metric"], series
        # the pair scrapes the target twice a second between them; dedup keeps one sample per second (the raw
        # samples: VictoriaMetrics' count_over_time() hides duplicates closer than its own step estimate)
        samples = query("threenines_ha_example_total[10s]")[0]["values"]
        assert len(samples) <= 11, samples
        client = PrometheusClient(ClientConfig(vm.url, retries=0))
        engine = client.detect_engine()
        assert engine.victoriametrics and engine.flags_read
        errors, warnings = engine.check(oldest=1_790_000_000, now=1_800_000_000)  # a month 4 months ago
        assert errors == [] and warnings == []
