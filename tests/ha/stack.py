"""The HA evidence chain as real processes, for fault tests: two replica exporters (`threenines serve --vantage
a|b`, each with its own state directory) probing one customer port in a network namespace the test made and can
cut, two Prometheus built from the shipped example (prometheus/ha/prometheus-a.yml and -b.yml: external label
`replica`, remote write to VictoriaMetrics without it) scraping both replicas, and one VictoriaMetrics with the
example's flags and dedup at the test's scrape interval.

Every process can be killed with SIGKILL and started again on the same port and data directory, as a crashed
host would be; `stack()` stops whatever still runs, by PID, and removes the namespace.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.foundation.exporter_process import sample, scrape
from tests.ha.victoriametrics import VICTORIA_METRICS
from tests.netns import CustomerPort, customer_port
from tests.support import REPO, VENV_BIN, RunningProcess, free_port, http_get, wait_until

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
HA = REPO / "prometheus" / "ha"


@dataclass
class Restartable:
    """A process that a test kills and starts again with the same argv (same port, same data directory)."""

    name: str
    argv: list[str]
    log: Path
    ready_url: str
    process: RunningProcess | None = None
    starts: int = 0

    def start(self, timeout: float = 60.0) -> None:
        assert self.process is None or not self.process.alive(), f"{self.name} is already running"
        self.starts += 1
        self.process = RunningProcess(self.argv, self.log.with_suffix(f".{self.starts}.log"))
        self.process.wait_http(self.ready_url, timeout)

    def kill9(self) -> None:
        assert self.process is not None
        self.process.kill9()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@dataclass
class Stack:
    tmp: Path
    port: CustomerPort
    interval: float
    scrape: float
    replicas: dict[str, Restartable]
    replica_ports: dict[str, int]
    prometheus: dict[str, Restartable]
    prometheus_urls: dict[str, str]
    vm: Restartable
    vm_url: str
    inventory: Path
    processes: list[Restartable] = field(default_factory=list)

    def state_dir(self, vantage: str) -> Path:
        return self.tmp / vantage / "state"

    def metric(self, vantage: str, name: str, **labels: str) -> float | None:
        return sample(scrape(self.replica_ports[vantage]), name, **labels)

    def probes(self, vantage: str) -> float:
        return self.metric(vantage, "threenines_probe_total", target="p1") or 0.0

    def wait_probed(self, vantage: str, more: int = 1) -> None:
        """Until the replica has probed `more` more times (it is up and judging the port)."""
        before = self.probes(vantage)
        wait_until(lambda: self.probes(vantage) >= before + more, (more + 2) * self.interval + 10, interval=0.2,
                   what=f"replica {vantage} to probe the customer port")

    def in_store(self, url: str, expr: str) -> list[dict]:
        _, body = http_get(f"{url}/api/v1/query?query={expr}")
        return json.loads(body)["data"]["result"]

    def report(self, url: str, month: str, *extra: str) -> dict:
        """`threenines report` as billing runs it (a preview: the month is not over), JSON."""
        done = subprocess.run(
            [str(VENV_BIN / "threenines"), "report", "--month", month, "--prometheus", url, "--config",
             str(self.inventory), "--allow-incomplete", "--format", "json", *extra],
            capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


def inventory_text(address: str, interval: float) -> str:
    return f"""customers:
  - id: acme
    timezone: UTC
    contacts: {{version: '1', notify: [{{email: noc@acme.example}}]}}
    ping: {{interval: {interval:g}s, threshold: 2, packets: 1, timeout: 500ms}}
    ports: [{{id: p1, address: '{address}'}}]
