"""`threenines demo --ha`: the HA evidence chain of docs/ha.md on 127.0.0.1, every process on a free port.

* two replica exporters (`threenines serve --vantage a|b --peer …`), each with its own state directory, probing
  the demo inventory (the same cuttable port and simulated power as the single demo);
* two Prometheus built from the shipped example (prometheus/ha/prometheus-a.yml, -b.yml: external label
  `replica`, the shipped rules), each scraping both replicas and sending alerts to both Alertmanagers;
* VictoriaMetrics, when Debian's victoria-metrics is installed, with the example's flags
  (prometheus/ha/victoria-metrics.default) and dedup at the demo's scrape interval, written to by both Prometheus;
* a 2-node Alertmanager cluster (gossip on loopback) with the config `threenines alertmanager-config
  --replica-exporter` generates, so each customer notification reaches both replicas;
* the customers' contacts are one loopback webhook of the demo's own, which prints and keeps what it receives:
  the generated config needs a channel for every contact, and a cut then shows the whole chain to the message.

Every process is a child the demo stops by PID; one killed with `kill -9` is started again (same argv, port and
data directory) on SIGUSR1, so the user can watch what one lost replica or Alertmanager node costs.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from threenines.demo import free_ports, stop_child
from threenines.demo.prometheus import RULES_DIR, SCRAPE_SECONDS

HA_DIR = RULES_DIR.parent / "ha"  # the shipped example the demo runs (a checkout's prometheus/ha/)
VANTAGES = ("a", "b")
TICK = 5.0  # as the single demo: counters and /metrics follow the 5 s probes closely
# Alertmanager timings for a demo: a cut is notified within seconds, not the production 30 s group_wait.
GROUP_WAIT, GROUP_INTERVAL = 5.0, 10.0
SETTLE = "5s"  # --cluster.settle-timeout: the node is ready once the peers had this long to gossip
READY_TIMEOUT = 90.0  # each process' readiness; the 2-CPU CI machine starts seven of them at once


class Unavailable(Exception):
    """The HA demo cannot run here (a required engine is missing, or a process did not start)."""


def binary(name: str) -> str | None:
    return shutil.which(name)


def threenines_command() -> list[str]:
    """How to run this installation's `threenines` (the venv's script beside this interpreter, when there)."""
    script = shutil.which("threenines", path=str(Path(sys.executable).parent)) or shutil.which("threenines")
    return [script] if script else [sys.executable, "-c", "import sys; from threenines.cli import main; "
                                    "sys.exit(main())"]


@dataclass
class Child:
    """One process of the stack: started again with the same argv (port, data directory) after a kill."""

    name: str
    argv: list[str]
    log: Path
    ready_url: str
    process: subprocess.Popen[bytes] | None = None
    pids: list[int] = field(default_factory=list)  # every PID it had, so that the exit can be checked by PID
    reported: bool = False  # its unexpected exit was printed

    def start(self) -> None:
        with open(self.log, "ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.pids.append(self.process.pid)
        self.reported = False

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def dead(self) -> bool:
        return self.process is None or self.process.poll() is not None

    def stop(self) -> None:
        if self.process is not None:
            stop_child(self.process)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.dead():
                code = self.process.returncode if self.process else None
                raise Unavailable(f"{self.name} exited (status {code}) before it was ready; its log "
                                  f"{self.log}:\n{_tail(self.log)}")
            with contextlib.suppress(OSError, urllib.error.URLError), \
                    urllib.request.urlopen(self.ready_url, timeout=2) as response:
                if response.status == 200:
                    return
            if time.monotonic() > deadline:
                raise Unavailable(f"{self.name} not ready at {self.ready_url} after {timeout:g} s; its log "
                                  f"{self.log}:\n{_tail(self.log)}")
            time.sleep(0.3)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class _Sink(ThreadingHTTPServer):
    daemon_threads = True
    record: Path


class _SinkHandler(BaseHTTPRequestHandler):
    """The demo customers' webhook contact: keeps each notification document and prints one line for it."""

    server: _Sink

    def do_POST(self) -> None:  # http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with open(self.server.record, "ab") as out:
            out.write(body.rstrip(b"\n") + b"\n")
        try:
            doc = json.loads(body)
            line = f"{doc['customer']['id']} ({doc['status']}): {doc['subject']}"
        except (ValueError, KeyError, TypeError):
            line = f"{self.path}: {len(body)} bytes"
        print(f"  notification received: {line}", flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # http.server's signature
        pass  # one line per notification above is enough


def ha_inventory(text: str, replicas: dict[str, str], sink_url: str, token_file: Path) -> str:
    """The demo inventory made an HA one: the audit token the replicas and Alertmanager share, the audit webhook
    (replica a; --replica-exporter adds b) and every customer's contacts on the demo's webhook."""
    data = yaml.safe_load(text)
    exporter = data.setdefault("exporter", {})
    exporter.pop("listen", None)  # each replica's --listen
    token = {"file": str(token_file)}
    exporter["audit_token"] = token
    data["notification"] = {"audit_webhook": {"url": f"{replicas['a']}/alertmanager/webhook", "token": token}}
    for customer in data["customers"]:
        customer["contacts"]["notify"] = [{"webhook": {"url": f"{sink_url}/{customer['id']}"}}]
    header = ("# threenines demo --ha: the demo inventory with an audit token, the audit webhook and every customer's\n"
              "# contacts on the demo's loopback webhook (edit it, then POST each replica's /-/reload).\n")
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def prometheus_config(replica: str, replicas: Sequence[str], alertmanagers: Sequence[str],
                      vm_url: str | None) -> str:
    """The shipped example on loopback: the demo's scrape interval, its replicas, Alertmanagers and store."""
    config = yaml.safe_load((HA_DIR / f"prometheus-{replica}.yml").read_text(encoding="utf-8"))
    seconds = f"{SCRAPE_SECONDS}s"
    config["global"].update(scrape_interval=seconds, scrape_timeout=seconds, evaluation_interval=seconds)
    config["rule_files"] = [str((HA_DIR / path).resolve()) for path in config.get("rule_files", [])]
    config["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": list(alertmanagers)}]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    jobs["threenines"]["static_configs"] = [{"targets": list(replicas)}]
    jobs["alertmanager"]["static_configs"] = [{"targets": list(alertmanagers)}]
    if vm_url is None:
        config.pop("remote_write", None)
    else:
        config["remote_write"][0]["url"] = f"{vm_url}/api/v1/write"
        # the demo shows the store filling within seconds
        config["remote_write"][0]["queue_config"]["batch_send_deadline"] = "1s"
    return yaml.safe_dump(config, sort_keys=False)


