"""Start `threenines serve` as a real process on a free port, with a small inventory written by the test."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support import VENV_BIN, free_port, http_get, running


def inventory_text(ports: dict[str, str], interval: str = "2s", threshold: int = 2, customer: str = "acme",
                   deadline: str | None = None) -> str:
    lines = [
        "customers:",
        f"  - id: {customer}",
        "    timezone: Europe/Amsterdam",
        *([f"    notification_deadline: {deadline}"] if deadline else []),
        "    contacts: {version: '1', notify: [{email: noc@acme.example}]}",
        f"    ping: {{interval: {interval}, threshold: {threshold}, packets: 1, timeout: 500ms}}",
        "    ports:",
    ]
    lines += [f"      - {{id: {port_id}, address: '{address}'}}" for port_id, address in ports.items()]
    return "\n".join(lines) + "\n"


def serve(tmp_path: Path, config: Path, state_dir: Path | None = None, extra: list[str] | None = None,
          port: int | None = None):
    port = port or free_port()
    argv = [str(VENV_BIN / "threenines"), "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}",
            "--state-dir", str(state_dir or tmp_path / "state"), "--tick", "1", *(extra or [])]
    return running(argv, tmp_path / f"exporter-{port}.log", ready_url=f"http://127.0.0.1:{port}/healthz"), port


def scrape(port: int) -> str:
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    return body.decode()


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in exposition text, or None when absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        series, _, value = line.rpartition(" ")
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', series))
        if series.split("{")[0] == name and all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return None