"""


def prometheus_config(replica: str, out: Path, targets: list[str], vm_url: str, scrape: float) -> Path:
    """The shipped example (prometheus/ha/prometheus-<replica>.yml) on loopback: the test's scrape interval, the
    replicas as targets, remote write to the test's VictoriaMetrics. No rules or Alertmanagers: this chain is the
    evidence billing reads."""
    config = yaml.safe_load((HA / f"prometheus-{replica}.yml").read_text())
    config["global"].update(scrape_interval=f"{scrape:g}s", scrape_timeout=f"{scrape:g}s",
                            evaluation_interval=f"{scrape:g}s")
    config.pop("rule_files", None)
    config.pop("alerting", None)
    config["scrape_configs"] = [{"job_name": "threenines", "static_configs": [{"targets": targets}]}]
    config["remote_write"][0]["url"] = f"{vm_url}/api/v1/write"
    config["remote_write"][0]["queue_config"].update(batch_send_deadline="1s", min_backoff="100ms",
                                                     max_backoff="1s")
    out.write_text(yaml.safe_dump(config), encoding="utf-8")
    return out


def vm_flags(scrape: float) -> list[str]:
    """The example's VictoriaMetrics flags (victoria-metrics.default), dedup at the test's scrape interval, and
    room for the report's month-long subqueries at that interval (one point per scrape interval)."""
    [args] = re.findall(r'^ARGS="(.*)"$', (HA / "victoria-metrics.default").read_text(), re.M)
    flags = dict(arg.lstrip("-").split("=", 1) for arg in shlex.split(args))
    flags.pop("storageDataPath")
    flags["dedup.minScrapeInterval"] = f"{scrape:g}s"
    flags["search.maxPointsPerTimeseries"] = str(int((745 + 13) * 3600 / scrape) + 100)
    return [f"-{k}={v}" for k, v in flags.items()]


@contextlib.contextmanager
def stack(tmp: Path, interval: float = 2.0, scrape: float = 1.0) -> Iterator[Stack]:
    with customer_port() as port, contextlib.ExitStack() as cleanup:
        inventory = tmp / "inventory.yml"
        inventory.write_text(inventory_text(port.address, interval))
        vm_port = free_port()
        vm_url = f"http://127.0.0.1:{vm_port}"
        vm = Restartable("victoriametrics", [VICTORIA_METRICS, f"-httpListenAddr=127.0.0.1:{vm_port}",
                                             f"-storageDataPath={tmp / 'vm'}", "-search.disableCache",
                                             # VictoriaMetrics hides samples younger than 30 s by default; this
                                             # test reads the store seconds after writing (docs/ha.md)
                                             "-search.latencyOffset=1s",
                                             "-loggerLevel=WARN", *vm_flags(scrape)],
                         tmp / "victoria-metrics", f"{vm_url}/health")
        replica_ports = {"a": free_port(), "b": free_port()}
        replicas = {}
        for vantage, listen in replica_ports.items():
            (tmp / vantage).mkdir()
            replicas[vantage] = Restartable(
                f"replica {vantage}",
                [str(VENV_BIN / "threenines"), "serve", "--config", str(inventory), "--listen", f"127.0.0.1:{listen}",
                 "--state-dir", str(tmp / vantage / "state"), "--tick", "1", "--vantage", vantage],
                tmp / vantage / "exporter", f"http://127.0.0.1:{listen}/healthz")
        prometheus, urls = {}, {}
        targets = [f"127.0.0.1:{p}" for p in replica_ports.values()]
        for replica in ("a", "b"):
            listen = free_port()
            urls[replica] = f"http://127.0.0.1:{listen}"
            config = prometheus_config(replica, tmp / f"prometheus-{replica}.yml", targets, vm_url, scrape)
            prometheus[replica] = Restartable(
                f"prometheus {replica}",
                [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp / f'tsdb-{replica}'}",
                 f"--web.listen-address=127.0.0.1:{listen}", "--log.level=warn"],
                tmp / f"prometheus-{replica}", f"{urls[replica]}/-/ready")
        everything = [vm, *replicas.values(), *prometheus.values()]
        for one in everything:
            cleanup.callback(one.stop)  # by PID, in reverse order of start
            one.start()
        yield Stack(tmp, port, interval, scrape, replicas, replica_ports, prometheus, urls, vm, vm_url, inventory,
                    everything)
