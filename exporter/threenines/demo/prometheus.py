"""A local Prometheus for the demo: scrapes the demo exporter and evaluates the project's rules.

Started only when Debian's `prometheus` is installed; the rules come from the checkout's prometheus/rules/
(the demo runs from a checkout via `make demo`).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import threenines
from threenines.demo import free_ports

RULES_DIR = Path(threenines.__file__).resolve().parents[2] / "prometheus" / "rules"
SCRAPE_SECONDS = 5


def available() -> bool:
    return shutil.which("prometheus") is not None


def free_tcp_port() -> int:
    return free_ports(socket.SOCK_STREAM, 1)[0]


def config_text(exporter_listen: str) -> str:
    rules = sorted(RULES_DIR.glob("*.yml")) if RULES_DIR.is_dir() else []
    rule_files = "".join(f"  - {path}\n" for path in rules)
    return (
        "global:\n"
        f"  scrape_interval: {SCRAPE_SECONDS}s\n"
        f"  evaluation_interval: {SCRAPE_SECONDS}s\n"
        + (f"rule_files:\n{rule_files}" if rule_files else "")
        + "scrape_configs:\n"
        "  - job_name: threenines\n"
        f"    static_configs: [{{targets: ['{exporter_listen}']}}]\n"
    )


def start(workdir: Path, exporter_listen: str, port: int) -> subprocess.Popen[bytes]:
    config = workdir / "prometheus.yml"
    config.write_text(config_text(exporter_listen))
    with open(workdir / "prometheus.log", "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )


def dashboard_query_lines(prometheus_url: str) -> list[str]:
    from threenines.dashboards import DASHBOARDS, to_model
    from threenines.dashboards.queries import query_links

    models = [to_model(build()) for build in DASHBOARDS.values()]
    return query_links(models, prometheus_url, rate_interval=f"{4 * SCRAPE_SECONDS}s")