def vm_flags() -> dict[str, str]:
    """The example's VictoriaMetrics flags (victoria-metrics.default), dedup at the demo's scrape interval and room
    for the report's month-long subqueries at that interval (docs/ha.md: one point per scrape interval)."""
    [args] = re.findall(r'^ARGS="(.*)"$', (HA_DIR / "victoria-metrics.default").read_text(encoding="utf-8"), re.M)
    flags = dict(arg.lstrip("-").split("=", 1) for arg in shlex.split(args))
    flags.pop("storageDataPath", None)
    flags["dedup.minScrapeInterval"] = f"{SCRAPE_SECONDS}s"
    flags["search.maxPointsPerTimeseries"] = str(int((745 + 13) * 3600 / SCRAPE_SECONDS) + 100)
    return flags


@dataclass
class Stack:
    """What the HA demo started; `stop()` stops every process by PID (newest first) and the webhook."""

    workdir: Path
    state_root: Path
    children: list[Child] = field(default_factory=list)
    replicas: dict[str, str] = field(default_factory=dict)  # vantage → base URL
    prometheus: dict[str, str] = field(default_factory=dict)
    alertmanagers: dict[str, str] = field(default_factory=dict)
    gossip: dict[str, str] = field(default_factory=dict)
    vm_url: str | None = None
    vm_reason: str | None = None
    config: Path | None = None
    sink: _Sink | None = None
    notifications: Path | None = None

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def _add(self, name: str, argv: list[str], ready_url: str) -> Child:
        one = Child(name, argv, self.workdir / f"{name.replace(' ', '-')}.log", ready_url)
        self.children.append(one)
        one.start()
        return one

    def start(self, inventory_text: str) -> None:
        """Start everything (Unavailable when Prometheus or Alertmanager is missing or a process fails)."""
        prometheus, alertmanager = binary("prometheus"), binary("prometheus-alertmanager")
        if prometheus is None or alertmanager is None:
            raise Unavailable("the HA demo needs Debian's prometheus and prometheus-alertmanager "
                              "(`make demo-ha` installs them)")
        if not (HA_DIR / "prometheus-a.yml").is_file():
            raise Unavailable(f"the HA demo runs the example in {HA_DIR}, which is not there: run it from a "
                              "checkout (`make demo-ha`)")
        vm = binary("victoria-metrics")
        if vm is None:
            self.vm_reason = "victoria-metrics is not installed (apt-get install victoria-metrics)"
        ports = iter(free_ports(socket.SOCK_STREAM, 9))
        local = "127.0.0.1"
        self.replicas = {v: f"http://{local}:{next(ports)}" for v in VANTAGES}
        self.prometheus = {r: f"http://{local}:{next(ports)}" for r in VANTAGES}
        self.alertmanagers = {n: f"http://{local}:{next(ports)}" for n in VANTAGES}
        self.gossip = {n: f"{local}:{next(ports)}" for n in VANTAGES}
        vm_port = next(ports)

        self.sink = _Sink((local, 0), _SinkHandler)
        self.notifications = self.workdir / "notifications.jsonl"
        self.sink.record = self.notifications
        threading.Thread(target=self.sink.serve_forever, name="demo-webhook", daemon=True).start()
        sink_url = f"http://{local}:{self.sink.server_address[1]}/contacts"

        token = self.workdir / "audit-token"
        token.touch(mode=0o600)
        token.write_text(secrets.token_urlsafe(24))
        self.config = self.workdir / "inventory.yml"
        self.config.write_text(ha_inventory(inventory_text, self.replicas, sink_url, token), encoding="utf-8")

        if vm is not None:
            self.vm_url = f"http://{local}:{vm_port}"
            flags = [f"-{k}={v}" for k, v in vm_flags().items()]
            self._add("victoriametrics", [vm, f"-httpListenAddr={local}:{vm_port}",
                                          f"-storageDataPath={self.workdir / 'victoria-metrics'}",
                                          "-loggerLevel=WARN", *flags], f"{self.vm_url}/health")
        command = threenines_command()
        for vantage, peer in zip(VANTAGES, reversed(VANTAGES), strict=True):
            url = self.replicas[vantage]
            self._add(f"replica {vantage}", [
                *command, "serve", "--config", str(self.config), "--listen", url.removeprefix("http://"),
                "--state-dir", str(self.state_root / vantage), "--tick", f"{TICK:g}", "--vantage", vantage,
                "--peer", self.replicas[peer]], f"{url}/healthz")

        am_config = self.workdir / "alertmanager" / "alertmanager.yml"
        self._write_alertmanager_config(am_config)
        for node, other in zip(VANTAGES, reversed(VANTAGES), strict=True):
            url = self.alertmanagers[node]
            self._add(f"alertmanager {node}", [
                alertmanager, f"--config.file={am_config}", f"--storage.path={self.workdir / f'alertmanager-{node}'}",
                f"--web.listen-address={url.removeprefix('http://')}",
                f"--cluster.listen-address={self.gossip[node]}", f"--cluster.peer={self.gossip[other]}",
                f"--cluster.settle-timeout={SETTLE}", "--log.level=warn"], f"{url}/-/ready")

        targets = [u.removeprefix("http://") for u in self.replicas.values()]
        managers = [u.removeprefix("http://") for u in self.alertmanagers.values()]
        for replica in VANTAGES:
            config = self.workdir / f"prometheus-{replica}.yml"
            config.write_text(prometheus_config(replica, targets, managers, self.vm_url), encoding="utf-8")
            url = self.prometheus[replica]
            self._add(f"prometheus {replica}", [
                prometheus, f"--config.file={config}", f"--storage.tsdb.path={self.workdir / f'tsdb-{replica}'}",
                f"--web.listen-address={url.removeprefix('http://')}", "--log.level=warn"], f"{url}/-/ready")
        for one in self.children:
            one.wait_ready()

    def _write_alertmanager_config(self, path: Path) -> None:
        from threenines.alerting.alertmanager_config import Options, render, write
        from threenines.config.inventory_load import load_inventory

        assert self.config is not None
        # What `threenines alertmanager-config --config inventory.yml --replica-exporter <replica b>` writes,
        # with demo timings.
        options = Options(secrets_dir=str(self.workdir), group_wait=GROUP_WAIT, group_interval=GROUP_INTERVAL,
                          replica_urls=(self.replicas["b"],))
        write(path, render(load_inventory(self.config), options, source=str(self.config)), options)

    def restart_dead(self) -> list[Child]:
        """Start again every process that is no longer running (same argv, port and data directory)."""
        restarted = [one for one in self.children if one.dead()]
        for one in restarted:
            one.start()
        for one in restarted:
            one.wait_ready()
        return restarted

    def newly_dead(self) -> list[Child]:
        """Processes that exited since last asked (printed once each)."""
        found = [one for one in self.children if one.dead() and not one.reported]
        for one in found:
            one.reported = True
        return found

    def stop(self) -> None:
        for one in reversed(self.children):
            one.stop()
        if self.sink is not None:
            self.sink.shutdown()
            self.sink.server_close()

    def guide_lines(self, demo_pid: int) -> list[str]:
        """What runs where, how to kill and restart one replica or Alertmanager node, and the report's line."""
        vm = (f"{self.vm_url}   (pid {self.child('victoriametrics').pid}; remote_write from both Prometheus, "
              + ", ".join(f"-{k}={v}" for k, v in vm_flags().items() if k != "search.maxPointsPerTimeseries") + ")"
              if self.vm_url else f"not started: {self.vm_reason}")
        lines = []
        for vantage in VANTAGES:
            other = next(v for v in VANTAGES if v != vantage)
            lines.append(f"  {f'replica {vantage}:':17}{self.replicas[vantage]}/metrics   (pid "
                         f"{self.child(f'replica {vantage}').pid}; serve --vantage {vantage} --peer replica {other}; "
                         f"ledgers {self.state_root / vantage})")
        for replica in VANTAGES:
            lines.append(f"  {f'prometheus {replica}:':17}{self.prometheus[replica]}   (pid "
                         f"{self.child(f'prometheus {replica}').pid}; replica=\"{replica}\", scrapes both replicas "
                         f"every {SCRAPE_SECONDS} s, the shipped rules, alerts to both Alertmanagers)")
        lines.append(f"  {'victoriametrics:':17}{vm}")
        for node in VANTAGES:
            other = next(v for v in VANTAGES if v != node)
            lines.append(f"  {f'alertmanager {node}:':17}{self.alertmanagers[node]}   (pid "
                         f"{self.child(f'alertmanager {node}').pid}; cluster {self.gossip[node]}, peer "
                         f"{self.gossip[other]}; config {self.workdir / 'alertmanager' / 'alertmanager.yml'}, "
                         f"from alertmanager-config --replica-exporter {self.replicas['b']})")
        lines.append(f"  {'notifications:':17}every customer's contact is the demo's webhook: printed here, kept in "
                     f"{self.notifications}")
        lines.append(f"  {'faults:':17}kill -9 one process; `kill -USR1 {demo_pid}` starts again whatever was "
                     "killed (same port and data)")
        for name in ("replica a", "replica b", "alertmanager a", "alertmanager b"):
            lines.append(f"    {f'kill {name}:':22}kill -9 {self.child(name).pid}")
        lines.append(f"    {'restart killed:':22}kill -USR1 {demo_pid}")
        ledgers = " ".join(f"--ledger {v}={self.state_root / v / 'outages.sqlite'}" for v in VANTAGES)
        # this month so far: a preview (--allow-incomplete), the replicas' ledgers merged by the contract's rule;
        # billing reads VictoriaMetrics, and without it the same line works against one Prometheus of the pair
        month = time.strftime("%Y-%m", time.gmtime())
        store = self.vm_url or self.prometheus["a"]
        report = [*threenines_command(), "report", "--month", month, "--prometheus", store, "--config",
                  str(self.config)]
        lines.append(f"  {'report:':17}{shlex.join(report)} {ledgers} --allow-incomplete"
                     + ("" if self.vm_url else "   (prometheus a: no VictoriaMetrics)"))
        return lines
